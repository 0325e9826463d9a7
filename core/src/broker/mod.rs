//! Brokers: where publications go to reach every node with interest in their channel.
//!
//! A [`Broker`] takes a publication for a channel and hands it, in order per channel, to the
//! [`EventHandler`] of every node that subscribed to the channel, this node included. The memory
//! broker ([`MemoryBroker`]) is the whole story for one process; Redis, NATS and PostgreSQL
//! implementations come with their issues and must pass the same contracts.
//!
//! Identity and payload are kept apart on purpose: a publication's identity in its channel is a
//! [`StreamPosition`] (offset + epoch, assigned by the broker when the channel keeps history),
//! while [`Publication`] is what was said (data, publisher info, tags). A later issue lets
//! publications be updated, deleted or appended to, which rewrites payloads under a fixed
//! identity.
//!
//! Left for the history issue: `history(channel, filter)`, `remove_history(channel)`, history
//! options in [`PublishOptions`] (`history_size`, `history_ttl`, `history_meta_ttl`), idempotency
//! and version checks. Left for the brokers issue: join/leave events and transactional publish
//! (a PostgreSQL outbox publishes inside the application's own transaction; the trait's
//! `publish` then has a sibling taking the transaction).

mod memory;

pub use memory::MemoryBroker;

use bytes::Bytes;
use spindle_proto::client;
use std::collections::BTreeMap;
use std::future::Future;
use thiserror::Error;

/// Where a publication sits in its channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPosition {
    /// 1 for the first publication of a stream, then +1 each.
    pub offset: u64,
    /// Opaque; changes whenever continuity of the stream cannot be proven.
    pub epoch: String,
}

/// What a publication says: its payload, without its identity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publication {
    /// The payload, verbatim (JSON text for JSON channels, any bytes for binary ones).
    pub data: Bytes,
    /// The publishing client, for client publications; `None` for server API publications.
    pub info: Option<client::ClientInfo>,
    /// Application tags, delivered with the publication (and usable by tags filters).
    pub tags: BTreeMap<String, String>,
}

/// How to publish. Parsed from the API and client requests and carried to the broker even where
/// the broker does not act on them yet (history, idempotency and versions come with the history
/// issue).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishOptions {
    /// Application tags; the node moves them into the [`Publication`].
    pub tags: BTreeMap<String, String>,
    /// Do not store this publication in the channel's history.
    pub skip_history: bool,
    /// Publications with the same key within the dedupe window return the first one's result.
    pub idempotency_key: String,
    /// The publication may be sent to delta-negotiated subscribers as a fossil delta.
    pub delta: bool,
    /// Drop the publication unless `version` is above the stream's current one (0 = no check).
    pub version: u64,
    /// Versions compare only within the same epoch.
    pub version_epoch: String,
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishResult {
    /// The publication's position; `None` for channels without history.
    pub position: Option<StreamPosition>,
}

/// A broker could not do what was asked. The caller answers "internal error" (100): the client
/// may retry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker is gone or not reachable.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Receives what a broker delivers to this node.
///
/// Contract: called synchronously from the broker's delivery path, so it must not block; for
/// one channel, calls arrive one at a time in publish (offset) order.
pub trait EventHandler: Send + Sync + 'static {
    /// A publication in a channel this node subscribed to.
    fn on_publication(
        &self,
        channel: &str,
        position: Option<&StreamPosition>,
        publication: &Publication,
    );
}

/// The storage and PUB/SUB behind publications. Every implementation is built with the node's
/// [`EventHandler`] and delivers to it.
pub trait Broker: Send + Sync + 'static {
    /// Publishes into `channel`.
    ///
    /// Contract: on `Ok` the publication has been handed to the PUB/SUB layer (and, for channels
    /// with history, appended to the stream with the returned position, atomically with the
    /// offset assignment). Publications of one channel reach every subscribed node's handler in
    /// the order their positions were assigned. On `Err` nothing was published.
    fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> impl Future<Output = Result<PublishResult, BrokerError>> + Send;

    /// Starts delivering `channel`'s publications to this node's handler. Called when the node
    /// gains its first edge with interest in the channel; idempotent.
    fn subscribe(&self, channel: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Stops delivering `channel` to this node. Called when the node's last edge with interest
    /// is gone; idempotent.
    fn unsubscribe(&self, channel: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;
}
