//! Two real `spindle serve` processes on one Redis (`engine.type: redis`, 127.0.0.1:6379, a
//! fresh key prefix per test): a client on node A receives what the API publishes on node B,
//! history and presence agree on both nodes, API unsubscribe and disconnect on one node reach a
//! user connected to the other, `info` lists both, and an `/emulation` request sent to the
//! node without the session is forwarded to the one with it. Fails (never skips) when Redis is
//! down.

use std::time::Duration;

use serde_json::{Value, json};
use spindle_tests::client::{connect_command, payload_json, subscribe_command};
use spindle_tests::{Format, OrFail, Server, TIMEOUT, fixture, http};

use crate::connected;
use crate::emulation::{Kind, Streamed, command_bytes, emulate, with_id};

/// Two servers sharing one Redis under a prefix of their own; returns once each `info` lists
/// both (so each listens to the other's control messages).
async fn two_nodes() -> (Server, Server) {
    let prefix = format!(
        "spindle-two-nodes-{}-{}",
        fixture::unix_now(),
        fixture::unique("p")
    );
    let patch = json!({
        "engine": {"type": "redis", "redis": {"address": "redis://127.0.0.1:6379", "prefix": prefix}},
    });
    let a = Server::start_patched(patch.clone()).await.or_fail();
    let b = Server::start_patched(patch).await.or_fail();
    wait_for_nodes(&a, 2).await;
    wait_for_nodes(&b, 2).await;
    (a, b)
}

