//! A bound on connections that hold a descriptor before showing they are clients (a TLS
//! handshake not finished, no request sent yet): at the bound, a new connection closes the
//! oldest of them. Silent or stalling peers then cannot take every descriptor, and a client that
//! gets on with it (a prompt handshake, a prompt request) is never the oldest for long.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

/// A connection in a phase the bound covers.
pub(crate) trait Pending {
    /// Whether it is still in that phase (its slot is free again once it is not, or once the
    /// connection is gone).
    fn still_pending(&self) -> bool;
    /// Closes it: the bound needs its slot.
    fn evict(&self);
}

/// The connections still pending, oldest first.
pub(crate) struct Oldest<T> {
    limit: usize,
    queue: VecDeque<Weak<T>>,
}

impl<T: Pending> Oldest<T> {
    pub(crate) fn new(limit: usize) -> Oldest<T> {
        Oldest {
            limit: limit.max(1),
            queue: VecDeque::new(),
        }
    }

    /// Counts a new connection in; at the limit, the oldest still pending is evicted.
    pub(crate) fn admit(&mut self, pending: &Arc<T>) {
        self.queue
            .retain(|queued| queued.upgrade().is_some_and(|p| p.still_pending()));
        while self.queue.len() >= self.limit {
            if let Some(oldest) = self.queue.pop_front().and_then(|w| w.upgrade()) {
                oldest.evict();
            }
        }
        self.queue.push_back(Arc::downgrade(pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Conn {
        done: AtomicBool,
        evicted: AtomicBool,
    }

    impl Pending for Conn {
        fn still_pending(&self) -> bool {
            !self.done.load(Ordering::Relaxed)
        }
        fn evict(&self) {
            self.evicted.store(true, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_oldest_pending_goes_and_finished_ones_free_their_slot() {
        let mut oldest = Oldest::new(2);
        let a = Arc::new(Conn::default());
        let b = Arc::new(Conn::default());
        let c = Arc::new(Conn::default());
        oldest.admit(&a);
        oldest.admit(&b);
        // a is no longer pending: c takes its slot, nobody is evicted.
        a.done.store(true, Ordering::Relaxed);
        oldest.admit(&c);
        assert!(!b.evicted.load(Ordering::Relaxed) && !c.evicted.load(Ordering::Relaxed));
        // A fourth at the bound evicts b, the oldest still pending.
        let d = Arc::new(Conn::default());
        oldest.admit(&d);
        assert!(b.evicted.load(Ordering::Relaxed));
        assert!(!c.evicted.load(Ordering::Relaxed) && !d.evicted.load(Ordering::Relaxed));
        // A dropped connection frees its slot too.
        drop(c);
        let e = Arc::new(Conn::default());
        oldest.admit(&e);
        assert!(!d.evicted.load(Ordering::Relaxed));
    }
}
