//! Connect: command order, credentials, expiry, server-side subscriptions, rules construction.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use spindle_proto::{Format, Request, client};

use super::test_support::*;
use crate::VERSION;
use crate::config::Config;
use crate::jwt::sign_hs256;

#[test]
fn connect_with_a_token_grants_user_info_and_result() {
    let rules = rules();
    let mut session = session(&rules);
    assert!(!session.is_connected());
    let token = token(json!({"sub": "42", "info": {"name": "Alex"}}));
    let grant = session
        .connect(&rules, &connect_request(&token), t0())
        .unwrap();
    assert_eq!(grant.user, "42");
    assert_eq!(grant.conn_info, br#"{"name":"Alex"}"#.to_vec());
    assert_eq!(grant.expires_at, None);
    assert!(grant.server_subs.is_empty());
    let expected = client::ConnectResult {
        client: CLIENT.to_owned(),
        version: VERSION.to_owned(),
        ping: 25,
        pong: true,
        ..Default::default()
    };
    assert_eq!(grant.result, expected);
    assert!(session.is_connected());
    assert_eq!(session.user(), "42");
    assert_eq!(session.client_id(), CLIENT);
    assert_eq!(session.format(), Format::Json);
    assert_eq!(session.client_info().client, CLIENT);
    assert_eq!(&session.client_info().conn_info[..], br#"{"name":"Alex"}"#);
}

#[test]
fn version_names_the_crate_and_spindle() {
    assert_eq!(VERSION, concat!(env!("CARGO_PKG_VERSION"), " spindle"));
    assert!(!VERSION.is_empty());
}

#[test]
fn command_order_rules() {
    let rules = rules();
    let mut session = session(&rules);
    let subscribe = command(1, Request::Subscribe(sub_request("chat:a")));
    let connect = command(1, Request::Connect(connect_request("")));
    let send = command(0, Request::Send(client::SendRequest::default()));
    let pong = command(0, Request::Pong);
    // Before connect: only connect.
    assert_eq!(err(session.admit(&subscribe)), 3501);
    assert_eq!(err(session.admit(&pong)), 3501);
    assert_eq!(err(session.admit(&send)), 3501);
    assert_eq!(session.admit(&connect), Ok(()));
    let token = token(json!({"sub": "42"}));
    session
        .connect(&rules, &connect_request(&token), t0())
        .unwrap();
    // After connect: a second connect is a violation, send has no handler (3508).
    assert_eq!(err(session.admit(&connect)), 3501);
    assert_eq!(err(session.admit(&send)), 3508);
    assert_eq!(session.admit(&subscribe), Ok(()));
    assert_eq!(session.admit(&pong), Ok(()));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&token), t0())),
        3501
    );
    // Closed: nothing.
    session.close();
    assert_eq!(err(session.admit(&subscribe)), 3501);
    assert!(!session.is_connected());
}

#[test]
fn a_failed_connect_makes_the_connection_unusable() {
    let rules = rules();
    let mut session = session(&rules);
    let expired = token(json!({"sub": "42", "exp": T0 - 1}));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&expired), t0())),
        109
    );
    let connect = command(2, Request::Connect(connect_request("")));
    let subscribe = command(3, Request::Subscribe(sub_request("chat:a")));
    assert_eq!(err(session.admit(&connect)), 3501);
    assert_eq!(err(session.admit(&subscribe)), 3501);
    let valid = token(json!({"sub": "42"}));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&valid), t0())),
        3501
    );
    assert!(!session.is_connected());
}

#[test]
fn invalid_tokens_disconnect_with_3500() {
    let rules = rules();
    let other = sign_hs256(&json!({"sub": "42"}), "another-secret").unwrap();
    for bad in [other.as_str(), "not-a-token", "a.b.c"] {
        let mut session = session(&rules);
        assert_eq!(
            err(session.connect(&rules, &connect_request(bad), t0())),
            3500,
            "{bad}"
        );
    }
    // `nbf` in the future reads as expired.
    let mut session = session(&rules);
    let early = token(json!({"sub": "42", "nbf": T0 + 10}));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&early), t0())),
        109
    );
}

