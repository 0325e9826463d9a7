//! WebTransport (docs/protocol.md §1.8) against the real binary: a wtransport client pinned to the
//! hash of a self-signed ECDSA P-256 certificate (14 days, written to a temp dir as PEM files
//! that `http_server.tls` names) opens `/connection/webtransport` on the main port's UDP twin,
//! speaks the protocol over one bidirectional stream (JSON lines or varint-prefixed Protobuf
//! by `cf_protocol`), receives API publications, and is disconnected with a Disconnect push for
//! an oversize message and on API disconnect. The API is reached on a plain internal port
//! (`internal_port` + `tls_external`), since the main port speaks HTTPS.

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::{Buf, BytesMut};
use prost::Message as _;
use serde_json::{Value, json};
use spindle_tests::client::{connect_command, encode_commands, payload_json, subscribe_command};
use spindle_tests::proto::{Command, Reply};
use spindle_tests::server::free_port;
use spindle_tests::tungstenite::Message;
use spindle_tests::{Format, OrFail, Server, ServerOptions, TIMEOUT, fixture, h3_status, http};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Endpoint, Identity, RecvStream, SendStream};

/// `webtransport.message_size_limit` in these tests.
const LIMIT: usize = 4096;

/// A certificate and key on disk, removed on drop, and the certificate's SHA-256 hash.
pub struct TlsFiles {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub hash: Sha256Digest,
    /// The certificate itself (DER), for clients that pin it.
    pub der: Vec<u8>,
}

