//! The link between an edge and a core.
//!
//! Owns: the message-passing interface both sides speak (mesh messages from `spindle-proto`),
//! the in-process link used by `spindle serve`, and later the QUIC endpoint (quinn + rustls, mTLS),
//! stream framing, reconnect and backoff.
//!
//! Must not: know about WebSocket, HTTP or brokers. Everything that crosses a link is a message,
//! never a shared pointer into the other side's state, so the QUIC link can replace the
//! in-process one without changing either side.
//!
//! Layout: empty until the `spindle serve` issue adds the in-process link.
