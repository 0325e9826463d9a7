//! API control commands applied to local sessions.

use serde_json::json;
use spindle_proto::{client, mesh};

use super::test_support::*;
use super::*;
use crate::codes::Disconnect;

#[test]
fn matching_by_user_client_and_session() {
    let rules = rules();
    let session = connected(&rules, "42");
    assert!(session.matches("42", "", ""));
    assert!(session.matches("42", CLIENT, ""));
    assert!(!session.matches("42", "other", ""));
    assert!(!session.matches("43", "", ""));
    assert!(!session.matches("", "", ""));
    assert!(!session.matches("42", "", "s1"));

    let mut with_session = super::test_support::session(&rules).with_session_id("s1".into());
    assert!(!with_session.matches("", "", ""));
    with_session
        .connect(&rules, &connect_request(&token(json!({"sub": ""}))), t0())
        .unwrap();
    assert_eq!(with_session.session_id(), "s1");
    assert!(with_session.matches("", "", "s1"));
    assert!(with_session.matches("", CLIENT, "s1"));
    assert!(!with_session.matches("", "", "s2"));
}

#[test]
fn api_refresh_updates_or_expires() {
    let rules = quiet_rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let push = session
        .api_refresh(false, T0 + 100, br#"{"v":1}"#, at(10))
        .unwrap();
    assert_eq!(
        push,
        client::Refresh {
            expires: true,
            ttl: 90
        }
    );
    assert_eq!(session.expires_at(), Some(T0 + 100));
    assert_eq!(session.next_deadline(), Some(at(125).mono));
    assert_eq!(&session.client_info().conn_info[..], br#"{"v":1}"#);
    assert_eq!(
        &session.subscription("chat:a").unwrap().info.conn_info[..],
        br#"{"v":1}"#
    );
    // expire_at 0: no longer expires; empty info keeps the old one.
    let push = session.api_refresh(false, 0, b"", at(20)).unwrap();
    assert_eq!(
        push,
        client::Refresh {
            expires: false,
            ttl: 0
        }
    );
    assert_eq!(
        (session.expires_at(), session.next_deadline()),
        (None, None)
    );
    assert_eq!(&session.client_info().conn_info[..], br#"{"v":1}"#);
    // Already past: expired.
    assert_eq!(
        session.api_refresh(false, T0 + 20, b"", at(20)),
        Err(Disconnect::EXPIRED)
    );
    assert!(!session.is_connected());

    let mut session = connected(&rules, "42");
    assert_eq!(
        session.api_refresh(true, T0 + 100, b"", at(1)),
        Err(Disconnect::EXPIRED)
    );
    assert!(!session.is_connected());
}

#[test]
fn api_subscribe_builds_a_server_side_grant() {
    let rules = rules();
    let session = connected(&rules, "42");
    let position = client::StreamPosition {
        offset: 7,
        epoch: "ep".into(),
    };
    let command = |channel: &str| mesh::SubscribeCommand {
        channel: channel.into(),
        expire_at: T0 + 60,
        info: br#"{"i":1}"#.to_vec().into(),
        data: br#"{"d":1}"#.to_vec().into(),
        recover_since: Some(position.clone()),
    };
    let grant = session
        .api_subscribe(&rules, &command("forced:a"), t0())
        .unwrap();
    assert!(grant.server_side);
    assert_eq!(grant.channel, "forced:a");
    assert_eq!(grant.chan_info, br#"{"i":1}"#.to_vec());
    assert_eq!(grant.data, br#"{"d":1}"#.to_vec());
    assert_eq!(grant.expires_at, Some(T0 + 60));
    assert_eq!(grant.recover_since, Some(position.clone()));
    assert_eq!(
        (
            grant.result.recoverable,
            grant.result.positioned,
            grant.result.ttl
        ),
        (true, true, 60)
    );
    // Without forced recovery the position is not used.
    let grant = session
        .api_subscribe(&rules, &command("anon:a"), t0())
        .unwrap();
    assert_eq!(grant.recover_since, None);
    assert_eq!(grant.options, SubscriptionOptions::default());
}

#[test]
fn api_subscribe_refusals() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let check = |channel: &str, expire_at: i64| {
        let command = mesh::SubscribeCommand {
            channel: channel.into(),
            expire_at,
            ..Default::default()
        };
        err(session.api_subscribe(&rules, &command, t0()))
    };
    assert_eq!(check("", 0), 107);
    assert_eq!(check("chat:a", 0), 105);
    assert_eq!(check("nope:a", 0), 102);
    assert_eq!(check("chat:b", T0), 110);
    // Private channels are fine for the API.
    let command = mesh::SubscribeCommand {
        channel: "$chat:b".into(),
        ..Default::default()
    };
    assert!(session.api_subscribe(&rules, &command, t0()).is_ok());
}
