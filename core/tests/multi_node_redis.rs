//! Two nodes on one Redis (`SPINDLE_TEST_REDIS`, default `redis://127.0.0.1:6379`), each with
//! its own fake edge: what is published through node A's API reaches the edge attached to node
//! B, and both nodes read the same history. Fails (never skips) when Redis is not reachable.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::EngineType;
use std::time::Duration;
use support::{Answers, FakeEdge, config, post, publication};

fn redis_address() -> String {
    std::env::var("SPINDLE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn redis_node(name: &str, prefix: &str) -> Node {
    let config = config(|c| {
        c.engine.kind = EngineType::Redis;
        c.engine.redis.address = vec![redis_address()];
        c.engine.redis.prefix = prefix.to_owned();
    });
    Node::connect(config, NodeIdentity::named(name))
        .await
        .unwrap_or_else(|error| panic!("this test needs Redis at {}: {error}", redis_address()))
}

async fn api(router: &axum::Router, method: &str, body: Value) -> Value {
    let reply = post(router, method, &body.to_string()).await.json();
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{method} {body}: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b() {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = redis_node("a", &prefix).await;
    let b = redis_node("b", &prefix).await;
    let mut edge_a = FakeEdge::attach(&a, "edge-a", Answers::default());
    let mut edge_b = FakeEdge::attach(&b, "edge-b", Answers::default());
    edge_a.interest(&["hist:room"], &[]).await;
    edge_b.interest(&["hist:room", "chat:plain"], &[]).await;
    let router_a = a.api_router();
    let router_b = b.api_router();

    let mut positions = Vec::new();
    for n in 1..=3 {
        let result = api(
            &router_a,
            "publish",
            json!({"channel": "hist:room", "data": {"n": n}}),
        )
        .await;
        positions.push(result);
    }
    let epoch = positions[0]["epoch"].as_str().unwrap().to_owned();
    for (n, result) in positions.iter().enumerate() {
        assert_eq!(*result, json!({"offset": n + 1, "epoch": epoch}));
    }
    api(
        &router_a,
        "publish",
        json!({"channel": "chat:plain", "data": "x"}),
    )
    .await;

    for edge in [&mut edge_a, &mut edge_b] {
        for n in 1..=3u64 {
            let event = tokio::time::timeout(Duration::from_secs(5), edge.next_event())
                .await
                .expect("delivery across nodes");
            let (channel, data) = publication(&event);
            assert_eq!(channel, "hist:room");
            assert_eq!(data, format!("{{\"n\":{n}}}").as_bytes());
            let offset = support::publication_of(&event).offset;
            assert_eq!(offset, n);
        }
    }
    let plain = tokio::time::timeout(Duration::from_secs(5), edge_b.next_event())
        .await
        .expect("delivery without history");
    assert_eq!(publication(&plain), ("chat:plain", &b"\"x\""[..]));

    let query = json!({"channel": "hist:room", "limit": -1});
    let history_a = api(&router_a, "history", query.clone()).await;
    let history_b = api(&router_b, "history", query).await;
    assert_eq!(history_a, history_b);
    assert_eq!(history_a["offset"], 3);
    assert_eq!(history_a["epoch"], epoch.as_str());
    assert_eq!(history_a["publications"].as_array().unwrap().len(), 3);

    // Removing history through node B gives node A's next publication a new epoch.
    api(&router_b, "history_remove", json!({"channel": "hist:room"})).await;
    let after = api(
        &router_a,
        "publish",
        json!({"channel": "hist:room", "data": {"n": 4}}),
    )
    .await;
    assert_eq!(after["offset"], 1);
    assert_ne!(after["epoch"], epoch.as_str());
}

#[tokio::test]
async fn an_unreachable_redis_fails_node_start_clearly() {
    let config = config(|c| {
        c.engine.kind = EngineType::Redis;
        c.engine.redis.address = vec!["127.0.0.1:1".to_owned()];
        c.engine.redis.connect_timeout = spindle_hub::config::Duration::from_millis(300);
    });
    let error = Node::connect(config, NodeIdentity::named("x"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("cannot connect to redis at 127.0.0.1:1"),
        "{text}"
    );
}
