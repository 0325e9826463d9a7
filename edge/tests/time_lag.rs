//! `client.channel_position_max_time_lag` over real WebSocket connections: a publication that
//! reaches the edge later than the lag after its publish time unsubscribes positioned
//! subscribers with 2500, while a subscriber without positioning still receives it; fresh
//! publications reach everyone (docs/protocol.md §4.2).

// Test helpers: a panic is a failed test, as in `#[test]` functions.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use serde_json::json;
use spindle_mesh::mesh;
use spindle_proto::client;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{config, start_with_history};

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// A publication as the core hands it to the edge, published at `time` (unix ms).
fn event(channel: &str, offset: u64, epoch: &str, time: i64) -> mesh::ChannelEvent {
    mesh::ChannelEvent {
        channel: channel.to_owned(),
        kind: Some(mesh::channel_event::Kind::Publication(
            client::Publication {
                data: Bytes::from_static(b"{\"x\":1}"),
                offset,
                time,
                ..Default::default()
            },
        )),
        epoch: epoch.to_owned(),
        ..Default::default()
    }
}

fn positioned(channel: &str) -> client::SubscribeRequest {
    client::SubscribeRequest {
        channel: channel.into(),
        positioned: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_late_publication_unsubscribes_positioned_subscribers_only() {
    let cfg = config(json!({
        "client": { "channel_position_max_time_lag": "1s" },
        "channel": { "namespaces": [
            { "name": "lag", "history_size": 100, "history_ttl": "300s",
              "allow_positioning": true, "allow_subscribe_for_client": true }
        ]}
    }));
    let server = start_with_history(cfg, &[("lag:", 100)]).await;
    let mut tracked = server.json().await;
    tracked.connect("u1").await;
    let mut plain = server.json().await;
    plain.connect("u2").await;

    let result = tracked
        .subscribe_with(positioned("lag:a"))
        .await
        .subscribe
        .unwrap();
    assert!(result.positioned);
    let epoch = result.epoch;
    assert!(!plain.subscribe("lag:a").await.subscribe.unwrap().positioned);

    // Five seconds late with a one-second lag.
    server
        .fake
        .send_event(event("lag:a", 1, &epoch, now_ms() - 5_000))
        .await;
    let push = tracked.push().await;
    let unsubscribe = push.unsubscribe.expect("unsubscribe 2500");
    assert_eq!((push.channel.as_str(), unsubscribe.code), ("lag:a", 2500));
    let publication = plain.push().await.r#pub.expect("still delivered");
    assert_eq!((publication.offset, publication.time), (1, 0));

    // Resubscribed (as the SDK does): the same stream.
    let result = tracked
        .subscribe_with(positioned("lag:a"))
        .await
        .subscribe
        .unwrap();
    assert_eq!(result.epoch, epoch);
    // A fresh publication reaches both (offset 1 of `lag:a` was fanned out already: another
    // channel).
    let fresh = tracked
        .subscribe_with(positioned("lag:b"))
        .await
        .subscribe
        .unwrap()
        .epoch;
    plain.subscribe("lag:b").await.subscribe.unwrap();
    server
        .fake
        .send_event(event("lag:b", 1, &fresh, now_ms()))
        .await;
    assert_eq!(tracked.push().await.r#pub.unwrap().offset, 1);
    assert_eq!(plain.push().await.r#pub.unwrap().offset, 1);
    assert!(
        tracked
            .pushes_within(Duration::from_millis(200))
            .await
            .is_empty()
    );
}
