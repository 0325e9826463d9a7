//! A fake edge on the in-process link, a test configuration and an HTTP client for the API
//! router; [`two_nodes`]: the scenarios every two-node broker test shares.
#![allow(dead_code)]

pub mod two_nodes;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use spindle_core::clock::ManualClock;
use spindle_core::{Node, NodeIdentity};
use spindle_hub::config::{
    ChannelOptions, Config, Duration, Namespace, PublicationDataFormat, Secret, SubscriptionType,
};
use spindle_mesh::mesh::{self, survey};
use spindle_mesh::{Down, EdgeLink, Up};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tower::ServiceExt;

pub const KEY: &str = "secret-key";

/// Namespaces: `chat` (defaults), `obj` (json_object payloads), `bin` (binary payloads), `map`
/// (map subscriptions), `pres` (presence on), `hist` (history: size 10, ttl 60 s, meta ttl
/// 600 s), `delta` (delta_publish, no history), `hdelta` (history + delta_publish), `jl`
/// (presence + join_leave), `jlonly` (join_leave without presence).
pub fn config(adjust: impl FnOnce(&mut Config)) -> Arc<Config> {
    let mut config = Config::default();
    config.http_api.key = Secret::new(KEY);
    let namespaces = [
        ("chat", ChannelOptions::default()),
        (
            "obj",
            ChannelOptions {
                publication_data_format: PublicationDataFormat::JsonObject,
                ..Default::default()
            },
        ),
        (
            "bin",
            ChannelOptions {
                publication_data_format: PublicationDataFormat::Binary,
                ..Default::default()
            },
        ),
        (
            "map",
            ChannelOptions {
                subscription_type: SubscriptionType::Map,
                ..Default::default()
            },
        ),
        (
            "pres",
            ChannelOptions {
                presence: true,
                ..Default::default()
            },
        ),
        (
            "hist",
            ChannelOptions {
                history_size: 10,
                history_ttl: Duration::from_secs(60),
                history_meta_ttl: Duration::from_secs(600),
                ..Default::default()
            },
        ),
        (
            "delta",
            ChannelOptions {
                delta_publish: true,
                ..Default::default()
            },
        ),
        (
            "hdelta",
            ChannelOptions {
                history_size: 10,
                history_ttl: Duration::from_secs(60),
                delta_publish: true,
                ..Default::default()
            },
        ),
        (
            "jl",
            ChannelOptions {
                presence: true,
                join_leave: true,
                ..Default::default()
            },
        ),
        (
            "jlonly",
            ChannelOptions {
                join_leave: true,
                ..Default::default()
            },
        ),
    ];
    config.channel.namespaces = namespaces
        .into_iter()
        .map(|(name, options)| Namespace::new(name, options))
        .collect();
    adjust(&mut config);
    Arc::new(config)
}

fn identity() -> NodeIdentity {
    NodeIdentity {
        uid: "node-uid".into(),
        name: "node-name".into(),
        version: spindle_core::VERSION.into(),
    }
}

pub fn node(config: Arc<Config>) -> Node {
    Node::new(config, identity()).unwrap()
}

/// A node whose history and presence expire by `clock`, moved by hand.
pub fn node_with_clock(config: Arc<Config>, clock: Arc<ManualClock>) -> Node {
    Node::with_clock(config, identity(), clock).unwrap()
}

/// The publication inside an event.
pub fn publication_of(event: &mesh::ChannelEvent) -> &spindle_proto::client::Publication {
    match &event.kind {
        Some(mesh::channel_event::Kind::Publication(p)) => p,
        other => panic!("not a publication: {other:?}"),
    }
}

/// What an edge tells a survey.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub channels: BTreeMap<String, u32>,
    pub stats: mesh::NodeStats,
}

/// Something the core sent to an edge (surveys are answered by the fake itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Event(Box<mesh::ChannelEvent>),
    Control(mesh::Control),
    /// An emulation frame for a session (answered at once by the fake).
    Emulation(spindle_proto::client::EmulationRequest),
}

/// An edge attached to a node through the in-process link.
pub struct FakeEdge {
    pub link: EdgeLink,
    pub received: mpsc::UnboundedReceiver<Received>,
    pub survey_patterns: mpsc::UnboundedReceiver<String>,
    /// Received messages set aside by `next_event` / `next_control` while looking for another
    /// kind.
    stash: std::collections::VecDeque<Received>,
    /// Interest acknowledgements, in arrival order.
    pub acks: tokio::sync::Mutex<mpsc::UnboundedReceiver<mesh::InterestAck>>,
    next_seq: AtomicU64,
}

impl FakeEdge {
    pub fn attach(node: &Node, id: &str, answers: Answers) -> FakeEdge {
        Self::attach_with_capacity(node, id, answers, 1024)
    }

