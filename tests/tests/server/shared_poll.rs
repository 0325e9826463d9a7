//! Shared-poll subscriptions from a raw client against a gRPC backend answering
//! `CentrifugoProxy.SharedPollRefresh` (docs/shared-poll.md): values and revocations arrive;
//! bad input — a forged or stolen signature, too many keys, no keys, a track without the
//! subscription, type 4 on another namespace — gets Centrifugo's code and harms no one else.

use serde_json::json;
use spindle_hub::shared_poll::signature::sign;
use spindle_tests::proto::{
    Command, KeyedItem, Push, SubRefreshRequest, SubscribeRequest, TrackBatch,
};
use spindle_tests::{Client, Format, OrFail, Server, fixture};
use std::time::Duration;

use crate::connected;

both_formats!(grpc_backend_values_and_bad_tracks);

const TRACK_SECRET: &str = "spindle-tests-shared-poll-secret";

fn now() -> i64 {
    fixture::unix_now()
}

fn subscribe(channel: &str, r#type: i32) -> Command {
    Command {
        subscribe: Some(SubscribeRequest {
            channel: channel.to_owned(),
            r#type,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A track of `keys` with `signature`.
fn track_signed(channel: &str, keys: &[&str], signature: String) -> Command {
    Command {
        sub_refresh: Some(SubRefreshRequest {
            channel: channel.to_owned(),
            r#type: 1,
            track: vec![TrackBatch {
                signature,
                items: keys
                    .iter()
                    .map(|k| KeyedItem {
                        key: (*k).to_owned(),
                        version: 0,
                    })
                    .collect(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn track(channel: &str, user: &str, keys: &[&str]) -> Command {
    track_signed(
        channel,
        keys,
        sign(TRACK_SECRET, channel, user, keys, now(), now() + 300),
    )
}

fn error_code(reply: &spindle_tests::proto::Reply) -> Option<u32> {
    reply.error.as_ref().map(|e| e.code)
}

/// The next key update of `channel`: (key, data, removed).
async fn update(client: &mut Client, channel: &str) -> (String, serde_json::Value, bool) {
    loop {
        let Push {
            channel: ch, r#pub, ..
        } = client.next_push(Duration::from_secs(5)).await.or_fail();
        if let (true, Some(p)) = (ch == channel, r#pub) {
            let data = if p.data.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_slice(&p.data).unwrap_or_else(|e| panic!("not JSON: {e}"))
            };
            return (p.key, data, p.removed);
        }
    }
}

async fn grpc_backend_values_and_bad_tracks(format: Format) {
    let backend = spindle_tests::grpc_backend::GrpcBackend::start()
        .await
        .or_fail();
    let server = Server::start_patched(json!({
        "channel": {"proxy": {"shared_poll_refresh": {"endpoint": backend.endpoint()}}}
    }))
    .await
    .or_fail();
    let channel = fixture::unique("poll:grpc");

    // alice tracks two keys: their values come from the gRPC backend; a revoked one is removed.
    let (mut alice, _) = connected(&server, format, "alice").await;
    let reply = alice.request(subscribe(&channel, 4)).await.or_fail();
    let result = reply
        .subscribe
        .clone()
        .unwrap_or_else(|| panic!("{reply:?}"));
    assert_eq!(result.r#type, 4);
    assert!(
        !result.epoch.is_empty(),
        "versionless channels carry the core's epoch"
    );
    let reply = alice
        .request(track(&channel, "alice", &["a", "gone1"]))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), None, "{reply:?}");
    // Both keys were cold: each comes in the reply (when its poll reached the edge first) or
    // as a push after it; a revocation always as a removal push.
    let mut seen: Vec<(String, serde_json::Value, bool)> = reply
        .sub_refresh
        .map(|r| r.items)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let data = serde_json::from_slice(&p.data).unwrap_or(serde_json::Value::Null);
            (p.key, data, p.removed)
        })
        .collect();
    while seen.len() < 2 {
        seen.push(update(&mut alice, &channel).await);
    }
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        seen[0],
        ("a".into(), json!({"key": "a", "via": "grpc"}), false)
    );
    assert_eq!((seen[1].0.as_str(), seen[1].2), ("gone1", true));

    // mallory's bad input.
    let (mut mallory, _) = connected(&server, format, "mallory").await;
    let reply = mallory
        .request(track(&channel, "mallory", &["a"]))
        .await
        .or_fail();
    assert_eq!(
        error_code(&reply),
        Some(103),
        "a track without the subscription"
    );
    let reply = mallory
        .request(subscribe(&fixture::unique("chat:x"), 4))
        .await
        .or_fail();
    assert_eq!(
        error_code(&reply),
        Some(108),
        "type 4 on a stream namespace"
    );
    let reply = mallory.request(subscribe(&channel, 0)).await.or_fail();
    assert_eq!(
        error_code(&reply),
        Some(107),
        "type 0 on a shared-poll namespace"
    );
    let reply = mallory.request(subscribe(&channel, 4)).await.or_fail();
    assert!(reply.subscribe.is_some(), "{reply:?}");
    // alice's signature replayed by mallory.
    let stolen = sign(TRACK_SECRET, &channel, "alice", &["a"], now(), now() + 300);
    let reply = mallory
        .request(track_signed(&channel, &["a"], stolen))
        .await
        .or_fail();
    assert_eq!(
        error_code(&reply),
        Some(103),
        "a signature made for another user"
    );
    let forged = format!("{}:0:{}", now(), "00".repeat(32));
    let reply = mallory
        .request(track_signed(&channel, &["a"], forged))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), Some(103), "a forged signature");
    let expired = sign(
        TRACK_SECRET,
        &channel,
        "mallory",
        &["a"],
        now() - 100,
        now() - 60,
    );
    let reply = mallory
        .request(track_signed(&channel, &["a"], expired))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), Some(109), "an expired signature");
    let many: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let reply = mallory
        .request(track(&channel, "mallory", &many))
        .await
        .or_fail();
    assert_eq!(
        error_code(&reply),
        Some(106),
        "over max_keys_per_connection (50)"
    );
    let reply = mallory
        .request(track(&channel, "mallory", &[]))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), Some(107), "a track without keys");
    let untrack_nothing = Command {
        sub_refresh: Some(SubRefreshRequest {
            channel: channel.clone(),
            r#type: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = mallory.request(untrack_nothing).await.or_fail();
    assert_eq!(error_code(&reply), Some(107), "an untrack without keys");

    // Nobody else was harmed: alice tracks another key and gets it; mallory, still connected,
    // tracks properly and gets the held value in the reply.
    let reply = alice
        .request(track(&channel, "alice", &["b"]))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), None, "{reply:?}");
    // Cold at the core: polled at once; the value comes in the reply when it reached the edge
    // first, else as a push right after.
    assert_eq!(value_of(reply, &mut alice, &channel).await, "b");
    let reply = mallory
        .request(track(&channel, "mallory", &["a"]))
        .await
        .or_fail();
    let items = reply.sub_refresh.map(|r| r.items).unwrap_or_default();
    assert_eq!(
        items.len(),
        1,
        "the value the edge holds comes in the reply"
    );
    assert_eq!(items[0].key, "a");

    // Everyone unsubscribes (the edge leaves the channel, the core forgets its keys); tracking
    // again after subscribing again brings the value again: nothing stale is left behind.
    alice.unsubscribe_ok(&channel).await.or_fail();
    mallory.unsubscribe_ok(&channel).await.or_fail();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = alice.request(subscribe(&channel, 4)).await.or_fail();
    assert!(reply.subscribe.is_some(), "{reply:?}");
    let reply = alice
        .request(track(&channel, "alice", &["a"]))
        .await
        .or_fail();
    assert_eq!(error_code(&reply), None, "{reply:?}");
    assert_eq!(value_of(reply, &mut alice, &channel).await, "a");
}

/// The key a track brought: the first item of its reply, or else the next update.
async fn value_of(
    reply: spindle_tests::proto::Reply,
    client: &mut Client,
    channel: &str,
) -> String {
    let items = reply.sub_refresh.map(|r| r.items).unwrap_or_default();
    match items.first() {
        Some(item) => item.key.clone(),
        None => update(client, channel).await.0,
    }
}
