//! The bidirectional WebSocket transport (docs/protocol.md §1.3) on axum 0.8.
//!
//! Before the upgrade: a request that is not a WebSocket upgrade gets HTTP 400, a refused
//! `Origin` 403, a node at its connection limit or shutting down 503. The encoding is chosen
//! once: Protobuf when the client asked for the `centrifuge-protobuf` subprotocol (echoed) or
//! the query has `format=protobuf` / `cf_protocol=protobuf`, JSON otherwise.
//! `cf_ws_frame_ping_pong=true` swaps application pings for native WebSocket pings.
//!
//! After the upgrade the socket is adapted to [`Incoming`] / [`Outgoing`] and handed to the
//! transport-independent connection task. A connection over plain TCP is served by our own
//! WebSocket ([`crate::ws`]: the outbox writes frames to the socket itself); one over TLS by
//! axum's socket. Both answer the same requests the same way.

use crate::connection::{self, Setup};
use crate::socket::{Incoming, Outgoing};
use crate::writer::Outbox;
use crate::ws;
use crate::{Shared, Transport};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Sink, StreamExt};
use hyper_util::rt::TokioIo;
use spindle_proto::Format;
use spindle_server::http::PlainTcp;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

/// The subprotocols the server offers.
pub(crate) const SUBPROTOCOLS: [&str; 2] = ["centrifuge-json", "centrifuge-protobuf"];
const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";

/// What the upgrade request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Requested {
    pub format: Format,
    /// Native WebSocket pings instead of application pings.
    pub native_ping: bool,
}

/// Reads the connection options from the negotiated subprotocol and the query string.
pub(crate) fn requested(selected_protocol: Option<&str>, query: Option<&str>) -> Requested {
    let mut format = if selected_protocol == Some(PROTOBUF_SUBPROTOCOL) {
        Format::Protobuf
    } else {
        Format::Json
    };
    let mut native_ping = false;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key, value) {
            ("format" | "cf_protocol", "protobuf") => format = Format::Protobuf,
            ("cf_ws_frame_ping_pong", "true") => native_ping = true,
            _ => {}
        }
    }
    Requested {
        format,
        native_ping,
    }
}

pub(crate) async fn handle(State(edge): State<Arc<Shared>>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    if parts.extensions.get::<PlainTcp>().is_some() {
        return upgrade_socket(edge, parts);
    }
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &edge).await;
    upgrade_library(edge, &parts, upgrade)
}

/// A plain-TCP connection: our handshake, then our WebSocket on the bare socket.
fn upgrade_socket(edge: Arc<Shared>, mut parts: Parts) -> Response {
    let upgrade = match ws::handshake::check(&parts.method, &parts.headers, &SUBPROTOCOLS) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return refusal.status().into_response(),
    };
    if let Err(refusal) = admit_client(&edge, &parts.headers) {
        return *refusal;
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "Bad Request").into_response();
    };
    let requested = requested(upgrade.protocol, parts.uri.query());
    let header_user = crate::emulation::header_user(&edge, &parts.headers);
    let forwarded = connection::client_headers(&edge.config, &parts.headers);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade failed");
                return;
            }
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(upgraded) => {
                let socket = upgraded.io.into_inner();
                serve_tcp(
                    edge,
                    socket,
                    upgraded.read_buf,
                    requested,
                    header_user,
                    forwarded,
                )
                .await;
            }
            // `PlainTcp` marks only connections served on a bare TcpStream.
            Err(_) => tracing::error!("a plain-TCP upgrade was not a TcpStream"),
        }
    });
    upgrade.response()
}

async fn serve_tcp(
    edge: Arc<Shared>,
    socket: TcpStream,
    already_read: Bytes,
    requested: Requested,
    header_user: Option<String>,
    forwarded: Arc<std::collections::BTreeMap<String, String>>,
) {
    let (read, write) = socket.into_split();
    let outbox = Arc::new(Outbox::with_socket(
        requested.format,
        edge.limits.queue_max_size,
        write,
    ));
    let (limit, chunk) = (edge.limits.message_size, edge.limits.read_buffer_size);
    let setup = setup(requested, header_user, forwarded);
    connection::serve_socket(edge, setup, outbox, move |outbox| {
        ws::incoming(read, already_read, limit, chunk, outbox)
    })
    .await;
}

