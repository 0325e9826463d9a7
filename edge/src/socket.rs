//! What a connection task reads from and writes to, independent of the transport library: the
//! WebSocket handler adapts axum's socket to these, and tests drive a connection with plain
//! channels.

use bytes::Bytes;

/// One event read from a client socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text or binary message: one frame of commands.
    Data(Bytes),
    /// A control frame (ping or pong): proof the client is alive, nothing to process.
    Activity,
    /// The client sent a close frame.
    Close,
    /// A message over the size limit (closed with 1009).
    TooBig,
    /// The client broke the transport's own rules (RFC 6455: a bad frame 1002, a text message
    /// that is not UTF-8 1007); closed with this close code.
    Violation(u16),
    /// The transport failed; the connection is gone.
    Failed,
}

/// One thing written to a client socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A batch of encoded messages (text frame for JSON, binary for Protobuf).
    Frame(Bytes),
    /// A native WebSocket ping (`cf_ws_frame_ping_pong=true`).
    Ping,
    /// A close frame with the disconnect code and reason.
    Close { code: u16, reason: String },
}
