//! The real clock for the pure session: `hub` never reads it, the edge makes one
//! `spindle_hub::session::Now` per frame or timer tick.

use spindle_hub::session::Now;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// `Now::system()`: both clocks read now.
pub trait SystemNow {
    fn system() -> Self;
}

impl SystemNow for Now {
    fn system() -> Now {
        Now {
            mono: Instant::now(),
            unix_ms: unix_ms(),
        }
    }
}

/// The wall clock in unix milliseconds.
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        // A clock before 1970 is broken; 0 keeps every token check failing safe.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_clocks() {
        let before = Instant::now();
        let now = Now::system();
        assert!(now.mono >= before);
        // Some time after 2020-01-01.
        assert!(now.unix_ms > 1_577_836_800_000);
    }
}
