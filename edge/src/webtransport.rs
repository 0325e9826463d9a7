//! WebTransport (docs/protocol.md §1.8) over HTTP/3 with wtransport: `webtransport.handler_prefix`
//! (default `/connection/webtransport`) on the main port's UDP twin, TLS required.
//!
//! A session request with another path gets 404, a refused `Origin` 403, a node at its
//! connection limit, over its connection rate or shutting down 429 (HTTP/3 session refusals
//! wtransport can send are 403, 404 and 429; 503 is not among them). The encoding is Protobuf
//! when the query has `cf_protocol=protobuf`, JSON otherwise, as centrifuge-js asks.
//!
//! The client opens ONE bidirectional stream and speaks the protocol over it as a byte stream:
//! JSON commands end with `\n`, Protobuf commands carry varint length prefixes; every batch the
//! server writes is followed by `\n` in JSON. [`Splitter`] cuts the incoming bytes into whole
//! messages for the one connection task ([`Incoming`] / [`Outgoing`]), one message per frame.
//! A message over `webtransport.message_size_limit` (and over `websocket.message_size_limit`,
//! which the connection task's decoder applies to every frame) ends the connection with the
//! disconnect 1009 `message size limit`. A disconnect is a Disconnect push (no close frame
//! exists here), then the send side is finished and, once the client has gone or after the
//! connection task's close wait, the session is closed with the disconnect code.

use crate::connection::{self, Setup};
use crate::emulation::disconnect_push;
use crate::socket::{Incoming, Outgoing};
use crate::{Shared, Transport};
use bytes::{Bytes, BytesMut};
use futures_util::{sink, stream};
use spindle_proto::Format;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wtransport::endpoint::{IncomingSession, endpoint_side};
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use wtransport::{Endpoint, RecvStream, SendStream, ServerConfig, VarInt};

/// How long a new session may take from its first packet to its bidirectional stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes asked of the stream per read.
const READ_CHUNK: usize = 8192;
/// A QUIC connection with no packet for this long is gone (the protocol's pings keep a
/// healthy one busy; quinn's default would be 30 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the WebTransport endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebTransportError {
    #[error("invalid TLS certificate or key: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot open the UDP endpoint: {0}")]
    Io(#[from] std::io::Error),
}

/// The UDP endpoint, bound and ready to serve.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    certificates: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Endpoint<endpoint_side::Server>, WebTransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // QUIC is TLS 1.3 only; HTTP/3 is its one application protocol here.
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certificates, key)?;
    tls.alpn_protocols = vec![wtransport::tls::WEBTRANSPORT_ALPN.to_vec()];
    let config = ServerConfig::builder()
        .with_bind_socket(socket)
        .with_custom_tls(tls)
        .max_idle_timeout(Some(IDLE_TIMEOUT))
        .map_err(|_| std::io::Error::other("idle timeout out of range"))?
        .build();
    Ok(Endpoint::server(config)?)
}

/// Accepts sessions until `shutdown` resolves, each in its own task; then closes the endpoint
/// (sessions still open were closed by [`crate::Edge::shutdown`] with their disconnect push).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    endpoint: Endpoint<endpoint_side::Server>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            incoming = endpoint.accept() => {
                let shared = Arc::clone(&shared);
                tokio::spawn(session(shared, incoming));
            }
        }
    }
    // Let the pushes of the sessions closing with 3001 go out before the endpoint goes.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while endpoint.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    endpoint.close(VarInt::from_u32(0), b"shutdown");
}

/// One session: the HTTP/3 handshake and request checks, the one bidirectional stream, then
/// the connection task.
async fn session(shared: Arc<Shared>, incoming: IncomingSession) {
    let opened = tokio::time::timeout(OPEN_TIMEOUT, async {
        let request = incoming.await.ok()?;
        let (path, query) = match request.path().split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (request.path().to_owned(), None),
        };
        if path != crate::path_of(&shared.config.webtransport.handler_prefix) {
            request.not_found().await;
            return None;
        }
        if !shared.origins.allows(request.origin()) {
            tracing::info!(
                origin = request.origin().unwrap_or(""),
                "webtransport origin refused"
            );
            request.forbidden().await;
            return None;
        }
        if let Some(reason) = shared.refusal() {
            tracing::info!(reason, "webtransport session refused");
            request.too_many_requests().await;
            return None;
        }
        let headers = header_map(request.headers());
        let header_user = Some(shared.rules.user_id_http_header())
            .filter(|name| !name.is_empty())
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .filter(|user| !user.is_empty())
            .map(str::to_owned);
        let quic = request.accept().await.ok()?;
        let (send, recv) = quic.accept_bi().await.ok()?;
        let format = format_of(query.as_deref());
        Some((quic, send, recv, format, header_user, headers))
    })
    .await;
    let Ok(Some((quic, send, recv, format, header_user, headers))) = opened else {
        return;
    };
    let limit = message_limit(&shared);
    let setup = Setup {
        format,
        transport: Transport::WebTransport,
        native_ping: false,
        header_user,
        session: None,
        uni: None,
        headers: connection::client_headers(&shared.config, &headers),
    };
    let code = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sink = outgoing(send, format, Arc::clone(&code));
    let stream = incoming_of(recv, Splitter::new(format, limit));
    connection::serve(shared, setup, Box::pin(stream), Box::pin(sink)).await;
    let code = code.load(std::sync::atomic::Ordering::Acquire);
    quic.close(VarInt::from_u32(code), b"");
}

