//! Shared-poll channels at the core (docs/shared-poll.md) with a real HTTP backend answering
//! `shared_poll_refresh`: cold keys polled at once, changes to the tracking edges only, late
//! trackers served from the core's values, versionless change detection, removals, versioned
//! epochs, `shared_poll_publish`, stale requests, and backend calls following unique keys.
#![allow(clippy::unwrap_used)]

mod support;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use spindle_core::Node;
use spindle_hub::config::{
    ChannelOptions, Duration, Namespace, SharedPollMode, SharedPollOptions, SubscriptionType,
};
use spindle_mesh::mesh::{self, request, response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use support::{Answers, FakeEdge, config, node};

/// What the backend answers: key → (data, version, removed), the epoch, and every call's keys.
#[derive(Default)]
struct Backend {
    values: BTreeMap<String, (Value, u64, bool)>,
    epoch: String,
    calls: Vec<Vec<String>>,
}

type Shared = Arc<Mutex<Backend>>;

async fn refresh(State(backend): State<Shared>, Json(request): Json<Value>) -> Json<Value> {
    let mut backend = backend.lock().unwrap();
    let keys: Vec<String> = request["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_owned())
        .collect();
    let items: Vec<Value> = keys
        .iter()
        .filter_map(|k| backend.values.get(k).map(|v| (k, v)))
        .map(|(key, (data, version, removed))| {
            json!({"key": key, "data": data, "version": version, "removed": removed})
        })
        .collect();
    backend.calls.push(keys);
    Json(json!({"result": {"items": items, "epoch": backend.epoch}}))
}

async fn start_backend() -> (String, Shared) {
    let backend = Shared::default();
    let app = axum::Router::new()
        .route("/refresh", post(refresh))
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/refresh", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, backend)
}

async fn poll_node(versioned: bool) -> (Node, Shared) {
    let (url, backend) = start_backend().await;
    let node = node(config(|c| {
        c.channel.proxy.shared_poll_refresh.endpoint = url;
        c.shared_poll.hmac_secret_key = spindle_hub::config::Secret::new("k");
        c.channel.namespaces.push(Namespace::new(
            "poll",
            ChannelOptions {
                subscription_type: SubscriptionType::SharedPoll,
                shared_poll: SharedPollOptions {
                    refresh_interval: Duration::from_millis(200),
                    mode: if versioned {
                        SharedPollMode::Versioned
                    } else {
                        SharedPollMode::Versionless
                    },
                    publish_enabled: versioned,
                    ..Default::default()
                },
                ..Default::default()
            },
        ));
    }));
    (node, backend)
}

async fn edge(node: &Node, id: &str, channel: &str) -> FakeEdge {
    let edge = FakeEdge::attach(node, id, Answers::default());
    edge.interest(&[channel], &[]).await;
    edge
}

async fn ask(
    edge: &FakeEdge,
    channel: &str,
    seq: u64,
    track: &[&str],
    untrack: &[&str],
) -> mesh::SharedPollResult {
    let response = edge
        .request(Some(request::Kind::SharedPoll(mesh::SharedPollRequest {
            channel: channel.to_owned(),
            track: track.iter().map(|k| (*k).to_owned()).collect(),
            untrack: untrack.iter().map(|k| (*k).to_owned()).collect(),
            seq,
        })))
        .await;
    match response.kind {
        Some(response::Kind::SharedPoll(result)) => result,
        other => panic!("not a shared-poll answer: {other:?} {:?}", response.error),
    }
}

/// The next key update: (key, data, version, removed).
async fn next_update(edge: &mut FakeEdge) -> (String, String, u64, bool) {
    let event = edge.next_event().await;
    let p = support::publication_of(&event);
    (
        p.key.clone(),
        String::from_utf8_lossy(&p.data).into_owned(),
        p.version,
        p.removed,
    )
}

fn set(backend: &Shared, key: &str, data: Value, version: u64) {
    backend
        .lock()
        .unwrap()
        .values
        .insert(key.to_owned(), (data, version, false));
}

#[tokio::test]
async fn cold_keys_are_polled_at_once_and_changes_reach_only_their_trackers() {
    let (node, backend) = poll_node(false).await;
    set(&backend, "a", json!({"v": 1}), 0);
    set(&backend, "b", json!({"v": 2}), 0);
    let mut e1 = edge(&node, "e1", "poll:x").await;
    let mut e2 = edge(&node, "e2", "poll:x").await;

    let first = ask(&e1, "poll:x", 1, &["a"], &[]).await;
    assert!(first.items.is_empty() && !first.stale && !first.epoch.is_empty());
    let (key, data, version, _) = next_update(&mut e1).await;
    assert_eq!((key.as_str(), data.as_str()), ("a", r#"{"v":1}"#));
    assert!(version > 0);

    // e2 tracks a (held: answered at once, no backend call for it) and b (cold: polled).
    let calls_before = backend.lock().unwrap().calls.len();
    let second = ask(&e2, "poll:x", 1, &["a", "b"], &[]).await;
    assert_eq!(second.epoch, first.epoch, "one versionless epoch per core");
    assert_eq!(second.items.len(), 1);
    assert_eq!(
        (second.items[0].key.as_str(), second.items[0].version),
        ("a", version)
    );
    let (key, _, _, _) = next_update(&mut e2).await;
    assert_eq!(key, "b");
    let calls = backend.lock().unwrap().calls.clone();
    assert_eq!(calls[calls_before..], [vec!["b".to_owned()]]);
    // e1 does not track b: it hears nothing of it.
    e1.assert_quiet().await;
}

#[tokio::test]
async fn versionless_changes_are_found_by_data_and_removals_revoke() {
    let (node, backend) = poll_node(false).await;
    set(&backend, "a", json!("one"), 0);
    let mut e1 = edge(&node, "e1", "poll:x").await;
    ask(&e1, "poll:x", 1, &["a"], &[]).await;
    let (_, _, v1, _) = next_update(&mut e1).await;
    // Unchanged across several intervals: nothing sent.
    e1.assert_quiet().await;
    set(&backend, "a", json!("two"), 0);
    let (key, data, v2, removed) = next_update(&mut e1).await;
    assert_eq!(
        (key.as_str(), data.as_str(), removed),
        ("a", r#""two""#, false)
    );
    assert!(v2 > v1);
    let event_prev = {
        set(&backend, "a", json!("three"), 0);
        let event = e1.next_event().await;
        (event.prev_version, event.prev_data.clone())
    };
    assert_eq!(event_prev, (v2, bytes::Bytes::from_static(br#""two""#)));
    // The backend revokes the key: a removal, and the key is no longer polled.
    backend.lock().unwrap().values.get_mut("a").unwrap().2 = true;
    let (key, _, _, removed) = next_update(&mut e1).await;
    assert!(removed && key == "a");
    let calls_at_removal = backend.lock().unwrap().calls.len();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let calls = backend.lock().unwrap().calls.clone();
    assert_eq!(
        calls.len(),
        calls_at_removal,
        "a revoked key is not polled again: {calls:?}"
    );
}

#[tokio::test]
async fn requests_apply_in_seq_order_whatever_order_they_arrive_in() {
    let (node, backend) = poll_node(false).await;
    set(&backend, "a", json!(1), 0);
    let mut e1 = edge(&node, "e1", "poll:x").await;
    // The untrack (seq 2) overtook the track (seq 1): the track is stale, nothing is tracked.
    let untrack = ask(&e1, "poll:x", 2, &[], &["a"]).await;
    assert!(!untrack.stale);
    let late = ask(&e1, "poll:x", 1, &["a"], &[]).await;
    assert!(late.stale);
    e1.assert_quiet().await;
    let polled_a = backend
        .lock()
        .unwrap()
        .calls
        .iter()
        .any(|keys| keys.contains(&"a".to_owned()));
    assert!(!polled_a, "a stale track polls nothing");
    ask(&e1, "poll:x", 3, &["a"], &[]).await;
    assert_eq!(next_update(&mut e1).await.0, "a");
}

#[tokio::test]
async fn backend_load_follows_unique_keys_not_trackers() {
    let (node, backend) = poll_node(false).await;
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    for key in &keys {
        set(&backend, key, json!(key), 0);
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut edges = Vec::new();
    for i in 0..3 {
        let e = edge(&node, &format!("e{i}"), "poll:x").await;
        ask(&e, "poll:x", 1, &refs, &[]).await;
        edges.push(e);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let calls = backend.lock().unwrap().calls.clone();
    let polled: usize = calls.iter().map(Vec::len).sum();
    // Cold polls once per key, then about five intervals of 50 keys: never per edge (×3).
    assert!(
        (50..=50 * 7).contains(&polled),
        "{polled} keys polled in {} calls",
        calls.len()
    );
    for call in &calls {
        let mut seen = call.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), call.len(), "a key twice in one call");
    }
}

#[tokio::test]
async fn versioned_epochs_and_shared_poll_publish() {
    let (node, backend) = poll_node(true).await;
    backend.lock().unwrap().epoch = "e1".into();
    set(&backend, "a", json!("v1"), 1);
    let mut e1 = edge(&node, "e1", "poll:x").await;
    let first = ask(&e1, "poll:x", 1, &["a"], &[]).await;
    assert_eq!(first.epoch, "", "no epoch before the backend gave one");
    // The first epoch the backend gives restarts the subscribers (they were told ""), then
    // the value follows.
    assert_eq!(
        e1.next_event().await.kind,
        Some(mesh::channel_event::Kind::SharedPollEpoch("e1".into()))
    );
    let (_, data, version, _) = next_update(&mut e1).await;
    assert_eq!((data.as_str(), version), (r#""v1""#, 1));
    // A publish with a higher version is delivered; a lower one is not.
    node.shared_poll_publish("poll:x", "a", 5, "e1", bytes::Bytes::from_static(b"\"v5\""))
        .await
        .unwrap();
    let (_, data, version, _) = next_update(&mut e1).await;
    assert_eq!((data.as_str(), version), (r#""v5""#, 5));
    node.shared_poll_publish("poll:x", "a", 4, "e1", bytes::Bytes::from_static(b"\"v4\""))
        .await
        .unwrap();
    // The backend (still at version 1) changes nothing either.
    e1.assert_quiet().await;
    // A new epoch: every edge with the channel hears of it.
    backend.lock().unwrap().epoch = "e2".into();
    let event = e1.next_event().await;
    assert_eq!(
        event.kind,
        Some(mesh::channel_event::Kind::SharedPollEpoch("e2".into()))
    );
    // Versionless channels refuse publishes; unknown channels are 102.
    assert_eq!(
        node.shared_poll_publish("chat:x", "a", 1, "", bytes::Bytes::new())
            .await
            .unwrap_err()
            .client_error()
            .code,
        107
    );
    assert_eq!(
        node.shared_poll_publish("nope:x", "a", 1, "", bytes::Bytes::new())
            .await
            .unwrap_err()
            .client_error()
            .code,
        102
    );
}

#[tokio::test]
async fn a_failing_backend_leaves_keys_for_the_next_interval() {
    let node = node(config(|c| {
        c.channel.proxy.shared_poll_refresh.endpoint = "http://127.0.0.1:9/unreachable".into();
        c.shared_poll.hmac_secret_key = spindle_hub::config::Secret::new("k");
        c.channel.namespaces.push(Namespace::new(
            "poll",
            ChannelOptions {
                subscription_type: SubscriptionType::SharedPoll,
                shared_poll: SharedPollOptions {
                    refresh_interval: Duration::from_millis(100),
                    ..Default::default()
                },
                ..Default::default()
            },
        ));
    }));
    let mut e1 = edge(&node, "e1", "poll:x").await;
    let answer = ask(&e1, "poll:x", 1, &["a"], &[]).await;
    assert!(answer.items.is_empty());
    e1.assert_quiet().await;
    let failed = node
        .shared_poll_counters()
        .failed_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failed >= 2, "the poller keeps trying: {failed}");
}

#[tokio::test]
async fn a_key_tracked_again_soon_keeps_its_version_without_a_backend_call() {
    let (node, backend) = poll_node(false).await;
    set(&backend, "a", json!(1), 0);
    let mut e1 = edge(&node, "e1", "poll:x").await;
    ask(&e1, "poll:x", 1, &["a"], &[]).await;
    let (_, _, version, _) = next_update(&mut e1).await;
    // The last tracker leaves (a reconnect wave), and the edge leaves the channel too.
    ask(&e1, "poll:x", 2, &[], &["a"]).await;
    e1.interest(&[], &["poll:x"]).await;
    let calls = backend.lock().unwrap().calls.len();
    e1.interest(&["poll:x"], &[]).await;
    let again = ask(&e1, "poll:x", 3, &["a"], &[]).await;
    assert_eq!(again.items.len(), 1);
    assert_eq!(again.items[0].version, version);
    assert_eq!(
        backend.lock().unwrap().calls.len(),
        calls,
        "answered from the parked value"
    );
}