/// `info` once it lists `count` nodes (nodes announce themselves at start and every few
/// seconds).
async fn wait_for_nodes(server: &Server, count: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let info = server.api_ok("info", json!({})).await.or_fail();
        if info["nodes"].as_array().map(Vec::len) == Some(count) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "info never listed {count} nodes: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `presence` on `server` until it lists `count` clients.
async fn presence_of(server: &Server, channel: &str, count: usize) -> Value {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let result = server
            .api_ok("presence", json!({ "channel": channel }))
            .await
            .or_fail();
        if result["presence"].as_object().map(|p| p.len()) == Some(count) {
            return result["presence"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence of {channel} never had {count} clients: {result}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_publish_on_b_reaches_a_client_on_a_and_history_agrees() {
    let (a, b) = two_nodes().await;
    let (mut client, _) = connected(&a, Format::Json, "alice").await;
    let channel = fixture::unique("rec:two");
    client.subscribe_ok(&channel).await.or_fail();

    let mut positions = Vec::new();
    for n in 1..=3 {
        positions.push(b.publish(&channel, json!({ "n": n })).await.or_fail());
    }
    for n in 1..=3u64 {
        let publication = client.next_publication(&channel).await.or_fail();
        assert_eq!(payload_json(&publication.data).or_fail(), json!({ "n": n }));
        assert_eq!(publication.offset, n);
    }
    let epoch = positions[0]["epoch"].clone();
    assert_eq!(positions[2], json!({"offset": 3, "epoch": epoch}));

    let query = json!({ "channel": channel, "limit": -1 });
    let history_a = a.api_ok("history", query.clone()).await.or_fail();
    let history_b = b.api_ok("history", query).await.or_fail();
    assert_eq!(history_a, history_b);
    assert_eq!(history_a["offset"], 3);
    assert_eq!(history_a["epoch"], epoch);
    assert_eq!(history_a["publications"].as_array().map(Vec::len), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_agrees_across_nodes() {
    let (a, b) = two_nodes().await;
    let channel = fixture::unique("room:two");
    let (mut on_a, id_a) = connected(&a, Format::Json, "ann").await;
    let (mut on_b, id_b) = connected(&b, Format::Protobuf, "bob").await;
    on_a.subscribe_ok(&channel).await.or_fail();
    on_b.subscribe_ok(&channel).await.or_fail();

    let seen_by_a = presence_of(&a, &channel, 2).await;
    let seen_by_b = presence_of(&b, &channel, 2).await;
    assert_eq!(seen_by_a, seen_by_b);
    assert_eq!(seen_by_a[&id_a]["user"], "ann");
    assert_eq!(seen_by_a[&id_b]["user"], "bob");
    let stats = b
        .api_ok("presence_stats", json!({ "channel": channel }))
        .await
        .or_fail();
    assert_eq!(stats, json!({"num_clients": 2, "num_users": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_unsubscribe_and_disconnect_on_b_reach_a_user_on_a() {
    let (a, b) = two_nodes().await;
    let (mut target, _) = connected(&a, Format::Json, "dora").await;
    let (mut bystander, _) = connected(&a, Format::Json, "eve").await;
    let channel = fixture::unique("chat:two");
    target.subscribe_ok(&channel).await.or_fail();

    b.api_ok("unsubscribe", json!({ "user": "dora", "channel": channel }))
        .await
        .or_fail();
    let push = target.next_push(TIMEOUT).await.or_fail();
    assert_eq!(push.channel, channel, "{push:?}");
    let unsubscribe = push
        .unsubscribe
        .clone()
        .unwrap_or_else(|| panic!("want an unsubscribe push, got {push:?}"));
    assert_eq!(unsubscribe.code, 2000, "{unsubscribe:?}");

    let result = b
        .api_ok("disconnect", json!({ "user": "dora" }))
        .await
        .or_fail();
    assert_eq!(result, json!({}));
    let close = target.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3503, "{close:?}");
    bystander
        .expect_silence(Duration::from_millis(300))
        .await
        .or_fail();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_lists_both_nodes() {
    let (a, b) = two_nodes().await;
    let (_client, _) = connected(&b, Format::Json, "frank").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let info = loop {
        let info = wait_for_nodes(&a, 2).await;
        let clients: Vec<u64> = info["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|node| node["num_clients"].as_u64())
            .collect();
        // Node stats travel with the periodic announcements.
        if clients.contains(&1) || tokio::time::Instant::now() > deadline {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let nodes = info["nodes"].as_array().or_fail_with("nodes");
    // Both are started with `-p 0`: named `<host>_<bound port>`, so names differ as uids do.
    let ids: Vec<&str> = nodes.iter().filter_map(|n| n["uid"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{info}");
    assert_ne!(ids[0], ids[1], "{info}");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{info}");
    assert_ne!(names[0], names[1], "{info}");
    let total: u64 = nodes.iter().filter_map(|n| n["num_clients"].as_u64()).sum();
    assert_eq!(total, 1, "the client on B is counted once: {info}");
    let from_b = wait_for_nodes(&b, 2).await;
    let uids = |info: &Value| {
        let mut uids: Vec<String> = info["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["uid"].as_str().map(str::to_owned))
            .collect();
        uids.sort();
        uids
    };
    assert_eq!(uids(&info), uids(&from_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulation_on_b_is_forwarded_to_the_session_on_a() {
    let (a, b) = two_nodes().await;
    let connect = with_id(1, connect_command(&fixture::token("gina")));
    let mut stream = Streamed::open(
        a.addr(),
        Kind::HttpStream(Format::Json),
        "POST",
        "/connection/http_stream",
        &[("Content-Type", "application/json")],
        &command_bytes(Format::Json, &[connect]),
    )
    .await;
    assert_eq!(stream.status, 200);
    let result = stream
        .next_reply()
        .await
        .connect
        .or_fail_with("connect result");

    // B does not hold the session: it forwards the command to A and answers once A took it.
    let channel = fixture::unique("chat:emu-two");
    let subscribe = with_id(2, subscribe_command(&channel));
    let status = emulate(
        b.addr(),
        Format::Json,
        &result.node,
        &result.session,
        &[subscribe],
    )
    .await;
    assert_eq!(status, 204);
    let reply = stream.next_reply().await;
    assert_eq!(reply.id, 2, "{reply:?}");
    assert!(
        reply.error.is_none() && reply.subscribe.is_some(),
        "{reply:?}"
    );

    b.publish(&channel, json!({"via": "b"})).await.or_fail();
    let push = stream.next_push().await;
    assert_eq!(push.channel, channel, "{push:?}");
    let publication = push.r#pub.or_fail_with("publication push");
    assert_eq!(
        payload_json(&publication.data).or_fail(),
        json!({"via": "b"})
    );

    // A node no one knows: 404 from either node.
    let unknown = json!({"node": "no-such-node", "session": result.session, "data": "{}"});
    for server in [&a, &b] {
        let response = http::post_json(server.addr(), "/emulation", &[], &unknown)
            .await
            .or_fail();
        assert_eq!(response.status, 404);
    }
}

trait OrFailWith<T> {
    fn or_fail_with(self, what: &str) -> T;
}

impl<T> OrFailWith<T> for Option<T> {
    fn or_fail_with(self, what: &str) -> T {
        self.unwrap_or_else(|| panic!("missing {what}"))
    }
}
