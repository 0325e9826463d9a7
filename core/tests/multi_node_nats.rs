//! Two nodes on one NATS server (`SPINDLE_TEST_NATS`, default `nats://127.0.0.1:4222`),
//! `broker.type: nats` with memory presence, each with its own fake edge: publications, API
//! control commands, `info` and `channels` cross nodes. Fails (never skips) when NATS is not
//! reachable.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::BrokerType;
use std::time::Duration;
use support::{Answers, FakeEdge, api, config, publication};

fn nats_url() -> String {
    std::env::var("SPINDLE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn nats_node(name: &str, prefix: &str) -> Node {
    let config = config(|c| {
        c.broker.enabled = true;
        c.broker.kind = BrokerType::Nats;
        c.broker.nats.url = nats_url();
        c.broker.nats.prefix = prefix.to_owned();
    });
    Node::connect(config, NodeIdentity::named(name))
        .await
        .unwrap_or_else(|error| panic!("this test needs NATS at {}: {error}", nats_url()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_publications_controls_info_and_channels() {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = nats_node("a", &prefix).await;
    let b = nats_node("b", &prefix).await;
    let mut edge_a = FakeEdge::attach(&a, "edge-a", Answers::default());
    let answers_b = Answers {
        channels: [("chat:b".to_owned(), 2)].into(),
        ..Default::default()
    };
    let mut edge_b = FakeEdge::attach(&b, "edge-b", answers_b);
    edge_b.interest(&["chat:plain"], &[]).await;
    let router_a = a.api_router();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = api(&router_a, "info", json!({})).await;
        let nodes = info["nodes"].as_array().unwrap();
        if nodes.len() == 2 {
            assert_eq!(nodes[1]["name"], "b");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    api(
        &router_a,
        "publish",
        json!({"channel": "chat:plain", "data": "x"}),
    )
    .await;
    let event = tokio::time::timeout(Duration::from_secs(5), edge_b.next_event())
        .await
        .expect("delivery across nodes");
    assert_eq!(publication(&event), ("chat:plain", &b"\"x\""[..]));

    api(&router_a, "disconnect", json!({"user": "u1"})).await;
    assert_eq!(edge_a.next_control().await.user, "u1");
    assert_eq!(edge_b.next_control().await.user, "u1");
    edge_a.assert_quiet().await;
    edge_b.assert_quiet().await;

    let channels = api(&router_a, "channels", json!({})).await;
    assert_eq!(
        channels,
        json!({"channels": {"chat:b": {"num_clients": 2}}})
    );
}
