//! Bidirectional emulation (docs/protocol.md §1.4–§1.6): HTTP-streaming and SSE carry the
//! server → client half as a long streamed response; the client sends its later commands to
//! `/emulation`, naming the node and session from its connect result.
//!
//! Both streams run the one connection task through [`Incoming`] / [`Outgoing`]: the request
//! body (or `cf_connect`) is the first frame; the response body is fed by the writer. A
//! disconnect is a Disconnect push, then the end of the stream. A client going away drops the
//! response body, which the incoming side reports as [`Incoming::Close`].
//!
//! An `/emulation` request naming another node (several nodes on one broker, the client's
//! requests balanced across them) goes to the core, which forwards it over the broker's control
//! channel to that node and waits for its answer (`core/src/node/emulation.rs`): 204 once
//! delivered, 404 for a node that is not live or does not answer within the core's timeout,
//! 503 when the core or the control channel fails.

use crate::connection::{self, Setup};
use crate::socket::{Incoming, Outgoing};
use crate::{Shared, Transport};
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, future, sink, stream};
use prost::Message as _;
use spindle_hub::config::ConnectCodeToHttpResponse;
use spindle_mesh::mesh;
use spindle_proto::{Format, client, encode_reply};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

const JSON_CONTENT: &str = "application/json";
const PROTOBUF_CONTENT: &str = "application/octet-stream";
/// Response chunks waiting for the client (each is one batch).
const BODY_CHUNKS: usize = 16;

/// Which streamed response a connection writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Http(Format),
    Sse,
    /// `uni_http_stream`: pushes without the Reply envelope, each followed by `\n`.
    UniHttp,
    /// `uni_sse`: pushes without the Reply envelope as SSE events.
    UniSse,
}

impl Stream {
    fn format(self) -> Format {
        match self {
            Stream::Http(format) => format,
            Stream::Sse | Stream::UniHttp | Stream::UniSse => Format::Json,
        }
    }

    fn transport(self) -> Transport {
        match self {
            Stream::Http(_) => Transport::HttpStream,
            Stream::Sse => Transport::Sse,
            Stream::UniHttp => Transport::UniHttpStream,
            Stream::UniSse => Transport::UniSse,
        }
    }

    /// The body bytes of one outgoing item; `None` writes nothing.
    fn encode(self, item: Outgoing) -> Option<Bytes> {
        let batch = match item {
            Outgoing::Frame(frame) => frame,
            Outgoing::Ping => return None,
            Outgoing::Close { code, reason } => disconnect_push(self.format(), code, reason)?,
        };
        Some(match self {
            // Protobuf messages carry their own length prefixes.
            Stream::Http(Format::Protobuf) => batch,
            Stream::Http(Format::Json) => {
                let mut out = Vec::with_capacity(batch.len() + 1);
                out.extend_from_slice(&batch);
                out.push(b'\n');
                out.into()
            }
            Stream::UniHttp => {
                let mut out = Vec::with_capacity(batch.len() + 1);
                for message in batch.split(|byte| *byte == b'\n') {
                    out.extend_from_slice(unwrap_push(message));
                    out.push(b'\n');
                }
                out.into()
            }
            Stream::Sse | Stream::UniSse => {
                let mut out = Vec::with_capacity(batch.len() + 16);
                // Encoded JSON holds no raw newline, so `\n` separates the batch's messages.
                for message in batch.split(|byte| *byte == b'\n') {
                    out.extend_from_slice(b"data: ");
                    if self == Stream::UniSse {
                        out.extend_from_slice(unwrap_push(message));
                    } else {
                        out.extend_from_slice(message);
                    }
                    out.extend_from_slice(b"\n\n");
                }
                out.into()
            }
        })
    }
}

/// The encoded Disconnect push ending an emulation or uni stream (enveloped in a Reply; uni
/// streams strip the envelope like any other push).
pub(crate) fn disconnect_push(format: Format, code: u16, reason: String) -> Option<Bytes> {
    let push = client::Push {
        disconnect: Some(client::Disconnect {
            code: u32::from(code),
            reason,
            ..Default::default()
        }),
        ..Default::default()
    };
    let reply = client::Reply {
        push: Some(push),
        ..Default::default()
    };
    encode_reply(format, &reply).ok()
}

/// A JSON push without its Reply envelope (`{"push":P}` → `P`); anything else (the empty
/// ping `{}`) as it is. The JSON encoding of a push-only Reply is exactly that envelope.
pub(crate) fn unwrap_push(message: &[u8]) -> &[u8] {
    const ENVELOPE: &[u8] = b"{\"push\":";
    match message.strip_prefix(ENVELOPE) {
        Some(rest) if rest.ends_with(b"}") => &rest[..rest.len() - 1],
        _ => message,
    }
}