impl TlsFiles {
    /// A fresh self-signed identity for `localhost` / `127.0.0.1` (ECDSA P-256, 14 days: what
    /// browsers accept for `serverCertificateHashes`).
    pub fn generate() -> TlsFiles {
        let identity = Identity::self_signed(["localhost", "127.0.0.1"]).expect("self-signed");
        let dir = std::env::temp_dir().join(fixture::unique("spindle-wt-tls"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let certificate = &identity.certificate_chain().as_slice()[0];
        std::fs::write(&cert, certificate.to_pem()).expect("write cert");
        std::fs::write(&key, identity.private_key().to_secret_pem()).expect("write key");
        TlsFiles {
            dir,
            cert,
            key,
            hash: certificate.hash(),
            der: certificate.der().to_vec(),
        }
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server with WebTransport on, and where its plain internal endpoints (the API) are.
async fn start(tls: &TlsFiles) -> (Server, SocketAddr) {
    start_with_client(tls, json!({})).await
}

/// As [`start`], with `client` as the config's `client` section.
async fn start_with_client(tls: &TlsFiles, client: Value) -> (Server, SocketAddr) {
    let internal = free_port().or_fail();
    let patch = json!({
        "http_server": {
            "tls": {"enabled": true, "cert_pem": tls.cert, "key_pem": tls.key},
            "http3": {"enabled": true},
            "internal_port": internal,
            "tls_external": true
        },
        "webtransport": {"enabled": true, "message_size_limit": LIMIT},
        "client": client
    });
    let server = Server::start_with(ServerOptions::patched(patch))
        .await
        .or_fail();
    let internal = SocketAddr::new(server.addr().ip(), internal);
    (server, internal)
}

async fn api(internal: SocketAddr, method: &str, body: Value) -> Value {
    let key = fixture::api_key();
    let response = http::post_json(
        internal,
        &format!("/api/{method}"),
        &[("X-API-Key", key.as_str())],
        &body,
    )
    .await
    .or_fail();
    assert_eq!(response.status, 200, "API {method}: {}", response.text());
    let reply = response.json().or_fail();
    assert!(reply.get("error").is_none(), "API {method}: {reply}");
    reply
}

/// One WebTransport session with its one bidirectional stream.
struct Session {
    format: Format,
    send: SendStream,
    recv: RecvStream,
    buffer: BytesMut,
    next_id: u32,
    _endpoint: Endpoint<wtransport::endpoint::endpoint_side::Client>,
    _connection: wtransport::Connection,
}

impl Session {
    async fn open(server: &Server, tls: &TlsFiles, format: Format) -> Session {
        let config = ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes([tls.hash.clone()])
            .build();
        let endpoint = Endpoint::client(config).expect("client endpoint");
        let mut url = format!(
            "https://127.0.0.1:{}/connection/webtransport",
            server.addr().port()
        );
        if format == Format::Protobuf {
            url.push_str("?cf_protocol=protobuf");
        }
        let connection = tokio::time::timeout(TIMEOUT, endpoint.connect(&url))
            .await
            .expect("session within the timeout")
            .unwrap_or_else(|e| panic!("connect {url}: {e}\n{}", server.stderr()));
        let (send, recv) = connection
            .open_bi()
            .await
            .expect("open stream")
            .await
            .expect("stream opened");
        Session {
            format,
            send,
            recv,
            buffer: BytesMut::new(),
            next_id: 0,
            _endpoint: endpoint,
            _connection: connection,
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("write");
    }

    async fn send(&mut self, mut command: Command) -> u32 {
        self.next_id += 1;
        command.id = self.next_id;
        let bytes = match encode_commands(self.format, &[command]).or_fail() {
            Message::Text(text) => format!("{text}\n").into_bytes(),
            Message::Binary(bytes) => bytes.to_vec(),
            other => panic!("unexpected frame {other:?}"),
        };
        self.write_raw(&bytes).await;
        self.next_id
    }

    /// The next reply or push (pings skipped), or `None` when the stream ended.
    async fn next(&mut self) -> Option<Reply> {
        loop {
            if let Some(reply) = self.take_message() {
                if reply == Reply::default() {
                    continue;
                }
                return Some(reply);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(TIMEOUT, self.recv.read(&mut chunk))
                .await
                .expect("a message within the timeout");
            match read {
                Ok(Some(count)) => self.buffer.extend_from_slice(&chunk[..count]),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn take_message(&mut self) -> Option<Reply> {
        match self.format {
            Format::Json => {
                let at = self.buffer.iter().position(|b| *b == b'\n')?;
                let line = self.buffer.split_to(at + 1);
                let text = std::str::from_utf8(&line[..at]).expect("UTF-8 line");
                Some(serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}")))
            }
            Format::Protobuf => {
                let mut view = &self.buffer[..];
                let length = prost::encoding::decode_varint(&mut view).ok()? as usize;
                let prefix = self.buffer.len() - view.len();
                if view.len() < length {
                    return None;
                }
                self.buffer.advance(prefix);
                let message = self.buffer.split_to(length);
                Some(Reply::decode(&message[..]).expect("Protobuf reply"))
            }
        }
    }

    /// The reply to command `id` (pushes before it are returned too).
    async fn reply(&mut self, id: u32) -> (Reply, Vec<Reply>) {
        let mut pushes = Vec::new();
        loop {
            let reply = self.next().await.expect("reply before the stream ended");
            if reply.id == id {
                assert!(reply.error.is_none(), "error reply {reply:?}");
                return (reply, pushes);
            }
            pushes.push(reply);
        }
    }

    /// Reads until a Disconnect push; returns its code and reason.
    async fn disconnect(&mut self) -> (u32, String) {
        loop {
            let reply = self.next().await.expect("disconnect push before the end");
            if let Some(disconnect) = reply.push.and_then(|push| push.disconnect) {
                return (disconnect.code, disconnect.reason);
            }
        }
    }
}

async fn receives_and_is_disconnected(format: Format) {
    let tls = TlsFiles::generate();
    let (server, internal) = start(&tls).await;
    let user = fixture::unique("wt");
    let channel = fixture::unique("chat:wt");
    let mut session = Session::open(&server, &tls, format).await;

    let id = session.send(connect_command(&fixture::token(&user))).await;
    let (reply, _) = session.reply(id).await;
    let connect = reply.connect.expect("connect result");
    assert!(!connect.client.is_empty());

    let id = session.send(subscribe_command(&channel)).await;
    session.reply(id).await;

    api(
        internal,
        "publish",
        json!({"channel": channel, "data": {"n": 1}}),
    )
    .await;
    let publication = loop {
        let reply = session.next().await.expect("publication push");
        if let Some(publication) = reply.push.and_then(|push| push.r#pub) {
            break publication;
        }
    };
    assert_eq!(payload_json(&publication.data).or_fail(), json!({"n": 1}));

    api(internal, "disconnect", json!({"user": user})).await;
    let (code, reason) = session.disconnect().await;
    assert_eq!(code, 3503, "{reason}");
    assert!(session.next().await.is_none(), "stream ends after the push");
}

async fn oversize_message_disconnects(format: Format) {
    let tls = TlsFiles::generate();
    let (server, _internal) = start(&tls).await;
    let mut session = Session::open(&server, &tls, format).await;
    let id = session
        .send(connect_command(&fixture::token(&fixture::unique("wt"))))
        .await;
    session.reply(id).await;

    // One message just over the limit: a JSON line, or a Protobuf length prefix announcing it.
    let big = vec![b'a'; LIMIT + 1];
    match format {
        Format::Json => {
            let mut line = big;
            line.push(b'\n');
            session.write_raw(&line).await;
        }
        Format::Protobuf => {
            let mut framed = Vec::new();
            prost::encoding::encode_varint(big.len() as u64, &mut framed);
            framed.extend_from_slice(&big);
            session.write_raw(&framed).await;
        }
    }
    let (code, reason) = session.disconnect().await;
    assert_eq!((code, reason.as_str()), (1009, "message size limit"));
    assert!(session.next().await.is_none(), "stream ends after the push");
}

both_formats!(receives_and_is_disconnected, oversize_message_disconnects);

/// The status of an extended CONNECT to `path` with `headers` (wtransport's own client hides
/// it: every refusal is one `SessionRejected`).
async fn status_of(server: &Server, tls: &TlsFiles, path: &str, headers: &[(&str, &str)]) -> u16 {
    let url = format!("https://127.0.0.1:{}{path}", server.addr().port());
    h3_status::webtransport_status(server.addr(), &url, headers, &tls.der)
        .await
        .or_fail()
}

#[tokio::test]
async fn other_paths_are_not_found() {
    let tls = TlsFiles::generate();
    let (server, _internal) = start(&tls).await;
    assert_eq!(status_of(&server, &tls, "/connection/nope", &[]).await, 404);
    // The probe client gets a session where one is served.
    assert_eq!(
        status_of(&server, &tls, "/connection/webtransport", &[]).await,
        200
    );
}

/// `client.allowed_origins` applies to WebTransport sessions as to WebSocket upgrades: 403.
#[tokio::test]
async fn a_foreign_origin_is_forbidden() {
    let tls = TlsFiles::generate();
    let client = json!({"allowed_origins": ["https://app.example"]});
    let (server, _internal) = start_with_client(&tls, client).await;
    let path = "/connection/webtransport";
    assert_eq!(
        status_of(&server, &tls, path, &[("origin", "https://evil.example")]).await,
        403
    );
    assert_eq!(
        status_of(&server, &tls, path, &[("origin", "https://app.example")]).await,
        200
    );
}

/// At `client.connection_limit` a new session is refused with 429 before it opens.
#[tokio::test]
async fn sessions_over_the_connection_limit_are_refused_with_429() {
    let tls = TlsFiles::generate();
    let (server, _internal) = start_with_client(&tls, json!({"connection_limit": 1})).await;
    let mut first = Session::open(&server, &tls, Format::Json).await;
    let id = first.send(connect_command(&fixture::token("first"))).await;
    let (connected, _) = first.reply(id).await;
    assert!(connected.connect.is_some(), "{connected:?}");
    assert_eq!(
        status_of(&server, &tls, "/connection/webtransport", &[]).await,
        429
    );
}

#[tokio::test]
async fn needs_tls_and_http3() {
    for (patch, expected) in [
        (
            json!({"webtransport": {"enabled": true}}),
            "webtransport.enabled: needs http_server.http3.enabled",
        ),
        (
            json!({"webtransport": {"enabled": true}, "http_server": {"http3": {"enabled": true}}}),
            "http_server.http3.enabled: needs http_server.tls enabled",
        ),
    ] {
        let Err(error) = Server::start_with(ServerOptions::patched(patch)).await else {
            panic!("started without {expected:?}");
        };
        assert!(error.0.contains(expected), "{}", error.0);
    }
}

#[tokio::test]
async fn shutdown_sends_the_disconnect_push() {
    let tls = TlsFiles::generate();
    let (server, _internal) = start(&tls).await;
    let mut session = Session::open(&server, &tls, Format::Json).await;
    let id = session
        .send(connect_command(&fixture::token(&fixture::unique("wt"))))
        .await;
    session.reply(id).await;
    server.terminate().await.or_fail();
    let (code, reason) = session.disconnect().await;
    assert_eq!((code, reason.as_str()), (3001, "shutdown"));
    assert!(session.next().await.is_none(), "stream ends after the push");
}
