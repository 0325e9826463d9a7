//! A minimal client of the bidirectional WebSocket protocol, for driving the real server from
//! Rust tests: JSON (text frames, `\n`-separated) or Protobuf (binary frames, varint-length
//! prefixed, `centrifuge-protobuf` subprotocol), built on `spindle_proto`'s generated types.
//!
//! It does what the tests need and nothing clever: one command per frame, replies matched by id,
//! pushes kept in arrival order, server pings answered with a pong (unless
//! [`Client::auto_pong`] is switched off, then they surface as [`Event::Ping`]).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::proto::{
    Command, ConnectRequest, ConnectResult, Publication, PublishRequest, Push, Reply,
    SubscribeRequest, UnsubscribeRequest,
};
use crate::{Error, Format, Result, TIMEOUT};

/// The WebSocket subprotocol that selects Protobuf.
pub const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";

/// How the server ended the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// WebSocket close code (a disconnect code such as 3500, or e.g. 1009).
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

/// Something the server sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A reply or a push (anything but a ping).
    Reply(Box<Reply>),
    /// A server ping (empty reply); only seen with [`Client::auto_pong`] off.
    Ping,
    /// A close frame.
    Closed(CloseInfo),
}

/// One WebSocket connection to the server.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    format: Format,
    next_id: u32,
    inbox: VecDeque<Event>,
    closed: Option<CloseInfo>,
    /// Answer server pings automatically (default true).
    pub auto_pong: bool,
    pings: usize,
}

