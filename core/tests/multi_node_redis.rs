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

use serde_json::{Value, json};
use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::EngineType;
use std::time::Duration;
use support::{Answers, FakeEdge, config, post, publication};

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

async fn redis_node(name: &str, prefix: &str) -> Node {
    redis_node_on(name, prefix, vec![redis_address()]).await
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

async fn api(router: &axum::Router, method: &str, body: Value) -> Value {
    let reply = post(router, method, &body.to_string()).await.json();
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{method} {body}: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b() {
    publication_across_nodes(vec![redis_address()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b_sharded() {
    publication_across_nodes(sharded_addresses()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_on_node_a_reaches_an_edge_of_node_b_on_a_cluster() {
    publication_across_nodes(cluster_addresses()).await;
}

async fn publication_across_nodes(addresses: Vec<String>) {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = redis_node_on("a", &prefix, addresses.clone()).await;
    let b = redis_node_on("b", &prefix, addresses).await;
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

/// Waits until `router`'s `info` lists `count` nodes (announcements arrive at start and every
/// few seconds).
async fn wait_for_nodes(router: &axum::Router, count: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = api(router, "info", json!({})).await;
        if info["nodes"].as_array().unwrap().len() == count {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "info never listed {count} nodes: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once() {
    control_across_nodes(vec![redis_address()]).await;
}

/// Control messages go round-robin over the shards and every node listens on all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once_sharded() {
    control_across_nodes(sharded_addresses()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_control_commands_reach_edges_of_every_node_once_on_a_cluster() {
    control_across_nodes(cluster_addresses()).await;
}

async fn control_across_nodes(addresses: Vec<String>) {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = redis_node_on("a", &prefix, addresses.clone()).await;
    let b = redis_node_on("b", &prefix, addresses).await;
    let mut edge_a = FakeEdge::attach(&a, "edge-a", Answers::default());
    let mut edge_b = FakeEdge::attach(&b, "edge-b", Answers::default());
    let router_a = a.api_router();
    // Both nodes must be listening on the control channel before A issues commands.
    wait_for_nodes(&router_a, 2).await;

    let commands = [
        ("disconnect", json!({"user": "u1"})),
        ("unsubscribe", json!({"user": "u1", "channel": "chat:x"})),
        ("subscribe", json!({"user": "u1", "channel": "chat:x"})),
        ("refresh", json!({"user": "u1", "expired": true})),
    ];
    for (method, body) in commands {
        api(&router_a, method, body).await;
        for edge in [&mut edge_a, &mut edge_b] {
            let control = edge.next_control().await;
            assert_eq!(control.user, "u1", "{method}");
            let kind = format!("{:?}", control.kind.unwrap());
            assert!(kind.to_lowercase().starts_with(method), "{method}: {kind}");
        }
    }
    // Exactly once per node: nothing more arrives at either edge.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(edge_a.is_quiet());
    assert!(edge_b.is_quiet());

    // The other direction.
    api(&b.api_router(), "disconnect", json!({"user": "u2"})).await;
    assert_eq!(edge_a.next_control().await.user, "u2");
    assert_eq!(edge_b.next_control().await.user, "u2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_channels_list_every_node() {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = redis_node("a", &prefix).await;
    let b = redis_node("b", &prefix).await;
    let stats = |clients| spindle_mesh::mesh::NodeStats {
        num_clients: clients,
        num_users: clients,
        num_subs: clients,
        ..Default::default()
    };
    let channels = |pairs: &[(&str, u32)]| pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect();
    let _edge_a = FakeEdge::attach(
        &a,
        "edge-a",
        Answers {
            channels: channels(&[("chat:a", 1), ("chat:both", 2)]),
            stats: stats(3),
        },
    );
    let _edge_b = FakeEdge::attach(
        &b,
        "edge-b",
        Answers {
            channels: channels(&[("chat:b", 4), ("chat:both", 5), ("news", 6)]),
            stats: stats(7),
        },
    );
    let router_a = a.api_router();
    let info = wait_for_nodes(&router_a, 2).await;
    let nodes = info["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["uid"], a.identity().uid.as_str());
    assert_eq!(nodes[0]["name"], "a");
    assert_eq!(nodes[0]["num_clients"], 3);
    assert_eq!(nodes[1]["uid"], b.identity().uid.as_str());
    assert_eq!(nodes[1]["name"], "b");
    assert_eq!(nodes[1]["version"], spindle_core::VERSION);

    let all = api(&router_a, "channels", json!({})).await;
    assert_eq!(
        all,
        json!({"channels": {
            "chat:a": {"num_clients": 1},
            "chat:b": {"num_clients": 4},
            "chat:both": {"num_clients": 7},
            "news": {"num_clients": 6},
        }})
    );
    let chat = api(&router_a, "channels", json!({"pattern": "chat:b*"})).await;
    assert_eq!(
        chat,
        json!({"channels": {
            "chat:b": {"num_clients": 4},
            "chat:both": {"num_clients": 7},
        }})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulation_frames_reach_the_named_node() {
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let a = redis_node("a", &prefix).await;
    let b = redis_node("b", &prefix).await;
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(edge_a.is_quiet());
    assert!(edge_b.is_quiet());
}
