//! Presence managers: who is subscribed to a channel, across every edge.
//!
//! Edges report their connections' joins, leaves and periodic refreshes (every
//! `client.presence_update_interval`); the core keeps them in a [`PresenceManager`], where an
//! entry lives [`PRESENCE_TTL`] after its last add or refresh, so a connection whose edge went
//! away disappears by itself. [`MemoryPresenceManager`] is the one for a single process; Redis
//! comes with its issue and must keep the same contracts.

mod memory;

pub use memory::{MAX_PRESENCE_ENTRIES, MemoryPresenceManager};
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