/// The request's headers as the proxies' header forwarding reads them (names that are not
/// valid HTTP header names are dropped).
fn header_map(headers: &std::collections::HashMap<String, String>) -> axum::http::HeaderMap {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let name = axum::http::HeaderName::from_bytes(name.as_bytes()).ok()?;
            let value = axum::http::HeaderValue::from_str(value).ok()?;
            Some((name, value))
        })
        .collect()
}

/// Protobuf when the session URL asks for it with `cf_protocol=protobuf`; JSON otherwise.
fn format_of(query: Option<&str>) -> Format {
    let protobuf = query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair == "cf_protocol=protobuf");
    if protobuf {
        Format::Protobuf
    } else {
        Format::Json
    }
}

/// The largest message accepted: `webtransport.message_size_limit`, and never more than the
/// frame limit the connection task's decoder applies.
fn message_limit(shared: &Shared) -> usize {
    let own = match shared.config.webtransport.message_size_limit {
        0 => spindle_proto::DEFAULT_MAX_FRAME_SIZE,
        limit => limit as usize,
    };
    own.min(shared.limits.message_size)
}

/// The sink the writer drains into: batches (JSON ones followed by `\n`), then on close the
/// Disconnect push and the end of the stream. The disconnect code is kept for the session close.
fn outgoing(
    send: SendStream,
    format: Format,
    code: Arc<std::sync::atomic::AtomicU32>,
) -> impl futures_util::Sink<Outgoing, Error = std::io::Error> + Send + 'static {
    sink::unfold(send, move |mut send, item: Outgoing| {
        let code = Arc::clone(&code);
        async move {
            let bytes = match item {
                Outgoing::Frame(frame) => Some(frame),
                // Native pings do not exist here; the protocol's own ping is a frame.
                Outgoing::Ping => None,
                Outgoing::Close {
                    code: close,
                    reason,
                } => {
                    code.store(u32::from(close), std::sync::atomic::Ordering::Release);
                    let push = disconnect_push(format, close, reason);
                    if let Some(push) = push {
                        write(&mut send, format, &push).await?;
                    }
                    send.finish().await.map_err(std::io::Error::other)?;
                    None
                }
            };
            if let Some(bytes) = bytes {
                write(&mut send, format, &bytes).await?;
            }
            Ok(send)
        }
    })
}

