//! Tokens verified with a fetched JWK set: the `*_with_keys` entry points, and what happens
//! when the edge has no key to give.

use jsonwebtoken::Algorithm;
use serde_json::json;
use spindle_proto::client;

use super::test_support::*;
use crate::config::Config;
use crate::jwt::test_support::{JWKS, rsa_signer, sign};
use crate::jwt::{Jwks, KeySet};

fn jwks_config() -> Config {
    let mut config = config();
    config.client.token.jwks_public_endpoint = "https://keys.example.com/jwks".into();
    config
}

fn fetched() -> KeySet {
    KeySet::new().with_jwks(Jwks::from_json(JWKS).unwrap())
}

fn rs256(claims: serde_json::Value) -> String {
    sign(Algorithm::RS256, &rsa_signer(), Some("rsa-1"), &claims)
}

#[test]
fn connect_verifies_with_the_fetched_set_only() {
    let rules = rules_from(&jwks_config());
    let token = rs256(json!({"sub": "42"}));
    let request = connect_request(&token);
    let kid = rules
        .connection_jwks()
        .unwrap()
        .resolve(&token)
        .unwrap()
        .kid;
    assert_eq!(kid, "rsa-1");

    let grant = session(&rules)
        .connect_with_keys(&rules, &request, &fetched(), t0())
        .unwrap();
    assert_eq!(grant.user, "42");
    // Without the fetched set nothing verifies (the static HMAC key is not used either).
    assert_eq!(err(session(&rules).connect(&rules, &request, t0())), 3500);
    let hmac = token_for_hmac();
    assert_eq!(
        err(session(&rules).connect_with_keys(&rules, &connect_request(&hmac), &fetched(), t0())),
        3500
    );
    // A set without the token's kid.
    let empty = KeySet::new().with_jwks(Jwks::from_json(r#"{"keys":[]}"#).unwrap());
    assert_eq!(
        err(session(&rules).connect_with_keys(&rules, &request, &empty, t0())),
        3500
    );
}

fn token_for_hmac() -> String {
    token(json!({"sub": "42"}))
}

#[test]
fn refresh_subscribe_and_sub_refresh_take_the_fetched_set() {
    let rules = rules_from(&jwks_config());
    let keys = fetched();
    let mut session = session(&rules);
    let exp = T0 + 60;
    session
        .connect_with_keys(
            &rules,
            &connect_request(&rs256(json!({"sub": "u", "exp": exp}))),
            &keys,
            t0(),
        )
        .unwrap();

    let refresh = client::RefreshRequest {
        token: rs256(json!({"sub": "u", "exp": exp + 60})),
    };
    assert_eq!(err(session.refresh(&rules, &refresh, at(1))), 3500);
    let result = session
        .refresh_with_keys(&rules, &refresh, &keys, at(1))
        .unwrap();
    assert!(result.expires);

    let channel = "$chat:secret";
    let subscribe = client::SubscribeRequest {
        channel: channel.to_owned(),
        token: rs256(json!({"sub": "u", "channel": channel, "exp": exp})),
        ..Default::default()
    };
    assert_eq!(
        err(session.authorize_subscribe(&rules, &subscribe, at(2))),
        103
    );
    let grant = session
        .authorize_subscribe_with_keys(&rules, &subscribe, &keys, at(2))
        .unwrap();
    session.add_subscription(&grant);

    let sub_refresh = client::SubRefreshRequest {
        channel: channel.to_owned(),
        token: rs256(json!({"sub": "u", "channel": channel, "exp": exp + 60})),
        ..Default::default()
    };
    assert_eq!(err(session.sub_refresh(&rules, &sub_refresh, at(3))), 3500);
    let result = session
        .sub_refresh_with_keys(&rules, &sub_refresh, &keys, at(3))
        .unwrap();
    assert!(result.expires);
}
