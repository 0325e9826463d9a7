//! The WebSocket protocol (RFC 6455), the server's side, on a plain TCP socket without a
//! WebSocket library: the opening handshake ([`handshake`]), framing
//! ([`spindle_proto::websocket`], with the other wire codecs and their fuzz targets), the read
//! loop ([`reader`]) and the writer task ([`run_socket_writer`]); writes themselves go
//! through the connection's [`crate::writer::Outbox`] in socket mode, which writes a frame
//! straight from the fan-out pass when the connection is idle.
//!
//! Why our own: on the fan-out path a library socket costs a task wake-up, a lock and a copy
//! per message per subscriber, and its buffers stay allocated on idle connections
//! (docs/benchmarks.md, "Side by side"). This one writes a frame with one `writev` from the
//! task that has it, reads into a buffer that exists only while bytes are arriving, and keeps
//! nothing else per connection.
//!
//! Scope: what `/connection/websocket` needs — no extensions (permessage-deflate is refused
//! by configuration), messages up to `websocket.message_size_limit`. Connections over TLS
//! (and `uni_websocket`) keep axum's socket: their upgraded stream is not a bare TCP socket.

pub mod handshake;
mod reader;
mod socket_writer;

pub(crate) use reader::incoming;
pub(crate) use socket_writer::run_socket_writer;

#[cfg(test)]
mod tests;
