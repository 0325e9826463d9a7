//! Subscribe: permission order without token, types, tags filter, flags, records.

use spindle_proto::client;

use super::test_support::*;
use super::*;
use crate::config::RecoveryMode;

#[test]
fn an_allowed_subscribe_is_granted_and_recorded() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    let grant = session
        .authorize_subscribe(&rules, &sub_request("chat:room"), t0())
        .unwrap();
    assert_eq!(grant.channel, "chat:room");
    assert!(!grant.server_side);
    assert_eq!(
        grant.options,
        SubscriptionOptions {
            presence: true,
            emit_join_leave: true,
            recovery_mode: RecoveryMode::Stream,
            ..Default::default()
        }
    );
    assert_eq!(grant.result, client::SubscribeResult::default());
    assert_eq!(
        (grant.expires_at, grant.recover_since.clone()),
        (None, None)
    );
    assert!(session.subscription("chat:room").is_none());
    session.add_subscription(&grant);
    let recorded = session.subscription("chat:room").unwrap();
    assert_eq!(recorded.info.user, "42");
    assert_eq!(recorded.info.client, CLIENT);
    assert!(recorded.info.chan_info.is_empty());
    assert_eq!(session.subscriptions().count(), 1);
}

#[test]
fn subscribe_before_connect_is_a_violation() {
    let rules = rules();
    let session = session(&rules);
    assert_eq!(
        err(session.authorize_subscribe(&rules, &sub_request("chat:a"), t0())),
        3501
    );
}

#[test]
fn request_checks_come_first() {
    let rules = rules();
    let session = connected(&rules, "42");
    let check = |request: client::SubscribeRequest| {
        err(session.authorize_subscribe(&rules, &request, t0()))
    };
    assert_eq!(check(sub_request("")), 3501);
    let bad_delta = client::SubscribeRequest {
        delta: "xdelta".into(),
        ..sub_request("chat:a")
    };
    assert_eq!(check(bad_delta), 3501);
    assert_eq!(check(sub_request("nope:a")), 102);
    assert_eq!(check(sub_request(&"x".repeat(256))), 107);
    assert_eq!(check(sub_request("chat:café")), 107);
}

#[test]
fn already_subscribed_and_channel_limit() {
    let mut config = config();
    config.client.channel_limit = 1;
    let rules = rules_from(&config);
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    assert_eq!(
        err(session.authorize_subscribe(&rules, &sub_request("chat:a"), t0())),
        105
    );
    assert_eq!(
        err(session.authorize_subscribe(&rules, &sub_request("chat:b"), t0())),
        106
    );
    session.remove_subscription("chat:a");
    assert!(
        session
            .authorize_subscribe(&rules, &sub_request("chat:b"), t0())
            .is_ok()
    );
}

#[test]
fn token_less_permission_rules() {
    let rules = rules();
    let user = connected(&rules, "42");
    let anonymous = connected(&rules, "");
    let code_for = |session: &Session, channel: &str| {
        session
            .authorize_subscribe(&rules, &sub_request(channel), t0())
            .err()
            .map(code)
    };
    // allow_subscribe_for_client: users only.
    assert_eq!(code_for(&user, "chat:a"), None);
    assert_eq!(code_for(&anonymous, "chat:a"), Some(103));
    // ... plus allow_subscribe_for_anonymous.
    assert_eq!(code_for(&anonymous, "anon:a"), None);
    // Nothing allowed without namespace.
    assert_eq!(code_for(&user, "news"), Some(103));
    // Private channels need a token even where clients may subscribe.
    assert_eq!(code_for(&user, "$chat:secret"), Some(103));
    // User-limited channels: the listed users.
    assert_eq!(code_for(&user, "dialog:x#42,43"), None);
    assert_eq!(code_for(&user, "dialog:x#43"), Some(103));
    assert_eq!(code_for(&anonymous, "dialog:x#"), Some(103));
    // Proxies are not available yet.
    assert_eq!(code_for(&user, "proxied:a"), Some(108));
}

#[test]
fn insecure_allows_every_public_channel() {
    let mut config = config();
    config.client.insecure = true;
    let rules = rules_from(&config);
    let session = connected(&rules, "");
    assert!(
        session
            .authorize_subscribe(&rules, &sub_request("news"), t0())
            .is_ok()
    );
    assert_eq!(
        err(session.authorize_subscribe(&rules, &sub_request("$news"), t0())),
        103
    );
}

#[test]
fn subscription_types_must_match() {
    let rules = rules();
    let session = connected(&rules, "42");
    let typed = |channel: &str, r#type: i32| {
        let request = client::SubscribeRequest {
            r#type,
            ..sub_request(channel)
        };
        session
            .authorize_subscribe(&rules, &request, t0())
            .err()
            .map(code)
    };
    assert_eq!(typed("chat:a", 0), None);
    assert_eq!(typed("chat:a", 1), Some(103));
    assert_eq!(typed("chat:a", 4), Some(108));
    assert_eq!(typed("map:a", 0), Some(103));
    assert_eq!(typed("map:a", 2), Some(103));
    assert_eq!(typed("map:a", 1), None);
    let map = client::SubscribeRequest {
        r#type: 1,
        ..sub_request("map:a")
    };
    let grant = session.authorize_subscribe(&rules, &map, t0()).unwrap();
    let settings = grant.map.expect("a map grant");
    assert!(settings.positioned() && grant.options.recoverable && !grant.options.delta);
    assert!(!grant.result.delta, "no delta asked for");
    assert_eq!(typed("poll:a", 0), Some(107));
    assert_eq!(typed("poll:a", 1), Some(107));
    assert_eq!(typed("poll:a", 4), None);
}

