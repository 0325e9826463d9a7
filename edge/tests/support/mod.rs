//! An edge on 127.0.0.1:0 with a small fake core on the other end of an in-process link, and a
//! WebSocket client speaking JSON or Protobuf.

// Test support: a panic here is a failed test, as in `#[test]` functions.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Buf, Bytes};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{Value, json};
use spindle_edge::{Edge, NodeIdentity};
use spindle_hub::config::Config;
use spindle_hub::session::SessionRules;
pub mod fake_core;

// Not every test binary publishes through the fake core.
#[allow(unused_imports)]
pub use fake_core::{FakeCore, Publish};
use spindle_mesh::{CoreLink, mesh};
use spindle_proto::{Format, client};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "edge-integration-secret";
pub const WAIT: Duration = Duration::from_secs(10);

/// A running edge and the fake core behind it.
pub struct Server {
    pub addr: SocketAddr,
    pub edge: Edge,
    /// The core's end: tests send events and control commands, and ask surveys.
    pub core: CoreLink,
    /// Channels the edge registered interest in, as the fake core tracks them.
    pub interest: Arc<Mutex<BTreeSet<String>>>,
    /// The fake core: streams, presence, held history reads, dropped events.
    pub fake: FakeCore,
}

/// The default test configuration, merged with `extra` (objects merge key by key).
pub fn config(extra: Value) -> Config {
    let mut base = json!({
        "client": { "token": { "hmac_secret_key": SECRET } },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": true,
                "allow_publish_for_client": true
            },
            "namespaces": [
                { "name": "readonly", "allow_subscribe_for_client": true }
            ]
        }
    });
    merge(&mut base, extra);
    serde_json::from_value(base).expect("test config")
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

pub async fn start(config: Config) -> Server {
    start_with_history(config, &[]).await
}

/// An edge whose fake core keeps streams for channels starting with the given prefixes (with
/// the given sizes).
pub async fn start_with_history(config: Config, history: &[(&str, usize)]) -> Server {
    let rules = SessionRules::new(&config).expect("rules");
    let ((link, edge_inbox), (core, core_inbox)) =
        spindle_mesh::network::from_env(1024, spindle_mesh::DEFAULT_LANES);
    let node = NodeIdentity {
        uid: "node-test".into(),
        name: "edge-test".into(),
    };
    let edge = Edge::new(Arc::new(config), rules, link, node);
    let inbox_edge = edge.clone();
    tokio::spawn(async move { inbox_edge.run_inbox(edge_inbox).await });
    let history = history
        .iter()
        .map(|(prefix, size)| ((*prefix).to_owned(), *size))
        .collect();
    let fake = FakeCore::spawn(core.clone(), core_inbox, history);
    let interest = Arc::clone(&fake.interest);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = edge.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Server {
        addr,
        edge,
        core,
        interest,
        fake,
    }
}

