//! The link over real QUIC between two endpoints on 127.0.0.1: the link contract end to end,
//! mutual TLS with the cluster CA, and the peers a core must refuse.
#![allow(clippy::unwrap_used)]

use spindle_mesh::quic::{self, DialError, MeshIdentity, MeshListener, MeshOptions};
use spindle_mesh::{CoreInbox, CoreLink, Down, Up, mesh};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Writes development certificates for `nodes` into a fresh directory.
fn certs(nodes: &[&str]) -> tempdir::Dir {
    let names: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    let certs = quic::generate_certs(&names).unwrap();
    let dir = tempdir::Dir::new();
    std::fs::write(dir.path().join("ca.pem"), &certs.ca_pem).unwrap();
    for (node, cert, key) in &certs.nodes {
        std::fs::write(dir.path().join(format!("{node}.pem")), cert).unwrap();
        std::fs::write(dir.path().join(format!("{node}.key")), key).unwrap();
    }
    dir
}

fn identity(dir: &Path, node: &str) -> MeshIdentity {
    MeshIdentity::from_files(
        &dir.join(format!("{node}.pem")),
        &dir.join(format!("{node}.key")),
        &dir.join("ca.pem"),
    )
    .unwrap()
}

fn options(node: &str) -> MeshOptions {
    MeshOptions {
        node_name: node.to_owned(),
        region: "test-1".to_owned(),
        ..MeshOptions::default()
    }
}

fn listener(dir: &Path) -> MeshListener {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    MeshListener::new(socket, &identity(dir, "core1"), options("core1")).unwrap()
}

/// A core that acknowledges interest, answers requests with their kind's empty answer, and
/// hands the test what the edge sent.
fn serve(link: CoreLink, mut inbox: CoreInbox) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = inbox.recv().await {
            match message {
                Up::Interest(interest) => {
                    let _ = tx.send(format!("interest {:?}", interest.add));
                    let ack = mesh::InterestAck {
                        seq: interest.seq,
                        positions: vec![mesh::ChannelPosition {
                            channel: "news".into(),
                            offset: 7,
                            epoch: "e1".into(),
                        }],
                        failed: Vec::new(),
                    };
                    link.send(Down::InterestAck(ack)).await.unwrap();
                }
                Up::Presence(update) => {
                    let _ = tx.send(format!("presence {}", update.channel));
                }
                Up::Request(pending) => {
                    let id = pending.question.id;
                    let kind = Some(mesh::response::Kind::Empty(mesh::Empty {}));
                    pending.responder.answer(mesh::Response {
                        id,
                        error: None,
                        kind,
                    });
                }
            }
        }
        let _ = tx.send("closed".into());
    });
    rx
}

