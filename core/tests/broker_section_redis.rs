//! `broker.type: redis` with its own `broker.redis` section (a split setup, as Centrifugo's
//! `broker` / `presence_manager` sections), against the real Redis on 127.0.0.1:6379. Fails
//! (never skips) without it.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::{BrokerType, EngineType, PresenceManagerType};
use std::time::Duration;
use support::{Answers, FakeEdge, api, config, publication};

async fn node_on_broker_section(name: &str, prefix: &str) -> Node {
    let config = config(|c| {
        c.engine.kind = EngineType::Memory;
        c.broker.enabled = true;
        c.broker.kind = BrokerType::Redis;
        c.broker.redis.address = vec!["redis://127.0.0.1:6379".to_owned()];
        c.broker.redis.prefix = prefix.to_owned();
        c.presence_manager.enabled = true;
        c.presence_manager.kind = PresenceManagerType::Redis;
        c.presence_manager.redis.address = vec!["redis://127.0.0.1:6379".to_owned()];
        c.presence_manager.redis.prefix = prefix.to_owned();
    });
    Node::connect(config, NodeIdentity::named(name))
        .await
        .unwrap_or_else(|error| panic!("this test needs Redis at 127.0.0.1:6379: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_section_carries_publications_and_history_between_nodes() {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = node_on_broker_section("a", &prefix).await;
    let b = node_on_broker_section("b", &prefix).await;
    let _edge_a = FakeEdge::attach(&a, "edge-a", Answers::default());
    let mut edge_b = FakeEdge::attach(&b, "edge-b", Answers::default());
    edge_b.interest(&["hist:room"], &[]).await;

    let published = api(
        &a.api_router(),
        "publish",
        json!({"channel": "hist:room", "data": {"n": 1}}),
    )
    .await;
    assert_eq!(published["offset"], 1, "{published}");
    let event = tokio::time::timeout(Duration::from_secs(5), edge_b.next_event())
        .await
        .expect("delivery through broker.redis");
    assert_eq!(publication(&event), ("hist:room", &b"{\"n\":1}"[..]));

    let query = json!({"channel": "hist:room", "limit": -1});
    let history_a = api(&a.api_router(), "history", query.clone()).await;
    let history_b = api(&b.api_router(), "history", query).await;
    assert_eq!(history_a, history_b);
    assert_eq!(history_b["offset"], 1);
}