/// A bidirectional WebSocket connection's setup, on either path.
fn setup(
    requested: Requested,
    header_user: Option<String>,
    headers: Arc<std::collections::BTreeMap<String, String>>,
) -> Setup {
    Setup {
        format: requested.format,
        transport: Transport::WebSocket,
        native_ping: requested.native_ping,
        header_user,
        session: None,
        uni: None,
        headers,
    }
}

/// A TLS connection: axum's (tungstenite's) socket.
fn upgrade_library(
    edge: Arc<Shared>,
    parts: &Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let headers = &parts.headers;
    let upgrade = match admit(&edge, headers, upgrade) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return *refusal,
    };
    let upgrade = upgrade.protocols(SUBPROTOCOLS);
    let selected = upgrade
        .selected_protocol()
        .and_then(|protocol| protocol.to_str().ok());
    let requested = requested(selected, parts.uri.query());
    let header_user = crate::emulation::header_user(&edge, headers);
    let limit = edge.limits.message_size;
    let mut upgrade = upgrade.max_message_size(limit).max_frame_size(limit);
    if edge.limits.read_buffer_size > 0 {
        upgrade = upgrade.read_buffer_size(edge.limits.read_buffer_size);
    }
    let forwarded = connection::client_headers(&edge.config, headers);
    upgrade.on_upgrade(move |socket| serve_socket(edge, socket, requested, header_user, forwarded))
}

/// The checks before any WebSocket upgrade (bidirectional or `uni_websocket`): not an upgrade →
/// 400 (405 for a wrong method), a refused `Origin` → 403, connection limits or shutdown → 503.
/// (The refusal is boxed: it is the rare path, and a `Response` is large.)
pub(crate) fn admit(
    edge: &Shared,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, Box<Response>> {
    let refuse = |response: Response| Err(Box::new(response));
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(
            rejection @ (WebSocketUpgradeRejection::MethodNotGet(_)
            | WebSocketUpgradeRejection::MethodNotConnect(_)),
        ) => return refuse(rejection.into_response()),
        Err(_) => return refuse((StatusCode::BAD_REQUEST, "Bad Request").into_response()),
    };
    admit_client(edge, headers)?;
    Ok(upgrade)
}

/// The checks on the client after the upgrade request's own: a refused `Origin` → 403,
/// connection limits or shutdown → 503.
fn admit_client(edge: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let refuse = |response: Response| Err(Box::new(response));
    let origin = headers
        .get(header::ORIGIN)
        .map(|value| value.to_str().unwrap_or("\u{fffd}"));
    if !edge.origins.allows(origin) {
        tracing::info!(origin = origin.unwrap_or(""), "websocket origin refused");
        return refuse((StatusCode::FORBIDDEN, "Forbidden").into_response());
    }
    match edge.admission() {
        Some(refusal) => refuse(refusal),
        None => Ok(()),
    }
}

async fn serve_socket(
    edge: Arc<Shared>,
    socket: WebSocket,
    requested: Requested,
    header_user: Option<String>,
    forwarded: Arc<std::collections::BTreeMap<String, String>>,
) {
    let format = requested.format;
    let (sink, stream) = socket.split();
    let sink = FrameSink {
        inner: sink,
        format,
    };
    let stream = stream.map(incoming_of);
    let setup = setup(requested, header_user, forwarded);
    connection::serve(edge, setup, Box::pin(stream), Box::pin(sink)).await;
}

/// The socket's sink taking [`Outgoing`] items: converts each and forwards it. (A `SinkExt::with`
/// adapter does the same through a future per item, a measurable cost at 100,000 frames/s.)
struct FrameSink<S> {
    inner: S,
    format: Format,
}

