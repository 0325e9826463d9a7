//! Subscribe with a subscription token (docs/protocol.md §5.3).

use serde_json::json;
use spindle_proto::client;

use super::test_support::*;
use crate::jwt::sign_hs256;

fn with_token(channel: &str, claims: serde_json::Value) -> client::SubscribeRequest {
    client::SubscribeRequest {
        token: token(claims),
        ..sub_request(channel)
    }
}

#[test]
fn a_subscription_token_grants_with_its_claims() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    let request = with_token(
        "$chat:secret",
        json!({
            "sub": "42",
            "channel": "$chat:secret",
            "exp": T0 + 300,
            "info": {"seat": 7},
            "data": {"welcome": true},
            "override": {"join_leave": {"value": false}, "force_positioning": {"value": true}}
        }),
    );
    let grant = subscribe(&mut session, &rules, &request);
    assert_eq!(grant.chan_info, br#"{"seat":7}"#.to_vec());
    assert_eq!(grant.data, br#"{"welcome":true}"#.to_vec());
    assert_eq!(grant.expires_at, Some(T0 + 300));
    assert_eq!(
        (
            grant.result.expires,
            grant.result.ttl,
            &grant.result.data[..]
        ),
        (true, 300, &br#"{"welcome":true}"#[..])
    );
    assert_eq!(
        (
            grant.options.emit_join_leave,
            grant.options.positioned,
            grant.result.positioned
        ),
        (false, true, true)
    );
    let recorded = session.subscription("$chat:secret").unwrap();
    assert_eq!(&recorded.info.chan_info[..], br#"{"seat":7}"#);
    assert_eq!(recorded.expires_at, Some(T0 + 300));
}

#[test]
fn a_token_wins_over_namespace_permissions() {
    let rules = rules();
    let session = connected(&rules, "42");
    for channel in ["news", "proxied:a", "dialog:x#1"] {
        let request = with_token(channel, json!({"sub": "42", "channel": channel}));
        assert!(
            session.authorize_subscribe(&rules, &request, t0()).is_ok(),
            "{channel}"
        );
    }
}

#[test]
fn subscription_token_failures() {
    let rules = rules();
    let session = connected(&rules, "42");
    let check = |request: client::SubscribeRequest| {
        err(session.authorize_subscribe(&rules, &request, t0()))
    };
    let forged = client::SubscribeRequest {
        token: sign_hs256(&json!({"sub": "42", "channel": "news"}), "forged").unwrap(),
        ..sub_request("news")
    };
    assert_eq!(check(forged), 103);
    assert_eq!(check(with_token("news", json!({"sub": "42"}))), 103);
    assert_eq!(
        check(with_token(
            "news",
            json!({"sub": "42", "channel": "news", "exp": T0})
        )),
        109
    );
    assert_eq!(
        check(with_token("news", json!({"sub": "42", "channel": "other"}))),
        3500
    );
    assert_eq!(
        check(with_token("news", json!({"sub": "43", "channel": "news"}))),
        3500
    );
    assert_eq!(
        check(with_token(
            "news",
            json!({"sub": "42", "channel": "news", "client": "other-client"})
        )),
        3500
    );
    assert_eq!(
        check(with_token(
            "news",
            json!({"sub": "42", "channel": "news", "exp": T0 + 60, "expire_at": T0})
        )),
        110
    );
    let own_client = with_token(
        "news",
        json!({"sub": "42", "channel": "news", "client": CLIENT}),
    );
    assert!(
        session
            .authorize_subscribe(&rules, &own_client, t0())
            .is_ok()
    );
}

#[test]
fn a_separate_subscription_token_key() {
    let mut config = config();
    config.client.subscription_token.enabled = true;
    config.client.subscription_token.token.hmac_secret_key =
        crate::config::Secret::new("sub-secret");
    let rules = rules_from(&config);
    let session = connected(&rules, "42");
    let claims = json!({"sub": "42", "channel": "news"});
    let main_key = with_token("news", claims.clone());
    assert_eq!(
        err(session.authorize_subscribe(&rules, &main_key, t0())),
        103
    );
    let sub_key = client::SubscribeRequest {
        token: sign_hs256(&claims, "sub-secret").unwrap(),
        ..sub_request("news")
    };
    assert!(session.authorize_subscribe(&rules, &sub_key, t0()).is_ok());
}
