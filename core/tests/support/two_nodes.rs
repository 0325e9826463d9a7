//! Scenarios every two-node broker test runs the same way: two nodes on one broker, each with
//! its own fake edge, driven through node A's and B's API routers. The broker tests make the
//! nodes (each its own way) and call these.

use super::{Answers, FakeEdge, api, publication, publication_of};
use serde_json::{Value, json};
use spindle_core::Node;
use std::time::Duration;

/// Waits until `router`'s `info` lists `count` nodes (announcements arrive at start and every
/// few seconds).
pub async fn wait_for_nodes(router: &axum::Router, count: usize) -> Value {
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

/// Publications with and without history published through A reach the edges of both nodes in
/// order, and both nodes read the same history.
pub async fn publication_reaches_both_edges(a: &Node, b: &Node) {
    let mut edge_a = FakeEdge::attach(a, "edge-a", Answers::default());
    let mut edge_b = FakeEdge::attach(b, "edge-b", Answers::default());
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

    // Each channel's publications in order; none between channels (on a Redis Cluster the two
    // channels may even travel on different shards' PUB/SUB connections).
    for (edge, count) in [(&mut edge_a, 3), (&mut edge_b, 4)] {
        let mut room = Vec::new();
        let mut plain = Vec::new();
        for _ in 0..count {
            let event = tokio::time::timeout(Duration::from_secs(5), edge.next_event())
                .await
                .expect("delivery across nodes");
            let (channel, data) = publication(&event);
            match channel {
                "hist:room" => room.push((data.to_vec(), publication_of(&event).offset)),
                "chat:plain" => plain.push(data.to_vec()),
                other => panic!("a publication of {other}"),
            }
        }
        let expected: Vec<(Vec<u8>, u64)> = (1..=3u64)
            .map(|n| (format!("{{\"n\":{n}}}").into_bytes(), n))
            .collect();
        assert_eq!(room, expected);
        assert_eq!(plain.len(), count - 3);
        if count == 4 {
            assert_eq!(plain[0], b"\"x\"");
        }
    }

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

/// `disconnect`, `unsubscribe`, `subscribe` and `refresh` issued on either node reach the edge
/// of every node exactly once.
pub async fn control_commands_reach_every_edge_once(a: &Node, b: &Node) {
    let mut edge_a = FakeEdge::attach(a, "edge-a", Answers::default());
    let mut edge_b = FakeEdge::attach(b, "edge-b", Answers::default());
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
    edge_a.assert_quiet().await;
    edge_b.assert_quiet().await;

    // The other direction.
    api(&b.api_router(), "disconnect", json!({"user": "u2"})).await;
    assert_eq!(edge_a.next_control().await.user, "u2");
    assert_eq!(edge_b.next_control().await.user, "u2");
}

/// `info` lists both nodes with their stats, `channels` sums both nodes' channels.
pub async fn info_and_channels_list_both_nodes(a: &Node, b: &Node) {
    let stats = |clients| spindle_mesh::mesh::NodeStats {
        num_clients: clients,
        num_users: clients,
        num_subs: clients,
        ..Default::default()
    };
    let channels = |pairs: &[(&str, u32)]| pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect();
    let _edge_a = FakeEdge::attach(
        a,
        "edge-a",
        Answers {
            channels: channels(&[("chat:a", 1), ("chat:both", 2)]),
            stats: stats(3),
        },
    );
    let _edge_b = FakeEdge::attach(
        b,
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
