//! Bidirectional emulation transports (docs/protocol.md §1.4–§1.6): HTTP-streaming (JSON and
//! Protobuf) and SSE, with `/emulation` carrying the commands after connect. A small streaming
//! HTTP/1.1 reader follows the chunked response as it arrives.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use spindle_proto::client::{Command, Push, Reply};
use spindle_tests::client::{
    connect_command, decode_json_frame, decode_protobuf_frame, encode_commands, payload_json,
    subscribe_command,
};
use spindle_tests::{Format, OrFail, Result, TIMEOUT, fixture, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::start;

/// How the streamed body is framed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    HttpStream(Format),
    Sse,
    /// `uni_http_stream`: bare pushes, one JSON per line.
    UniHttp,
    /// `uni_sse`: bare pushes as SSE events.
    UniSse,
}

/// An open streamed response.
pub struct Streamed {
    kind: Kind,
    socket: TcpStream,
    pub status: u16,
    headers: Vec<(String, String)>,
    /// Raw bytes after the head, not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet parsed into messages.
    pub body: Vec<u8>,
    ended: bool,
}

impl Streamed {
    pub async fn open(
        addr: SocketAddr,
        kind: Kind,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Streamed {
        let mut socket = TcpStream::connect(addr).await.or_fail_io();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        socket.write_all(&out).await.or_fail_io();
        let mut raw = Vec::new();
        let end = loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(TIMEOUT, socket.read(&mut buf))
                .await
                .expect("response head in time")
                .or_fail_io();
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let raw = raw[end + 4..].to_vec();
        Streamed {
            kind,
            socket,
            status,
            headers,
            raw,
            body: Vec::new(),
            ended: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Moves complete chunks from `raw` into `body`.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("chunk size");
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let start = line_end + 2;
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// Reads more of the response; false once it has ended.
    pub async fn fill(&mut self, timeout: Duration) -> Result<bool> {
        let before = self.body.len();
        self.dechunk();
        if self.body.len() > before {
            return Ok(true);
        }
        if self.ended {
            return Ok(false);
        }
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(timeout, self.socket.read(&mut buf))
            .await
            .map_err(|_| spindle_tests::Error::new("no data from the stream in time"))?
            .map_err(|e| spindle_tests::Error::new(format!("read: {e}")))?;
        if n == 0 {
            self.ended = true;
            return Ok(false);
        }
        self.raw.extend_from_slice(&buf[..n]);
        self.dechunk();
        Ok(true)
    }

    /// One complete message of the body, if buffered.
    fn take_message(&mut self) -> Option<Vec<u8>> {
        match self.kind {
            Kind::HttpStream(Format::Json) | Kind::UniHttp => {
                let end = self.body.iter().position(|b| *b == b'\n')?;
                let line: Vec<u8> = self.body.drain(..=end).collect();
                Some(line[..line.len() - 1].to_vec())
            }
            Kind::HttpStream(Format::Protobuf) => {
                let (mut length, mut shift, mut used) = (0usize, 0, 0);
                loop {
                    let byte = *self.body.get(used)?;
                    used += 1;
                    length |= usize::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 {
                        break;
                    }
                }
                if self.body.len() < used + length {
                    return None;
                }
                Some(self.body.drain(..used + length).collect())
            }
            Kind::Sse | Kind::UniSse => {
                let end = self.body.windows(2).position(|w| w == b"\n\n")?;
                let event: Vec<u8> = self.body.drain(..end + 2).collect();
                let text = String::from_utf8(event[..end].to_vec()).expect("UTF-8 event");
                let data = text
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("SSE event without data: {text:?}"));
                Some(data.as_bytes().to_vec())
            }
        }
    }

    /// The next reply or push (pings skipped); `None` once the stream ended.
    async fn next(&mut self) -> Option<Reply> {
        loop {
            while let Some(message) = self.take_message() {
                let reply = match self.kind {
                    Kind::HttpStream(Format::Protobuf) => {
                        decode_protobuf_frame(&message).or_fail().remove(0)
                    }
                    _ => {
                        let text = String::from_utf8(message).expect("UTF-8 JSON");
                        decode_json_frame(&text).or_fail().remove(0)
                    }
                };
                if reply == Reply::default() {
                    continue;
                }
                return Some(reply);
            }
            if !self.fill(TIMEOUT).await.or_fail() {
                return None;
            }
        }
    }

    /// The next JSON message (uni pushes), the empty ping push skipped; `None` at the end.
    pub async fn next_json(&mut self) -> Option<serde_json::Value> {
        loop {
            while let Some(message) = self.take_message() {
                let value: serde_json::Value = serde_json::from_slice(&message)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {message:?}"));
                if value != json!({}) {
                    return Some(value);
                }
            }
            if !self.fill(TIMEOUT).await.or_fail() {
                return None;
            }
        }
    }

    pub(crate) async fn next_reply(&mut self) -> Reply {
        self.next()
            .await
            .expect("a message before the end of the stream")
    }

    pub(crate) async fn next_push(&mut self) -> Push {
        let reply = self.next_reply().await;
        match reply.push {
            Some(push) => push,
            None => panic!("want a push, got {reply:?}"),
        }
    }
}

trait OrFailIo<T> {
    fn or_fail_io(self) -> T;
}

impl<T> OrFailIo<T> for std::io::Result<T> {
    fn or_fail_io(self) -> T {
        self.unwrap_or_else(|e| panic!("io: {e}"))
    }
}

pub(crate) fn command_bytes(format: Format, commands: &[Command]) -> Vec<u8> {
    encode_commands(format, commands)
        .or_fail()
        .into_data()
        .to_vec()
}

pub(crate) fn with_id(id: u32, mut command: Command) -> Command {
    command.id = id;
    command
}

/// Sends `commands` through `/emulation` for `session` on `node`; returns the status.
pub(crate) async fn emulate(
    addr: SocketAddr,
    format: Format,
    node: &str,
    session: &str,
    commands: &[Command],
) -> u16 {
    let data = command_bytes(format, commands);
    let response = match format {
        Format::Json => {
            let body = json!({
                "node": node,
                "session": session,
                "data": String::from_utf8(data).expect("JSON frame is UTF-8"),
            });
            http::post_json(addr, "/emulation", &[], &body)
                .await
                .or_fail()
        }
        Format::Protobuf => {
            use prost::Message as _;
            let request = spindle_proto::client::EmulationRequest {
                node: node.to_owned(),
                session: session.to_owned(),
                data: Bytes::from(data),
            };
            http::request(
                addr,
                "POST",
                "/emulation",
                &[("Content-Type", "application/octet-stream")],
                &request.encode_to_vec(),
            )
            .await
            .or_fail()
        }
    };
    response.status
}

/// Connects over `kind`, subscribes through `/emulation`, receives an API publication, then
/// an API disconnect as a disconnect push followed by the end of the stream.
async fn round_trip(kind: Kind) {
    let server = start().await;
    let addr = server.addr();
    let user = fixture::unique("emu");
    let connect = with_id(1, connect_command(&fixture::token(&user)));
    let (format, mut stream) = match kind {
        Kind::HttpStream(format) => {
            let content_type = match format {
                Format::Json => "application/json",
                Format::Protobuf => "application/octet-stream",
            };
            let body = command_bytes(format, &[connect]);
            let stream = Streamed::open(
                addr,
                kind,
                "POST",
                "/connection/http_stream",
                &[("Content-Type", content_type)],
                &body,
            )
            .await;
            (format, stream)
        }
        Kind::UniHttp | Kind::UniSse => unreachable!("round_trip is bidirectional"),
        Kind::Sse => {
            let frame = String::from_utf8(command_bytes(Format::Json, &[connect])).expect("UTF-8");
            let query: String = frame.bytes().map(|b| format!("%{b:02X}")).collect();
            let stream = Streamed::open(
                addr,
                kind,
                "GET",
                &format!("/connection/sse?cf_connect={query}"),
                &[],
                b"",
            )
            .await;
            (Format::Json, stream)
        }
    };
    assert_eq!(stream.status, 200, "{:?}", stream.headers);
    assert_eq!(
        stream.header("cache-control"),
        Some("private, no-cache, no-store, must-revalidate, max-age=0")
    );
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    if kind == Kind::Sse {
        assert_eq!(
            stream.header("content-type"),
            Some("text/event-stream; charset=utf-8")
        );
        while stream.body.len() < 2 {
            assert!(stream.fill(TIMEOUT).await.or_fail(), "stream ended early");
        }
        assert_eq!(&stream.body[..2], b"\r\n");
        stream.body.drain(..2);
    }

    let reply = stream.next_reply().await;
    assert_eq!(reply.id, 1, "{reply:?}");
    let result = reply.connect.unwrap_or_else(|| panic!("connect result"));
    assert!(!result.session.is_empty(), "session in {result:?}");
    assert!(!result.node.is_empty(), "node in {result:?}");

    let channel = fixture::unique("chat:emu");
    let status = emulate(
        addr,
        format,
        &result.node,
        &result.session,
        &[with_id(2, subscribe_command(&channel))],
    )
    .await;
    assert_eq!(status, 204);
    let reply = stream.next_reply().await;
    assert_eq!(reply.id, 2, "{reply:?}");
    assert!(
        reply.error.is_none() && reply.subscribe.is_some(),
        "{reply:?}"
    );

    server
        .publish(&channel, json!({"via": "api"}))
        .await
        .or_fail();
    let push = stream.next_push().await;
    assert_eq!(push.channel, channel);
    let publication = push.r#pub.expect("publication push");
    assert_eq!(
        payload_json(&publication.data).or_fail(),
        json!({"via": "api"})
    );

    server
        .api_ok("disconnect", json!({"user": user}))
        .await
        .or_fail();
    let push = stream.next_push().await;
    let disconnect = push.disconnect.expect("disconnect push");
    assert_eq!(disconnect.code, 3503, "{disconnect:?}");
    assert!(
        stream.next().await.is_none(),
        "the stream ends after the disconnect"
    );
}

#[tokio::test]
async fn http_stream_json() {
    round_trip(Kind::HttpStream(Format::Json)).await;
}

#[tokio::test]
async fn http_stream_protobuf() {
    round_trip(Kind::HttpStream(Format::Protobuf)).await;
}

#[tokio::test]
async fn sse() {
    round_trip(Kind::Sse).await;
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let server = start().await;
    let addr = server.addr();
    let get = http::get(addr, "/connection/http_stream").await.or_fail();
    assert_eq!(get.status, 405);
    let preflight = http::request(
        addr,
        "OPTIONS",
        "/connection/http_stream",
        &[("Origin", "http://evil.example")],
        b"",
    )
    .await
    .or_fail();
    assert_eq!(
        preflight.status, 403,
        "origin not in client.allowed_origins"
    );
    let preflight = http::request(addr, "OPTIONS", "/connection/http_stream", &[], b"")
        .await
        .or_fail();
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-max-age"), Some("300"));
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    let big = vec![b' '; 70_000];
    for path in ["/connection/http_stream", "/connection/sse", "/emulation"] {
        let response = http::request(addr, "POST", path, &[], &big).await.or_fail();
        assert_eq!(response.status, 413, "{path}");
    }
    let missing = http::get(addr, "/connection/sse").await.or_fail();
    assert_eq!(missing.status, 400);

    for body in [&b"not json"[..], b"{\"data\":{}}", b""] {
        let response = http::request(addr, "POST", "/emulation", &[], body)
            .await
            .or_fail();
        assert_eq!(response.status, 400, "{body:?}");
    }
    let garbage = http::request(
        addr,
        "POST",
        "/emulation",
        &[("Content-Type", "application/octet-stream")],
        &[0xff, 0xff, 0xff],
    )
    .await
    .or_fail();
    assert_eq!(garbage.status, 400);
    let foreign = json!({"node": "elsewhere", "session": "s", "data": "{}"});
    let response = http::post_json(addr, "/emulation", &[], &foreign)
        .await
        .or_fail();
    assert_eq!(response.status, 404);

    // A malformed command frame on the stream: a 3501 disconnect push, then the end.
    let mut stream = Streamed::open(
        addr,
        Kind::HttpStream(Format::Json),
        "POST",
        "/connection/http_stream",
        &[],
        b"{{{",
    )
    .await;
    assert_eq!(stream.status, 200);
    let push = stream.next_push().await;
    assert_eq!(push.disconnect.expect("disconnect").code, 3501);
    assert!(stream.next().await.is_none());
    assert_eq!(
        server.get("/health").await.or_fail().status,
        200,
        "server still up"
    );
}

#[tokio::test]
async fn unknown_session_is_dropped_silently() {
    let server = start().await;
    let addr = server.addr();
    // Learn this node's id from a real connection, then name a session that does not exist.
    let body = command_bytes(
        Format::Json,
        &[with_id(1, connect_command(&fixture::token("ghost")))],
    );
    let mut stream = Streamed::open(
        addr,
        Kind::HttpStream(Format::Json),
        "POST",
        "/connection/http_stream",
        &[],
        &body,
    )
    .await;
    let node = stream.next_reply().await.connect.expect("connect").node;
    let request = json!({"node": node, "session": "no-such-session", "data": "{}"});
    let response = http::post_json(addr, "/emulation", &[], &request)
        .await
        .or_fail();
    assert_eq!(response.status, 204);
}

#[tokio::test]
async fn init_endpoint() {
    let server = spindle_tests::Server::start_patched(json!({"init": {"enabled": true}}))
        .await
        .or_fail();
    let response = server.get("/connection/init").await.or_fail();
    assert_eq!(response.status, 200);
    assert_eq!(response.json().or_fail(), json!({}));
}

#[tokio::test]
async fn cors_follows_allowed_origins() {
    let server = spindle_tests::Server::start_patched(
        json!({"client": {"allowed_origins": ["http://app.example"]}}),
    )
    .await
    .or_fail();
    let addr = server.addr();
    for path in ["/connection/http_stream", "/connection/sse", "/emulation"] {
        let allowed = http::request(
            addr,
            "OPTIONS",
            path,
            &[
                ("Origin", "http://app.example"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        )
        .await
        .or_fail();
        assert_eq!(allowed.status, 204, "{path}");
        assert_eq!(
            allowed.header("access-control-allow-origin"),
            Some("http://app.example"),
            "{path}"
        );
        assert_eq!(
            allowed.header("access-control-allow-headers"),
            Some("content-type")
        );
        let refused = http::request(
            addr,
            "POST",
            path,
            &[("Origin", "http://evil.example")],
            b"{}",
        )
        .await
        .or_fail();
        assert_eq!(refused.status, 403, "{path}");
    }
}