pub fn publication(
    channel: &str,
    data: Bytes,
    info: Option<client::ClientInfo>,
) -> mesh::ChannelEvent {
    mesh::ChannelEvent {
        channel: channel.to_owned(),
        kind: Some(mesh::channel_event::Kind::Publication(
            client::Publication {
                data,
                info,
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

pub fn token(user: &str) -> String {
    token_with(json!({ "sub": user, "exp": unix_now() + 3600 }))
}

pub fn token_with(claims: Value) -> String {
    spindle_hub::jwt::sign_hs256(&claims, SECRET).expect("sign")
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Server {
    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/connection/websocket{query}", self.addr)
    }

    pub async fn json(&self) -> Client {
        Client::open(&self.url(""), Format::Json, None).await
    }

    pub async fn protobuf(&self) -> Client {
        Client::open(&self.url(""), Format::Protobuf, Some("centrifuge-protobuf")).await
    }

    /// Waits until `check` holds for the edge's stats.
    pub async fn wait_stats(&self, check: impl Fn(spindle_edge::EdgeStats) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check(self.edge.stats()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stats never matched: {:?}",
                self.edge.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A client connection speaking one format.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub format: Format,
    /// Messages of frames already read but not yet consumed.
    pending: VecDeque<client::Reply>,
    /// Pushes read while waiting for a reply.
    skipped: VecDeque<client::Reply>,
    next_id: u32,
    /// The response to the upgrade request.
    pub protocol: Option<String>,
}

impl Client {
    pub async fn open(url: &str, format: Format, protocol: Option<&str>) -> Client {
        let mut request = url.into_client_request().unwrap();
        if let Some(protocol) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Client {
            ws,
            format,
            pending: VecDeque::new(),
            skipped: VecDeque::new(),
            next_id: 0,
            protocol,
        }
    }

    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends commands in one frame.
    pub async fn send(&mut self, commands: &[client::Command]) {
        let message = match self.format {
            Format::Json => {
                let lines: Vec<String> = commands
                    .iter()
                    .map(|c| serde_json::to_string(c).unwrap())
                    .collect();
                Message::text(lines.join("\n"))
            }
            Format::Protobuf => {
                let mut bytes = Vec::new();
                for command in commands {
                    command.encode_length_delimited(&mut bytes).unwrap();
                }
                Message::binary(bytes)
            }
        };
        self.ws.send(message).await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.unwrap();
    }

    /// The next frame's messages; panics on a close or timeout.
    pub async fn recv(&mut self) -> Vec<client::Reply> {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("read failed");
            match message {
                Message::Text(text) => {
                    assert_eq!(self.format, Format::Json, "text frame to a protobuf client");
                    return text
                        .as_str()
                        .split('\n')
                        .map(|line| serde_json::from_str(line).unwrap())
                        .collect();
                }
                Message::Binary(bytes) => {
                    assert_eq!(
                        self.format,
                        Format::Protobuf,
                        "binary frame to a JSON client"
                    );
                    let mut buffer = bytes;
                    let mut replies = Vec::new();
                    while buffer.has_remaining() {
                        replies.push(client::Reply::decode_length_delimited(&mut buffer).unwrap());
                    }
                    return replies;
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// The next WebSocket message as it came (pings and closes included), or `None` when
    /// nothing arrives within `wait`. Reading also lets tungstenite answer a ping.
    pub async fn raw_frame_within(&mut self, wait: Duration) -> Option<Message> {
        match tokio::time::timeout(wait, self.ws.next()).await {
            Err(_) => None,
            Ok(message) => Some(message.expect("connection ended").expect("read failed")),
        }
    }

    /// The next frame as raw JSON text.
    pub async fn recv_text(&mut self) -> String {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out")
                .expect("connection ended")
                .expect("read failed");
            match message {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Answers a server ping (the empty reply) as SDKs do; true if `reply` was one.
    async fn pong_if_ping(&mut self, reply: &client::Reply) -> bool {
        if *reply != client::Reply::default() {
            return false;
        }
        let pong = match self.format {
            Format::Json => Message::text("{}"),
            Format::Protobuf => Message::binary(vec![0]),
        };
        self.ws.send(pong).await.unwrap();
        true
    }

    /// The next message that is not a ping (pings are answered as SDKs do).
    pub async fn message(&mut self) -> client::Reply {
        tokio::time::timeout(WAIT, self.next_message())
            .await
            .expect("timed out waiting for a message")
    }

    async fn next_message(&mut self) -> client::Reply {
        loop {
            if let Some(reply) = self.pending.pop_front() {
                if !self.pong_if_ping(&reply).await {
                    return reply;
                }
                continue;
            }
            let frame = self.recv().await;
            self.pending.extend(frame);
        }
    }

    /// The reply to command `id`; pushes read meanwhile are kept for [`Client::push`].
    pub async fn reply(&mut self, id: u32) -> client::Reply {
        loop {
            let reply = self.message().await;
            if reply.id == id {
                return reply;
            }
            if reply.push.is_some() {
                self.skipped.push_back(reply);
            }
        }
    }

    /// The next push (kept ones first), skipping replies.
    pub async fn push(&mut self) -> client::Push {
        if let Some(reply) = self.skipped.pop_front() {
            return reply.push.unwrap();
        }
        loop {
            if let Some(push) = self.message().await.push {
                return push;
            }
        }
    }

    /// Pushes kept while waiting for a reply, in arrival order.
    pub fn take_kept(&mut self) -> Vec<client::Push> {
        self.skipped.drain(..).filter_map(|r| r.push).collect()
    }

    /// The next message before `deadline`, if any.
    pub async fn message_before(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<client::Reply> {
        tokio::time::timeout_at(deadline, self.next_message())
            .await
            .ok()
    }

    /// The pushes that arrive within `wait` (kept ones first).
    pub async fn pushes_within(&mut self, wait: Duration) -> Vec<client::Push> {
        let mut pushes: Vec<client::Push> = self.skipped.drain(..).filter_map(|r| r.push).collect();
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(reply) = tokio::time::timeout_at(deadline, self.next_message()).await {
            pushes.extend(reply.push);
        }
        pushes
    }

    /// Sends one command (its id set here) and waits for its reply.
    pub async fn call(&mut self, mut command: client::Command) -> client::Reply {
        let id = self.next_id();
        command.id = id;
        self.send(&[command]).await;
        self.reply(id).await
    }

    pub async fn subscribe_with(&mut self, request: client::SubscribeRequest) -> client::Reply {
        self.call(client::Command {
            subscribe: Some(request),
            ..Default::default()
        })
        .await
    }

    /// Reads until the server's close frame; returns its code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match message {
                Some(Ok(Message::Close(Some(frame)))) => {
                    // Reading on lets tungstenite send its reply to the close, as SDKs do.
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.next()).await;
                    return (u16::from(frame.code), frame.reason.as_str().to_owned());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(error)) => panic!("read error before close: {error}"),
                None => panic!("ended without a close frame"),
            }
        }
    }

    pub async fn connect(&mut self, user: &str) -> client::ConnectResult {
        self.connect_with(client::ConnectRequest {
            token: token(user),
            ..Default::default()
        })
        .await
    }

    pub async fn connect_with(&mut self, request: client::ConnectRequest) -> client::ConnectResult {
        let id = self.next_id();
        self.send(&[client::Command {
            id,
            connect: Some(request),
            ..Default::default()
        }])
        .await;
        let reply = self.reply(id).await;
        reply
            .connect
            .unwrap_or_else(|| panic!("connect refused: {:?}", reply.error))
    }

    pub async fn subscribe(&mut self, channel: &str) -> client::Reply {
        let id = self.next_id();
        self.send(&[client::Command {
            id,
            subscribe: Some(client::SubscribeRequest {
                channel: channel.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }])
        .await;
        self.reply(id).await
    }

    pub async fn publish(&mut self, channel: &str, data: &str) -> client::Reply {
        let id = self.next_id();
        self.send(&[client::Command {
            id,
            publish: Some(client::PublishRequest {
                channel: channel.to_owned(),
                data: Bytes::copy_from_slice(data.as_bytes()),
                ..Default::default()
            }),
            ..Default::default()
        }])
        .await;
        self.reply(id).await
    }
}

/// An HTTP/1.1 request to the edge's address; returns the status code.
pub async fn http_status(addr: SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0; 1024];
    let n = tokio::time::timeout(WAIT, stream.read(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Whether an upgrade with these extra headers is refused, and with which HTTP status.
pub async fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("unexpected error: {other}"),
    }
}