#[tokio::test]
async fn the_link_contract_holds_over_quic() {
    let dir = certs(&["core1", "edge1"]);
    let mut listener = listener(dir.path());
    let addr = listener.local_addr().unwrap();
    let ((edge, mut edge_inbox), info) =
        quic::dial(addr, &identity(dir.path(), "edge1"), options("edge1"))
            .await
            .unwrap();
    assert_eq!(
        (info.node.as_str(), info.region.as_str()),
        ("core1", "test-1")
    );
    let accepted = listener.accept().await.unwrap();
    assert_eq!(accepted.node, "edge1");
    let core = accepted.link.clone();
    let mut seen = serve(accepted.link, accepted.inbox);

    // Requests: numbered by the edge's link, answered on their own streams, concurrently.
    let answers = futures(&edge, 50).await;
    assert_eq!(answers, (1..=50).collect::<Vec<u64>>());

    // Interest on the control stream, acknowledged with positions.
    edge.send(Up::Interest(mesh::Interest {
        add: vec!["news".into()],
        seq: 1,
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(seen.recv().await.unwrap(), r#"interest ["news"]"#);
    match edge_inbox.recv().await.unwrap() {
        Down::InterestAck(ack) => {
            assert_eq!(ack.seq, 1);
            assert_eq!(
                (ack.positions[0].offset, ack.positions[0].epoch.as_str()),
                (7, "e1")
            );
        }
        other => panic!("{other:?}"),
    }

    // Events: each channel's in order on its lane.
    let mut lanes = edge_inbox.take_lanes();
    let channels = ["a", "b", "c", "d", "e"];
    for n in 0..200u64 {
        for channel in channels {
            let event = mesh::ChannelEvent {
                channel: channel.into(),
                epoch: n.to_string(),
                ..Default::default()
            };
            core.send_event(spindle_mesh::SharedEvent::new(event))
                .await
                .unwrap();
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for mut lane in lanes.drain(..) {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(event) = lane.recv().await {
                let _ = tx.send(event);
            }
        });
    }
    let mut next = std::collections::HashMap::new();
    for _ in 0..1000 {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let expected = next.entry(event.channel.clone()).or_insert(0u64);
        assert_eq!(
            event.epoch,
            expected.to_string(),
            "{} in order",
            event.channel
        );
        *expected += 1;
    }

    // A survey from the core, answered by the edge.
    let asked = tokio::spawn(async move { core.survey(mesh::Survey { id: 9, kind: None }).await });
    match edge_inbox.recv().await.unwrap() {
        Down::Survey(pending) => pending.responder.answer(mesh::SurveyReply {
            id: pending.question.id,
            ..Default::default()
        }),
        other => panic!("{other:?}"),
    }
    assert_eq!(asked.await.unwrap().unwrap().id, 9);

    // Closing the edge's end closes the core's.
    drop(edge);
    drop(edge_inbox);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap(),
        "closed"
    );
}

/// `count` requests at once; the ids their answers carry, sorted.
async fn futures(edge: &spindle_mesh::EdgeLink, count: usize) -> Vec<u64> {
    let mut tasks = Vec::new();
    for _ in 0..count {
        let edge = edge.clone();
        tasks.push(tokio::spawn(async move {
            edge.request(
                Some(mesh::request::Kind::Presence(
                    mesh::PresenceRequest::default(),
                )),
                Duration::from_secs(5),
            )
            .await
            .unwrap()
            .id
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn a_node_of_another_ca_is_refused_at_the_handshake() {
    let cluster = certs(&["core1"]);
    let foreign = certs(&["edge1"]);
    let listener = listener(cluster.path());
    let addr = listener.local_addr().unwrap();
    let mut intruder = identity(foreign.path(), "edge1");
    // Even trusting the cluster's CA itself, its own certificate is not the cluster's.
    intruder.ca = identity(cluster.path(), "core1").ca;
    let error = quic::dial(addr, &intruder, options("edge1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            DialError::Connection { .. } | DialError::Refused { .. }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_node_announcing_a_name_its_certificate_does_not_carry_is_refused() {
    let dir = certs(&["core1", "edge1", "edge2"]);
    let mut listener = listener(dir.path());
    let addr = listener.local_addr().unwrap();
    // edge2's certificate, announcing edge1.
    let error = quic::dial(addr, &identity(dir.path(), "edge2"), options("edge1"))
        .await
        .unwrap_err();
    match error {
        DialError::Refused { source, .. } => {
            assert!(
                source.to_string().contains("does not name \"edge1\""),
                "{source}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.accept())
            .await
            .is_err(),
        "no edge was accepted"
    );
}

/// A temporary directory removed on drop (no extra dependency for it).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "spindle-mesh-test-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (NEXT.fetch_add(1, Ordering::Relaxed) << 32)
    }
}

/// An edge's request frames cost the core at most its request budget: a request waits for its
/// frame's share of the budget before its body is read, everything is served once the bytes
/// come, and a frame larger than the whole budget is refused.
#[tokio::test]
async fn request_frames_are_held_within_the_edge_budget() {
    use spindle_mesh::mesh::{mesh_frame, request};
    use std::sync::atomic::Ordering;

    let dir = certs(&["core1", "edge1"]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let core_options = MeshOptions {
        request_budget_bytes: 1 << 20,
        ..options("core1")
    };
    let mut listener =
        MeshListener::new(socket, &identity(dir.path(), "core1"), core_options).unwrap();
    let addr = listener.local_addr().unwrap();
    let (_edge, info) = quic::dial(addr, &identity(dir.path(), "edge1"), options("edge1"))
        .await
        .unwrap();
    let accepted = listener.accept().await.unwrap();
    let stats = Arc::clone(&accepted.stats);
    let _seen = serve(accepted.link, accepted.inbox);

    // Eight requests of 400 KiB, each with half its body sent: two fit in the 1 MiB budget.
    let question = mesh::Request {
        id: 1,
        kind: Some(request::Kind::Presence(mesh::PresenceRequest {
            channel: "x".repeat(400 << 10),
        })),
    };
    let frame = spindle_proto::mesh::encode_frame(&mesh::MeshFrame {
        kind: Some(mesh_frame::Kind::Request(question)),
    });
    let half = frame.len() / 2;
    let mut streams = Vec::new();
    for _ in 0..8 {
        let (mut send, recv) = info.connection.open_bi().await.unwrap();
        send.write_all(&frame[..half]).await.unwrap();
        streams.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = stats.request_bytes.load(Ordering::Relaxed) as usize;
    assert_eq!(
        held,
        2 * frame.len(),
        "two frames' worth held, within 1 MiB"
    );

    // The rest of every body: all eight are answered, and the budget is free again.
    for (send, _) in &mut streams {
        send.write_all(&frame[half..]).await.unwrap();
        send.finish().unwrap();
    }
    for (_, recv) in &mut streams {
        let bytes = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let mut buffer = bytes::BytesMut::from(&bytes[..]);
        let answer = spindle_proto::mesh::decode_frame(&mut buffer, 1 << 20).unwrap();
        assert!(
            matches!(
                answer,
                Some(mesh::MeshFrame {
                    kind: Some(mesh_frame::Kind::Response(_))
                })
            ),
            "{answer:?}"
        );
    }
    assert_eq!(stats.request_bytes.load(Ordering::Relaxed), 0);

    // A frame that says it is larger than the whole budget: its stream is reset.
    let (mut send, mut recv) = info.connection.open_bi().await.unwrap();
    let mut prefix = bytes::BytesMut::new();
    prost::encoding::encode_varint(2 << 20, &mut prefix);
    send.write_all(&prefix).await.unwrap();
    send.write_all(&[0; 1024]).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20))
        .await
        .expect("refused within 5 s");
    assert!(
        matches!(refused, Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) if code == quinn::VarInt::from_u32(5)),
        "{refused:?}"
    );
}
