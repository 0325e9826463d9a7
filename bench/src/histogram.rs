//! A latency histogram many tasks record into at once: log-linear buckets over microseconds
//! (exact below 128 µs, then 64 buckets per power of two, i.e. under 1.6 % relative error),
//! atomic counters, no allocation per sample.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Values below this are counted exactly (one bucket per microsecond).
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const HALF: u64 = LINEAR / 2;
/// Largest value kept apart (~12.7 days in µs); larger ones land in the last bucket.
const CLAMP: u64 = (1 << 40) - 1;
/// Number of buckets: the index of [`CLAMP`] plus one.
const BUCKETS: usize = bucket_of(CLAMP) + 1;

/// Latencies in microseconds, recorded concurrently.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    /// Counts one sample of `micros` microseconds.
    pub fn record(&self, micros: u64) {
        self.buckets[bucket_of(micros.min(CLAMP))].fetch_add(1, Ordering::Relaxed);
        if micros > self.max.load(Ordering::Relaxed) {
            self.max.fetch_max(micros, Ordering::Relaxed);
        }
    }

    /// A consistent-enough copy for reporting (take it once recording has stopped).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            max: self.max.load(Ordering::Relaxed),
        }
    }
}

/// A frozen histogram.
#[derive(Debug, Clone)]
pub struct Snapshot {
    counts: Vec<u64>,
    max: u64,
}

impl Snapshot {
    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Largest sample, exact.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max)
    }

    /// The value at quantile `q` (0.0–1.0): the upper edge of the bucket holding the sample of
    /// rank ⌈q·count⌉, never above the exact maximum. `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // Float → integer rank: q is a small fixed set of quantiles, count < 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (_, upper) = bounds_of(index);
                return Some(Duration::from_micros(upper.min(self.max)));
            }
        }
        Some(Duration::from_micros(self.max))
    }
}

/// The bucket of a value (at most [`CLAMP`]).
const fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    // exponent ≥ 1 such that micros >> exponent lies in [HALF, LINEAR).
    let exponent = (63 - micros.leading_zeros() as u64) - HALF.trailing_zeros() as u64;
    let mantissa = micros >> exponent;
    (exponent * HALF + mantissa) as usize
}

/// The smallest and largest value of a bucket.
fn bounds_of(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < LINEAR {
        return (index, index);
    }
    let exponent = index / HALF - 1;
    let mantissa = index % HALF + HALF;
    (mantissa << exponent, ((mantissa + 1) << exponent) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        let mut expected_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = bounds_of(index);
            assert_eq!(low, expected_low, "bucket {index}");
            assert!(high >= low);
            assert_eq!(bucket_of(low), index);
            assert_eq!(bucket_of(high), index);
            expected_low = high + 1;
        }
        assert_eq!(expected_low, CLAMP + 1);
    }

    #[test]
    fn relative_error_is_small() {
        for v in [128u64, 1_000, 4_999, 50_000, 1_234_567, 987_654_321] {
            let (low, high) = bounds_of(bucket_of(v));
            assert!((high - low) as f64 / low as f64 <= 1.0 / 64.0 + 1e-9, "{v}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        assert_eq!(s.max(), Duration::from_micros(1000));
        let p50 = s.quantile(0.5).unwrap().as_micros() as u64;
        let p99 = s.quantile(0.99).unwrap().as_micros() as u64;
        assert!((500..=508).contains(&p50), "p50 {p50}");
        assert!((990..=1000).contains(&p99), "p99 {p99}");
        assert_eq!(s.quantile(1.0), Some(Duration::from_micros(1000)));
        assert_eq!(s.quantile(0.0), Some(Duration::from_micros(1)));
    }

    #[test]
    fn small_values_are_exact_and_outliers_show_in_the_tail() {
        let h = Histogram::new();
        for _ in 0..98 {
            h.record(7);
        }
        h.record(40_000);
        h.record(u64::MAX);
        let s = h.snapshot();
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(7)));
        assert_eq!(s.quantile(0.98), Some(Duration::from_micros(7)));
        let p99 = s.quantile(0.99).unwrap().as_micros() as u64;
        assert!((40_000..40_000 + 40_000 / 64).contains(&p99), "{p99}");
        assert_eq!(s.max(), Duration::from_micros(u64::MAX));
    }

    #[test]
    fn empty_has_no_quantiles() {
        assert_eq!(Histogram::new().snapshot().quantile(0.5), None);
    }
}
