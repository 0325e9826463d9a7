//! Where the core takes the time from: [`SystemClock`] in production; with the `test-util`
//! feature, `ManualClock` lets tests move time by hand so expiry is tested without sleeping.

use std::fmt;
use std::time::Instant;

/// A monotonic clock.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Instant;
}

/// The machine's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(any(test, feature = "test-util"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "test-util"))]
mod manual {
    use super::Clock;
    use std::sync::{Mutex, PoisonError};
    use std::time::{Duration, Instant};

    /// A clock that stands still until [`ManualClock::advance`] moves it.
    #[derive(Debug)]
    pub struct ManualClock {
        now: Mutex<Instant>,
    }

    impl Default for ManualClock {
        fn default() -> Self {
            ManualClock::new()
        }
    }

    impl ManualClock {
        /// Starts at the machine's current instant.
        pub fn new() -> ManualClock {
            ManualClock {
                now: Mutex::new(Instant::now()),
            }
        }

        /// Moves the clock forward by `by`.
        pub fn advance(&self, by: Duration) {
            let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
            *now += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.now.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }
}
