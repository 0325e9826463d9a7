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
//!   (interest per channel, bounded outgoing queues, control fan-out, surveys), publishing and
//!   its checks, counters ([`Node::stats`]).
//! - [`broker`]: the [`broker::Broker`] trait with its contracts, and [`broker::MemoryBroker`].
//! - [`api`]: the server HTTP API ([`Node::api_router`]): per-method routes, the legacy
//!   single route, batch, key auth, error modes; [`api::ApiError`] is its one error type.
//! - [`glob`]: channel patterns of the `channels` method.

pub mod api;
pub mod broker;
pub mod glob;
mod node;

pub use node::{
    CONTROL_SEND_TIMEOUT, ControlError, EDGE_QUEUE_CAPACITY, EdgeId, Node, NodeError, NodeIdentity,
    NodeInfo, NodeStats, PublishError, SURVEY_TIMEOUT, VERSION,
};
