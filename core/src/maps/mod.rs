//! Map storage (docs/protocol.md §2.10): where map channels keep their keyed state and change
//! stream, and how their changes reach the node's [`crate::broker::EventHandler`].
//!
//! A [`MapBroker`] applies a write (state change and stream append in one atomic step per
//! channel) and hands the change to the handler of every node subscribed to the channel, in
//! stream order, exactly like a [`crate::broker::Broker`] hands over publications: a map change
//! is a [`crate::broker::Publication`] carrying its `key` (and `removed`), at a [`StreamPosition`] (none for
//! `ephemeral` maps). Expired keys become removals the same way.
//!
//! Implementations: [`MemoryMapBroker`] (this process), [`RedisMapBroker`] (with a Redis engine
//! or broker) and [`PostgresMapBroker`] (with the PostgreSQL broker; applications can write
//! inside their own transactions): every core then shares the maps. With NATS as the broker
//! the maps stay in each core's memory — said at start when a namespace is a map. Every implementation
//! passes the conformance suite in `core/tests/map_conformance/`.

mod memory;

pub use crate::broker::{PostgresMapBroker, RedisMapBroker};
pub use memory::MemoryMapBroker;
pub use spindle_hub::map::{
    KeyMode, MapEntry, MapLimits, MapOutcome, MapSettings, MapState, MapSuppression, MapWrite,
    MapWriteError, StateQuery,
};

use crate::broker::{BrokerError, HistoryQuery, HistoryResult, ReadError, StreamPosition};
use std::future::Future;
use thiserror::Error;

/// What a map write did, once delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapUpdate {
    /// The stream's position after the write (offset 0 for `ephemeral` maps); for an
    /// idempotent repeat, the first write's position.
    pub position: StreamPosition,
    /// `Some` when nothing changed and nothing was delivered.
    pub suppressed: Option<MapSuppression>,
}

/// A map write failed: nothing changed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapError {
    #[error(transparent)]
    Write(#[from] MapWriteError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A map read failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapReadError {
    /// A position from another epoch, or one the stream no longer covers (112); `reverse`
    /// from 0 (107).
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl From<crate::broker::HistoryReadError> for MapReadError {
    fn from(error: crate::broker::HistoryReadError) -> Self {
        match error {
            crate::broker::HistoryReadError::Read(read) => MapReadError::Read(read),
            crate::broker::HistoryReadError::Broker(broker) => MapReadError::Broker(broker),
        }
    }
}

/// Keyed state plus change stream per map channel.
///
/// Contract, for every implementation: a write's state change, stream append (offset
/// assignment) and hand-over to the PUB/SUB layer happen in one step per channel, so every
/// subscribed node sees a channel's changes in offset order and a state page read at position
/// P holds exactly the changes up to P. Reads of a channel that does not exist create its
/// position (a new epoch, offset 0), so a later write continues the position a reader saw.
pub trait MapBroker: Send + Sync + 'static {
    /// Publishes into or removes from `channel` (see [`MapWrite`] for the suppression
    /// rules). On `Ok` without suppression the change has been handed over for delivery.
    fn write(
        &self,
        channel: &str,
        settings: MapSettings,
        write: MapWrite<'_>,
    ) -> impl Future<Output = Result<MapUpdate, MapError>> + Send;

    /// A page of `channel`'s state with the position it was read at.
    fn state(
        &self,
        channel: &str,
        settings: MapSettings,
        query: StateQuery<'_>,
    ) -> impl Future<Output = Result<MapState, MapReadError>> + Send;

    /// Reads `channel`'s change stream. A forward read from a position the stream no longer
    /// covers fails with [`ReadError::Unrecoverable`] (never a silent skip).
    fn stream(
        &self,
        channel: &str,
        settings: MapSettings,
        query: &HistoryQuery,
    ) -> impl Future<Output = Result<HistoryResult, MapReadError>> + Send;

    /// Entries in `channel`.
    fn stats(&self, channel: &str) -> impl Future<Output = Result<usize, BrokerError>> + Send;

    /// Forgets `channel` (entries, changes, position): its next access starts a new epoch.
    fn clear(&self, channel: &str) -> impl Future<Output = Result<(), BrokerError>> + Send;
}

