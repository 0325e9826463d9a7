//! Shared-poll subscriptions: subscribe (type 4), track with signed batches, untrack.

use spindle_proto::client;

use super::test_support::*;
use crate::shared_poll::signature::sign;
use crate::shared_poll::{RESULT_TYPE_SHARED_POLL, TYPE_TRACK, TYPE_UNTRACK, TrackedItem};

fn poll_request(channel: &str) -> client::SubscribeRequest {
    client::SubscribeRequest {
        r#type: 4,
        ..sub_request(channel)
    }
}

/// A batch of `keys` (version 0) signed for user 42 until `exp` (0 = never).
fn batch(channel: &str, keys: &[&str], exp: i64) -> client::TrackBatch {
    client::TrackBatch {
        signature: sign(TRACK_SECRET, channel, "42", keys, T0, exp),
        items: keys
            .iter()
            .map(|k| client::KeyedItem {
                key: (*k).to_owned(),
                version: 0,
            })
            .collect(),
    }
}

fn track(channel: &str, batches: Vec<client::TrackBatch>) -> client::SubRefreshRequest {
    client::SubRefreshRequest {
        channel: channel.to_owned(),
        r#type: TYPE_TRACK,
        track: batches,
        ..Default::default()
    }
}

#[test]
fn shared_poll_subscribe_is_type_4_without_position() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    let grant = subscribe(&mut session, &rules, &poll_request("poll:a"));
    let settings = grant.shared_poll.clone().expect("a shared-poll grant");
    assert_eq!(settings.max_keys_per_connection, 3);
    assert!(!settings.versioned);
    assert_eq!(grant.result.r#type, RESULT_TYPE_SHARED_POLL);
    assert!(!grant.result.positioned && !grant.result.recoverable);
    assert!(session.shared_poll_of("poll:a").is_some());
    assert!(grant.map.is_none());
}

#[test]
fn track_verifies_every_batch_and_reports_the_earliest_expiry() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &poll_request("poll:a"));
    let request = track(
        "poll:a",
        vec![
            batch("poll:a", &["x", "y"], T0 + 100),
            batch("poll:a", &["y"], T0 + 40),
        ],
    );
    let grant = session
        .authorize_track(&rules, &request, |_| false, 0, t0())
        .unwrap();
    assert_eq!(
        grant.items,
        vec![
            TrackedItem {
                key: "x".into(),
                version: 0,
                expires_at: Some(T0 + 100)
            },
            // In both batches: the last one's expiry.
            TrackedItem {
                key: "y".into(),
                version: 0,
                expires_at: Some(T0 + 40)
            },
        ]
    );
    assert!(grant.result.expires);
    assert_eq!(grant.result.ttl, 40);
    // A signature without expiry.
    let forever = track("poll:a", vec![batch("poll:a", &["z"], 0)]);
    let grant = session
        .authorize_track(&rules, &forever, |_| false, 0, t0())
        .unwrap();
    assert!(!grant.result.expires && grant.items[0].expires_at.is_none());
}

#[test]
fn forged_stolen_or_expired_signatures_are_refused() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &poll_request("poll:a"));
    let decide = |request: &client::SubRefreshRequest, now| {
        session.authorize_track(&rules, request, |_| false, 0, now)
    };
    // Keys added to a signed batch.
    let mut widened = batch("poll:a", &["x"], 0);
    widened.items.push(client::KeyedItem {
        key: "secret".into(),
        version: 0,
    });
    assert_eq!(err(decide(&track("poll:a", vec![widened]), t0())), 103);
    // Signed for another user or channel, or with another key.
    let other_user = client::TrackBatch {
        signature: sign(TRACK_SECRET, "poll:a", "43", &["x"], T0, 0),
        ..batch("poll:a", &["x"], 0)
    };
    assert_eq!(err(decide(&track("poll:a", vec![other_user]), t0())), 103);
    let other_channel = batch("poll:b", &["x"], 0);
    assert_eq!(
        err(decide(&track("poll:a", vec![other_channel]), t0())),
        103
    );
    let other_key = client::TrackBatch {
        signature: sign("another-secret", "poll:a", "42", &["x"], T0, 0),
        ..batch("poll:a", &["x"], 0)
    };
    assert_eq!(err(decide(&track("poll:a", vec![other_key]), t0())), 103);
    for garbage in ["", "1:2", "a:b:c", "1:2:zz", "1:0:abc"] {
        let bad = client::TrackBatch {
            signature: garbage.into(),
            ..batch("poll:a", &["x"], 0)
        };
        assert_eq!(
            err(decide(&track("poll:a", vec![bad]), t0())),
            103,
            "{garbage}"
        );
    }
    // One good batch does not carry a bad one.
    let mixed = vec![
        batch("poll:a", &["x"], 0),
        client::TrackBatch {
            signature: "1:0:00".into(),
            ..batch("poll:a", &["y"], 0)
        },
    ];
    assert_eq!(err(decide(&track("poll:a", mixed), t0())), 103);
    // Expired: accepted within the 5 s grace, 109 after.
    let expiring = track("poll:a", vec![batch("poll:a", &["x"], T0 + 10)]);
    assert!(decide(&expiring, at(15)).is_ok());
    assert_eq!(err(decide(&expiring, at(16))), 109);
}

