//! Edge and core as separate processes over real QUIC (issue 14): `spindle core` with the
//! memory broker, `spindle edge`s linked to it with certificates from `spindle mesh gencerts`,
//! clients on the edges, the API on the core.

use std::time::Duration;

use serde_json::json;
use spindle_tests::proto::{Command, HistoryRequest};
use spindle_tests::split::gencerts;
use spindle_tests::{Client, Format, OrFail, Split, TempDir, fixture};

async fn client_on(edge: &spindle_tests::Server, user: &str) -> Client {
    Client::connect(&edge.ws_url(), Format::Json, &fixture::token(user))
        .await
        .or_fail()
        .0
}

#[tokio::test]
async fn clients_on_two_edges_get_api_publications_history_and_each_others_publications() {
    let split = Split::start(2).await.or_fail();
    let channel = fixture::unique("chat:split");
    let mut alice = client_on(&split.edges[0], "alice").await;
    let mut bob = client_on(&split.edges[1], "bob").await;
    alice.subscribe_ok(&channel).await.or_fail();
    bob.subscribe_ok(&channel).await.or_fail();

    // The backend publishes on the core; both edges deliver.
    split
        .core()
        .publish(&channel, json!({"n": 1}))
        .await
        .or_fail();
    for client in [&mut alice, &mut bob] {
        let publication = client.next_publication(&channel).await.or_fail();
        assert_eq!(&publication.data[..], br#"{"n":1}"#);
    }
    // A client publication on one edge reaches the other edge's subscriber.
    let reply = alice
        .publish(&channel, &json!({"from": "alice"}))
        .await
        .or_fail();
    assert!(reply.error.is_none(), "{reply:?}");
    let publication = bob.next_publication(&channel).await.or_fail();
    assert_eq!(&publication.data[..], br#"{"from":"alice"}"#);
    assert_eq!(publication.info.map(|i| i.user), Some("alice".to_owned()));

    // History lives on the core, read through an edge.
    let stream = fixture::unique("rec:split");
    bob.subscribe_ok(&stream).await.or_fail();
    for n in 1..=3 {
        split
            .core()
            .publish(&stream, json!({"n": n}))
            .await
            .or_fail();
        bob.next_publication(&stream).await.or_fail();
    }
    let reply = bob
        .request(Command {
            history: Some(HistoryRequest {
                channel: stream.clone(),
                limit: 10,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .or_fail();
    let history = reply.history.clone().unwrap_or_else(|| panic!("{reply:?}"));
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1, 2, 3]);
}

#[tokio::test]
async fn an_edge_without_a_certificate_of_the_cluster_is_refused() {
    let split = Split::start(0).await.or_fail();
    let foreign = TempDir::new("spindle-foreign-certs").expect("a temp dir");
    gencerts(&foreign, &["edge1".to_owned()]).await.or_fail();
    let edge = split
        .start_edge("edge1", Some((&foreign, "edge1")))
        .await
        .or_fail();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = edge.get("/health").await.or_fail();
    assert_eq!(health.status, 503, "never linked");
    assert!(
        split.core().stderr().contains("handshake failed"),
        "the core says why: {}",
        split.core().stderr()
    );
}

#[tokio::test]
async fn an_edge_announcing_a_name_its_certificate_does_not_carry_is_refused() {
    let split = Split::start(0).await.or_fail();
    // The cluster's certificate of core1, announced as edge9.
    let edge = split
        .start_edge("edge9", Some((split.certs(), "core1")))
        .await
        .or_fail();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(edge.get("/health").await.or_fail().status, 503);
    let core_log = split.core().stderr();
    assert!(
        core_log.contains("edge refused") && core_log.contains("does not name"),
        "{core_log}"
    );
}

/// The value of one sample in a `/metrics` body.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_core_sends_each_event_once_per_edge_with_subscribers() {
    let split = Split::start(3).await.or_fail();
    let channel = fixture::unique("chat:fanout");
    let mut subscribers = Vec::new();
    // Three subscribers on edge1, two on edge2, none on edge3 (which wants another channel).
    for (edge, count) in [(0, 3), (1, 2)] {
        for i in 0..count {
            let mut client = client_on(&split.edges[edge], &format!("u{edge}{i}")).await;
            client.subscribe_ok(&channel).await.or_fail();
            subscribers.push(client);
        }
    }
    let mut elsewhere = client_on(&split.edges[2], "other").await;
    elsewhere
        .subscribe_ok(&fixture::unique("chat:elsewhere"))
        .await
        .or_fail();

    const N: usize = 20;
    for n in 0..N {
        split
            .core()
            .publish(&channel, json!({ "n": n }))
            .await
            .or_fail();
    }
    for client in &mut subscribers {
        for n in 0..N {
            let publication = client.next_publication(&channel).await.or_fail();
            assert_eq!(publication.data, format!(r#"{{"n":{n}}}"#).into_bytes());
        }
    }
    let metrics = split.core().get("/metrics").await.or_fail();
    assert_eq!(metrics.status, 200);
    let body = String::from_utf8_lossy(&metrics.body).into_owned();
    let sent = |edge: &str| {
        sample(
            &body,
            &format!("spindle_mesh_events_sent_total{{edge=\"{edge}\"}}"),
        )
        .unwrap_or_else(|| panic!("no events_sent sample for {edge}:\n{body}"))
    };
    assert_eq!(
        (sent("edge1"), sent("edge2"), sent("edge3")),
        (N as f64, N as f64, 0.0),
        "one copy per edge with subscribers, whatever their number:\n{body}"
    );
    for edge in ["edge1", "edge2", "edge3"] {
        assert_eq!(
            sample(
                &body,
                &format!("spindle_mesh_links{{peer=\"{edge}\",region=\"\"}}")
            ),
            Some(1.0),
            "{body}"
        );
    }
    let edge_metrics = split.edges[0].get("/metrics").await.or_fail();
    let edge_body = String::from_utf8_lossy(&edge_metrics.body).into_owned();
    assert_eq!(
        sample(&edge_body, "spindle_mesh_links{peer=\"core1\",region=\"\"}"),
        Some(1.0),
        "{edge_body}"
    );
}

#[tokio::test]
async fn metrics_are_served_only_when_prometheus_is_enabled() {
    let off = spindle_tests::Server::start().await.or_fail();
    assert_eq!(off.get("/metrics").await.or_fail().status, 404);
    let on = spindle_tests::Server::start_patched(json!({"prometheus": {"enabled": true}}))
        .await
        .or_fail();
    let metrics = on.get("/metrics").await.or_fail();
    assert_eq!(metrics.status, 200);
    let body = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        body.contains("# TYPE spindle_mesh_events_sent_total counter"),
        "{body}"
    );
}

#[tokio::test]
async fn info_lists_the_edges_of_a_core_with_their_region_and_serve_answers_as_centrifugo() {
    let split = Split::start_with(spindle_tests::SplitOptions {
        edges: 2,
        patch: json!({"mesh": {"region": "eu-west"}}),
        ..spindle_tests::SplitOptions::default()
    })
    .await
    .or_fail();
    let _alice = client_on(&split.edges[0], "alice").await;
    let _bob = client_on(&split.edges[0], "bob").await;
    let _carol = client_on(&split.edges[1], "carol").await;
    let info = split.core().api_ok("info", json!({})).await.or_fail();
    let node = &info["nodes"][0];
    assert_eq!(node["region"], "eu-west", "{info}");
    assert_eq!(node["num_clients"], 3, "{info}");
    assert_eq!(
        node["edges"],
        json!([
            {"name": "edge1", "region": "eu-west", "num_clients": 2, "num_users": 2},
            {"name": "edge2", "region": "eu-west", "num_clients": 1, "num_users": 1},
        ]),
        "{info}"
    );

    // `spindle serve`'s edge is in-process: its reply carries none of Spindle's additions.
    let serve = spindle_tests::Server::start().await.or_fail();
    let info = serve.api_ok("info", json!({})).await.or_fail();
    let node = info["nodes"][0]
        .as_object()
        .unwrap_or_else(|| panic!("no node in {info}"));
    assert!(
        !node.contains_key("edges") && !node.contains_key("region"),
        "{info}"
    );
}