/// A state read made of page reads (storage-side pages of at most `chunk` entries):
/// `page(after, limit)` answers entries after the key `after` (`None`: from the first), the
/// position they were read at, and whether more follow. A query with a limit ends there (with
/// the cursor of the next page when more follow); one without reads every entry, keeping the
/// first chunk's position.
pub(crate) async fn read_in_chunks<F, Fut>(
    channel: &str,
    query: &StateQuery<'_>,
    chunk: usize,
    mut page: F,
) -> Result<MapState, MapReadError>
where
    F: FnMut(Option<String>, usize) -> Fut,
    Fut: Future<Output = Result<(Vec<MapEntry>, StreamPosition, bool), MapReadError>>,
{
    let mut after = query.after.map(str::to_owned);
    let mut entries = Vec::new();
    let mut first_at = None;
    loop {
        let want = query
            .limit
            .map_or(chunk, |limit| (limit - entries.len()).min(chunk));
        let (found, at, more) = page(after.clone(), want).await?;
        let position = first_at.get_or_insert(at).clone();
        if let Some(last) = found.last() {
            after = Some(last.publication.key.clone());
        }
        entries.extend(found);
        let full = query.limit.is_some_and(|limit| entries.len() >= limit);
        if !more || full {
            let cursor = match (&after, more && full) {
                (Some(after), true) => Some(spindle_hub::map::encode_cursor(channel, after)),
                _ => None,
            };
            return Ok(MapState {
                position,
                entries,
                cursor,
            });
        }
    }
}

/// The map storage a node runs on (the trait is not object-safe).
#[derive(Debug)]
pub enum AnyMapBroker {
    Memory(MemoryMapBroker),
    Redis(Box<RedisMapBroker>),
    Postgres(PostgresMapBroker),
}

impl MapBroker for AnyMapBroker {
    async fn write(
        &self,
        channel: &str,
        settings: MapSettings,
        write: MapWrite<'_>,
    ) -> Result<MapUpdate, MapError> {
        match self {
            AnyMapBroker::Memory(m) => m.write(channel, settings, write).await,
            AnyMapBroker::Redis(m) => m.write(channel, settings, write).await,
            AnyMapBroker::Postgres(m) => m.write(channel, settings, write).await,
        }
    }

    async fn state(
        &self,
        channel: &str,
        settings: MapSettings,
        query: StateQuery<'_>,
    ) -> Result<MapState, MapReadError> {
        match self {
            AnyMapBroker::Memory(m) => m.state(channel, settings, query).await,
            AnyMapBroker::Redis(m) => m.state(channel, settings, query).await,
            AnyMapBroker::Postgres(m) => m.state(channel, settings, query).await,
        }
    }

    async fn stream(
        &self,
        channel: &str,
        settings: MapSettings,
        query: &HistoryQuery,
    ) -> Result<HistoryResult, MapReadError> {
        match self {
            AnyMapBroker::Memory(m) => m.stream(channel, settings, query).await,
            AnyMapBroker::Redis(m) => m.stream(channel, settings, query).await,
            AnyMapBroker::Postgres(m) => m.stream(channel, settings, query).await,
        }
    }

    async fn stats(&self, channel: &str) -> Result<usize, BrokerError> {
        match self {
            AnyMapBroker::Memory(m) => m.stats(channel).await,
            AnyMapBroker::Redis(m) => m.stats(channel).await,
            AnyMapBroker::Postgres(m) => m.stats(channel).await,
        }
    }

    async fn clear(&self, channel: &str) -> Result<(), BrokerError> {
        match self {
            AnyMapBroker::Memory(m) => m.clear(channel).await,
            AnyMapBroker::Redis(m) => m.clear(channel).await,
            AnyMapBroker::Postgres(m) => m.clear(channel).await,
        }
    }
}
