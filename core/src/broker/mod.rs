//! Brokers: where publications go to reach every node with interest in their channel, and
//! where channel streams (history) live.
//!
//! A [`Broker`] takes a publication for a channel and hands it, in order per channel, to the
//! [`EventHandler`] of every node that subscribed to the channel, this node included. For
//! channels with history it first appends the publication to the channel's stream, assigning
//! its offset in the same atomic step. Join and leave messages travel the same way (without a
//! stream position). The memory broker ([`MemoryBroker`]) is the whole story for one process;
//! [`RedisBroker`] joins several nodes over Redis — one server, client-side shards, a Cluster or
//! Sentinel-watched masters (streams as lists + a meta hash
//! updated by one Lua script per publish, delivery over PUB/SUB). Every implementation passes
//! the conformance suite in `core/tests/conformance/` ([`NatsBroker`], PUB/SUB only, passes its
//! delivery subset); [`PostgresBroker`] keeps streams in PostgreSQL tables and delivers
//! through an outbox table (LISTEN/NOTIFY wake-ups, polling fallback), and lets applications
//! publish inside their own transactions (`cf_stream_publish`).
//!
//! Identity and payload are kept apart on purpose: a publication's identity in its channel is a
//! [`StreamPosition`] (offset + epoch, assigned by the broker when the channel keeps history),
//! while [`Publication`] is what was said (data, publisher info, tags). A later issue lets
//! publications be updated, deleted or appended to, which rewrites payloads under a fixed
//! identity.
//!
//! Room left on purpose: map storage (keyed state + change stream) will be a sibling trait
//! sharing [`StreamPosition`] and the stream vocabulary, and transactional publish (a
//! PostgreSQL outbox publishing inside the application's own transaction) a sibling of
//! [`Broker::publish`] taking the transaction.

mod memory;
mod nats;
mod postgres;
mod redis;

pub use memory::{MAX_IDEMPOTENCY_KEYS, MAX_STREAMS, MemoryBroker, MemoryBrokerStats};
pub use nats::{NatsBroker, NatsOptions, channel_subject, subject_channel};
pub use postgres::{
    MigrationReport, PostgresBroker, PostgresMapBroker, PostgresOptions,
    SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION, migrate as migrate_postgres,
};
pub use redis::{
    RedisBroker, RedisConnection, RedisMapBroker, RedisOptions, RedisServer, RedisTls,
};
pub use spindle_hub::history::{
    HistoryItem, HistoryQuery, HistoryResult, Publication, ReadError, StreamOptions,
    StreamPosition, Suppression, SweepStats,
};

use spindle_proto::client;
use std::collections::BTreeMap;
use std::future::Future;
use thiserror::Error;

/// A fresh random epoch, for a storage-side stream that has to start one (Redis, PostgreSQL).
pub(crate) fn new_epoch() -> String {
    let mut entropy = rand::random::<u64>;
    spindle_hub::history::new_epoch(&mut entropy)
}

/// How to publish. Parsed from the API and client requests; `history` is filled by the node
/// from the channel's namespace.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PublishOptions {
    /// Application tags; the node moves them into the [`Publication`].
    pub tags: BTreeMap<String, String>,
    /// Do not store this publication in the channel's history (it gets no offset).
    pub skip_history: bool,
    /// Publications with the same key in the same channel within 5 minutes return the first
    /// one's result and are not published again.
    pub idempotency_key: String,
    /// The publication may be sent to delta-negotiated subscribers as a fossil delta: the
    /// broker hands the previous publication of the stream to the event handler with it.
    pub delta: bool,
    /// Drop the publication unless `version` is above the stream's current one in the same
    /// `version_epoch` (0 = no check; needs history).
    pub version: u64,
    /// Versions compare only within the same version epoch.
    pub version_epoch: String,
    /// The channel's stream; `None` = no history. Set by [`crate::Node::publish`] from the
    /// namespace (`history_size`, `history_ttl`, `history_meta_ttl`).
    pub history: Option<StreamOptions>,
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishResult {
    /// The publication's position; `None` for channels without history or with
    /// `skip_history`. For a suppressed publication: the earlier publication's position
    /// (idempotency) or the stream's current top (stale version).
    pub position: Option<StreamPosition>,
    /// `Some` when nothing was published (and nothing delivered).
    pub suppressed: Option<Suppression>,
}

