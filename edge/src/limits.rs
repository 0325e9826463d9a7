//! Node-level admission limits checked before a connection is accepted (docs/protocol.md §1.9:
//! HTTP 503 before the upgrade): `client.connection_rate_limit`, new connections per second.
//! (`client.connection_limit`, the open connections of the node, is a count the local hub
//! keeps; [`crate::Shared::refusal`] checks both.)
//!
//! The rate is a token bucket holding at most one second's worth of connections: a node that
//! was quiet accepts a burst of `rate` at once, then `rate` per second. Time is passed in.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// New connections per second, as a token bucket. `rate` 0 admits everything.
#[derive(Debug)]
pub(crate) struct ConnectionRate {
    rate: u32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl ConnectionRate {
    /// A full bucket for `rate` connections per second (`0` = no limit).
    pub(crate) fn new(rate: u32, now: Instant) -> ConnectionRate {
        ConnectionRate {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(rate),
                refilled: now,
            }),
        }
    }

    /// Takes one connection's token if there is one; whether the connection may proceed.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zero_is_no_limit() {
        let now = Instant::now();
        let rate = ConnectionRate::new(0, now);
        assert!((0..10_000).all(|_| rate.admit(now)));
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let start = Instant::now();
        let rate = ConnectionRate::new(4, start);
        assert!((0..4).all(|_| rate.admit(start)));
        assert!(!rate.admit(start));
        // A quarter second later one more token has come back.
        let later = start + Duration::from_millis(250);
        assert!(rate.admit(later));
        assert!(!rate.admit(later));
        // A long pause refills the bucket, but never past one second's worth.
        let much_later = later + Duration::from_secs(60);
        assert!((0..4).all(|_| rate.admit(much_later)));
        assert!(!rate.admit(much_later));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let start = Instant::now() + Duration::from_secs(1);
        let rate = ConnectionRate::new(1, start);
        assert!(rate.admit(start));
        assert!(!rate.admit(start - Duration::from_millis(500)));
    }
}