#[test]
fn expiry_follows_exp_and_expire_at() {
    let rules = rules();
    let cases = [
        // (claims, expires, ttl)
        (json!({"sub": "1", "exp": T0 + 100}), Some(T0 + 100), 100),
        (
            json!({"sub": "1", "exp": T0 + 100, "expire_at": T0 + 50}),
            Some(T0 + 50),
            50,
        ),
        (
            json!({"sub": "1", "exp": T0 + 100, "expire_at": 0}),
            None,
            0,
        ),
        (json!({"sub": "1"}), None, 0),
    ];
    for (claims, expires_at, ttl) in cases {
        let mut session = session(&rules);
        let grant = session
            .connect(&rules, &connect_request(&token(claims.clone())), t0())
            .unwrap();
        assert_eq!(grant.expires_at, expires_at, "{claims}");
        assert_eq!(session.expires_at(), expires_at, "{claims}");
        assert_eq!(grant.result.expires, expires_at.is_some(), "{claims}");
        assert_eq!(grant.result.ttl, ttl, "{claims}");
    }
    // expire_at already past with a valid exp: 110.
    let mut session = session(&rules);
    let past = token(json!({"sub": "1", "exp": T0 + 100, "expire_at": T0}));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&past), t0())),
        110
    );
}

#[test]
fn no_token_needs_anonymous_access_or_a_header_user() {
    let rules = rules();
    let mut session = session(&rules);
    assert_eq!(
        err(session.connect(&rules, &connect_request(""), t0())),
        3501
    );

    let mut config = config();
    config.client.allow_anonymous_connect_without_token = true;
    let anonymous = rules_from(&config);
    let mut session = super::test_support::session(&anonymous);
    let grant = session
        .connect(&anonymous, &connect_request(""), t0())
        .unwrap();
    assert_eq!((grant.user.as_str(), grant.expires_at), ("", None));
    assert!(session.is_connected());

    // The user_id_http_header user; a token still wins over it.
    let mut session = super::test_support::session(&rules).with_header_user("7".to_owned());
    let grant = session.connect(&rules, &connect_request(""), t0()).unwrap();
    assert_eq!(grant.user, "7");
    let mut session = super::test_support::session(&rules).with_header_user("7".to_owned());
    let token = token(json!({"sub": "8"}));
    let grant = session
        .connect(&rules, &connect_request(&token), t0())
        .unwrap();
    assert_eq!(grant.user, "8");
}

#[test]
fn insecure_allows_anonymous_ignores_expiry_but_checks_signatures() {
    let mut config = config();
    config.client.insecure = true;
    let rules = rules_from(&config);
    let mut session = session(&rules);
    assert_eq!(
        session
            .connect(&rules, &connect_request(""), t0())
            .unwrap()
            .user,
        ""
    );
    let mut session = super::test_support::session(&rules);
    let expiring = token(json!({"sub": "1", "exp": T0 + 100}));
    let grant = session
        .connect(&rules, &connect_request(&expiring), t0())
        .unwrap();
    assert_eq!(
        (grant.expires_at, grant.result.expires, grant.result.ttl),
        (None, false, 0)
    );
    let mut session = super::test_support::session(&rules);
    let forged = sign_hs256(&json!({"sub": "1"}), "forged").unwrap();
    assert_eq!(
        err(session.connect(&rules, &connect_request(&forged), t0())),
        3500
    );
    let mut session = super::test_support::session(&rules);
    let expired = token(json!({"sub": "1", "exp": T0}));
    assert_eq!(
        err(session.connect(&rules, &connect_request(&expired), t0())),
        109
    );
}

#[test]
fn anonymous_tokens_can_be_disallowed() {
    let anonymous = token(json!({"sub": ""}));
    let rules = rules();
    let mut session = session(&rules);
    let grant = session
        .connect(&rules, &connect_request(&anonymous), t0())
        .unwrap();
    assert_eq!(grant.user, "");

    let mut config = config();
    config.client.disallow_anonymous_connection_tokens = true;
    let strict = rules_from(&config);
    let mut session = super::test_support::session(&strict);
    assert_eq!(
        err(session.connect(&strict, &connect_request(&anonymous), t0())),
        3507
    );
}