impl Client {
    /// Opens the WebSocket (no protocol command sent yet). Protobuf is requested with the
    /// `centrifuge-protobuf` subprotocol, as the SDKs do; JSON sends no subprotocol.
    pub async fn open(url: &str, format: Format) -> Result<Client> {
        let mut request = url
            .into_client_request()
            .map_err(|e| Error::new(format!("bad WebSocket URL {url}: {e}")))?;
        if format == Format::Protobuf {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(PROTOBUF_SUBPROTOCOL),
            );
        }
        let (ws, response) =
            tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
                .await
                .map_err(|_| Error::new(format!("WebSocket handshake with {url} timed out")))?
                .map_err(|e| Error::new(format!("WebSocket handshake with {url} failed: {e}")))?;
        if format == Format::Protobuf {
            let agreed = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok());
            if agreed != Some(PROTOBUF_SUBPROTOCOL) {
                return Err(Error::new(format!(
                    "server did not agree to subprotocol {PROTOBUF_SUBPROTOCOL} (got {agreed:?})"
                )));
            }
        }
        Ok(Client {
            ws,
            format,
            next_id: 1,
            inbox: VecDeque::new(),
            closed: None,
            auto_pong: true,
            pings: 0,
        })
    }

    /// Opens the WebSocket and connects with `token`; fails unless the reply is a
    /// `ConnectResult`.
    pub async fn connect(
        url: &str,
        format: Format,
        token: &str,
    ) -> Result<(Client, ConnectResult)> {
        let mut client = Client::open(url, format).await?;
        let result = client.connect_with(token).await?;
        Ok((client, result))
    }

    /// The encoding of this connection.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Server pings seen so far.
    pub fn pings(&self) -> usize {
        self.pings
    }

    /// Sends `connect` with `token` and returns the result (an error reply is an `Err`).
    pub async fn connect_with(&mut self, token: &str) -> Result<ConnectResult> {
        let reply = self.connect_reply(token).await?;
        ok(reply, "connect")?
            .connect
            .ok_or_else(|| Error::new("connect reply without a connect result"))
    }

    /// Sends `connect` with `token` and returns the raw reply (result or error).
    pub async fn connect_reply(&mut self, token: &str) -> Result<Reply> {
        self.request(connect_command(token)).await
    }

    /// Subscribes to `channel`; the raw reply (result or error).
    pub async fn subscribe(&mut self, channel: &str) -> Result<Reply> {
        self.request(subscribe_command(channel)).await
    }

    /// Subscribes to `channel` and requires success.
    pub async fn subscribe_ok(&mut self, channel: &str) -> Result<()> {
        let reply = self.subscribe(channel).await?;
        ok(reply, &format!("subscribe {channel}")).map(drop)
    }

    /// Unsubscribes from `channel` and requires success.
    pub async fn unsubscribe_ok(&mut self, channel: &str) -> Result<()> {
        let reply = self
            .request(Command {
                unsubscribe: Some(UnsubscribeRequest {
                    channel: channel.to_owned(),
                }),
                ..Default::default()
            })
            .await?;
        ok(reply, &format!("unsubscribe {channel}")).map(drop)
    }

    /// Publishes `data` (JSON, sent as its text) into `channel`; the raw reply.
    pub async fn publish(&mut self, channel: &str, data: &Value) -> Result<Reply> {
        self.request(publish_command(channel, data)).await
    }

    /// Sends `command` with the next id and waits ([`TIMEOUT`]) for the reply with that id.
    /// Pushes arriving meanwhile stay queued for [`Client::next_push`]. A close is an `Err`.
    pub async fn request(&mut self, mut command: Command) -> Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        command.id = id;
        self.send(&command).await?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        // Replies with our id are taken out of the inbox; the rest stays in order.
        loop {
            if let Some(pos) = self
                .inbox
                .iter()
                .position(|e| matches!(e, Event::Reply(r) if r.id == id))
                && let Some(Event::Reply(reply)) = self.inbox.remove(pos)
            {
                return Ok(*reply);
            }
            if let Some(close) = self.inbox.iter().find_map(|e| match e {
                Event::Closed(c) => Some(c.clone()),
                _ => None,
            }) {
                return Err(Error::new(format!(
                    "connection closed ({} {:?}) while waiting for the reply to command {id}",
                    close.code, close.reason
                )));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Error::new(format!(
                    "no reply to command {id} ({command:?}) within {TIMEOUT:?}"
                )));
            }
            let event = self.read_event(left).await?;
            self.inbox.push_back(event);
        }
    }

    /// Sends one command in its own frame.
    pub async fn send(&mut self, command: &Command) -> Result<()> {
        let frame = encode_commands(self.format, std::slice::from_ref(command))?;
        self.send_raw(frame).await
    }

    /// Sends several commands in one frame.
    pub async fn send_batch(&mut self, commands: &[Command]) -> Result<()> {
        let frame = encode_commands(self.format, commands)?;
        self.send_raw(frame).await
    }

    /// Sends a pong (an empty command: `{}` / a single `0x00` byte).
    pub async fn send_pong(&mut self) -> Result<()> {
        let frame = match self.format {
            Format::Json => Message::text("{}"),
            Format::Protobuf => Message::binary(vec![0u8]),
        };
        self.send_raw(frame).await
    }

    /// Sends any WebSocket message as is.
    pub async fn send_raw(&mut self, message: Message) -> Result<()> {
        self.ws
            .send(message)
            .await
            .map_err(|e| Error::new(format!("WebSocket send failed: {e}")))
    }

    /// The next event within `timeout` (queued ones first). Pings are answered and skipped
    /// while [`Client::auto_pong`] is on.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Event> {
        if let Some(event) = self.inbox.pop_front() {
            return Ok(event);
        }
        self.read_event(timeout).await
    }

    /// The next push within `timeout`; a reply, a close or silence is an `Err`.
    pub async fn next_push(&mut self, timeout: Duration) -> Result<Push> {
        loop {
            match self.next_event(timeout).await? {
                Event::Reply(reply) if reply.id == 0 && reply.push.is_some() => {
                    if let Some(push) = reply.push {
                        return Ok(push);
                    }
                }
                Event::Reply(reply) => {
                    return Err(Error::new(format!("expected a push, got reply {reply:?}")));
                }
                Event::Ping => continue,
                Event::Closed(close) => {
                    return Err(Error::new(format!(
                        "expected a push, the connection was closed with {} {:?}",
                        close.code, close.reason
                    )));
                }
            }
        }
    }

    /// The next push, required to be a publication in `channel`.
    pub async fn next_publication(&mut self, channel: &str) -> Result<Publication> {
        let push = self.next_push(TIMEOUT).await?;
        match push {
            Push {
                channel: ref c,
                r#pub: Some(ref publication),
                ..
            } if c == channel => Ok(publication.clone()),
            other => Err(Error::new(format!(
                "expected a publication in {channel}, got push {other:?}"
            ))),
        }
    }

    /// Succeeds if no push or reply arrives within `quiet` (pings are fine).
    pub async fn expect_silence(&mut self, quiet: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.next_event(left).await {
                Err(e) if e.0.starts_with(SILENCE) => return Ok(()),
                Err(e) => return Err(e),
                Ok(Event::Ping) => continue,
                Ok(other) => {
                    return Err(Error::new(format!(
                        "expected nothing within {quiet:?}, got {other:?}"
                    )));
                }
            }
        }
    }

    /// Reads until the server's close frame (within `timeout`), skipping replies and pushes.
    pub async fn expect_close(&mut self, timeout: Duration) -> Result<CloseInfo> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Error::new(format!("no close frame within {timeout:?}")));
            }
            match self.next_event(left).await {
                Ok(Event::Closed(close)) => return Ok(close),
                Ok(_) => continue,
                Err(e) if e.0.starts_with(SILENCE) => {
                    return Err(Error::new(format!("no close frame within {timeout:?}")));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Closes the connection from our side (normal closure), ignoring errors.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }

    async fn read_event(&mut self, timeout: Duration) -> Result<Event> {
        if let Some(close) = &self.closed {
            return Err(Error::new(format!(
                "connection already closed ({} {:?})",
                close.code, close.reason
            )));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Err(Error::new(format!("{SILENCE} {timeout:?}"))),
                Ok(None) => {
                    return Err(Error::new(
                        "the connection ended without a close frame".to_string(),
                    ));
                }
                Ok(Some(Err(e))) => {
                    return Err(Error::new(format!(
                        "the connection failed without a close frame: {e}"
                    )));
                }
                Ok(Some(Ok(message))) => message,
            };
            let replies = match message {
                Message::Text(text) => {
                    if self.format != Format::Json {
                        return Err(Error::new(format!(
                            "text frame on a Protobuf connection: {:?}",
                            text.as_str()
                        )));
                    }
                    decode_json_frame(text.as_str())?
                }
                Message::Binary(data) => {
                    if self.format != Format::Protobuf {
                        return Err(Error::new(format!(
                            "binary frame on a JSON connection: {data:?}"
                        )));
                    }
                    decode_protobuf_frame(&data)?
                }
                Message::Close(frame) => {
                    let close = match frame {
                        Some(frame) => CloseInfo {
                            code: frame.code.into(),
                            reason: frame.reason.as_str().to_owned(),
                        },
                        None => CloseInfo {
                            code: 1005,
                            reason: String::new(),
                        },
                    };
                    self.closed = Some(close.clone());
                    return Ok(Event::Closed(close));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let mut first = None;
            for reply in replies {
                let event = if reply == Reply::default() {
                    self.pings += 1;
                    if self.auto_pong {
                        self.send_pong().await?;
                        continue;
                    }
                    Event::Ping
                } else {
                    Event::Reply(Box::new(reply))
                };
                if first.is_none() {
                    first = Some(event);
                } else {
                    self.inbox.push_back(event);
                }
            }
            if let Some(event) = first {
                return Ok(event);
            }
        }
    }
}

/// Prefix of the error [`Client::next_event`] returns on silence.
pub(crate) const SILENCE: &str = "nothing received within";

/// A `connect` command (id 0: [`Client::request`] assigns one; set it yourself for
/// [`Client::send`]).
pub fn connect_command(token: &str) -> Command {
    Command {
        connect: Some(ConnectRequest {
            token: token.to_owned(),
            name: "spindle-tests".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A `subscribe` command for `channel` (id 0).
pub fn subscribe_command(channel: &str) -> Command {
    Command {
        subscribe: Some(SubscribeRequest {
            channel: channel.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A `publish` command of `data` (its JSON text) into `channel` (id 0).
pub fn publish_command(channel: &str, data: &Value) -> Command {
    Command {
        publish: Some(PublishRequest {
            channel: channel.to_owned(),
            data: Bytes::from(data.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Requires `reply` not to be an error reply.
pub fn ok(reply: Reply, what: &str) -> Result<Reply> {
    match &reply.error {
        Some(error) => Err(Error::new(format!(
            "{what}: error reply {} {:?}",
            error.code, error.message
        ))),
        None => Ok(reply),
    }
}

/// One frame holding `commands` in `format`.
pub fn encode_commands(format: Format, commands: &[Command]) -> Result<Message> {
    match format {
        Format::Json => {
            let mut lines = Vec::with_capacity(commands.len());
            for command in commands {
                lines.push(
                    serde_json::to_string(command)
                        .map_err(|e| Error::new(format!("encoding {command:?}: {e}")))?,
                );
            }
            Ok(Message::text(lines.join("\n")))
        }
        Format::Protobuf => {
            let mut out = Vec::new();
            for command in commands {
                command
                    .encode_length_delimited(&mut out)
                    .map_err(|e| Error::new(format!("encoding {command:?}: {e}")))?;
            }
            Ok(Message::binary(out))
        }
    }
}

/// The replies in a JSON frame (`\n`-separated).
pub fn decode_json_frame(text: &str) -> Result<Vec<Reply>> {
    text.split('\n')
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Reply>(line)
                .map_err(|e| Error::new(format!("server sent invalid JSON reply {line:?}: {e}")))
        })
        .collect()
}

/// The replies in a Protobuf frame (each varint-length prefixed).
pub fn decode_protobuf_frame(mut data: &[u8]) -> Result<Vec<Reply>> {
    let whole = data;
    let mut replies = Vec::new();
    while !data.is_empty() {
        let reply = Reply::decode_length_delimited(&mut data).map_err(|e| {
            Error::new(format!(
                "server sent an invalid Protobuf frame {whole:?}: {e}"
            ))
        })?;
        replies.push(reply);
    }
    Ok(replies)
}

/// A payload (`data`, `info`, …) as JSON: both encodings carry the JSON text the publisher gave.
pub fn payload_json(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(format!(
            "payload is not JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_both_formats() {
        let commands = vec![
            Command {
                id: 1,
                subscribe: Some(SubscribeRequest {
                    channel: "chat:a".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Command::default(),
        ];
        match encode_commands(Format::Json, &commands).unwrap() {
            Message::Text(text) => {
                assert_eq!(
                    text.as_str(),
                    "{\"id\":1,\"subscribe\":{\"channel\":\"chat:a\"}}\n{}"
                )
            }
            other => panic!("{other:?}"),
        }
        match encode_commands(Format::Protobuf, &commands).unwrap() {
            Message::Binary(data) => assert_eq!(data.last(), Some(&0u8)),
            other => panic!("{other:?}"),
        }
        let replies = decode_json_frame("{\"id\":1,\"subscribe\":{}}\n{}").unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[1], Reply::default());
        let mut bin = Vec::new();
        Reply {
            id: 3,
            ..Default::default()
        }
        .encode_length_delimited(&mut bin)
        .unwrap();
        bin.push(0);
        let replies = decode_protobuf_frame(&bin).unwrap();
        assert_eq!(replies.len(), 2);
        assert_eq!(replies[0].id, 3);
        assert!(decode_protobuf_frame(&[5, 1]).is_err());
    }
}
