//! Two nodes on one Redis (`SPINDLE_TEST_REDIS`, default `redis://127.0.0.1:6379`), each with
//! its own fake edge: what is published through node A's API reaches the edge attached to node
//! B, and both nodes read the same history; an emulation frame given to one node reaches the
//! edge of the node it names. The same runs again with the nodes sharded over
//! two Redis servers the test starts itself (`engine.redis.address` as a list). Fails (never
//! skips) when Redis is not reachable.
#![allow(clippy::unwrap_used)]

#[path = "support/redis_process.rs"]
mod redis_process;
mod support;

use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::EngineType;
use std::time::Duration;
use support::two_nodes::{self as scenario, wait_for_nodes};
use support::{Answers, FakeEdge, config};

fn redis_address() -> String {
    std::env::var("SPINDLE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Two servers for the sharded runs of this binary.
fn sharded_addresses() -> Vec<String> {
    static SERVERS: std::sync::OnceLock<Vec<redis_process::RedisProcess>> =
        std::sync::OnceLock::new();
    SERVERS
        .get_or_init(|| redis_process::start_servers(2))
        .iter()
        .map(|server| server.url())
        .collect()
}

/// A 3-master Redis Cluster for the cluster runs: its seeds as one `cluster_address` entry,
/// marked with a leading `cluster:` for [`redis_node_on`].
fn cluster_addresses() -> Vec<String> {
    static CLUSTER: std::sync::OnceLock<Vec<redis_process::RedisProcess>> =
        std::sync::OnceLock::new();
    let seeds: Vec<String> = CLUSTER
        .get_or_init(|| redis_process::start_cluster(3))
        .iter()
        .map(|node| format!("127.0.0.1:{}", node.port))
        .collect();
    vec![format!("cluster:{}", seeds.join(","))]
}

/// Nodes "a" and "b" on `addresses` under a fresh key prefix.
async fn two_nodes(addresses: Vec<String>) -> (Node, Node) {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = redis_node_on("a", &prefix, addresses.clone()).await;
    let b = redis_node_on("b", &prefix, addresses).await;
    (a, b)
}

async fn redis_node_on(name: &str, prefix: &str, addresses: Vec<String>) -> Node {
    let config = config(|c| {
        c.engine.kind = EngineType::Redis;
        match addresses.first().and_then(|a| a.strip_prefix("cluster:")) {
            Some(seeds) => c.engine.redis.cluster_address = vec![seeds.to_owned()],
            None => c.engine.redis.address = addresses.clone(),
        }
        c.engine.redis.prefix = prefix.to_owned();
    });
    Node::connect(config, NodeIdentity::named(name))
        .await
        .unwrap_or_else(|error| panic!("this test needs Redis at {addresses:?}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b() {
    let (a, b) = two_nodes(vec![redis_address()]).await;
    scenario::publication_reaches_both_edges(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b_sharded() {
    let (a, b) = two_nodes(sharded_addresses()).await;
    scenario::publication_reaches_both_edges(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b_on_a_cluster() {
    let (a, b) = two_nodes(cluster_addresses()).await;
    scenario::publication_reaches_both_edges(&a, &b).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once() {
    let (a, b) = two_nodes(vec![redis_address()]).await;
    scenario::control_commands_reach_every_edge_once(&a, &b).await;
}

/// Control messages go round-robin over the shards and every node listens on all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once_sharded() {
    let (a, b) = two_nodes(sharded_addresses()).await;
    scenario::control_commands_reach_every_edge_once(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once_on_a_cluster() {
    let (a, b) = two_nodes(cluster_addresses()).await;
    scenario::control_commands_reach_every_edge_once(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_channels_list_every_node() {
    let (a, b) = two_nodes(vec![redis_address()]).await;
    scenario::info_and_channels_list_both_nodes(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulation_frames_reach_the_named_node() {
    let (a, b) = two_nodes(vec![redis_address()]).await;
    let mut edge_a = FakeEdge::attach(&a, "edge-a", Answers::default());
    let mut edge_b = FakeEdge::attach(&b, "edge-b", Answers::default());
    wait_for_nodes(&b.api_router(), 2).await;

    let frame = |node: &str| spindle_proto::client::EmulationRequest {
        node: node.to_owned(),
        session: "s1".to_owned(),
        data: bytes::Bytes::from_static(b"{\"id\":2}"),
    };
    // B forwards to A and reports delivery once A's edge has answered.
    assert!(b.emulate(frame(&a.identity().uid)).await.unwrap());
    let support::Received::Emulation(got) = edge_a.next().await else {
        panic!("edge A wanted an emulation frame");
    };
    assert_eq!(got, frame(&a.identity().uid));
    // Naming itself, B hands the frame to its own edge.
    assert!(b.emulate(frame(&b.identity().uid)).await.unwrap());
    assert!(matches!(
        edge_b.next().await,
        support::Received::Emulation(_)
    ));
    // A node that is not live: not delivered, at once.
    let started = tokio::time::Instant::now();
    assert!(!b.emulate(frame("no-such-node")).await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(1));
    edge_a.assert_quiet().await;
    edge_b.assert_quiet().await;
}
