//! The node with fake edges on the in-process link: interest, fan-out, edge requests, slow
//! edges, detaching.
// Test helpers outside `#[test]` functions unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use spindle_core::broker::PublishOptions;
use spindle_mesh::mesh::{self, control, request, response};
use spindle_mesh::{Up, in_process, in_process_with_lanes};
use spindle_proto::client;
use std::collections::BTreeMap;
use support::{Answers, FakeEdge, config, node, publication, publication_of};

async fn publish(node: &spindle_core::Node, channel: &str, data: &str) {
    let data = Bytes::from(data.to_owned());
    node.publish(channel, data, None, PublishOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn each_interested_edge_gets_each_publication_once_in_order() {
    let node = node(config(|_| {}));
    let mut e1 = FakeEdge::attach(&node, "e1", Answers::default());
    let mut e2 = FakeEdge::attach(&node, "e2", Answers::default());
    e1.interest(&["news", "chat:a"], &[]).await;
    e2.interest(&["news"], &[]).await;

    for i in 0..5 {
        publish(&node, "news", &i.to_string()).await;
    }
    publish(&node, "chat:a", "only-e1").await;
    publish(&node, "elsewhere", "nobody").await;
    publish(&node, "news", "marker").await;

    for edge in [&mut e1, &mut e2] {
        for i in 0..5 {
            let event = edge.next_event().await;
            assert_eq!(publication(&event), ("news", i.to_string().as_bytes()));
        }
    }
    assert_eq!(
        publication(&e1.next_event().await),
        ("chat:a", &b"only-e1"[..])
    );
    assert_eq!(
        publication(&e1.next_event().await),
        ("news", &b"marker"[..])
    );
    // e2 has no interest in chat:a: the next thing it sees is the marker.
    assert_eq!(
        publication(&e2.next_event().await),
        ("news", &b"marker"[..])
    );
    e1.assert_quiet().await;
    e2.assert_quiet().await;

    let stats = node.stats();
    assert_eq!(stats.publications, 8);
    assert_eq!(stats.deliveries, 5 * 2 + 1 + 2);
    assert_eq!(
        (stats.edges, stats.channels, stats.dropped_events),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn publications_carry_tags_and_info() {
    let node = node(config(|_| {}));
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["news"], &[]).await;
    let tags = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    let info = client::ClientInfo {
        user: "u".into(),
        client: "c".into(),
        ..Default::default()
    };
    let options = PublishOptions {
        tags: tags.clone(),
        ..Default::default()
    };
    let result = node.publish(
        "news",
        Bytes::from_static(b"{}"),
        Some(info.clone()),
        options,
    );
    assert_eq!(result.await.unwrap().position, None);
    let event = edge.next_event().await;
    let Some(mesh::channel_event::Kind::Publication(p)) = event.kind else {
        panic!()
    };
    assert_eq!((p.tags, p.info, p.offset), (tags, Some(info), 0));
    assert!(event.epoch.is_empty() && event.prev_data.is_empty());
}

#[tokio::test]
async fn interest_is_a_set_per_edge() {
    // The edge says "I have subscribers in C" or "I have none"; saying either twice changes
    // nothing (a counting core kept delivering after add, add, remove).
    let node = node(config(|_| {}));
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["news", "marker"], &[]).await;
    edge.interest(&["news"], &[]).await;
    edge.interest(&[], &["news", "never-added"]).await;
    publish(&node, "news", "gone").await;
    publish(&node, "marker", "m").await;
    assert_eq!(publication(&edge.next_event().await), ("marker", &b"m"[..]));
    assert_eq!(node.stats().channels, 1);
    edge.interest(&[], &["news"]).await;
    edge.interest(&["news"], &[]).await;
    publish(&node, "news", "back").await;
    assert_eq!(
        publication(&edge.next_event().await),
        ("news", &b"back"[..])
    );
}

#[tokio::test]
async fn an_interest_ack_carries_the_stream_positions_of_the_added_channels() {
    let node = node(config(|_| {}));
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    publish(&node, "hist:a", "1").await;
    publish(&node, "hist:a", "2").await;
    let ack = edge.interest(&["hist:a", "chat:none"], &[]).await;
    assert_eq!(
        ack.positions.len(),
        1,
        "no position for a channel without history"
    );
    let position = &ack.positions[0];
    assert_eq!((position.channel.as_str(), position.offset), ("hist:a", 2));
    assert!(!position.epoch.is_empty());
    // Everything published after the ack reaches the edge.
    publish(&node, "hist:a", "3").await;
    let event = edge.next_event().await;
    assert_eq!(
        (publication_of(&event).offset, event.epoch.as_str()),
        (3, position.epoch.as_str())
    );
}

#[tokio::test]
async fn a_snapshot_replaces_the_edges_interest_set() {
    let node = node(config(|_| {}));
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["a", "b"], &[]).await;
    let interest = mesh::Interest {
        add: vec!["b".into(), "c".into()],
        seq: 99,
        snapshot: true,
        ..Default::default()
    };
    edge.link.send(Up::Interest(interest)).await.unwrap();
    let ack = edge.acks.lock().await.recv().await.unwrap();
    assert_eq!(ack.seq, 99);
    assert_eq!(node.stats().channels, 2, "b and c");
    for channel in ["a", "b", "c"] {
        publish(&node, channel, channel).await;
    }
    assert_eq!(publication(&edge.next_event().await), ("b", &b"b"[..]));
    assert_eq!(publication(&edge.next_event().await), ("c", &b"c"[..]));
}

#[tokio::test]
async fn edge_publish_requests_are_answered_and_delivered() {
    let node = node(config(|_| {}));
    let publisher = FakeEdge::attach(&node, "e1", Answers::default());
    let mut subscriber = FakeEdge::attach(&node, "e2", Answers::default());
    subscriber.interest(&["chat:room"], &[]).await;

    let info = client::ClientInfo {
        user: "u1".into(),
        client: "c1".into(),
        ..Default::default()
    };
    let publish = mesh::PublishRequest {
        channel: "chat:room".into(),
        data: Bytes::from_static(br#"{"text":"hi"}"#),
        info: Some(info.clone()),
        ..Default::default()
    };
    let response = publisher
        .request(Some(request::Kind::Publish(publish)))
        .await;
    assert_eq!(response.error, None);
    assert_eq!(
        response.kind,
        Some(response::Kind::Publish(mesh::PublishResult {
            offset: 0,
            epoch: String::new()
        }))
    );
    let event = subscriber.next_event().await;
    let Some(mesh::channel_event::Kind::Publication(p)) = event.kind else {
        panic!()
    };
    assert_eq!(
        (p.data.as_ref(), p.info),
        (&br#"{"text":"hi"}"#[..], Some(info))
    );

    let unknown = mesh::PublishRequest {
        channel: "nope:room".into(),
        data: Bytes::from_static(b"1"),
        ..Default::default()
    };
    let response = publisher
        .request(Some(request::Kind::Publish(unknown)))
        .await;
    let error = response.error.unwrap();
    assert_eq!(
        (error.code, error.message.as_str()),
        (102, "unknown channel")
    );

    let empty = mesh::PublishRequest {
        channel: "chat:room".into(),
        ..Default::default()
    };
    let response = publisher.request(Some(request::Kind::Publish(empty))).await;
    assert_eq!(response.error.unwrap().code, 107);

    let history = mesh::HistoryRequest {
        channel: "chat:room".into(),
        ..Default::default()
    };
    let response = publisher
        .request(Some(request::Kind::History(history)))
        .await;
    let error = response.error.unwrap();
    assert_eq!((error.code, error.message.as_str()), (108, "not available"));
    assert_eq!(response.kind, None);
}

#[tokio::test]
async fn a_stuck_edge_loses_events_without_blocking_publishers_or_other_edges() {
    let node = node(config(|_| {}));
    // An edge that never reads what the core sends; its event lane holds LANE events.
    const LANE: usize = 256;
    let ((stuck_link, _stuck_inbox), (core_link, core_inbox)) = in_process_with_lanes(LANE, 1);
    node.attach_edge("stuck", core_link, core_inbox);
    let interest = mesh::Interest {
        add: vec!["news".into()],
        seq: 1,
        ..Default::default()
    };
    stuck_link.send(Up::Interest(interest)).await.unwrap();
    // Answered after the interest is applied.
    stuck_link
        .request(None, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let healthy = FakeEdge::attach_with_capacity(&node, "healthy", Answers::default(), 1 << 16);
    healthy.interest(&["news"], &[]).await;
    let mut healthy = healthy;

    let total = LANE + 5000;
    for i in 0..total {
        publish(&node, "news", &i.to_string()).await;
        if i % 64 == 0 {
            // Let the healthy edge's lane drain.
            tokio::task::yield_now().await;
        }
    }
    for i in 0..total {
        let event = healthy.next_event().await;
        assert_eq!(publication(&event).1, i.to_string().as_bytes());
    }
    let stats = node.stats();
    // The stuck edge's lane took the first LANE events; the rest were dropped for it alone.
    assert_eq!(stats.dropped_events as usize, total - LANE);
    assert_eq!(stats.deliveries as usize, total + LANE);
}

#[tokio::test]
async fn a_closed_edge_is_forgotten_with_its_interest() {
    let node = node(config(|_| {}));
    let ((edge_link, edge_inbox), (core_link, core_inbox)) = in_process(8);
    let serving = node.attach_edge("e1", core_link, core_inbox);
    let interest = mesh::Interest {
        add: vec!["news".into(), "chat:a".into()],
        seq: 1,
        ..Default::default()
    };
    edge_link.send(Up::Interest(interest)).await.unwrap();
    let response = edge_link
        .request(None, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(response.error.unwrap().code, 108);
    assert_eq!((node.stats().edges, node.stats().channels), (1, 2));

    drop(edge_link);
    serving.await.unwrap();
    assert_eq!((node.stats().edges, node.stats().channels), (0, 0));
    drop(edge_inbox);
    publish(&node, "news", "to nobody").await;
    assert_eq!(node.stats().deliveries, 0);
}

#[tokio::test]
async fn attaching_an_id_again_replaces_the_earlier_edge() {
    let node = node(config(|_| {}));
    let old = FakeEdge::attach(&node, "e1", Answers::default());
    old.interest(&["news"], &[]).await;
    let mut new = FakeEdge::attach(&node, "e1", Answers::default());
    new.interest(&["chat:a"], &[]).await;
    assert_eq!((node.stats().edges, node.stats().channels), (1, 1));
    publish(&node, "news", "old interest is gone").await;
    publish(&node, "chat:a", "new").await;
    assert_eq!(
        publication(&new.next_event().await),
        ("chat:a", &b"new"[..])
    );
}

#[tokio::test]
async fn control_commands_reach_every_edge() {
    let node = node(config(|_| {}));
    let mut e1 = FakeEdge::attach(&node, "e1", Answers::default());
    let mut e2 = FakeEdge::attach(&node, "e2", Answers::default());
    let command = mesh::Control {
        user: "u".into(),
        client: String::new(),
        session: String::new(),
        kind: Some(control::Kind::Unsubscribe(mesh::UnsubscribeCommand {
            channel: "news".into(),
            ..Default::default()
        })),
    };
    assert_eq!(node.control(command.clone()).await.unwrap(), 2);
    assert_eq!(e1.next_control().await, command);
    assert_eq!(e2.next_control().await, command);
    assert_eq!(node.stats().controls, 2);
}

#[tokio::test]
async fn surveys_merge_edge_answers() {
    let node = node(config(|_| {}));
    let answers = |channels: &[(&str, u32)], clients, users, subs| Answers {
        channels: channels.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        stats: mesh::NodeStats {
            num_clients: clients,
            num_users: users,
            num_subs: subs,
            ..Default::default()
        },
    };
    let mut e1 = FakeEdge::attach(&node, "e1", answers(&[("news", 2), ("chat:a", 1)], 2, 1, 3));
    let _e2 = FakeEdge::attach(&node, "e2", answers(&[("news", 3), ("other", 1)], 3, 2, 4));
    e1.interest(&["news", "chat:a"], &[]).await;

    let all = spindle_hub::glob::ChannelPattern::new("").unwrap();
    let channels = node.active_channels(&all).await;
    let expected = BTreeMap::from([
        ("chat:a".to_owned(), 1),
        ("news".to_owned(), 5),
        ("other".to_owned(), 1),
    ]);
    assert_eq!(channels, expected);
    let news_only = spindle_hub::glob::ChannelPattern::new("n*").unwrap();
    assert_eq!(
        node.active_channels(&news_only)
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["news"]
    );
    assert_eq!(e1.survey_patterns.recv().await.unwrap(), "");
    assert_eq!(e1.survey_patterns.recv().await.unwrap(), "n*");

    let info = node.info().await;
    assert_eq!(
        (info.uid.as_str(), info.name.as_str()),
        ("node-uid", "node-name")
    );
    assert_eq!(info.version, spindle_core::VERSION);
    assert_eq!((info.num_clients, info.num_users, info.num_subs), (5, 3, 7));
    assert_eq!(info.num_channels, 2);
}

#[tokio::test]
async fn identity_from_config() {
    let named = spindle_core::NodeIdentity::new(&config(|c| c.node.name = "n1".into()), 8000);
    assert_eq!(named.name, "n1");
    assert!(named.version.ends_with(" spindle"));
    let unnamed = spindle_core::NodeIdentity::new(&config(|_| {}), 41234);
    assert!(unnamed.name.ends_with("_41234"), "{}", unnamed.name);
    assert_ne!(named.uid, unnamed.uid);
    assert_eq!(uuid_version(&named.uid), Some('4'));
    assert_eq!(spindle_core::NodeIdentity::named("x").name, "x");
}

fn uuid_version(uid: &str) -> Option<char> {
    (uid.len() == 36).then(|| uid.chars().nth(14)).flatten()
}