#[test]
fn claim_rules_come_from_the_token_section() {
    let mut config = config();
    config.client.token.user_id_claim = "uid".to_owned();
    config.client.token.audience = "spindle".to_owned();
    config.client.token.issuer_regex = "^auth-[0-9]+$".to_owned();
    let rules = rules_from(&config);
    let good = token(json!({"uid": "9", "sub": "x", "aud": "spindle", "iss": "auth-1"}));
    let mut session = session(&rules);
    assert_eq!(
        session
            .connect(&rules, &connect_request(&good), t0())
            .unwrap()
            .user,
        "9"
    );
    for bad in [
        json!({"uid": "9", "aud": "other", "iss": "auth-1"}),
        json!({"uid": "9", "aud": "spindle", "iss": "auth-x"}),
        json!({"uid": "9", "iss": "auth-1"}),
    ] {
        let mut session = super::test_support::session(&rules);
        assert_eq!(
            err(session.connect(&rules, &connect_request(&token(bad.clone())), t0())),
            3500,
            "{bad}"
        );
    }
}

#[test]
fn b64info_wins_over_info() {
    let rules = rules();
    let mut session = session(&rules);
    let claims = json!({"sub": "1", "info": {"a": 1}, "b64info": STANDARD.encode([0u8, 255])});
    let grant = session
        .connect(&rules, &connect_request(&token(claims)), t0())
        .unwrap();
    assert_eq!(grant.conn_info, vec![0u8, 255]);
}

#[test]
fn rsa_and_ecdsa_keys_come_from_the_config() {
    let cases = [
        (
            Algorithm::RS256,
            include_str!("../jwt/testdata/rsa_public.pem"),
            EncodingKey::from_rsa_pem(include_bytes!("../jwt/testdata/rsa_private.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            include_str!("../jwt/testdata/ec256_public.pem"),
            EncodingKey::from_ec_pem(include_bytes!("../jwt/testdata/ec256_private.pem")).unwrap(),
        ),
    ];
    for (alg, public, private) in cases {
        let mut config = Config::default();
        if alg == Algorithm::RS256 {
            config.client.token.rsa_public_key = public.to_owned();
        } else {
            config.client.token.ecdsa_public_key = public.to_owned();
        }
        let rules = rules_from(&config);
        let signed =
            jsonwebtoken::encode(&Header::new(alg), &json!({"sub": "r"}), &private).unwrap();
        let mut session = session(&rules);
        let grant = session
            .connect(&rules, &connect_request(&signed), t0())
            .unwrap();
        assert_eq!(grant.user, "r", "{alg:?}");
        // An HS256 token has no key here.
        let mut session = super::test_support::session(&rules);
        let hs = token(json!({"sub": "r"}));
        assert_eq!(
            err(session.connect(&rules, &connect_request(&hs), t0())),
            3500
        );
    }
}

#[test]
fn previous_hmac_key_is_accepted_until_its_deadline() {
    let old = sign_hs256(&json!({"sub": "1"}), "old-secret").unwrap();
    for (valid_until, accepted) in [(0, true), (T0 + 1, true), (T0, false)] {
        let mut config = config();
        config.client.token.hmac_previous_secret_key = crate::config::Secret::new("old-secret");
        config.client.token.hmac_previous_secret_key_valid_until = valid_until;
        let rules = rules_from(&config);
        let mut session = session(&rules);
        let result = session.connect(&rules, &connect_request(&old), t0());
        assert_eq!(result.is_ok(), accepted, "{valid_until}");
    }
}

#[test]
fn server_time_and_pong_flags() {
    let mut config = config();
    config.client.connect_include_server_time = true;
    config.client.pong_timeout = crate::config::Duration::ZERO;
    let rules = rules_from(&config);
    let mut session = session(&rules);
    let grant = session
        .connect(
            &rules,
            &connect_request(&token(json!({"sub": "1"}))),
            at_ms(1500),
        )
        .unwrap();
    assert_eq!(grant.result.time, T0 * 1000 + 1500);
    assert_eq!((grant.result.ping, grant.result.pong), (25, false));
}
