//! Connection `refresh` and subscription `sub_refresh`.

use serde_json::json;
use spindle_proto::client;

use super::test_support::*;
use super::*;
use crate::codes::{Disconnect, Unsubscribe};
use crate::jwt::sign_hs256;

fn refresh(token: &str) -> client::RefreshRequest {
    client::RefreshRequest {
        token: token.to_owned(),
    }
}

fn sub_refresh(channel: &str, token: &str) -> client::SubRefreshRequest {
    client::SubRefreshRequest {
        channel: channel.to_owned(),
        token: token.to_owned(),
        ..Default::default()
    }
}

/// A session of user 42 whose token expires at T0 + 100, with `claims` merged in.
fn expiring(rules: &SessionRules, extra: serde_json::Value) -> Session {
    let mut claims = json!({"sub": "42", "exp": T0 + 100});
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    let mut session = session(rules);
    let grant = session
        .connect(rules, &connect_request(&token(claims)), t0())
        .unwrap();
    // Recorded, as the edge does: refresh compares with the subscriptions.
    for sub in &grant.server_subs {
        session.add_subscription(sub);
    }
    session
}

#[test]
fn refresh_moves_the_expiry() {
    let rules = quiet_rules();
    let mut session = expiring(&rules, json!({}));
    assert_eq!(session.next_deadline(), Some(at(125).mono));
    let result = session
        .refresh(
            &rules,
            &refresh(&token(json!({"sub": "42", "exp": T0 + 200}))),
            at(90),
        )
        .unwrap();
    assert_eq!(
        result,
        client::RefreshResult {
            expires: true,
            ttl: 110,
            ..Default::default()
        }
    );
    assert_eq!(session.expires_at(), Some(T0 + 200));
    // The 3005 deadline moved to T0 + 200 + 25 s.
    assert_eq!(session.next_deadline(), Some(at(225).mono));
    assert_eq!(session.on_timer(at(125)), vec![]);
    assert_eq!(
        session.on_timer(at(225)),
        vec![TimerAction::Disconnect(Disconnect::EXPIRED)]
    );
    assert!(!session.is_connected());
}

#[test]
fn refresh_to_a_token_without_expiry() {
    let rules = rules();
    let mut session = expiring(&rules, json!({}));
    let result = session
        .refresh(&rules, &refresh(&token(json!({"sub": "42"}))), at(10))
        .unwrap();
    assert_eq!((result.expires, result.ttl), (false, 0));
    assert_eq!(session.expires_at(), None);
}

#[test]
fn refresh_failures() {
    let rules = rules();
    let check = |token: &str| {
        let mut session = expiring(&rules, json!({}));
        err(session.refresh(&rules, &refresh(token), at(10)))
    };
    assert_eq!(check(""), 3501);
    assert_eq!(check(&token(json!({"sub": "42", "exp": T0 + 5}))), 3005);
    assert_eq!(
        check(&sign_hs256(&json!({"sub": "42"}), "forged").unwrap()),
        3500
    );
    assert_eq!(check(&token(json!({"sub": "43", "exp": T0 + 200}))), 3500);
    assert_eq!(
        check(&token(
            json!({"sub": "42", "exp": T0 + 200, "expire_at": T0 + 10})
        )),
        110
    );
    // Before connect: a violation.
    let mut session = session(&rules);
    assert_eq!(
        err(session.refresh(&rules, &refresh(&token(json!({"sub": "42"}))), t0())),
        3501
    );
}

#[test]
fn refresh_must_keep_the_token_channels() {
    let rules = rules();
    let extra = json!({"channels": ["chat:a", "chat:b"]});
    let check = |claims: serde_json::Value| {
        let mut session = expiring(&rules, extra.clone());
        session
            .refresh(&rules, &refresh(&token(claims)), at(10))
            .err()
            .map(code)
    };
    assert_eq!(
        check(json!({"sub": "42", "channels": ["chat:b", "chat:a"]})),
        None
    );
    assert_eq!(
        check(json!({"sub": "42", "subs": {"chat:a": {}, "chat:b": {"info": 1}}})),
        None
    );
    assert_eq!(
        check(json!({"sub": "42", "channels": ["chat:a"]})),
        Some(3010)
    );
    assert_eq!(check(json!({"sub": "42"})), Some(3010));
    // Without token channels at connect, new ones are a change too.
    let mut session = expiring(&rules, json!({}));
    let more = token(json!({"sub": "42", "channels": ["chat:a"]}));
    assert_eq!(err(session.refresh(&rules, &refresh(&more), at(10))), 3010);
}

