//! The in-process presence manager.

use super::{PresenceManager, PresenceStats, PresenceStoreError};
use crate::clock::Clock;
use spindle_hub::presence::Presence;
use spindle_proto::client::ClientInfo;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const SHARDS: usize = 64;

/// Presence entries kept over all channels (1,048,576). Past it, adding evicts the entry
/// closest to expiring.
pub const MAX_PRESENCE_ENTRIES: usize = 1 << 20;

/// Presence sets in memory, channels spread over 64 locks (shards), each a
/// [`spindle_hub::presence::Presence`]. Expiry is lazy per operation plus
/// [`MemoryPresenceManager::sweep`], which the node runs periodically.
pub struct MemoryPresenceManager {
    clock: Arc<dyn Clock>,
    shards: Box<[Mutex<Presence>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for MemoryPresenceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPresenceManager")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl MemoryPresenceManager {
    /// Entries live `ttl` after their last add or refresh.
    pub fn new(clock: Arc<dyn Clock>, ttl: Duration) -> MemoryPresenceManager {
        let per_shard = MAX_PRESENCE_ENTRIES.div_ceil(SHARDS);
        MemoryPresenceManager {
            clock,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Presence::new(ttl, per_shard)))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Presence> {
        let index = self.hasher.hash_one(channel) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every expired entry; returns how many.
    pub fn sweep(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.sweep(self.clock.now())
            })
            .sum()
    }

    /// Entries held now, over all channels.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PresenceManager for MemoryPresenceManager {
    async fn add_presence(
        &self,
        channel: &str,
        info: ClientInfo,
    ) -> Result<bool, PresenceStoreError> {
        let mut shard = self.shard(channel);
        Ok(shard.add(channel, info, self.clock.now()))
    }

    async fn refresh_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<bool, PresenceStoreError> {
        let mut shard = self.shard(channel);
        Ok(shard.refresh(channel, client, self.clock.now()))
    }

    async fn remove_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<Option<ClientInfo>, PresenceStoreError> {
        let mut shard = self.shard(channel);
        Ok(shard.remove(channel, client, self.clock.now()))
    }

    async fn presence(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, PresenceStoreError> {
        let mut shard = self.shard(channel);
        Ok(shard.clients(channel, self.clock.now()))
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, PresenceStoreError> {
        let mut shard = self.shard(channel);
        Ok(shard.stats(channel, self.clock.now()))
    }
}
