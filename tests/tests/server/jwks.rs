//! Tokens verified with keys from a JWKS endpoint (`client.token.jwks_public_endpoint`) served
//! by a real identity provider process-side ([`KeyServer`]): connect, subscribe and refresh with
//! fetched keys, key rotation, templated endpoints per issuer, and the security rules — a token
//! whose unverified `iss` names no configured endpoint makes no request at all, two issuers
//! using the same `kid` cannot sign for each other, `alg: none`, a wrong algorithm and HMAC
//! keyed with the RSA public key are refused.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use spindle_proto::client::{Command, RefreshRequest, SubscribeRequest};
use spindle_tests::keys::{ACME, GLOBEX, KeyServer};
use spindle_tests::{Client, Format, OrFail, Server, fixture};

const TIMEOUT: Duration = Duration::from_secs(5);

fn claims(iss: &str, sub: &str) -> Value {
    let now = fixture::unix_now();
    json!({"iss": iss, "sub": sub, "iat": now, "exp": now + 3600})
}

async fn server_with_endpoint(endpoint: &str, issuer_regex: &str) -> Server {
    Server::start_patched(json!({
        "client": {"token": {"jwks_public_endpoint": endpoint, "issuer_regex": issuer_regex}}
    }))
    .await
    .or_fail()
}

/// Connects with `token` and returns the client id, or the close code when refused.
async fn connect(server: &Server, token: &str) -> Result<String, u16> {
    let mut client = Client::open(&server.ws_url(), Format::Json).await.or_fail();
    let mut command = spindle_tests::client::connect_command(token);
    command.id = 1;
    client.send(&command).await.or_fail();
    match client.next_event(TIMEOUT).await.or_fail() {
        spindle_tests::client::Event::Reply(reply) => match (reply.connect, reply.error) {
            (Some(result), _) => {
                client.close().await;
                Ok(result.client)
            }
            (None, error) => panic!("connect answered with {error:?}"),
        },
        spindle_tests::client::Event::Closed(close) => Err(close.code),
        spindle_tests::client::Event::Ping => panic!("a ping before the connect reply"),
    }
}

fn refused(result: Result<String, u16>, what: &str) {
    assert_eq!(result, Err(3500), "{what}");
}

#[tokio::test]
async fn keys_come_from_the_endpoint_and_rotate() {
    let keys = KeyServer::start().await.or_fail();
    keys.serve("acme", vec![ACME.jwk("k1")]);
    let endpoint = format!("{}/acme/jwks", keys.base_url());
    let server = server_with_endpoint(&endpoint, "").await;

    assert!(
        connect(&server, &ACME.sign("k1", &claims("", "alice")))
            .await
            .is_ok()
    );
    // The set is cached: a second connect with a known kid fetches nothing.
    assert!(
        connect(&server, &ACME.sign("k1", &claims("", "bob")))
            .await
            .is_ok()
    );
    assert_eq!(keys.requests(), ["/acme/jwks"]);

    // Rotation: the provider now signs with a new kid; the unknown kid refetches the set.
    keys.serve("acme", vec![GLOBEX.jwk("k2")]);
    assert!(
        connect(&server, &GLOBEX.sign("k2", &claims("", "carol")))
            .await
            .is_ok()
    );
    // The retired key no longer verifies once the set without it is fetched.
    refused(
        connect(&server, &ACME.sign("k1", &claims("", "dave"))).await,
        "retired kid",
    );
    // A kid nobody publishes, and a token signed by the wrong key under a published kid.
    refused(
        connect(&server, &ACME.sign("k9", &claims("", "eve"))).await,
        "unknown kid",
    );
    refused(
        connect(&server, &ACME.sign("k2", &claims("", "eve"))).await,
        "wrong key",
    );
    let fetches = keys.requests().len();
    assert!((2..=4).contains(&fetches), "fetches: {:?}", keys.requests());
}

