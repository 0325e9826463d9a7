//! The in-process map storage: map channels in memory, changes delivered to this node's
//! handler.

use super::{MapBroker, MapError, MapReadError, MapUpdate};
use crate::broker::{BrokerError, EventHandler, HistoryQuery, HistoryResult};
use crate::clock::Clock;
use spindle_hub::map::{
    MapLimits, MapOutcome, MapSettings, MapState, MapStore, MapWrite, StateQuery,
};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Channel shards: writes to different channels rarely wait for each other.
const SHARDS: usize = 16;

fn random_u64() -> u64 {
    rand::random()
}

type Shard = MapStore<fn() -> u64>;

/// Map channels living inside the process (1,048,576 channels over all shards, each of at
/// most 1,048,576 keys; a write past either bound is refused, never evicting state).
///
/// A write changes state, appends to the stream and hands the change to the handler under
/// its channel's shard lock: the handler sees a channel's changes in offset order, and a
/// state page read under the same lock is exactly the changes up to its position. The
/// handler does not block (it queues per edge), so holding the lock across it is short.
/// Expired keys are removed by [`MemoryMapBroker::sweep`], which the node runs every second.
pub struct MemoryMapBroker {
    handler: Arc<dyn EventHandler>,
    clock: Arc<dyn Clock>,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for MemoryMapBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryMapBroker")
            .field("channels", &self.channels())
            .finish()
    }
}

impl MemoryMapBroker {
    /// Map storage delivering to `handler`, reading time from `clock`.
    pub fn new(handler: Arc<dyn EventHandler>, clock: Arc<dyn Clock>) -> MemoryMapBroker {
        let limits = MapLimits {
            max_channels: (1 << 20) / SHARDS,
            ..MapLimits::default()
        };
        let entropy: fn() -> u64 = random_u64;
        MemoryMapBroker {
            handler,
            clock,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(MapStore::new(limits, entropy)))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(channel) as usize % self.shards.len();
        // A panic inside a shard leaves at worst one write half-applied; the other channels
        // carry on.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Map channels held now.
    pub fn channels(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Removes every key whose TTL passed, delivering each removal, and forgets expired
    /// changes and idle channels; returns the number of keys removed.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        for shard in &self.shards {
            let mut store = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for expired in store.sweep(now) {
                self.handler.on_publication(
                    &expired.channel,
                    expired.position.as_ref(),
                    &expired.publication,
                    None,
                );
                removed += 1;
            }
        }
        removed
    }
}

impl MapBroker for MemoryMapBroker {
    async fn write(
        &self,
        channel: &str,
        settings: MapSettings,
        write: MapWrite<'_>,
    ) -> Result<MapUpdate, MapError> {
        let mut store = self.shard(channel);
        match store.write(channel, settings, write, self.clock.now())? {
            MapOutcome::Written {
                position,
                publication,
                prev,
            } => {
                let at = settings.positioned().then_some(&position);
                self.handler
                    .on_publication(channel, at, &publication, prev.as_deref());
                Ok(MapUpdate {
                    position,
                    suppressed: None,
                })
            }
            MapOutcome::Suppressed { position, reason } => Ok(MapUpdate {
                position,
                suppressed: Some(reason),
            }),
        }
    }

    async fn state(
        &self,
        channel: &str,
        settings: MapSettings,
        query: StateQuery<'_>,
    ) -> Result<MapState, MapReadError> {
        let now = self.clock.now();
        Ok(self.shard(channel).state(channel, settings, query, now)?)
    }

    async fn stream(
        &self,
        channel: &str,
        settings: MapSettings,
        query: &HistoryQuery,
    ) -> Result<HistoryResult, MapReadError> {
        let now = self.clock.now();
        Ok(self.shard(channel).stream(channel, settings, query, now)?)
    }

    async fn stats(&self, channel: &str) -> Result<usize, BrokerError> {
        Ok(self.shard(channel).stats(channel))
    }

    async fn clear(&self, channel: &str) -> Result<(), BrokerError> {
        self.shard(channel).clear(channel);
        Ok(())
    }
}
