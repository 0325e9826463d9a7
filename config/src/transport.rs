//! Client transport sections: `websocket`, `sse`, `http_stream`, `emulation`, `webtransport`,
//! `uni_websocket`, `uni_sse`, `uni_http_stream`, `uni_grpc`.
//!
//! Sizes are bytes. Where Centrifugo reads `0` as "no limit" for a limit that has a non-zero
//! default (`message_size_limit`, `max_request_body_size`), Spindle reads `0` as "use the
//! default" and warns at load (DESIGN §6: 0 never means unbounded).

use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::server::Tls;

/// Default limit for one incoming message / request body: 64 KiB.
pub const DEFAULT_MESSAGE_LIMIT: u32 = 65_536;

/// `websocket`: the bidirectional WebSocket transport (`/connection/websocket`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct WebSocket {
    /// Turns the WebSocket endpoint off. Default `false` (on).
    pub disabled: bool,
    /// Path. Default `"/connection/websocket"`.
    pub handler_prefix: String,
    /// Negotiate permessage-deflate. Default `false`.
    pub compression: bool,
    /// Smallest message compressed, bytes. Default `0` (all).
    pub compression_min_size: u32,
    /// Deflate level, -2..=9. Default `1`.
    pub compression_level: i32,
    /// Socket read buffer, bytes; `0` (default) = the built-in 4096, at most 16 MiB.
    pub read_buffer_size: u32,
    /// Share write buffers between connections. Default `false`.
    pub use_write_buffer_pool: bool,
    /// Socket write buffer, bytes; `0` (default) = the built-in 4096, at most 16 MiB.
    pub write_buffer_size: u32,
    /// Longest single write before the connection is closed with 3009. Default `1s`.
    pub write_timeout: Duration,
    /// Largest incoming message, bytes. Default `65536`; `0` = default.
    pub message_size_limit: u32,
    /// Largest message after decompression, bytes; `0` (default) = 10 × `message_size_limit`.
    pub decompressed_message_size_limit: u32,
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            disabled: false,
            handler_prefix: "/connection/websocket".to_owned(),
            compression: false,
            compression_min_size: 0,
            compression_level: 1,
            read_buffer_size: 0,
            use_write_buffer_pool: false,
            write_buffer_size: 0,
            write_timeout: Duration::from_secs(1),
            message_size_limit: DEFAULT_MESSAGE_LIMIT,
            decompressed_message_size_limit: 0,
        }
    }
}

/// `sse`: bidirectional emulation over Server-Sent Events (`/connection/sse`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Sse {
    /// Serve the endpoint (also enables `/emulation`). Default `false`.
    pub enabled: bool,
    /// Path. Default `"/connection/sse"`.
    pub handler_prefix: String,
    /// Largest connect request body, bytes (413 above). Default `65536`; `0` = default.
    pub max_request_body_size: u32,
}

impl Default for Sse {
    fn default() -> Self {
        Sse {
            enabled: false,
            handler_prefix: "/connection/sse".to_owned(),
            max_request_body_size: DEFAULT_MESSAGE_LIMIT,
        }
    }
}

/// `http_stream`: bidirectional emulation over a streamed HTTP response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct HttpStream {
    /// Serve the endpoint (also enables `/emulation`). Default `false`.
    pub enabled: bool,
    /// Path. Default `"/connection/http_stream"`.
    pub handler_prefix: String,
    /// Largest connect request body, bytes (413 above). Default `65536`; `0` = default.
    pub max_request_body_size: u32,
}

impl Default for HttpStream {
    fn default() -> Self {
        HttpStream {
            enabled: false,
            handler_prefix: "/connection/http_stream".to_owned(),
            max_request_body_size: DEFAULT_MESSAGE_LIMIT,
        }
    }
}

/// `emulation`: where SSE / HTTP-stream clients send commands after connecting.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Emulation {
    /// Path. Default `"/emulation"`.
    pub handler_prefix: String,
    /// Largest request body, bytes (413 above). Default `65536`; `0` = default.
    pub max_request_body_size: u32,
}

impl Default for Emulation {
    fn default() -> Self {
        Emulation {
            handler_prefix: "/emulation".to_owned(),
            max_request_body_size: DEFAULT_MESSAGE_LIMIT,
        }
    }
}

/// `webtransport` (experimental; needs `http_server.http3` and `http_server.tls`): served over
/// HTTP/3 on the UDP port of the same number as `http_server.port`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct WebTransport {
    /// Serve the endpoint. Default `false`.
    pub enabled: bool,
    /// Path. Default `"/connection/webtransport"`.
    pub handler_prefix: String,
    /// Largest incoming message, bytes (above it: disconnect 1009 `message size limit`).
    /// Default `65536`; `0` = default. Never more than `websocket.message_size_limit`, which
    /// every transport's command decoder applies.
    pub message_size_limit: u32,
}

impl Default for WebTransport {
    fn default() -> Self {
        WebTransport {
            enabled: false,
            handler_prefix: "/connection/webtransport".to_owned(),
            message_size_limit: DEFAULT_MESSAGE_LIMIT,
        }
    }
}

