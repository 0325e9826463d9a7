//! Channel → local subscribers, for fan-out on an edge.
//!
//! Sharded by channel name so unrelated channels never contend. A broadcast takes a snapshot
//! (`Arc<[V]>`) under the shard lock and writes to the subscribers after releasing it, so a slow
//! or subscribing client never stalls a channel. The snapshot is rebuilt lazily: only the first
//! broadcast after a membership change pays for it.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What an [`SubscriptionRegistry::add`] changed; the first subscriber of a channel makes the
/// edge register interest with the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    FirstInChannel,
    Added,
    /// The key was already subscribed; its value was replaced.
    Replaced,
}

/// What a [`SubscriptionRegistry::remove`] changed; the last subscriber leaving makes the edge
/// drop its interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    LastInChannel,
    Removed,
    NotSubscribed,
}

/// Subscribers of every channel, keyed by `K` (a connection id) holding `V` (what fan-out
/// writes to, typically a cheap handle).
#[derive(Debug)]
pub struct SubscriptionRegistry<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: RandomState,
}

type Shard<K, V> = HashMap<Arc<str>, Members<K, V>>;

#[derive(Debug)]
struct Members<K, V> {
    by_key: HashMap<K, V>,
    snapshot: Option<Arc<[V]>>,
}

impl<K: Eq + Hash, V: Clone> SubscriptionRegistry<K, V> {
    /// A registry with `shards` shards (rounded up to a power of two, at least 1).
    pub fn new(shards: usize) -> Self {
        let count = shards.max(1).next_power_of_two();
        SubscriptionRegistry {
            shards: (0..count).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard<K, V>> {
        // Truncating the hash is fine: it only picks a shard.
        let index = (self.hasher.hash_one(channel) as usize) & (self.shards.len() - 1);
        // A panic elsewhere while holding the lock cannot leave the map half-updated in a way
        // that matters more than losing fan-out, so keep serving.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn add(&self, channel: &str, key: K, value: V) -> Added {
        let mut shard = self.shard(channel);
        let members = shard.entry(Arc::from(channel)).or_insert_with(|| Members {
            by_key: HashMap::new(),
            snapshot: None,
        });
        members.snapshot = None;
        let first = members.by_key.is_empty();
        match members.by_key.insert(key, value) {
            Some(_) => Added::Replaced,
            None if first => Added::FirstInChannel,
            None => Added::Added,
        }
    }

    pub fn remove(&self, channel: &str, key: &K) -> Removed {
        let mut shard = self.shard(channel);
        let Entry::Occupied(mut entry) = shard.entry(Arc::from(channel)) else {
            return Removed::NotSubscribed;
        };
        let members = entry.get_mut();
        if members.by_key.remove(key).is_none() {
            return Removed::NotSubscribed;
        }
        members.snapshot = None;
        if members.by_key.is_empty() {
            entry.remove();
            Removed::LastInChannel
        } else {
            Removed::Removed
        }
    }

    /// The channel's subscribers at this moment; write to them after this returns.
    pub fn subscribers(&self, channel: &str) -> Option<Arc<[V]>> {
        let mut shard = self.shard(channel);
        let members = shard.get_mut(channel)?;
        let snapshot = members
            .snapshot
            .get_or_insert_with(|| members.by_key.values().cloned().collect());
        Some(Arc::clone(snapshot))
    }

    pub fn is_subscribed(&self, channel: &str, key: &K) -> bool {
        self.shard(channel)
            .get(channel)
            .is_some_and(|m| m.by_key.contains_key(key))
    }

    /// Number of subscribers of one channel.
    pub fn count(&self, channel: &str) -> usize {
        self.shard(channel)
            .get(channel)
            .map_or(0, |m| m.by_key.len())
    }

    /// Channels with at least one subscriber, and subscriptions in all, for node stats.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            totals.channels += shard.len();
            totals.subscriptions += shard.values().map(|m| m.by_key.len()).sum::<usize>();
        }
        totals
    }

    /// Every channel with subscribers (for `channels` API and re-registering interest after a
    /// link is re-established).
    pub fn channels(&self) -> Vec<Arc<str>> {
        let mut channels = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            channels.extend(shard.keys().cloned());
        }
        channels
    }
}

/// Registry sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub channels: usize,
    pub subscriptions: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_subscribers_are_reported() {
        let registry = SubscriptionRegistry::new(4);
        assert_eq!(registry.add("news", 1, "a"), Added::FirstInChannel);
        assert_eq!(registry.add("news", 2, "b"), Added::Added);
        assert_eq!(registry.add("news", 2, "b2"), Added::Replaced);
        assert_eq!(registry.count("news"), 2);
        assert_eq!(registry.remove("news", &1), Removed::Removed);
        assert_eq!(registry.remove("news", &1), Removed::NotSubscribed);
        assert_eq!(registry.remove("other", &1), Removed::NotSubscribed);
        assert_eq!(registry.remove("news", &2), Removed::LastInChannel);
        assert!(registry.subscribers("news").is_none());
        assert_eq!(registry.totals(), Totals::default());
    }

    #[test]
    fn snapshots_are_shared_until_membership_changes() {
        let registry = SubscriptionRegistry::new(1);
        registry.add("c", 1, 10);
        registry.add("c", 2, 20);
        let first = registry.subscribers("c").unwrap();
        let second = registry.subscribers("c").unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let mut values = first.to_vec();
        values.sort_unstable();
        assert_eq!(values, [10, 20]);
        registry.add("c", 3, 30);
        let third = registry.subscribers("c").unwrap();
        assert_eq!(third.len(), 3);
        // The old snapshot is unaffected: a broadcast in flight keeps its receivers.
        assert_eq!(first.len(), 2);
    }

    #[test]
    fn a_held_snapshot_does_not_block_changes() {
        let registry = SubscriptionRegistry::new(2);
        registry.add("c", 1, 1);
        let snapshot = registry.subscribers("c").unwrap();
        // Writing to subscribers happens here, with no lock held: changes go through.
        assert_eq!(registry.remove("c", &1), Removed::LastInChannel);
        assert_eq!(registry.add("c", 2, 2), Added::FirstInChannel);
        assert_eq!(snapshot.len(), 1);
    }

    #[test]
    fn totals_and_channels_span_all_shards() {
        let registry = SubscriptionRegistry::new(8);
        for channel in 0..100 {
            for key in 0..3 {
                registry.add(&format!("ch{channel}"), key, ());
            }
        }
        assert_eq!(
            registry.totals(),
            Totals {
                channels: 100,
                subscriptions: 300
            }
        );
        assert_eq!(registry.channels().len(), 100);
        assert!(registry.is_subscribed("ch7", &2));
        assert!(!registry.is_subscribed("ch7", &3));
    }

    #[test]
    fn concurrent_changes_keep_counts_exact() {
        let registry = Arc::new(SubscriptionRegistry::new(16));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let registry = Arc::clone(&registry);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let channel = format!("c{}", i % 10);
                        registry.add(&channel, (t, i), i);
                        let _ = registry.subscribers(&channel);
                        if i % 2 == 0 {
                            registry.remove(&channel, &(t, i));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(registry.totals().subscriptions, 4 * 500);
    }
}