#[tokio::test]
async fn subscription_and_refresh_tokens_use_the_fetched_keys() {
    let keys = KeyServer::start().await.or_fail();
    keys.serve("acme", vec![ACME.jwk("k1")]);
    let server = server_with_endpoint(&format!("{}/acme/jwks", keys.base_url()), "").await;
    let mut client = Client::open(&server.ws_url(), Format::Protobuf)
        .await
        .or_fail();
    let now = fixture::unix_now();
    client
        .connect_with(&ACME.sign("k1", &json!({"sub": "alice", "exp": now + 60})))
        .await
        .or_fail();

    let channel = fixture::unique("$secret");
    let token = ACME.sign(
        "k1",
        &json!({"sub": "alice", "channel": channel, "exp": now + 60}),
    );
    let reply = client
        .request(Command {
            subscribe: Some(SubscribeRequest {
                channel: channel.clone(),
                token,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .or_fail();
    assert!(reply.subscribe.is_some(), "subscribe: {reply:?}");

    let reply = client
        .request(Command {
            refresh: Some(RefreshRequest {
                token: ACME.sign("k1", &json!({"sub": "alice", "exp": now + 600})),
            }),
            ..Default::default()
        })
        .await
        .or_fail();
    let refreshed = reply
        .refresh
        .clone()
        .unwrap_or_else(|| panic!("refresh: {reply:?}"));
    assert!(refreshed.expires && refreshed.ttl > 500, "{refreshed:?}");

    // A subscription token signed by a key the set does not have: 103.
    let other = fixture::unique("$secret");
    let forged = GLOBEX.sign("k1", &json!({"sub": "alice", "channel": other}));
    let reply = client
        .request(Command {
            subscribe: Some(SubscribeRequest {
                channel: other,
                token: forged,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .or_fail();
    assert_eq!(reply.error.map(|e| e.code), Some(103));
}

const TENANTS: &str = r"^https://(?P<tenant>acme|globex)\.example$";

#[tokio::test]
async fn issuers_sharing_a_kid_cannot_sign_for_each_other() {
    let keys = KeyServer::start().await.or_fail();
    keys.serve("acme", vec![ACME.jwk("main")]);
    keys.serve("globex", vec![GLOBEX.jwk("main")]);
    let endpoint = format!("{}/{{{{tenant}}}}/jwks", keys.base_url());
    let server = server_with_endpoint(&endpoint, TENANTS).await;

    let acme = "https://acme.example";
    let globex = "https://globex.example";
    assert!(
        connect(&server, &ACME.sign("main", &claims(acme, "a")))
            .await
            .is_ok()
    );
    assert!(
        connect(&server, &GLOBEX.sign("main", &claims(globex, "g")))
            .await
            .is_ok()
    );
    // Globex's key, same kid, claiming to be acme: verified against acme's set, refused.
    refused(
        connect(&server, &GLOBEX.sign("main", &claims(acme, "a"))).await,
        "globex as acme",
    );
    refused(
        connect(&server, &ACME.sign("main", &claims(globex, "g"))).await,
        "acme as globex",
    );
    let mut requests = keys.requests();
    requests.sort();
    assert_eq!(requests, ["/acme/jwks", "/globex/jwks"]);
}

#[tokio::test]
async fn an_issuer_outside_the_configured_ones_makes_no_request() {
    let keys = KeyServer::start().await.or_fail();
    keys.serve("acme", vec![ACME.jwk("main")]);
    let endpoint = format!("{}/{{{{tenant}}}}/jwks", keys.base_url());
    let server = server_with_endpoint(&endpoint, TENANTS).await;
    for iss in [
        "https://evil.example",
        "https://acme.example/../evil",
        "https://ACME.example",
        "https://acme|globex.example",
        "",
    ] {
        refused(
            connect(&server, &ACME.sign("main", &claims(iss, "x"))).await,
            iss,
        );
    }
    let no_iss = ACME.sign("main", &json!({"sub": "x"}));
    refused(connect(&server, &no_iss).await, "no iss");
    assert_eq!(
        keys.requests(),
        Vec::<String>::new(),
        "no request may be made"
    );
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn none_wrong_algorithm_and_hmac_with_the_public_key_are_refused() {
    let keys = KeyServer::start().await.or_fail();
    keys.serve("acme", vec![ACME.jwk("main")]);
    let server = server_with_endpoint(&format!("{}/acme/jwks", keys.base_url()), "").await;
    let payload = b64(&claims("", "mallory"));

    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "kid": "main"})));
    refused(connect(&server, &none).await, "alg none");
    // No request is made for a token that can never verify.
    assert_eq!(keys.requests(), Vec::<String>::new());

    // HS256 keyed with the RSA public key (its PEM, or its JWK text): the key is RSA, so it
    // never verifies an HMAC.
    for secret in [ACME.public_pem().to_owned(), ACME.jwk("main").to_string()] {
        let signed = format!("{}.{payload}", b64(&json!({"alg": "HS256", "kid": "main"})));
        let key = EncodingKey::from_secret(secret.as_bytes());
        let signature = jsonwebtoken::crypto::sign(signed.as_bytes(), &key, Algorithm::HS256)
            .unwrap_or_else(|e| panic!("{e}"));
        refused(
            connect(&server, &format!("{signed}.{signature}")).await,
            "HS256 with the public key",
        );
    }
    // The JWK says RS256: an RS512 signature by the right key is refused.
    let encoding =
        EncodingKey::from_rsa_pem(ACME.private_pem().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut header = Header::new(Algorithm::RS512);
    header.kid = Some("main".to_owned());
    let rs512 = jsonwebtoken::encode(&header, &claims("", "mallory"), &encoding)
        .unwrap_or_else(|e| panic!("{e}"));
    refused(connect(&server, &rs512).await, "RS512 under an RS256 key");
    // And the right token still works.
    assert!(
        connect(&server, &ACME.sign("main", &claims("", "ok")))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_temporary_error() {
    let port = spindle_tests::server::free_port().or_fail();
    let server = server_with_endpoint(&format!("http://127.0.0.1:{port}/jwks"), "").await;
    let mut client = Client::open(&server.ws_url(), Format::Json).await.or_fail();
    let reply = client
        .connect_reply(&ACME.sign("k1", &claims("", "alice")))
        .await
        .or_fail();
    let error = reply
        .error
        .clone()
        .unwrap_or_else(|| panic!("want error 100, got {reply:?}"));
    assert_eq!((error.code, error.temporary), (100, true), "{error:?}");
}

#[tokio::test]
async fn an_open_ended_template_refuses_to_start() {
    let error = Server::start_patched(json!({
        "client": {"token": {
            "jwks_public_endpoint": "https://{{tenant}}.example.com/jwks",
            "issuer_regex": "^(?P<tenant>[a-z]+)$"
        }}
    }))
    .await
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(error.contains("JWKS endpoint URL template"), "{error}");
    assert!(
        error.contains("client.token.jwks_public_endpoint"),
        "{error}"
    );
}

#[tokio::test]
async fn insecure_switches_are_warned_about_at_start() {
    let server = Server::start_patched(json!({
        "client": {
            "insecure_skip_token_signature_verify": true,
            "token": {"insecure_skip_jwks_endpoint_safety_check": true}
        }
    }))
    .await
    .or_fail();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let wanted = [
        "INSECURE: client.insecure_skip_token_signature_verify is on",
        "INSECURE: client.token.insecure_skip_jwks_endpoint_safety_check is on",
    ];
    while !wanted.iter().all(|w| server.stderr().contains(w)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "warnings missing from stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!server.stderr().contains("client.insecure is on"));
}