    pub fn attach_with_capacity(node: &Node, id: &str, answers: Answers, cap: usize) -> FakeEdge {
        // One event lane: these tests read one channel's events at a time, or check that an
        // edge sees nothing of a channel by reading the next event of another.
        let ((link, mut inbox), (core_link, core_inbox)) = spindle_mesh::network::from_env(cap, 1);
        node.attach_edge(id, core_link, core_inbox);
        let (tx, received) = mpsc::unbounded_channel();
        let (pattern_tx, survey_patterns) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        for mut lane in inbox.take_lanes() {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(event) = lane.recv().await {
                    let _ = tx.send(Received::Event(Box::new((*event).clone())));
                }
            });
        }
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                match message {
                    Down::InterestAck(ack) => {
                        let _ = ack_tx.send(ack);
                    }
                    Down::Control(control) => {
                        let _ = tx.send(Received::Control(control));
                    }
                    Down::Survey(pending) => {
                        let id = pending.question.id;
                        let reply = match pending.question.kind {
                            Some(survey::Kind::Channels(c)) => {
                                let _ = pattern_tx.send(c.pattern);
                                mesh::SurveyReply {
                                    id,
                                    channels: answers.channels.clone(),
                                    node: None,
                                }
                            }
                            Some(survey::Kind::Node(_)) => mesh::SurveyReply {
                                id,
                                channels: BTreeMap::new(),
                                node: Some(answers.stats.clone()),
                            },
                            Some(survey::Kind::Emulation(request)) => {
                                let _ = tx.send(Received::Emulation(request));
                                mesh::SurveyReply {
                                    id,
                                    ..Default::default()
                                }
                            }
                            None => mesh::SurveyReply {
                                id,
                                ..Default::default()
                            },
                        };
                        pending.responder.answer(reply);
                    }
                }
            }
        });
        FakeEdge {
            link,
            received,
            survey_patterns,
            stash: std::collections::VecDeque::new(),
            acks: tokio::sync::Mutex::new(acks),
            next_seq: AtomicU64::new(1),
        }
    }

    /// Sends an interest change and waits for the core's acknowledgement; returns it.
    pub async fn interest(&self, add: &[&str], remove: &[&str]) -> mesh::InterestAck {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let interest = mesh::Interest {
            add: add.iter().map(|s| s.to_string()).collect(),
            remove: remove.iter().map(|s| s.to_string()).collect(),
            seq,
            snapshot: false,
        };
        self.link.send(Up::Interest(interest)).await.unwrap();
        let mut acks = self.acks.lock().await;
        let ack = tokio::time::timeout(std::time::Duration::from_secs(2), acks.recv())
            .await
            .expect("no interest ack within 2 s")
            .expect("edge closed");
        assert_eq!(ack.seq, seq, "acks come in order");
        ack
    }

    /// A request the core answers only after everything sent before it (an empty request,
    /// answered 108).
    pub async fn barrier(&self) {
        let response = self.request(None).await;
        assert_eq!(response.error.unwrap().code, 108);
    }

    pub async fn request(&self, kind: Option<mesh::request::Kind>) -> mesh::Response {
        self.link
            .request(kind, std::time::Duration::from_secs(10))
            .await
            .unwrap()
    }

    /// The next message from the core (fails after 2 s).
    pub async fn next(&mut self) -> Received {
        if let Some(stashed) = self.stash.pop_front() {
            return stashed;
        }
        self.receive().await
    }

    async fn receive(&mut self) -> Received {
        tokio::time::timeout(std::time::Duration::from_secs(2), self.received.recv())
            .await
            .expect("nothing arrived at the edge")
            .expect("edge closed")
    }

    /// The next message of one kind, in its order; messages of other kinds that came first
    /// are kept for later (events and control messages travel apart: no order between them).
    async fn next_of<T>(&mut self, pick: impl Fn(&Received) -> Option<T>) -> T {
        if let Some(index) = self.stash.iter().position(|m| pick(m).is_some()) {
            let message = self.stash.remove(index).expect("just found");
            return pick(&message).expect("just matched");
        }
        loop {
            let message = self.receive().await;
            match pick(&message) {
                Some(found) => return found,
                None => self.stash.push_back(message),
            }
        }
    }

    pub async fn next_event(&mut self) -> mesh::ChannelEvent {
        self.next_of(|m| match m {
            Received::Event(event) => Some((**event).clone()),
            _ => None,
        })
        .await
    }

    pub async fn next_control(&mut self) -> mesh::Control {
        self.next_of(|m| match m {
            Received::Control(control) => Some(control.clone()),
            _ => None,
        })
        .await
    }

    /// Nothing arrives within 300 ms, and the link is still there: a detached edge (its
    /// channel closed) is a failure, not silence.
    pub async fn assert_quiet(&mut self) {
        assert!(self.stash.is_empty(), "not quiet: {:?}", self.stash);
        let settle = std::time::Duration::from_millis(300);
        match tokio::time::timeout(settle, self.received.recv()).await {
            Err(_) => {}
            Ok(None) => panic!("the edge's link closed: detached, not quiet"),
            Ok(Some(message)) => panic!("not quiet: {message:?}"),
        }
    }
}

/// The channel and data of a publication event.
pub fn publication(event: &mesh::ChannelEvent) -> (&str, &[u8]) {
    match &event.kind {
        Some(mesh::channel_event::Kind::Publication(p)) => (event.channel.as_str(), &p.data),
        other => panic!("not a publication: {other:?}"),
    }
}

/// An HTTP exchange with a router.
pub struct Exchange {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: String,
}

impl Exchange {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Sends one request to the router.
pub async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Exchange {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Exchange {
        status,
        content_type,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// The `result` of an API call through `router`; panics with the reply if it has none.
pub async fn api(router: &Router, method: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = post(router, method, &body.to_string()).await.json();
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{method} {body}: {reply}"))
}

/// `POST /api/<method>` with the right key.
pub async fn post(router: &Router, method: &str, body: &str) -> Exchange {
    send(
        router,
        "POST",
        &format!("/api/{method}"),
        &[("x-api-key", KEY)],
        body.to_owned(),
    )
    .await
}
