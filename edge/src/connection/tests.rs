//! The connection task driven through channels: no socket, no HTTP.

use super::{Setup, serve};
use crate::socket::{Incoming, Outgoing};
use crate::{Edge, NodeIdentity, Transport};
use futures_util::{Sink, Stream, sink, stream};
use serde_json::{Value, json};
use spindle_hub::config::Config;
use spindle_hub::session::SessionRules;
use spindle_mesh::{Down, Up, mesh};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const SECRET: &str = "connection-test-secret";

/// An edge on an in-process link, and what it sends to its core. The core side only
/// acknowledges interest changes (so subscribes complete) and hands every message to the test.
fn edge() -> (Edge, mpsc::UnboundedReceiver<Up>) {
    let config: Config = serde_json::from_value(json!({
        "client": { "token": { "hmac_secret_key": SECRET } },
        "channel": { "without_namespace": { "allow_subscribe_for_client": true } }
    }))
    .unwrap();
    let rules = SessionRules::new(&config).unwrap();
    let ((link, inbox), (core, mut core_inbox)) =
        spindle_mesh::network::from_env(64, spindle_mesh::DEFAULT_LANES);
    let node = NodeIdentity {
        uid: "node-1".into(),
        name: "test".into(),
    };
    let edge = Edge::new(Arc::new(config), rules, link, node);
    tokio::spawn({
        let edge = edge.clone();
        async move { edge.run_inbox(inbox).await }
    });
    let (up_tx, up) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = core_inbox.recv().await {
            if let Up::Interest(change) = &message {
                let ack = mesh::InterestAck {
                    seq: change.seq,
                    positions: Vec::new(),
                    failed: Vec::new(),
                };
                let _ = core.send(Down::InterestAck(ack)).await;
            }
            let _ = up_tx.send(message);
        }
    });
    (edge, up)
}

fn token(user: &str, exp_offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    spindle_hub::jwt::sign_hs256(&json!({"sub": user, "exp": now + exp_offset}), SECRET).unwrap()
}

/// A connection task on channels: frames in, `Outgoing` out.
struct Harness {
    frames: mpsc::Sender<Incoming>,
    out: mpsc::Receiver<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

fn start(edge: &Edge) -> Harness {
    let (frames, frames_rx) = mpsc::channel::<Incoming>(16);
    let (out_tx, out) = mpsc::channel::<Outgoing>(16);
    let incoming: std::pin::Pin<Box<dyn Stream<Item = Incoming> + Send>> =
        Box::pin(stream::unfold(frames_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
    let outgoing: std::pin::Pin<Box<dyn Sink<Outgoing, Error = ()> + Send>> =
        Box::pin(sink::unfold(out_tx, |tx, item: Outgoing| async move {
            tx.send(item).await.map_err(|_| ())?;
            Ok::<_, ()>(tx)
        }));
    let setup = Setup {
        format: spindle_proto::Format::Json,
        transport: Transport::WebSocket,
        native_ping: false,
        header_user: None,
        session: None,
        uni: None,
        headers: Default::default(),
    };
    let task = tokio::spawn(serve(edge.shared.clone(), setup, incoming, outgoing));
    Harness { frames, out, task }
}

impl Harness {
    async fn send(&self, text: &str) {
        self.frames
            .send(Incoming::Data(text.to_owned().into()))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Outgoing {
        tokio::time::timeout(Duration::from_secs(5), self.out.recv())
            .await
            .expect("timed out")
            .expect("writer gone")
    }

    /// The messages of the next data frame.
    async fn replies(&mut self) -> Vec<Value> {
        match self.next().await {
            Outgoing::Frame(bytes) => std::str::from_utf8(&bytes)
                .unwrap()
                .split('\n')
                .map(|line| serde_json::from_str(line).unwrap())
                .collect(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Replies until `count` messages have arrived (they may be batched or not).
    async fn collect(&mut self, count: usize) -> Vec<Value> {
        let mut all = Vec::new();
        while all.len() < count {
            all.extend(self.replies().await);
        }
        all
    }

    async fn close_code(&mut self) -> u16 {
        loop {
            match self.next().await {
                Outgoing::Close { code, .. } => return code,
                Outgoing::Frame(_) | Outgoing::Ping => {}
            }
        }
    }
}

#[tokio::test]
async fn connect_and_subscribe_in_one_frame() {
    let (edge, mut core) = edge();
    let mut harness = start(&edge);
    let frame = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": token("alice", 3600)}}),
        json!({"id": 2, "subscribe": {"channel": "news"}})
    );
    harness.send(&frame).await;
    let core_side = tokio::spawn(async move {
        match core.recv().await {
            Some(Up::Interest(interest)) => interest.add,
            other => panic!("unexpected {other:?}"),
        }
    });
    let replies = harness.collect(2).await;
    assert_eq!(replies[0]["id"], 1);
    assert_eq!(replies[0]["connect"]["version"], spindle_hub::VERSION);
    assert!(replies[0]["connect"]["client"].as_str().unwrap().len() == 36);
    assert_eq!(replies[1], json!({"id": 2, "subscribe": {}}));
    assert_eq!(core_side.await.unwrap(), ["news"]);
    let stats = edge.stats();
    assert_eq!((stats.clients, stats.users, stats.subscriptions), (1, 1, 1));

    edge.shutdown();
    assert_eq!(harness.close_code().await, 3001);
    drop(harness.frames);
    harness.task.await.unwrap();
    assert_eq!(edge.stats().connections, 0);
    assert_eq!(edge.stats().subscriptions, 0);
}

#[tokio::test]
async fn a_command_before_connect_closes_with_3501() {
    let (edge, _core) = edge();
    let mut harness = start(&edge);
    harness
        .send(&json!({"id": 1, "subscribe": {"channel": "news"}}).to_string())
        .await;
    assert_eq!(harness.close_code().await, 3501);
}

#[tokio::test]
async fn a_refused_connect_stops_the_frame_and_poisons_the_connection() {
    let (edge, _core) = edge();
    let mut harness = start(&edge);
    let frame = format!(
        "{}\n{}",
        json!({"id": 1, "connect": {"token": token("bob", -60)}}),
        json!({"id": 2, "subscribe": {"channel": "news"}})
    );
    harness.send(&frame).await;
    let replies = harness.replies().await;
    assert_eq!(
        replies,
        [json!({"id": 1, "error": {"code": 109, "message": "token expired"}})]
    );
    harness
        .send(&json!({"id": 3, "connect": {"token": token("bob", 60)}}).to_string())
        .await;
    assert_eq!(harness.close_code().await, 3501);
}

#[tokio::test]
async fn malformed_frames_and_oversize_messages_close() {
    let (edge, _core) = edge();
    let mut harness = start(&edge);
    harness.send("{not json").await;
    assert_eq!(harness.close_code().await, 3501);

    let mut harness = start(&edge);
    harness.frames.send(Incoming::TooBig).await.unwrap();
    assert_eq!(harness.close_code().await, 1009);
}

#[tokio::test]
async fn a_client_close_ends_the_task_without_a_close_frame() {
    let (edge, _core) = edge();
    let mut harness = start(&edge);
    harness.frames.send(Incoming::Close).await.unwrap();
    drop(harness.frames);
    harness.task.await.unwrap();
    assert!(harness.out.recv().await.is_none());
    assert_eq!(edge.stats().connections, 0);
}