impl<S> Sink<Outgoing> for FrameSink<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outgoing) -> Result<(), Self::Error> {
        let message = message_of(self.format, item)?;
        Pin::new(&mut self.inner).start_send(message)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

fn incoming_of(item: Result<Message, axum::Error>) -> Incoming {
    match item {
        Ok(Message::Text(text)) => Incoming::Data(text.into()),
        Ok(Message::Binary(bytes)) => Incoming::Data(bytes),
        Ok(Message::Ping(_) | Message::Pong(_)) => Incoming::Activity,
        Ok(Message::Close(_)) => Incoming::Close,
        Err(error) => match error.into_inner().downcast::<tungstenite::Error>() {
            Ok(error) => match *error {
                tungstenite::Error::Capacity(_) => Incoming::TooBig,
                // RFC 6455 §7.4.1: 1002 for a protocol error, 1007 for a text message that is
                // not UTF-8 — the close the client is owed instead of a dropped connection.
                tungstenite::Error::Protocol(_) => Incoming::Violation(1002),
                tungstenite::Error::Utf8(_) => Incoming::Violation(1007),
                _ => Incoming::Failed,
            },
            Err(_) => Incoming::Failed,
        },
    }
}

fn message_of(format: Format, item: Outgoing) -> Result<Message, axum::Error> {
    Ok(match item {
        Outgoing::Frame(bytes) => match format {
            // Encoded JSON is UTF-8 (serde_json writes nothing else).
            Format::Json => Message::Text(Utf8Bytes::try_from(bytes).map_err(axum::Error::new)?),
            Format::Protobuf => Message::Binary(bytes),
        },
        Outgoing::Ping => Message::Ping(Default::default()),
        Outgoing::Close { code, reason } => Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_selection() {
        let json = Requested {
            format: Format::Json,
            native_ping: false,
        };
        let protobuf = Requested {
            format: Format::Protobuf,
            native_ping: false,
        };
        assert_eq!(requested(None, None), json);
        assert_eq!(requested(Some("centrifuge-json"), None), json);
        assert_eq!(requested(Some("centrifuge-protobuf"), None), protobuf);
        assert_eq!(requested(None, Some("format=protobuf")), protobuf);
        assert_eq!(
            requested(None, Some("cf_protocol_version=v2&cf_protocol=protobuf")),
            protobuf
        );
        assert_eq!(requested(None, Some("format=json")), json);
        assert_eq!(requested(None, Some("cf_protocol")), json);
        assert_eq!(
            requested(None, Some("cf_ws_frame_ping_pong=true")),
            Requested {
                format: Format::Json,
                native_ping: true
            }
        );
        assert!(!requested(None, Some("cf_ws_frame_ping_pong=false")).native_ping);
    }

    #[test]
    fn frames_follow_the_format() {
        let text = message_of(Format::Json, Outgoing::Frame("{}".into())).unwrap();
        assert_eq!(text, Message::Text("{}".into()));
        let binary = message_of(Format::Protobuf, Outgoing::Frame(vec![0].into())).unwrap();
        assert_eq!(binary, Message::Binary(vec![0].into()));
        let close = Outgoing::Close {
            code: 3501,
            reason: "bad request".into(),
        };
        assert_eq!(
            message_of(Format::Json, close).unwrap(),
            Message::Close(Some(CloseFrame {
                code: 3501,
                reason: "bad request".into()
            }))
        );
        assert!(message_of(Format::Json, Outgoing::Frame(vec![0xff].into())).is_err());
    }

    #[test]
    fn capacity_errors_are_too_big() {
        let error =
            tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
                size: 10,
                max_size: 5,
            });
        assert_eq!(incoming_of(Err(axum::Error::new(error))), Incoming::TooBig);
        let other = tungstenite::Error::ConnectionClosed;
        assert_eq!(incoming_of(Err(axum::Error::new(other))), Incoming::Failed);
        let masking = tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::UnmaskedFrameFromClient,
        );
        assert_eq!(
            incoming_of(Err(axum::Error::new(masking))),
            Incoming::Violation(1002)
        );
        let utf8 = tungstenite::Error::Utf8("bad".into());
        assert_eq!(
            incoming_of(Err(axum::Error::new(utf8))),
            Incoming::Violation(1007)
        );
    }
}