#[test]
fn tags_filter_needs_allow_tags_filter_and_a_valid_tree() {
    let rules = rules();
    let session = connected(&rules, "42");
    let filtered = |channel: &str, cmp: &str| client::SubscribeRequest {
        tf: Some(client::FilterNode {
            key: "k".into(),
            cmp: cmp.into(),
            val: "v".into(),
            ..Default::default()
        }),
        ..sub_request(channel)
    };
    assert!(
        session
            .authorize_subscribe(&rules, &filtered("chat:a", "eq"), t0())
            .is_ok()
    );
    assert_eq!(
        err(session.authorize_subscribe(&rules, &filtered("chat:a", "bogus"), t0())),
        107
    );
    assert_eq!(
        err(session.authorize_subscribe(&rules, &filtered("anon:a", "eq"), t0())),
        107
    );
}

#[test]
fn requested_flags_need_access() {
    let rules = rules();
    let session = connected(&rules, "42");
    let asking = |channel: &str| client::SubscribeRequest {
        positioned: true,
        recoverable: true,
        join_leave: true,
        recover: true,
        epoch: "ep".into(),
        offset: 4,
        delta: "fossil".into(),
        flag: 3,
        ..sub_request(channel)
    };
    // chat: history and presence access for subscribers, fossil allowed.
    let grant = session
        .authorize_subscribe(&rules, &asking("chat:a"), t0())
        .unwrap();
    assert_eq!(
        grant.options,
        SubscriptionOptions {
            presence: true,
            emit_join_leave: true,
            push_join_leave: true,
            positioned: true,
            recoverable: true,
            delta: true,
            recovery_mode: RecoveryMode::Stream,
            auto_cache_recover: false,
            map_presence: false,
        }
    );
    assert_eq!(
        grant.recover_since,
        Some(client::StreamPosition {
            offset: 4,
            epoch: "ep".into()
        })
    );
    assert!(grant.reject_unrecovered);
    assert_eq!(
        (
            grant.result.positioned,
            grant.result.recoverable,
            grant.result.delta
        ),
        (true, true, true)
    );
    // anon: no access, no forced flags: nothing honoured.
    let grant = session
        .authorize_subscribe(&rules, &asking("anon:a"), t0())
        .unwrap();
    assert_eq!(grant.options, SubscriptionOptions::default());
    assert_eq!(grant.recover_since, None);
    assert_eq!(grant.result, client::SubscribeResult::default());
    // forced: flags without asking.
    let grant = session
        .authorize_subscribe(&rules, &sub_request("forced:a"), t0())
        .unwrap();
    assert_eq!(
        (
            grant.options.positioned,
            grant.options.recoverable,
            grant.options.push_join_leave
        ),
        (true, true, true)
    );
    assert!(!grant.reject_unrecovered);
}

#[test]
fn allow_positioning_and_recovery_without_history_access() {
    let mut config = config();
    let anon = &mut config.channel.namespaces[1].options;
    anon.allow_positioning = true;
    let rules = rules_from(&config);
    let session = connected(&rules, "42");
    let request = client::SubscribeRequest {
        positioned: true,
        recoverable: true,
        ..sub_request("anon:a")
    };
    let grant = session.authorize_subscribe(&rules, &request, t0()).unwrap();
    assert_eq!(
        (grant.options.positioned, grant.options.recoverable),
        (true, false)
    );
}

#[test]
fn unsubscribe_and_remove() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let empty = client::UnsubscribeRequest::default();
    assert_eq!(err(session.unsubscribe(&empty)), 3501);
    let other = client::UnsubscribeRequest {
        channel: "chat:b".into(),
    };
    assert_eq!(session.unsubscribe(&other), Ok(None));
    let chat = client::UnsubscribeRequest {
        channel: "chat:a".into(),
    };
    let removed = session.unsubscribe(&chat).unwrap().unwrap();
    assert_eq!(removed.channel, "chat:a");
    assert!(session.subscription("chat:a").is_none());
    assert_eq!(session.remove_subscription("chat:a"), None);
}

#[test]
fn cache_mode_and_auto_cache_recover_reach_the_grant() {
    let mut config = test_support::config();
    let forced = config
        .channel
        .namespaces
        .iter_mut()
        .find(|ns| ns.name == "forced")
        .unwrap();
    forced.options.force_recovery_mode = RecoveryMode::Cache;
    forced.options.auto_cache_recover = true;
    let rules = test_support::rules_from(&config);
    let session = connected(&rules, "42");
    let grant = session
        .authorize_subscribe(&rules, &sub_request("forced:a"), t0())
        .unwrap();
    assert_eq!(grant.options.recovery_mode, RecoveryMode::Cache);
    assert!(grant.options.auto_cache_recover && grant.options.recoverable);
    // The client did not ask to recover: the edge recovers because of auto_cache_recover.
    assert_eq!(grant.recover_since, None);
}