#[test]
fn the_previous_key_works_until_rotation_ends() {
    let mut config = config();
    config.shared_poll.hmac_previous_secret_key = crate::config::Secret::new("old-secret");
    config.shared_poll.hmac_previous_secret_key_valid_until = T0 + 10;
    let rules = rules_from(&config);
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &poll_request("poll:a"));
    let signed_at = |iat: i64| client::TrackBatch {
        signature: sign("old-secret", "poll:a", "42", &["x"], iat, 0),
        ..batch("poll:a", &["x"], 0)
    };
    let decide = |b| session.authorize_track(&rules, &track("poll:a", vec![b]), |_| false, 0, t0());
    assert!(decide(signed_at(T0)).is_ok());
    assert_eq!(err(decide(signed_at(T0 + 11))), 103);
}

#[test]
fn track_order_of_checks_and_the_key_limit() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &poll_request("poll:a"));
    subscribe(&mut session, &rules, &sub_request("chat:a"));
    let ok = |keys: &[&str]| track("poll:a", vec![batch("poll:a", keys, 0)]);
    let decide = |request: &client::SubRefreshRequest, tracked: &[&str]| {
        session.authorize_track(
            &rules,
            request,
            |k| tracked.contains(&k),
            tracked.len(),
            t0(),
        )
    };
    assert_eq!(err(decide(&track("", vec![]), &[])), 3501);
    assert!(decide(&ok(&["x"]), &[]).is_ok());
    // Not subscribed, or not a shared-poll subscription.
    assert_eq!(
        err(decide(
            &track("poll:b", vec![batch("poll:b", &["x"], 0)]),
            &[]
        )),
        103
    );
    assert_eq!(
        err(decide(
            &track("chat:a", vec![batch("chat:a", &["x"], 0)]),
            &[]
        )),
        103
    );
    // No keys.
    assert_eq!(err(decide(&track("poll:a", vec![]), &[])), 107);
    assert_eq!(
        err(decide(&track("poll:a", vec![batch("poll:a", &[], 0)]), &[])),
        107
    );
    // Limit 3: distinct new keys count; re-tracking and inline untracks do not.
    assert!(decide(&ok(&["a", "b", "c"]), &[]).is_ok());
    assert_eq!(err(decide(&ok(&["a", "b", "c", "d"]), &[])), 106);
    assert!(decide(&ok(&["a", "b"]), &["a", "b", "c"]).is_ok());
    assert_eq!(err(decide(&ok(&["d"]), &["a", "b", "c"])), 106);
    let swap = client::SubRefreshRequest {
        untrack: vec!["a".into()],
        ..ok(&["d"])
    };
    assert!(decide(&swap, &["a", "b", "c"]).is_ok());
    // The limit comes before the signatures (a forged batch over the limit is 106).
    let forged_over = track(
        "poll:a",
        vec![client::TrackBatch {
            signature: "0:0:00".into(),
            ..batch("poll:a", &["a", "b", "c", "d"], 0)
        }],
    );
    assert_eq!(err(decide(&forged_over, &[])), 106);
}

#[test]
fn untrack_needs_keys_and_a_shared_poll_subscription() {
    let rules = rules();
    let mut session = connected(&rules, "42");
    subscribe(&mut session, &rules, &poll_request("poll:a"));
    let untrack = |channel: &str, keys: &[&str]| client::SubRefreshRequest {
        channel: channel.into(),
        r#type: TYPE_UNTRACK,
        untrack: keys.iter().map(|k| (*k).to_owned()).collect(),
        ..Default::default()
    };
    let grant = session
        .authorize_untrack(&untrack("poll:a", &["x", "y"]))
        .unwrap();
    assert_eq!(grant.keys, vec!["x".to_owned(), "y".to_owned()]);
    assert_eq!(err(session.authorize_untrack(&untrack("poll:a", &[]))), 107);
    assert_eq!(
        err(session.authorize_untrack(&untrack("poll:b", &["x"]))),
        103
    );
    assert_eq!(err(session.authorize_untrack(&untrack("", &["x"]))), 3501);
    // After unsubscribing, tracks are refused.
    session.remove_subscription("poll:a");
    assert_eq!(
        err(session.authorize_untrack(&untrack("poll:a", &["x"]))),
        103
    );
}