#[test]
fn refresh_replaces_connection_info_everywhere() {
    let rules = rules();
    let mut session = expiring(&rules, json!({"info": {"v": 1}}));
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let new = token(json!({"sub": "42", "exp": T0 + 200, "info": {"v": 2}}));
    session.refresh(&rules, &refresh(&new), at(10)).unwrap();
    assert_eq!(&session.client_info().conn_info[..], br#"{"v":2}"#);
    let subscription = session.subscription("chat:a").unwrap();
    assert_eq!(&subscription.info.conn_info[..], br#"{"v":2}"#);
    // A token without info keeps it.
    let plain = token(json!({"sub": "42", "exp": T0 + 300}));
    session.refresh(&rules, &refresh(&plain), at(20)).unwrap();
    assert_eq!(&session.client_info().conn_info[..], br#"{"v":2}"#);
}

/// A session of user 42 subscribed to `chat:a` with a token expiring at T0 + 60.
fn with_expiring_subscription(rules: &SessionRules) -> Session {
    let mut session = connected(rules, "42");
    let request = client::SubscribeRequest {
        token: token(json!({"sub": "42", "channel": "chat:a", "exp": T0 + 60, "info": 1})),
        ..sub_request("chat:a")
    };
    subscribe(&mut session, rules, &request);
    session
}

#[test]
fn sub_refresh_moves_the_subscription_expiry() {
    let rules = quiet_rules();
    let mut session = with_expiring_subscription(&rules);
    let new = token(json!({"sub": "42", "channel": "chat:a", "exp": T0 + 160, "info": 2}));
    let result = session
        .sub_refresh(&rules, &sub_refresh("chat:a", &new), at(50))
        .unwrap();
    assert_eq!(
        result,
        client::SubRefreshResult {
            expires: true,
            ttl: 110,
            ..Default::default()
        }
    );
    let subscription = session.subscription("chat:a").unwrap();
    assert_eq!(subscription.expires_at, Some(T0 + 160));
    assert_eq!(&subscription.info.chan_info[..], b"2");
    // No 2501 at the old deadline (T0 + 85 s), at the new one (T0 + 185 s).
    assert_eq!(session.next_deadline(), Some(at(185).mono));
    assert_eq!(session.on_timer(at(85)), vec![]);
    assert_eq!(
        session.on_timer(at(185)),
        vec![TimerAction::Unsubscribe(
            "chat:a".into(),
            Unsubscribe::EXPIRED
        )]
    );
}

#[test]
fn sub_refresh_to_a_token_without_expiry() {
    let rules = rules();
    let mut session = with_expiring_subscription(&rules);
    let new = token(json!({"sub": "42", "channel": "chat:a"}));
    let result = session
        .sub_refresh(&rules, &sub_refresh("chat:a", &new), at(50))
        .unwrap();
    assert_eq!((result.expires, result.ttl), (false, 0));
    assert_eq!(session.subscription("chat:a").unwrap().expires_at, None);
    // Chan info is kept when the token has none.
    assert_eq!(
        &session.subscription("chat:a").unwrap().info.chan_info[..],
        b"1"
    );
}

#[test]
fn sub_refresh_failures() {
    let rules = rules();
    let good = |claims: serde_json::Value| token(claims);
    let check = |request: client::SubRefreshRequest| {
        let mut session = with_expiring_subscription(&rules);
        err(session.sub_refresh(&rules, &request, at(50)))
    };
    let valid = good(json!({"sub": "42", "channel": "chat:a", "exp": T0 + 160}));
    assert_eq!(check(sub_refresh("", &valid)), 3501);
    assert_eq!(check(sub_refresh("chat:b", &valid)), 103);
    assert_eq!(check(sub_refresh("chat:a", "")), 107);
    // Deliberate: an expired new token is error 109 (Centrifugo: silent success).
    let expired = good(json!({"sub": "42", "channel": "chat:a", "exp": T0 + 50}));
    assert_eq!(check(sub_refresh("chat:a", &expired)), 109);
    let forged = sign_hs256(&json!({"sub": "42", "channel": "chat:a"}), "forged").unwrap();
    assert_eq!(check(sub_refresh("chat:a", &forged)), 3500);
    let no_channel = good(json!({"sub": "42"}));
    assert_eq!(check(sub_refresh("chat:a", &no_channel)), 3500);
    let other_channel = good(json!({"sub": "42", "channel": "chat:b"}));
    assert_eq!(check(sub_refresh("chat:a", &other_channel)), 3500);
    let other_user = good(json!({"sub": "43", "channel": "chat:a"}));
    assert_eq!(check(sub_refresh("chat:a", &other_user)), 3500);
    let other_client = good(json!({"sub": "42", "channel": "chat:a", "client": "c2"}));
    assert_eq!(check(sub_refresh("chat:a", &other_client)), 3500);
    let past =
        good(json!({"sub": "42", "channel": "chat:a", "exp": T0 + 160, "expire_at": T0 + 50}));
    assert_eq!(check(sub_refresh("chat:a", &past)), 110);
}
