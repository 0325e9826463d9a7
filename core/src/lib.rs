//! The core: shared and durable state.
//!
//! Owns: the node, the `Broker` / `PresenceManager` / map storage traits and their memory, Redis,
//! NATS and PostgreSQL implementations, proxies to the application backend (HTTP and gRPC), the
//! server API (HTTP and gRPC), async consumers and the mesh server side.
//!
//! Must not: hold client sockets. Edges hold them and talk to the core by mesh messages
//! ([`spindle_mesh`]); the core answers with one event per edge with interest, never one per
//! subscriber.
//!
//! Layout:
//! - [`Node`] (`node/`): identity, the edges attached through [`spindle_mesh::CoreLink`]s
//!   (interest per channel, bounded outgoing queues, control fan-out, surveys), publishing,
//!   history and presence with their checks, the edges' mesh requests, the periodic expiry
//!   sweep ([`Node::sweep`]), counters ([`Node::stats`]).
//! - [`broker`]: the [`broker::Broker`] trait with its contracts (publish, join / leave,
//!   history read and removal), and [`broker::MemoryBroker`] (streams of
//!   [`spindle_hub::history`]).
//! - [`presence`]: the [`presence::PresenceManager`] trait and
//!   [`presence::MemoryPresenceManager`] (sets of [`spindle_hub::presence`], TTL expiry).
//! - [`api`]: the server HTTP API ([`Node::api_router`]): per-method routes, the legacy
//!   single route, batch, key auth, error modes; [`api::ApiError`] is its one error type.
//! - [`proxy`]: proxies to the application backend ([`proxy::Proxies`]): connect, refresh,
//!   subscribe, publish, sub_refresh and rpc over HTTP, asked by edges through the mesh.
//! - [`jwks`]: JWK sets fetched for token verification, cached by (endpoint, `kid`)
//!   ([`jwks::JwksCache`]), asked by edges through the mesh.
//! - [`tls`]: TLS as a client of the backend (HTTPS / gRPC proxies, JWKS) and the PEM reading
//!   of the configuration's TLS blocks; `https` (private): the outbound HTTP(S) client.
//! - [`clock`]: where time comes from ([`clock::SystemClock`]; `ManualClock` with the
//!   `test-util` feature).

pub mod api;
pub mod broker;
pub mod clock;
mod https;
pub mod jwks;
pub mod maps;
mod node;
pub mod presence;
pub mod proxy;
pub mod role;
pub mod shared_poll;
pub mod tls;

pub use node::{
    CONTROL_SEND_TIMEOUT, ControlError, EDGE_QUEUE_CAPACITY, EMULATION_TIMEOUT, EdgeCounts, EdgeId,
    EdgeInfo, EmulationError, HistoryError, MapCallError, MapPublishOptions, MapStateRead,
    NODE_INFO_EXPIRY, NODE_INFO_INTERVAL, Node, NodeError, NodeIdentity, NodeInfo, NodeStats,
    PresenceError, PublishError, REMOTE_SURVEY_TIMEOUT, SURVEY_TIMEOUT, SWEEP_INTERVAL,
    SharedPollError, SweepReport, VERSION,
};
