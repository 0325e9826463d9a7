//! Results of publications that carried an idempotency key, kept for [`IDEMPOTENCY_WINDOW`] so
//! a retried publish returns the first one's result instead of publishing again.

use super::StreamPosition;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long an idempotency key's result is remembered: 5 minutes (as in Centrifugo).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Remembered {
    result: Option<StreamPosition>,
    until: Instant,
}

/// Bounded: at most `capacity` keys; past it the oldest key is forgotten first. Expiry is by
/// insertion order (every key lives the same window), so the sweep only looks at the front.
#[derive(Debug)]
pub(crate) struct IdempotencyCache {
    capacity: usize,
    entries: HashMap<String, Remembered>,
    /// Keys in insertion order with their expiry; a key found here with another expiry in
    /// `entries` was re-inserted later and is skipped.
    order: VecDeque<(Instant, String)>,
}

/// One map key for a (channel, idempotency key) pair; the length prefix keeps
/// `("ab", "c")` and `("a", "bc")` apart.
fn cache_key(channel: &str, key: &str) -> String {
    format!("{}:{channel}{key}", channel.len())
}

impl IdempotencyCache {
    pub fn new(capacity: usize) -> IdempotencyCache {
        IdempotencyCache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The earlier result for this key, when it is still remembered at `now`.
    pub fn get(&self, channel: &str, key: &str, now: Instant) -> Option<Option<StreamPosition>> {
        let remembered = self.entries.get(&cache_key(channel, key))?;
        (remembered.until > now).then(|| remembered.result.clone())
    }

    /// Remembers a publication's result until `now + IDEMPOTENCY_WINDOW`.
    pub fn insert(
        &mut self,
        channel: &str,
        key: &str,
        result: Option<StreamPosition>,
        now: Instant,
    ) {
        self.sweep(now);
        while self.entries.len() >= self.capacity {
            if !self.pop_front() {
                break;
            }
        }
        let until = now + IDEMPOTENCY_WINDOW;
        let key = cache_key(channel, key);
        self.order.push_back((until, key.clone()));
        self.entries.insert(key, Remembered { result, until });
    }

    /// Forgets the keys expired at `now`; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while self.order.front().is_some_and(|(until, _)| *until <= now) {
            if self.pop_front() {
                expired += 1;
            }
        }
        expired
    }

    /// Drops the oldest queued key; true when it was still live in `entries`.
    fn pop_front(&mut self) -> bool {
        let Some((until, key)) = self.order.pop_front() else {
            return false;
        };
        if self.entries.get(&key).is_some_and(|r| r.until == until) {
            self.entries.remove(&key);
            return true;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_after_the_window_and_by_capacity() {
        let t0 = Instant::now();
        let mut cache = IdempotencyCache::new(2);
        let at = |offset| Some(StreamPosition::new(offset, "E"));
        cache.insert("ch", "k1", at(1), t0);
        assert_eq!(cache.get("ch", "k1", t0), Some(at(1)));
        assert_eq!(cache.get("c", "hk1", t0), None);
        assert_eq!(cache.get("other", "k1", t0), None);
        let edge = t0 + IDEMPOTENCY_WINDOW;
        assert_eq!(
            cache.get("ch", "k1", edge - Duration::from_millis(1)),
            Some(at(1))
        );
        assert_eq!(cache.get("ch", "k1", edge), None);

        cache.insert("ch", "k2", None, t0 + Duration::from_secs(1));
        cache.insert("ch", "k3", at(3), t0 + Duration::from_secs(2));
        // Capacity 2: k1, the oldest, is gone.
        assert_eq!(cache.len(), 2);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(cache.get("ch", "k1", later), None);
        assert_eq!(cache.get("ch", "k2", later), Some(None));
        assert_eq!(cache.sweep(edge + Duration::from_secs(1)), 1);
        assert_eq!(cache.sweep(edge + Duration::from_secs(2)), 1);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_key_inserted_again_after_expiry_keeps_its_new_window() {
        let t0 = Instant::now();
        let mut cache = IdempotencyCache::new(10);
        cache.insert("ch", "k", None, t0);
        let t1 = t0 + IDEMPOTENCY_WINDOW + Duration::from_secs(1);
        cache.insert("ch", "k", Some(StreamPosition::new(2, "E")), t1);
        assert_eq!(cache.sweep(t1), 0);
        assert_eq!(
            cache.get("ch", "k", t1),
            Some(Some(StreamPosition::new(2, "E")))
        );
    }
}
