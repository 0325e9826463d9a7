//! Unidirectional transports (docs/protocol.md §1.7): `uni_http_stream`, `uni_sse` and
//! `uni_websocket`. The client sends one `ConnectRequest`; the server streams pushes without
//! the Reply envelope, the empty push `{}` as ping. They run the one connection task (in its
//! uni mode, `connection::uni`); this module only adapts requests and framing. JSON only.

use crate::connection::{self, Setup};
use crate::emulation::{
    self, Stream, UniConnect, admit_post, cors, header_user, limit_of, preflight, query_param,
    read_body, unwrap_push, with_cors,
};
use crate::socket::{Incoming, Outgoing};
use crate::{Shared, Transport};
use axum::body::{Body, Bytes};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt, sink, stream};
use spindle_proto::Format;
use std::sync::{Arc, OnceLock};

/// `POST /connection/uni_http_stream` with the JSON `ConnectRequest` as body.
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
    let config = &edge.config.uni_http_stream;
    let frame = match read_body(&headers, body, limit_of(config.max_request_body_size)).await {
        Ok(frame) => frame,
        Err(status) => return with_cors(status.into_response(), cors),
    };
    let uni = UniConnect {
        refused: Arc::new(OnceLock::new()),
        to_http: &config.connect_code_to_http_response,
    };
    let edge2 = Arc::clone(&edge);
    emulation::start_uni(edge2, &headers, Stream::UniHttp, frame, cors, uni).await
}

/// `GET /connection/uni_sse` with an optional `cf_connect`, or `POST` with the request as body.
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
    let config = &edge.config.uni_sse;
    let frame = match method {
        Method::OPTIONS => return preflight(cors, &headers, "GET, POST, OPTIONS"),
        // No `cf_connect`: the empty request.
        Method::GET => Bytes::from(query_param(query.as_deref(), "cf_connect").unwrap_or_default()),
        Method::POST => {
            match read_body(&headers, body, limit_of(config.max_request_body_size)).await {
                Ok(frame) => frame,
                Err(status) => return with_cors(status.into_response(), cors),
            }
        }
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    let uni = UniConnect {
        refused: Arc::new(OnceLock::new()),
        to_http: &config.connect_code_to_http_response,
    };
    emulation::start_uni(
        Arc::clone(&edge),
        &headers,
        Stream::UniSse,
        frame,
        cors,
        uni,
    )
    .await
}

/// `GET /connection/uni_websocket`: the request in `cf_connect` or the first message.
pub(crate) async fn websocket(
    State(edge): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match crate::websocket::admit(&edge, &headers, upgrade) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return *refusal,
    };
    let connect = query_param(query.as_deref(), "cf_connect").map(Bytes::from);
    let header_user = header_user(&edge, &headers);
    let limit = match edge.config.uni_websocket.message_size_limit {
        0 => spindle_proto::DEFAULT_MAX_FRAME_SIZE,
        limit => limit as usize,
    };
    let upgrade = upgrade.max_message_size(limit).max_frame_size(limit);
    upgrade.on_upgrade(move |socket| serve_websocket(edge, socket, connect, header_user))
}

async fn serve_websocket(
    edge: Arc<Shared>,
    socket: WebSocket,
    connect: Option<Bytes>,
    header_user: Option<String>,
) {
    let config = &edge.config.uni_websocket;
    let join = config.join_push_messages;
    let disconnect_push = !config.disable_disconnect_push;
    let close_frame = !config.disable_closing_handshake;
    let (ws_sink, ws_stream) = socket.split();
    let outgoing = sink::unfold(ws_sink, move |mut ws, item: Outgoing| async move {
        for message in uni_messages(item, join, disconnect_push, close_frame) {
            ws.send(message).await?;
        }
        Ok::<_, axum::Error>(ws)
    });
    let incoming =
        stream::iter(connect.map(Incoming::Data)).chain(ws_stream.map(|item| match item {
            Ok(Message::Text(text)) => Incoming::Data(text.into()),
            Ok(Message::Binary(bytes)) => Incoming::Data(bytes),
            Ok(Message::Ping(_) | Message::Pong(_)) => Incoming::Activity,
            Ok(Message::Close(_)) => Incoming::Close,
            Err(_) => Incoming::Failed,
        }));
    let setup = Setup {
        format: Format::Json,
        transport: Transport::UniWebSocket,
        native_ping: true,
        header_user,
        session: Some(uuid::Uuid::new_v4().to_string()),
        uni: Some(Arc::new(OnceLock::new())),
        headers: Default::default(),
    };
    connection::serve(edge, setup, Box::pin(incoming), Box::pin(outgoing)).await;
}

/// The WebSocket messages of one outgoing item on `uni_websocket`: each push in its own text
/// frame (or one `\n`-joined frame), a disconnect as a push and/or a close frame.
fn uni_messages(item: Outgoing, join: bool, disconnect_push: bool, close: bool) -> Vec<Message> {
    let text = |bytes: Vec<u8>| {
        // Encoded JSON is UTF-8; anything else is not sent.
        String::from_utf8(bytes)
            .ok()
            .map(|text| Message::Text(Utf8Bytes::from(text)))
    };
    match item {
        Outgoing::Frame(batch) => {
            let pushes = batch.split(|byte| *byte == b'\n').map(unwrap_push);
            if join {
                text(pushes.collect::<Vec<_>>().join(&b'\n'))
                    .into_iter()
                    .collect()
            } else {
                pushes.filter_map(|push| text(push.to_vec())).collect()
            }
        }
        Outgoing::Ping => vec![Message::Ping(Default::default())],
        Outgoing::Close { code, reason } => {
            let mut messages = Vec::new();
            if disconnect_push
                && let Some(push) = emulation::disconnect_push(Format::Json, code, reason.clone())
            {
                messages.extend(text(unwrap_push(&push).to_vec()));
            }
            if close {
                messages.push(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })));
            }
            messages
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_lose_their_envelope() {
        let batch = Outgoing::Frame(Bytes::from_static(
            b"{\"push\":{\"channel\":\"a\",\"pub\":{\"data\":1}}}\n{}",
        ));
        assert_eq!(
            uni_messages(batch.clone(), false, true, true),
            vec![
                Message::Text("{\"channel\":\"a\",\"pub\":{\"data\":1}}".into()),
                Message::Text("{}".into())
            ]
        );
        assert_eq!(
            uni_messages(batch, true, true, true),
            vec![Message::Text(
                "{\"channel\":\"a\",\"pub\":{\"data\":1}}\n{}".into()
            )]
        );
        let close = Outgoing::Close {
            code: 3503,
            reason: "force disconnect".into(),
        };
        assert_eq!(
            uni_messages(close.clone(), false, true, true),
            vec![
                Message::Text(
                    "{\"disconnect\":{\"code\":3503,\"reason\":\"force disconnect\"}}".into()
                ),
                Message::Close(Some(CloseFrame {
                    code: 3503,
                    reason: "force disconnect".into()
                }))
            ]
        );
        assert_eq!(uni_messages(close, false, false, false), vec![]);
    }
}