impl PublishResult {
    /// What a storage-side publish (Redis script, PostgreSQL function) answered: `status` 0 =
    /// published, 1 = an idempotent repeat, anything else = a stale version; offset 0 with no
    /// epoch = no position (no history).
    pub(crate) fn from_storage(status: u64, offset: u64, epoch: String) -> PublishResult {
        let position =
            (offset > 0 || !epoch.is_empty()).then(|| StreamPosition::new(offset, epoch));
        let suppressed = match status {
            0 => None,
            1 => Some(Suppression::Idempotent),
            _ => Some(Suppression::StaleVersion),
        };
        PublishResult {
            position,
            suppressed,
        }
    }
}

/// A join or a leave in a channel: the connection's info (`conn_info` from its token or proxy,
/// `chan_info` from its subscription).
#[derive(Debug, Clone, PartialEq)]
pub enum JoinLeave {
    Join(client::ClientInfo),
    Leave(client::ClientInfo),
}

/// A broker could not do what was asked. The caller answers "internal error" (100): the client
/// may retry.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// The broker is gone or not reachable.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// A history read failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HistoryReadError {
    /// The read cannot be answered as asked (107 / 112).
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// Receives what a broker delivers to this node.
///
/// Contract: called synchronously from the broker's delivery path, so it must not block; for
/// one channel, calls arrive one at a time, publications in offset order, joins and leaves in
/// the order they were published relative to the channel's publications.
pub trait EventHandler: Send + Sync + 'static {
    /// A publication in a channel this node subscribed to. `prev` is the publication at
    /// `offset − 1`, given only for delta publishes when the stream still retains it.
    fn on_publication(
        &self,
        channel: &str,
        position: Option<&StreamPosition>,
        publication: &Publication,
        prev: Option<&Publication>,
    );

    /// A join or leave in a channel this node subscribed to.
    fn on_join_leave(&self, channel: &str, event: &JoinLeave);
}