/// `uni_websocket`: server-to-client only WebSocket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct UniWebSocket {
    /// Serve the endpoint. Default `false`.
    pub enabled: bool,
    /// Path. Default `"/connection/uni_websocket"`.
    pub handler_prefix: String,
    /// Negotiate permessage-deflate. Default `false`.
    pub compression: bool,
    /// Smallest message compressed, bytes. Default `0` (all).
    pub compression_min_size: u32,
    /// Deflate level, -2..=9. Default `1`.
    pub compression_level: i32,
    /// Socket read buffer, bytes; `0` (default) = built-in, at most 16 MiB.
    pub read_buffer_size: u32,
    /// Share write buffers between connections. Default `false`.
    pub use_write_buffer_pool: bool,
    /// Socket write buffer, bytes; `0` (default) = built-in, at most 16 MiB.
    pub write_buffer_size: u32,
    /// Longest single write. Default `1s`.
    pub write_timeout: Duration,
    /// Largest incoming message (the connect request), bytes. Default `65536`; `0` = default.
    pub message_size_limit: u32,
    /// Largest message after decompression; `0` (default) = 10 × `message_size_limit`.
    pub decompressed_message_size_limit: u32,
    /// Close without the WebSocket closing handshake. Default `false`.
    pub disable_closing_handshake: bool,
    /// Do not send a disconnect push before closing. Default `false`.
    pub disable_disconnect_push: bool,
    /// Send several pushes in one frame, joined by `\n`. Default `false`.
    pub join_push_messages: bool,
}

impl Default for UniWebSocket {
    fn default() -> Self {
        UniWebSocket {
            enabled: false,
            handler_prefix: "/connection/uni_websocket".to_owned(),
            compression: false,
            compression_min_size: 0,
            compression_level: 1,
            read_buffer_size: 0,
            use_write_buffer_pool: false,
            write_buffer_size: 0,
            write_timeout: Duration::from_secs(1),
            message_size_limit: DEFAULT_MESSAGE_LIMIT,
            decompressed_message_size_limit: 0,
            disable_closing_handshake: false,
            disable_disconnect_push: false,
            join_push_messages: false,
        }
    }
}

/// `uni_sse`: server-to-client only Server-Sent Events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct UniSse {
    /// Serve the endpoint. Default `false`.
    pub enabled: bool,
    /// Path. Default `"/connection/uni_sse"`.
    pub handler_prefix: String,
    /// Largest `POST` connect body, bytes. Default `65536`; `0` = default.
    pub max_request_body_size: u32,
    /// Answer connect errors with an HTTP status instead of a disconnect push. Default: off.
    pub connect_code_to_http_response: ConnectCodeToHttpResponse,
}

impl Default for UniSse {
    fn default() -> Self {
        UniSse {
            enabled: false,
            handler_prefix: "/connection/uni_sse".to_owned(),
            max_request_body_size: DEFAULT_MESSAGE_LIMIT,
            connect_code_to_http_response: ConnectCodeToHttpResponse::default(),
        }
    }
}

/// `uni_http_stream`: server-to-client only streamed HTTP response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct UniHttpStream {
    /// Serve the endpoint. Default `false`.
    pub enabled: bool,
    /// Path. Default `"/connection/uni_http_stream"`.
    pub handler_prefix: String,
    /// Largest connect body, bytes. Default `65536`; `0` = default.
    pub max_request_body_size: u32,
    /// Answer connect errors with an HTTP status instead of a disconnect push. Default: off.
    pub connect_code_to_http_response: ConnectCodeToHttpResponse,
}

impl Default for UniHttpStream {
    fn default() -> Self {
        UniHttpStream {
            enabled: false,
            handler_prefix: "/connection/uni_http_stream".to_owned(),
            max_request_body_size: DEFAULT_MESSAGE_LIMIT,
            connect_code_to_http_response: ConnectCodeToHttpResponse::default(),
        }
    }
}

/// `connect_code_to_http_response` of `uni_sse` / `uni_http_stream`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ConnectCodeToHttpResponse {
    /// Apply the transforms. Default `false`.
    pub enabled: bool,
    /// Connect error / disconnect code → HTTP response. Default `[]`.
    pub transforms: Vec<ConnectCodeToHttpTransform>,
}

/// One entry of `connect_code_to_http_response.transforms`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ConnectCodeToHttpTransform {
    /// Error or disconnect code to match (required, non-zero).
    pub code: u32,
    /// The response to send instead.
    pub to: HttpResponseTransform,
}

/// The HTTP response of a [`ConnectCodeToHttpTransform`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct HttpResponseTransform {
    /// HTTP status (required, 100..=599).
    pub status_code: u16,
    /// Response body. Default `""`.
    pub body: String,
}

/// `uni_grpc`: server-to-client only gRPC stream, on its own port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct UniGrpc {
    /// Serve it. Default `false`.
    pub enabled: bool,
    /// Host to bind; `""` (default) = all interfaces.
    pub address: String,
    /// Port. Default `11000`.
    pub port: u16,
    /// Largest request message, bytes; `0` (default) = 4 MiB, at most 256 MiB.
    pub max_receive_message_size: u32,
    /// TLS for this listener. Default: off.
    pub tls: Tls,
}

impl Default for UniGrpc {
    fn default() -> Self {
        UniGrpc {
            enabled: false,
            address: String::new(),
            port: 11000,
            max_receive_message_size: 0,
            tls: Tls::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_sections_keep_their_other_defaults() {
        let ws: WebSocket = serde_json::from_str("{\"compression\": true}").unwrap();
        assert!(ws.compression);
        assert_eq!(ws.message_size_limit, 65_536);
        assert_eq!(ws.write_timeout, Duration::from_secs(1));
        assert_eq!(ws.handler_prefix, "/connection/websocket");
        let uni: UniGrpc = serde_json::from_str("{\"enabled\": true}").unwrap();
        assert_eq!(uni.port, 11000);
        let sse: UniSse = serde_json::from_str(
            r#"{"connect_code_to_http_response": {"enabled": true,
                "transforms": [{"code": 3501, "to": {"status_code": 403, "body": "no"}}]}}"#,
        )
        .unwrap();
        assert_eq!(
            sse.connect_code_to_http_response.transforms[0]
                .to
                .status_code,
            403
        );
        assert_eq!(sse.handler_prefix, "/connection/uni_sse");
    }
}
