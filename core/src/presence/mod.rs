//! Presence managers: who is subscribed to a channel, across every edge.
//!
//! Edges report their connections' joins, leaves and periodic refreshes (every
//! `client.presence_update_interval`); the core keeps them in a [`PresenceManager`], where an
//! entry lives [`PRESENCE_TTL`] after its last add or refresh, so a connection whose edge went
//! away disappears by itself. [`MemoryPresenceManager`] is the one for a single process;
//! [`RedisPresenceManager`] keeps the sets in Redis (a hash + a sorted set of expiry times) for
//! several nodes. Both pass the conformance suite in `core/tests/conformance/`.

mod memory;
mod redis;

pub use memory::{MAX_PRESENCE_ENTRIES, MemoryPresenceManager};
pub use redis::RedisPresenceManager;
pub use spindle_hub::presence::PresenceStats;

use spindle_proto::client::ClientInfo;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// How long a presence entry lives without a refresh by default: 60 s, as Centrifugo's Redis
/// `presence_ttl`. The node uses at least twice `client.presence_update_interval`, so entries of
/// live connections never lapse between two refreshes.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// A presence manager could not do what was asked (the caller answers 100).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PresenceStoreError {
    #[error("presence manager unavailable: {0}")]
    Unavailable(String),
}

/// Presence storage. Every method acts on one channel's set, keyed by client id; an entry
/// expires a fixed TTL after its last [`add_presence`](PresenceManager::add_presence) or
/// [`refresh_presence`](PresenceManager::refresh_presence). Reads never return expired entries.
pub trait PresenceManager: Send + Sync + 'static {
    /// Adds or replaces the entry of `info.client`, alive for the TTL. `Ok(true)` when the
    /// client was not present.
    fn add_presence(
        &self,
        channel: &str,
        info: ClientInfo,
    ) -> impl Future<Output = Result<bool, PresenceStoreError>> + Send;

    /// Extends the entry of `client` by the TTL. `Ok(false)` when there is no live entry (a
    /// refresh never brings one back: the edge adds it again with its info).
    fn refresh_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> impl Future<Output = Result<bool, PresenceStoreError>> + Send;

    /// Removes the entry of `client`; returns its info when it was present.
    fn remove_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> impl Future<Output = Result<Option<ClientInfo>, PresenceStoreError>> + Send;

    /// The live entries: client id → info.
    fn presence(
        &self,
        channel: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, ClientInfo>, PresenceStoreError>> + Send;

    /// Live clients and distinct users (the anonymous user counting as one).
    fn presence_stats(
        &self,
        channel: &str,
    ) -> impl Future<Output = Result<PresenceStats, PresenceStoreError>> + Send;
}

/// The presence manager a node runs on, chosen by `engine.type`.
#[derive(Debug)]
pub enum AnyPresenceManager {
    Memory(MemoryPresenceManager),
    Redis(Box<RedisPresenceManager>),
}

impl AnyPresenceManager {
    /// Drops expired in-process entries (Redis expires entries itself); returns how many.
    pub fn sweep(&self) -> usize {
        match self {
            AnyPresenceManager::Memory(m) => m.sweep(),
            AnyPresenceManager::Redis(_) => 0,
        }
    }

    /// Entries held in process (0 for Redis).
    pub fn len(&self) -> usize {
        match self {
            AnyPresenceManager::Memory(m) => m.len(),
            AnyPresenceManager::Redis(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PresenceManager for AnyPresenceManager {
    async fn add_presence(
        &self,
        channel: &str,
        info: ClientInfo,
    ) -> Result<bool, PresenceStoreError> {
        match self {
            AnyPresenceManager::Memory(m) => m.add_presence(channel, info).await,
            AnyPresenceManager::Redis(m) => m.add_presence(channel, info).await,
        }
    }

    async fn refresh_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<bool, PresenceStoreError> {
        match self {
            AnyPresenceManager::Memory(m) => m.refresh_presence(channel, client).await,
            AnyPresenceManager::Redis(m) => m.refresh_presence(channel, client).await,
        }
    }

    async fn remove_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<Option<ClientInfo>, PresenceStoreError> {
        match self {
            AnyPresenceManager::Memory(m) => m.remove_presence(channel, client).await,
            AnyPresenceManager::Redis(m) => m.remove_presence(channel, client).await,
        }
    }

    async fn presence(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, PresenceStoreError> {
        match self {
            AnyPresenceManager::Memory(m) => m.presence(channel).await,
            AnyPresenceManager::Redis(m) => m.presence(channel).await,
        }
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, PresenceStoreError> {
        match self {
            AnyPresenceManager::Memory(m) => m.presence_stats(channel).await,
            AnyPresenceManager::Redis(m) => m.presence_stats(channel).await,
        }
    }
}
