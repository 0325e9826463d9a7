//! Presence through edge updates, the API and edge requests; join and leave events.
// Test helpers outside `#[test]` functions unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use spindle_core::clock::ManualClock;
use spindle_mesh::Up;
use spindle_mesh::mesh::{self, channel_event, request, response};
use spindle_proto::client::{self, ClientInfo};
use std::sync::Arc;
use std::time::Duration;
use support::{Answers, FakeEdge, config, node, node_with_clock, post, publication_of};

fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo {
        user: user.into(),
        client: client.into(),
        conn_info: Bytes::from(format!(r#"{{"name":"{user}"}}"#)),
        chan_info: Bytes::new(),
    }
}

fn update(channel: &str) -> mesh::PresenceUpdate {
    mesh::PresenceUpdate {
        channel: channel.into(),
        ..Default::default()
    }
}

/// Sends a one-way presence update and waits until the core applied it.
async fn send(edge: &FakeEdge, update: mesh::PresenceUpdate) {
    edge.link.send(Up::Presence(update)).await.unwrap();
    edge.barrier().await;
}

async fn api(router: &axum::Router, method: &str, channel: &str) -> Value {
    let body = json!({ "channel": channel }).to_string();
    post(router, method, &body).await.json()
}

fn stats(clients: u32, users: u32) -> Value {
    json!({"result": {"num_clients": clients, "num_users": users}})
}

#[tokio::test]
async fn presence_joins_refreshes_expiry_and_stats() {
    let clock = Arc::new(ManualClock::new());
    let node = node_with_clock(config(|_| {}), clock.clone());
    let router = node.api_router();
    let edge = FakeEdge::attach(&node, "e1", Answers::default());

    let joined = mesh::PresenceUpdate {
        joined: vec![
            info("u1", "c1"),
            info("u1", "c2"),
            info("", "c3"),
            info("", "c4"),
        ],
        ..update("pres:a")
    };
    send(&edge, joined).await;
    // Anonymous clients count as one user.
    assert_eq!(api(&router, "presence_stats", "pres:a").await, stats(4, 2));
    let presence = api(&router, "presence", "pres:a").await;
    assert_eq!(
        presence["result"]["presence"]["c1"],
        json!({"user": "u1", "client": "c1", "conn_info": {"name": "u1"}})
    );
    assert_eq!(
        presence["result"]["presence"]["c3"],
        json!({"user": "", "client": "c3", "conn_info": {"name": ""}})
    );
    assert_eq!(presence["result"]["presence"].as_object().unwrap().len(), 4);

    // 40 s later c1 is refreshed by id and c4 by info; c2 and c3 are not.
    clock.advance(Duration::from_secs(40));
    let refresh = mesh::PresenceUpdate {
        refreshed_client_ids: vec!["c1".into(), "unknown".into()],
        refreshed: vec![info("", "c4")],
        ..update("pres:a")
    };
    send(&edge, refresh).await;
    // 60 s after the join (the presence TTL) c2 and c3 are gone.
    clock.advance(Duration::from_secs(20));
    assert_eq!(api(&router, "presence_stats", "pres:a").await, stats(2, 2));
    assert_eq!(node.sweep().presence_entries, 0);
    // c1 and c4 expire 60 s after their refresh, unless refreshed again.
    clock.advance(Duration::from_secs(39));
    assert_eq!(node.stats().presence_entries, 2);
    clock.advance(Duration::from_secs(1));
    assert_eq!(node.sweep().presence_entries, 2);
    assert_eq!(api(&router, "presence_stats", "pres:a").await, stats(0, 0));
    assert_eq!(
        api(&router, "presence", "pres:a").await,
        json!({"result": {"presence": {}}})
    );

    // A refresh by id does not bring an expired entry back; a refresh with info does.
    let refresh = mesh::PresenceUpdate {
        refreshed_client_ids: vec!["c1".into()],
        refreshed: vec![info("u2", "c5")],
        ..update("pres:a")
    };
    send(&edge, refresh).await;
    assert_eq!(api(&router, "presence_stats", "pres:a").await, stats(1, 1));
    let left = mesh::PresenceUpdate {
        left_client_ids: vec!["c5".into()],
        ..update("pres:a")
    };
    send(&edge, left).await;
    assert_eq!(api(&router, "presence_stats", "pres:a").await, stats(0, 0));
}

#[tokio::test]
async fn edge_presence_requests() {
    let node = node(config(|_| {}));
    let edge = FakeEdge::attach(&node, "e1", Answers::default());
    // The request form of an update is answered with Empty.
    let joined = mesh::PresenceUpdate {
        joined: vec![info("u1", "c1"), info("u2", "c2")],
        ..update("pres:a")
    };
    let response = edge
        .request(Some(request::Kind::PresenceUpdate(joined)))
        .await;
    assert_eq!(
        (response.error, response.kind),
        (None, Some(response::Kind::Empty(mesh::Empty {})))
    );

    let ask = Some(request::Kind::Presence(mesh::PresenceRequest {
        channel: "pres:a".into(),
    }));
    let response = edge.request(ask).await;
    let expected = client::PresenceResult {
        presence: vec![
            ("c1".to_owned(), info("u1", "c1")).into(),
            ("c2".to_owned(), info("u2", "c2")).into(),
        ],
    };
    assert_eq!(response.kind, Some(response::Kind::Presence(expected)));

    let ask = Some(request::Kind::PresenceStats(mesh::PresenceStatsRequest {
        channel: "pres:a".into(),
    }));
    let response = edge.request(ask).await;
    let expected = client::PresenceStatsResult {
        num_clients: 2,
        num_users: 2,
    };
    assert_eq!(response.kind, Some(response::Kind::PresenceStats(expected)));

    for (channel, code, message) in [
        ("chat:a", 108, "not available"),
        ("nope:a", 102, "unknown channel"),
        ("", 107, "bad request"),
    ] {
        let asks = [
            request::Kind::Presence(mesh::PresenceRequest {
                channel: channel.into(),
            }),
            request::Kind::PresenceStats(mesh::PresenceStatsRequest {
                channel: channel.into(),
            }),
        ];
        for ask in asks {
            let response = edge.request(Some(ask)).await;
            let error = response.error.unwrap();
            assert_eq!((error.code, error.message.as_str()), (code, message));
        }
    }
    // An update for a namespace without presence stores nothing and succeeds.
    let response = edge
        .request(Some(request::Kind::PresenceUpdate(mesh::PresenceUpdate {
            joined: vec![info("u1", "c1")],
            ..update("chat:a")
        })))
        .await;
    assert_eq!(response.error, None);
    assert_eq!(node.stats().presence_entries, 2);
    let response = edge
        .request(Some(request::Kind::PresenceUpdate(update("nope:a"))))
        .await;
    assert_eq!(response.error.unwrap().code, 102);
}

/// `announced`: the join message of an entry stored by an earlier request, published and not
/// stored again (so it is not counted twice, and nothing is stored without emit_join_leave).
#[tokio::test]
async fn announced_joins_are_published_not_stored() {
    let node = node(config(|_| {}));
    let router = node.api_router();
    let mut listener = FakeEdge::attach(&node, "listener", Answers::default());
    let reporter = FakeEdge::attach(&node, "reporter", Answers::default());
    listener.interest(&["jl:a"], &[]).await;

    let announced = mesh::PresenceUpdate {
        announced: vec![info("u1", "c1")],
        emit_join_leave: true,
        ..update("jl:a")
    };
    let response = reporter
        .request(Some(request::Kind::PresenceUpdate(announced)))
        .await;
    assert_eq!(response.error, None);
    assert_eq!(
        join_leave(&listener.next_event().await),
        ("join", "u1", "c1")
    );
    let stats = post(&router, "presence_stats", r#"{"channel":"jl:a"}"#)
        .await
        .json();
    assert_eq!(stats, json!({"result": {"num_clients": 0, "num_users": 0}}));

    // Without emit_join_leave nothing is announced.
    let silent = mesh::PresenceUpdate {
        announced: vec![info("u2", "c2")],
        ..update("jl:a")
    };
    reporter
        .request(Some(request::Kind::PresenceUpdate(silent)))
        .await;
    listener.barrier().await;
    listener.assert_quiet().await;
}

fn join_leave(event: &mesh::ChannelEvent) -> (&str, &str, &str) {
    match &event.kind {
        Some(channel_event::Kind::Join(info)) => ("join", info.user.as_str(), info.client.as_str()),
        Some(channel_event::Kind::Leave(info)) => {
            ("leave", info.user.as_str(), info.client.as_str())
        }
        other => panic!("not a join or leave: {other:?}"),
    }
}

#[tokio::test]
async fn join_and_leave_reach_edges_with_interest() {
    let node = node(config(|_| {}));
    let router = node.api_router();
    let mut listener = FakeEdge::attach(&node, "listener", Answers::default());
    let mut other = FakeEdge::attach(&node, "other", Answers::default());
    let reporter = FakeEdge::attach(&node, "reporter", Answers::default());
    listener.interest(&["jl:a", "jlonly:a"], &[]).await;
    other.interest(&["jl:b"], &[]).await;

    let joined = mesh::PresenceUpdate {
        joined: vec![info("u1", "c1"), info("u2", "c2")],
        emit_join_leave: true,
        ..update("jl:a")
    };
    send(&reporter, joined).await;
    post(&router, "publish", r#"{"channel":"jl:a","data":1}"#).await;
    // Leaves by id use the stored info.
    let left = mesh::PresenceUpdate {
        left_client_ids: vec!["c1".into(), "never-joined".into()],
        emit_join_leave: true,
        ..update("jl:a")
    };
    send(&reporter, left).await;
    // Without emit_join_leave: stored, not announced.
    let quiet = mesh::PresenceUpdate {
        joined: vec![info("u3", "c3")],
        left_client_ids: vec!["c2".into()],
        ..update("jl:a")
    };
    send(&reporter, quiet).await;

    let event = listener.next_event().await;
    assert_eq!(
        (event.channel.as_str(), join_leave(&event)),
        ("jl:a", ("join", "u1", "c1"))
    );
    assert!(event.epoch.is_empty() && event.prev_data.is_empty());
    let Some(channel_event::Kind::Join(joined_info)) = &event.kind else {
        panic!()
    };
    assert_eq!(joined_info, &info("u1", "c1"));
    assert_eq!(
        join_leave(&listener.next_event().await),
        ("join", "u2", "c2")
    );
    assert_eq!(
        publication_of(&listener.next_event().await).data.as_ref(),
        b"1"
    );
    assert_eq!(
        join_leave(&listener.next_event().await),
        ("leave", "u1", "c1")
    );
    let stats = post(&router, "presence_stats", r#"{"channel":"jl:a"}"#)
        .await
        .json();
    assert_eq!(stats, json!({"result": {"num_clients": 1, "num_users": 1}}));

    // join_leave without presence: leaves need the info in `left`.
    let no_presence = mesh::PresenceUpdate {
        joined: vec![info("u4", "c4")],
        left_client_ids: vec!["c4".into()],
        left: vec![info("u5", "c5")],
        emit_join_leave: true,
        ..update("jlonly:a")
    };
    send(&reporter, no_presence).await;
    assert_eq!(
        join_leave(&listener.next_event().await),
        ("join", "u4", "c4")
    );
    assert_eq!(
        join_leave(&listener.next_event().await),
        ("leave", "u5", "c5")
    );

    // A client in both leave lists leaves once.
    let twice = mesh::PresenceUpdate {
        left_client_ids: vec!["c3".into()],
        left: vec![info("u3", "c3")],
        emit_join_leave: true,
        ..update("jl:a")
    };
    send(&reporter, twice).await;
    assert_eq!(
        join_leave(&listener.next_event().await),
        ("leave", "u3", "c3")
    );

    listener.barrier().await;
    listener.assert_quiet().await;
    other.assert_quiet().await;
    assert!(
        reporter
            .link
            .send(Up::Presence(update("jl:b")))
            .await
            .is_ok()
    );
    reporter.barrier().await;
    other.assert_quiet().await;
}