/// `POST /connection/http_stream`.
pub(crate) async fn http_stream(
    State(edge): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cors = match admit_post(&edge, &method, &headers) {
        Ok(cors) => cors,
        Err(answer) => return *answer,
    };
    let limit = limit_of(edge.config.http_stream.max_request_body_size);
    let frame = match read_body(&headers, body, limit).await {
        Ok(frame) => frame,
        Err(status) => return with_cors(status.into_response(), cors),
    };
    let format = if is_protobuf(&headers) {
        Format::Protobuf
    } else {
        Format::Json
    };
    start(edge, &headers, Stream::Http(format), frame, cors)
}

/// `GET /connection/sse?cf_connect=…` or `POST /connection/sse`.
pub(crate) async fn sse(
    State(edge): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let cors = match cors(&edge, &headers) {
        Ok(cors) => cors,
        Err(refusal) => return refusal.into_response(),
    };
    let frame = match method {
        Method::OPTIONS => return preflight(cors, &headers, "GET, POST, OPTIONS"),
        Method::GET => match query_param(query.as_deref(), "cf_connect") {
            Some(frame) => Bytes::from(frame),
            None => return with_cors(StatusCode::BAD_REQUEST.into_response(), cors),
        },
        Method::POST => {
            let limit = limit_of(edge.config.sse.max_request_body_size);
            match read_body(&headers, body, limit).await {
                Ok(frame) => frame,
                Err(status) => return with_cors(status.into_response(), cors),
            }
        }
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    start(edge, &headers, Stream::Sse, frame, cors)
}

/// `POST /emulation`: a command frame for the emulation session `session` on node `node`.
pub(crate) async fn emulation(
    State(edge): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let cors = match admit_post(&edge, &method, &headers) {
        Ok(cors) => cors,
        Err(answer) => return *answer,
    };
    let limit = limit_of(edge.config.emulation.max_request_body_size);
    let status = match read_body(&headers, body, limit).await {
        Err(status) => status,
        Ok(body) => match parse_emulation(is_protobuf(&headers), &body) {
            None => StatusCode::BAD_REQUEST,
            Some(request) if request.node != edge.node.uid => forward(&edge, request).await,
            Some(request) => {
                // An unknown (or just closed) session is dropped silently, as Centrifugo does.
                if let Some(handle) = edge.emulation_target(&request.session) {
                    handle.emulate(request.data).await;
                }
                StatusCode::NO_CONTENT
            }
        },
    };
    with_cors(status.into_response(), cors)
}

/// Hands a frame for a session on another node to the core, which forwards it there.
async fn forward(edge: &Shared, request: client::EmulationRequest) -> StatusCode {
    let request = mesh::request::Kind::Emulation(request);
    match edge
        .link()
        .request(Some(request), crate::deadline::EMULATION)
        .await
    {
        Ok(mesh::Response {
            error: None,
            kind: Some(mesh::response::Kind::Emulation(result)),
            ..
        }) => {
            if result.delivered {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            }
        }
        Ok(response) => {
            tracing::warn!(error = ?response.error, "emulation frame not forwarded");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(error) => {
            tracing::warn!(%error, "emulation frame: no answer from the core");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The request of `/emulation`: Protobuf `EmulationRequest`, or JSON whose `data` is a string
/// holding the command frame.
fn parse_emulation(protobuf: bool, body: &[u8]) -> Option<client::EmulationRequest> {
    if protobuf {
        return client::EmulationRequest::decode(body).ok();
    }
    #[derive(serde::Deserialize)]
    struct Json {
        #[serde(default)]
        node: String,
        #[serde(default)]
        session: String,
        data: String,
    }
    let request: Json = serde_json::from_slice(body).ok()?;
    Some(client::EmulationRequest {
        node: request.node,
        session: request.session,
        data: request.data.into_bytes().into(),
    })
}

/// A uni stream's connect outcome and what `connect_code_to_http_response` makes of it.
pub(crate) struct UniConnect<'a> {
    pub refused: Arc<OnceLock<u32>>,
    pub to_http: &'a ConnectCodeToHttpResponse,
}

/// Opens the streamed response and spawns the connection task behind it.
fn start(
    edge: Arc<Shared>,
    headers: &HeaderMap,
    kind: Stream,
    frame: Bytes,
    cors: Option<HeaderValue>,
) -> Response {
    if let Some(refusal) = edge.admission() {
        return with_cors(refusal, cors);
    }
    let (chunks, _task) = spawn(edge, headers, kind, frame, None);
    respond(kind, None, chunks, cors)
}

/// Opens a uni stream: a connect refused with a code `connect_code_to_http_response` maps
/// fails the request with that status and body instead of streaming a disconnect.
pub(crate) async fn start_uni(
    edge: Arc<Shared>,
    headers: &HeaderMap,
    kind: Stream,
    frame: Bytes,
    cors: Option<HeaderValue>,
    uni: UniConnect<'_>,
) -> Response {
    if let Some(refusal) = edge.admission() {
        return with_cors(refusal, cors);
    }
    let (mut chunks, _task) = spawn(edge, headers, kind, frame, Some(Arc::clone(&uni.refused)));
    let mut first = None;
    if uni.to_http.enabled {
        // The first chunk is the connect push or the disconnect of a refused connect.
        first = chunks.receiver.recv().await;
        if let Some(code) = uni.refused.get()
            && let Some(transform) = uni.to_http.transforms.iter().find(|t| t.code == *code)
        {
            let status = StatusCode::from_u16(transform.to.status_code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return with_cors((status, transform.to.body.clone()).into_response(), cors);
        }
    }
    respond(kind, first, chunks, cors)
}

/// The body side of a stream: chunks from the writer, and the signal that the client left.
struct Chunks {
    receiver: mpsc::Receiver<Bytes>,
    /// Dropped with the body: the client went away.
    _gone: oneshot::Sender<()>,
}

/// Spawns the connection task of a streamed transport; returns the body chunks it writes.
fn spawn(
    edge: Arc<Shared>,
    headers: &HeaderMap,
    kind: Stream,
    frame: Bytes,
    uni: Option<Arc<OnceLock<u32>>>,
) -> (Chunks, tokio::task::JoinHandle<()>) {
    let (chunks_tx, receiver) = mpsc::channel::<Bytes>(BODY_CHUNKS);
    let (gone, gone_rx) = oneshot::channel::<()>();
    let incoming =
        stream::once(future::ready(Incoming::Data(frame))).chain(stream::once(async move {
            let _ = gone_rx.await;
            Incoming::Close
        }));
    let outgoing = sink::unfold(chunks_tx, move |tx, item: Outgoing| async move {
        if let Some(bytes) = kind.encode(item) {
            tx.send(bytes).await.map_err(|_| ())?;
        }
        Ok::<_, ()>(tx)
    });
    let setup = Setup {
        format: kind.format(),
        transport: kind.transport(),
        native_ping: false,
        header_user: header_user(&edge, headers),
        session: Some(uuid::Uuid::new_v4().to_string()),
        uni,
        headers: connection::client_headers(&edge.config, headers),
    };
    let task = tokio::spawn(connection::serve(
        edge,
        setup,
        Box::pin(incoming),
        Box::pin(outgoing),
    ));
    (
        Chunks {
            receiver,
            _gone: gone,
        },
        task,
    )
}

/// The 200 response streaming `chunks` (after `first`, already taken from them).
fn respond(
    kind: Stream,
    first: Option<Bytes>,
    chunks: Chunks,
    cors: Option<HeaderValue>,
) -> Response {
    let preamble = match kind {
        Stream::Sse | Stream::UniSse => Some(Bytes::from_static(b"\r\n")),
        Stream::Http(_) | Stream::UniHttp => None,
    };
    // The body ends when the writer drops its sender; when the client goes away the body is
    // dropped, and with it `gone`, which the connection reads as the client's close.
    let body = stream::iter(preamble.into_iter().chain(first))
        .chain(stream::unfold(chunks, |mut chunks| async move {
            chunks.receiver.recv().await.map(|chunk| (chunk, chunks))
        }));
    let body = Body::from_stream(body.map(Ok::<_, Infallible>));
    let content_type = match kind {
        Stream::Sse | Stream::UniSse => "text/event-stream; charset=utf-8",
        Stream::Http(Format::Json) | Stream::UniHttp => JSON_CONTENT,
        Stream::Http(Format::Protobuf) => PROTOBUF_CONTENT,
    };
    let mut response = (StatusCode::OK, body).into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    out.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    out.insert("expire", HeaderValue::from_static("0"));
    out.insert("x-accel-buffering", HeaderValue::from_static("no"));
    with_cors(response, cors)
}

pub(crate) fn header_user(edge: &Shared, headers: &HeaderMap) -> Option<String> {
    Some(edge.rules.user_id_http_header())
        .filter(|name| !name.is_empty())
        .and_then(|name| headers.get(name))
        .and_then(|value| value.to_str().ok())
        .filter(|user| !user.is_empty())
        .map(str::to_owned)
}

/// The `Origin` to echo in CORS headers (none without one), or 403 for a refused origin.
pub(crate) fn cors(edge: &Shared, headers: &HeaderMap) -> Result<Option<HeaderValue>, StatusCode> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    if !edge
        .origins
        .allows(Some(origin.to_str().unwrap_or("\u{fffd}")))
    {
        tracing::info!(origin = ?origin, "emulation origin refused");
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(Some(origin.clone()))
}

/// The common start of a POST-only endpoint: the CORS origin to echo, or the whole answer
/// (403 for a refused origin, the preflight for `OPTIONS`, 405 for another method).
pub(crate) fn admit_post(
    edge: &Shared,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Box<Response>> {
    let cors = cors(edge, headers).map_err(|status| Box::new(status.into_response()))?;
    if method == Method::OPTIONS {
        return Err(Box::new(preflight(cors, headers, "POST, OPTIONS")));
    }
    if method != Method::POST {
        return Err(Box::new(StatusCode::METHOD_NOT_ALLOWED.into_response()));
    }
    Ok(cors)
}

pub(crate) fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

pub(crate) fn preflight(
    origin: Option<HeaderValue>,
    headers: &HeaderMap,
    methods: &'static str,
) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("300"),
    );
    let allow_headers = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("Content-Type"));
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    with_cors(response, origin)
}

pub(crate) fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().starts_with(PROTOBUF_CONTENT))
}

pub(crate) fn limit_of(configured: u32) -> usize {
    match configured {
        0 => 65_536,
        limit => limit as usize,
    }
}

/// The whole request body, at most `limit` bytes (413 above).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, StatusCode> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    // Past the length check, a body that cannot be read is over the limit (or its client
    // is gone and will not see the status anyway).
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)
}