async fn write(send: &mut SendStream, format: Format, batch: &[u8]) -> std::io::Result<()> {
    send.write_all(batch).await.map_err(std::io::Error::other)?;
    if format == Format::Json {
        send.write_all(b"\n").await.map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// The stream of whole messages read from the client's half of the stream.
fn incoming_of(recv: RecvStream, splitter: Splitter) -> impl futures_util::Stream<Item = Incoming> {
    stream::unfold(Some((recv, splitter)), |state| async move {
        let (mut recv, mut splitter) = state?;
        loop {
            match splitter.next_message() {
                Split::Message(message) => {
                    return Some((Incoming::Data(message), Some((recv, splitter))));
                }
                // Nothing more is read after an oversize message: the stream ends after it.
                Split::TooBig => return Some((Incoming::TooBig, None)),
                Split::NeedMore => {}
            }
            let mut chunk = [0u8; READ_CHUNK];
            match recv.read(&mut chunk).await {
                Ok(Some(read)) => splitter.extend(&chunk[..read]),
                // The client finished its half (or closed the session): a close.
                Ok(None) => return Some((Incoming::Close, None)),
                Err(_) => return Some((Incoming::Failed, None)),
            }
        }
    })
}

/// What [`Splitter::next_message`] found.
#[derive(Debug, PartialEq, Eq)]
enum Split {
    /// One whole message as the connection task decodes a frame: a JSON command (its `\n`
    /// removed), or a Protobuf command with its length prefix.
    Message(Bytes),
    /// Not enough bytes for a whole message yet.
    NeedMore,
    /// A message over the limit.
    TooBig,
}

/// Cuts a byte stream into messages: JSON lines, or varint-prefixed Protobuf messages.
#[derive(Debug)]
struct Splitter {
    format: Format,
    limit: usize,
    buffer: BytesMut,
    /// JSON: bytes already searched for `\n`.
    scanned: usize,
}

impl Splitter {
    fn new(format: Format, limit: usize) -> Splitter {
        Splitter {
            format,
            limit,
            buffer: BytesMut::new(),
            scanned: 0,
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    fn next_message(&mut self) -> Split {
        match self.format {
            Format::Json => self.next_line(),
            Format::Protobuf => self.next_prefixed(),
        }
    }

    fn next_line(&mut self) -> Split {
        match self.buffer[self.scanned..].iter().position(|b| *b == b'\n') {
            Some(at) => {
                let end = self.scanned + at;
                self.scanned = 0;
                if end > self.limit {
                    return Split::TooBig;
                }
                let line = self.buffer.split_to(end + 1).freeze();
                Split::Message(line.slice(..end))
            }
            None => {
                self.scanned = self.buffer.len();
                if self.buffer.len() > self.limit {
                    Split::TooBig
                } else {
                    Split::NeedMore
                }
            }
        }
    }

    fn next_prefixed(&mut self) -> Split {
        let mut length: u64 = 0;
        for (index, byte) in self.buffer.iter().enumerate() {
            // A varint longer than 10 bytes is no length at all.
            if index >= 10 {
                return Split::TooBig;
            }
            length |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                let length = match usize::try_from(length) {
                    Ok(length) if length <= self.limit => length,
                    _ => return Split::TooBig,
                };
                let total = index + 1 + length;
                if self.buffer.len() < total {
                    self.buffer.reserve(total - self.buffer.len());
                    return Split::NeedMore;
                }
                return Split::Message(self.buffer.split_to(total).freeze());
            }
        }
        Split::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(splitter: &mut Splitter) -> Vec<Split> {
        let mut out = Vec::new();
        loop {
            match splitter.next_message() {
                Split::NeedMore => return out,
                Split::TooBig => {
                    out.push(Split::TooBig);
                    return out;
                }
                message => out.push(message),
            }
        }
    }

    fn message(bytes: &[u8]) -> Split {
        Split::Message(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn json_lines_across_reads() {
        let mut splitter = Splitter::new(Format::Json, 100);
        splitter.extend(b"{\"id\":1}\n{\"id\"");
        assert_eq!(all(&mut splitter), vec![message(b"{\"id\":1}")]);
        splitter.extend(b":2}\n{}\n");
        assert_eq!(
            all(&mut splitter),
            vec![message(b"{\"id\":2}"), message(b"{}")]
        );
        assert!(splitter.buffer.is_empty());
    }

    #[test]
    fn json_over_the_limit() {
        let mut splitter = Splitter::new(Format::Json, 4);
        splitter.extend(b"1234\n");
        assert_eq!(all(&mut splitter), vec![message(b"1234")]);
        splitter.extend(b"12345\n");
        assert_eq!(all(&mut splitter), vec![Split::TooBig]);
        // A line that never ends is too big as soon as it passes the limit.
        let mut splitter = Splitter::new(Format::Json, 4);
        splitter.extend(b"123");
        assert_eq!(all(&mut splitter), vec![]);
        splitter.extend(b"45");
        assert_eq!(all(&mut splitter), vec![Split::TooBig]);
    }

    #[test]
    fn protobuf_prefixes_across_reads() {
        let mut splitter = Splitter::new(Format::Protobuf, 200);
        let long = [7u8; 130];
        let mut bytes = vec![2, 8, 1, 0];
        // 130 = 0x82 0x01 as a varint.
        bytes.extend_from_slice(&[0x82, 0x01]);
        bytes.extend_from_slice(&long);
        splitter.extend(&bytes[..5]);
        assert_eq!(all(&mut splitter), vec![message(&[2, 8, 1]), message(&[0])]);
        splitter.extend(&bytes[5..100]);
        assert_eq!(all(&mut splitter), vec![]);
        splitter.extend(&bytes[100..]);
        assert_eq!(all(&mut splitter), vec![message(&bytes[4..])]);
    }

    #[test]
    fn protobuf_over_the_limit() {
        let mut splitter = Splitter::new(Format::Protobuf, 100);
        splitter.extend(&[101]);
        assert_eq!(all(&mut splitter), vec![Split::TooBig]);
        let mut splitter = Splitter::new(Format::Protobuf, 100);
        splitter.extend(&[0xff; 11]);
        assert_eq!(all(&mut splitter), vec![Split::TooBig]);
    }

    #[test]
    fn format_from_the_query() {
        assert_eq!(format_of(None), Format::Json);
        assert_eq!(format_of(Some("cf_protocol=protobuf")), Format::Protobuf);
        assert_eq!(
            format_of(Some("a=b&cf_protocol=protobuf")),
            Format::Protobuf
        );
        assert_eq!(format_of(Some("cf_protocol=json")), Format::Json);
        assert_eq!(format_of(Some("format=protobuf")), Format::Json);
    }
}