/// The storage and PUB/SUB behind publications. Every implementation is built with the node's
/// [`EventHandler`] and delivers to it.
pub trait Broker: Send + Sync + 'static {
    /// Publishes into `channel`.
    ///
    /// Contract: an idempotency key seen in the channel within the last 5 minutes returns the
    /// earlier result, suppressed. With `options.history` (and without `skip_history`) a stale
    /// `version` returns the current top, suppressed; otherwise the publication is appended to
    /// the stream and its offset assigned in one atomic step (offsets count from 1 in each
    /// epoch). On `Ok` without suppression the publication has been handed to the PUB/SUB
    /// layer; publications of one channel reach every subscribed node's handler in the order
    /// their positions were assigned. On `Err` nothing was published.
    fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> impl Future<Output = Result<PublishResult, BrokerError>> + Send;

    /// Publishes a join or leave into `channel`: no history, delivered in order with the
    /// channel's publications.
    fn publish_join_leave(
        &self,
        channel: &str,
        event: JoinLeave,
    ) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Starts delivering `channel`'s publications to this node's handler. Called when the node
    /// gains its first edge with interest in the channel; idempotent.
    fn subscribe(&self, channel: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Stops delivering `channel` to this node. Called when the node's last edge with interest
    /// is gone; idempotent.
    fn unsubscribe(&self, channel: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// Reads `channel`'s stream per `query` (see [`HistoryQuery`]). The result always carries
    /// the stream's current top position; a channel that has no stream yet gets one (offset 0,
    /// a new epoch) so a later publication continues the position this read reported. A read
    /// keeps the stream's metadata alive for another `stream.meta_ttl`.
    ///
    /// Errors: `reverse` with `since.offset == 0` ([`ReadError::ReverseFromZero`]); a non-empty
    /// `since.epoch` other than the stream's ([`ReadError::Unrecoverable`]).
    fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        stream: &StreamOptions,
    ) -> impl Future<Output = Result<HistoryResult, HistoryReadError>> + Send;

    /// Forgets `channel`'s stream: publications, position and version. The next publication
    /// starts a new epoch at offset 1, so clients holding the old position are told they cannot
    /// recover (never a silent gap).
    fn remove_history(&self, channel: &str)
    -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// The broker a node runs on, chosen by `engine.type` (the [`Broker`] trait is not
/// object-safe, so the node holds this enum).
#[derive(Debug)]
pub enum AnyBroker {
    Memory(MemoryBroker),
    Redis(Box<RedisBroker>),
    /// PUB/SUB only: no history.
    Nats(Box<NatsBroker>),
    /// Streams in PostgreSQL tables, delivery through an outbox table.
    Postgres(Box<PostgresBroker>),
}

impl AnyBroker {
    /// Applies in-process expiry deadlines (the memory broker; Redis expires keys itself).
    pub fn sweep(&self) -> SweepStats {
        match self {
            AnyBroker::Memory(broker) => broker.sweep(),
            AnyBroker::Redis(_) | AnyBroker::Nats(_) | AnyBroker::Postgres(_) => {
                SweepStats::default()
            }
        }
    }

    /// Whether this broker carries cluster control messages between nodes (memory: one node,
    /// nothing to carry).
    pub fn has_control(&self) -> bool {
        !matches!(self, AnyBroker::Memory(_))
    }

    /// Publishes a cluster control message to every node on this broker (a no-op for memory).
    pub async fn publish_control(&self, payload: bytes::Bytes) -> Result<(), BrokerError> {
        match self {
            AnyBroker::Memory(_) => Ok(()),
            AnyBroker::Redis(b) => b.publish_control(payload).await,
            AnyBroker::Nats(b) => b.publish_control(payload).await,
            AnyBroker::Postgres(b) => b.publish_control(payload).await,
        }
    }

    /// Whether the delivery path is up (`Err` says what is not): Redis — every connection up and
    /// every PUB/SUB probe delivered; NATS — the connection up; PostgreSQL — the delivery
    /// reader's connection up. Memory always is.
    pub fn health(&self) -> Result<(), String> {
        match self {
            AnyBroker::Memory(_) => Ok(()),
            AnyBroker::Redis(broker) => broker.health(),
            AnyBroker::Nats(broker) => broker.health(),
            AnyBroker::Postgres(broker) => broker.health(),
        }
    }

    /// Streams held in process (0 for Redis, which holds them on the server).
    pub fn streams(&self) -> usize {
        match self {
            AnyBroker::Memory(broker) => broker.stats().streams,
            AnyBroker::Redis(_) | AnyBroker::Nats(_) | AnyBroker::Postgres(_) => 0,
        }
    }
}

impl Broker for AnyBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> Result<PublishResult, BrokerError> {
        match self {
            AnyBroker::Memory(b) => b.publish(channel, publication, options).await,
            AnyBroker::Redis(b) => b.publish(channel, publication, options).await,
            AnyBroker::Nats(b) => b.publish(channel, publication, options).await,
            AnyBroker::Postgres(b) => b.publish(channel, publication, options).await,
        }
    }

    async fn publish_join_leave(&self, channel: &str, event: JoinLeave) -> Result<(), BrokerError> {
        match self {
            AnyBroker::Memory(b) => b.publish_join_leave(channel, event).await,
            AnyBroker::Redis(b) => b.publish_join_leave(channel, event).await,
            AnyBroker::Nats(b) => b.publish_join_leave(channel, event).await,
            AnyBroker::Postgres(b) => b.publish_join_leave(channel, event).await,
        }
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            AnyBroker::Memory(b) => b.subscribe(channel).await,
            AnyBroker::Redis(b) => b.subscribe(channel).await,
            AnyBroker::Nats(b) => b.subscribe(channel).await,
            AnyBroker::Postgres(b) => b.subscribe(channel).await,
        }
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            AnyBroker::Memory(b) => b.unsubscribe(channel).await,
            AnyBroker::Redis(b) => b.unsubscribe(channel).await,
            AnyBroker::Nats(b) => b.unsubscribe(channel).await,
            AnyBroker::Postgres(b) => b.unsubscribe(channel).await,
        }
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        stream: &StreamOptions,
    ) -> Result<HistoryResult, HistoryReadError> {
        match self {
            AnyBroker::Memory(b) => b.history(channel, query, stream).await,
            AnyBroker::Redis(b) => b.history(channel, query, stream).await,
            AnyBroker::Nats(b) => b.history(channel, query, stream).await,
            AnyBroker::Postgres(b) => b.history(channel, query, stream).await,
        }
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            AnyBroker::Memory(b) => b.remove_history(channel).await,
            AnyBroker::Redis(b) => b.remove_history(channel).await,
            AnyBroker::Nats(b) => b.remove_history(channel).await,
            AnyBroker::Postgres(b) => b.remove_history(channel).await,
        }
    }
}