/// The percent-decoded value of `name` in a query string.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<Vec<u8>> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push((high * 16 + low) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_frame_their_batches() {
        let batch = Outgoing::Frame(Bytes::from_static(b"{\"id\":1}\n{}"));
        assert_eq!(
            Stream::Http(Format::Json).encode(batch.clone()).unwrap(),
            Bytes::from_static(b"{\"id\":1}\n{}\n")
        );
        assert_eq!(
            Stream::Sse.encode(batch).unwrap(),
            Bytes::from_static(b"data: {\"id\":1}\n\ndata: {}\n\n")
        );
        assert_eq!(Stream::Sse.encode(Outgoing::Ping), None);
        let close = Outgoing::Close {
            code: 3503,
            reason: "force reconnect".into(),
        };
        assert_eq!(
            Stream::Http(Format::Json).encode(close).unwrap(),
            Bytes::from_static(
                b"{\"push\":{\"disconnect\":{\"code\":3503,\"reason\":\"force reconnect\"}}}\n"
            )
        );
    }

    #[test]
    fn emulation_requests_decode() {
        let json =
            br#"{"node":"n","session":"s","data":"{\"id\":2,\"subscribe\":{\"channel\":\"a\"}}"}"#;
        let request = parse_emulation(false, json).unwrap();
        assert_eq!(request.node, "n");
        assert_eq!(request.session, "s");
        assert_eq!(
            &request.data[..],
            br#"{"id":2,"subscribe":{"channel":"a"}}"#
        );
        assert!(parse_emulation(false, b"{\"data\":{}}").is_none());
        assert!(parse_emulation(false, b"nope").is_none());
        let encoded = client::EmulationRequest {
            node: "n".into(),
            session: "s".into(),
            data: vec![0].into(),
        }
        .encode_to_vec();
        assert_eq!(parse_emulation(true, &encoded).unwrap().session, "s");
        assert!(parse_emulation(true, &[0xff, 0xff]).is_none());
    }

    #[test]
    fn query_values_are_decoded() {
        let query = Some("a=1&cf_connect=%7B%22id%22%3A1%7D+x&b");
        assert_eq!(
            query_param(query, "cf_connect").unwrap(),
            b"{\"id\":1} x".to_vec()
        );
        assert_eq!(query_param(query, "b").unwrap(), Vec::<u8>::new());
        assert!(query_param(query, "c").is_none());
        assert_eq!(percent_decode("%zz%4"), b"%zz%4".to_vec());
    }
}
