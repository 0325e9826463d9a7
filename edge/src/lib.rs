//! The edge: where client connections live.
//!
//! Owns: the transports (WebSocket, HTTP-stream, SSE, uni transports, WebTransport), the local hub
//! (channel → local sessions) and its fan-out, per-connection writer queues, and the uplink to a
//! core over a mesh link. It drives the session state machine from `spindle-hub`.
//!
//! Must not: store history or presence, or talk to a broker: those belong to the core and are
//! reached by messages over the link.
//!
//! Layout: empty until the `spindle serve` issue adds the WebSocket transport.
