//! The link between an edge and a core.
//!
//! Owns: the message-passing interface both sides speak — [`EdgeLink`] held by an edge,
//! [`CoreLink`] held by a core for each edge — and its implementations: the in-process link used
//! by `spindle serve` ([`in_process`]) now, the QUIC endpoint (quinn + rustls, mTLS, stream
//! framing, reconnect and backoff) next.
//!
//! Must not: know about WebSocket, HTTP or brokers. Everything that crosses a link is a mesh
//! message from `spindle-proto` (`mesh.proto`), never a shared pointer into the other side's
//! state, so the QUIC link can replace the in-process one without either side noticing.
//!
//! Directions:
//! - edge → core, one way: [`Up::Interest`], [`Up::Presence`]; with an answer: [`EdgeLink::request`].
//! - core → edge, one way: [`Event`]s on lanes by channel ([`CoreLink::try_send_event`]),
//!   [`Down::Control`], [`Down::InterestAck`]; with an answer: [`Down::Survey`].

mod link;
#[cfg(feature = "test-util")]
pub mod network;
pub mod quic;

pub use link::{
    CoreInbox, CoreLink, DEFAULT_BACKLOG_BYTES, DEFAULT_LANES, Down, EdgeInbox, EdgeLink, Event,
    EventRefused, Lane, LinkError, Pending, RequestError, Responder, SharedEvent, Up, in_process,
    in_process_bounded, in_process_with_lanes, lane_of,
};
pub use spindle_proto::mesh;
