//! [`Duration`]: a configuration duration written the way Go (and so Centrifugo) writes them.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A non-negative duration in the configuration.
///
/// Written as a Go duration string: a sequence of decimal numbers, each with an optional fraction
/// and a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `"25s"`, `"1h30m"`, `"300ms"`, `"1.5s"`,
/// `"720h"`, or the bare `"0"`. A bare JSON/YAML/TOML **integer counts nanoseconds**, exactly as
/// in Centrifugo (its durations are Go `time.Duration`s): `"history_ttl": 300` is 300 ns, which
/// the second-precision checks then reject, so write `"300s"`. Negative durations are rejected.
/// The largest accepted value is Go's limit, about 292 years.
///
/// Serializes back to Go's canonical form (`"25s"`, `"1h30m0s"`, `"720h0m0s"`, `"1.5s"`, `"0s"`).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidDuration {
    input: String,
    reason: &'static str,
}

impl fmt::Display for InvalidDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration {:?}: {} (write e.g. \"25s\", \"1h30m\", \"300ms\")",
            self.input, self.reason
        )
    }
}

impl std::error::Error for InvalidDuration {}

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// A whole number of seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A whole number of milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    /// The standard-library duration.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }

    /// True for zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// True when the duration is a whole number of seconds (zero included).
    pub const fn is_whole_seconds(self) -> bool {
        self.0.subsec_nanos() == 0
    }

    fn from_nanos_checked(nanos: u128) -> Option<Self> {
        if nanos > i64::MAX as u128 {
            return None;
        }
        Some(Duration(std::time::Duration::from_nanos(nanos as u64)))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        Duration(value)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(value: Duration) -> Self {
        value.0
    }
}

impl FromStr for Duration {
    type Err = InvalidDuration;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| InvalidDuration {
            input: input.to_owned(),
            reason,
        };
        let mut rest = input.strip_prefix('+').unwrap_or(input);
        if rest.starts_with('-') {
            return Err(fail("negative durations are not allowed"));
        }
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        if rest.is_empty() {
            return Err(fail("empty"));
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, after) = rest.split_at(int_len);
            rest = after;
            let mut frac_part = "";
            if let Some(after_dot) = rest.strip_prefix('.') {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                (frac_part, rest) = after_dot.split_at(frac_len);
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(fail("expected a number"));
            }
            let unit_len = rest
                .find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (unit, after_unit) = rest.split_at(unit_len);
            rest = after_unit;
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO.into(),
                "ms" => NANOS_PER_MILLI.into(),
                "s" => NANOS_PER_SEC.into(),
                "m" => 60 * u128::from(NANOS_PER_SEC),
                "h" => 3_600 * u128::from(NANOS_PER_SEC),
                "" => return Err(fail("missing unit")),
                _ => return Err(fail("unknown unit")),
            };
            if int_part.len() > 20 {
                return Err(fail("too large"));
            }
            let whole: u128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| fail("expected a number"))?
            };
            // Digits past nanosecond precision of the largest unit cannot change the result.
            let frac_digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = if frac_digits.is_empty() {
                0
            } else {
                frac_digits.parse().map_err(|_| fail("expected a number"))?
            };
            let frac_scale = 10u128.pow(frac_digits.len() as u32);
            total += whole * scale + frac * scale / frac_scale;
            if total > i64::MAX as u128 {
                return Err(fail("too large"));
            }
        }
        Duration::from_nanos_checked(total).ok_or_else(|| fail("too large"))
    }
}

/// `value / unit` with the remainder as a decimal fraction without trailing zeros.
fn decimal(value: u64, unit: u64, out: &mut fmt::Formatter<'_>) -> fmt::Result {
    let whole = value / unit;
    let rem = value % unit;
    if rem == 0 {
        return write!(out, "{whole}");
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    write!(out, "{whole}.{}", digits.trim_end_matches('0'))
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return f.write_str("0s");
        }
        if nanos < NANOS_PER_MICRO {
            return write!(f, "{nanos}ns");
        }
        if nanos < NANOS_PER_MILLI {
            decimal(nanos, NANOS_PER_MICRO, f)?;
            return f.write_str("\u{b5}s");
        }
        if nanos < NANOS_PER_SEC {
            decimal(nanos, NANOS_PER_MILLI, f)?;
            return f.write_str("ms");
        }
        let secs = nanos / NANOS_PER_SEC;
        let (hours, minutes) = (secs / 3_600, (secs / 60) % 60);
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        decimal(
            (secs % 60) * NANOS_PER_SEC + nanos % NANOS_PER_SEC,
            NANOS_PER_SEC,
            f,
        )?;
        f.write_str("s")
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"25s\" or an integer of nanoseconds")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Duration, E> {
                value.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, nanos: u64) -> Result<Duration, E> {
                Duration::from_nanos_checked(nanos.into())
                    .ok_or_else(|| E::custom("duration too large"))
            }

            fn visit_i64<E: de::Error>(self, nanos: i64) -> Result<Duration, E> {
                let nanos = u64::try_from(nanos)
                    .map_err(|_| E::custom("negative durations are not allowed"))?;
                self.visit_u64(nanos)
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn parses_go_duration_strings() {
        let table: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("25s", Duration::from_secs(25)),
            ("+25s", Duration::from_secs(25)),
            ("1h30m", Duration::from_secs(5_400)),
            ("300ms", ms(300)),
            ("1.5s", ms(1_500)),
            (".5s", ms(500)),
            ("1.s", Duration::from_secs(1)),
            ("720h", Duration::from_secs(720 * 3_600)),
            ("1m0.25s", ms(60_250)),
            ("2h45m30s", Duration::from_secs(2 * 3_600 + 45 * 60 + 30)),
            ("100ns", std::time::Duration::from_nanos(100).into()),
            ("3us", std::time::Duration::from_micros(3).into()),
            ("3\u{b5}s", std::time::Duration::from_micros(3).into()),
            ("3\u{3bc}s", std::time::Duration::from_micros(3).into()),
            (
                "1.000000001s",
                std::time::Duration::from_nanos(1_000_000_001).into(),
            ),
        ];
        for (input, want) in table {
            assert_eq!(input.parse::<Duration>().as_ref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_duration_strings() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("25", "missing unit"),
            ("1h30", "missing unit"),
            ("5 s", "unknown unit"),
            ("5d", "unknown unit"),
            ("s", "expected a number"),
            (".s", "expected a number"),
            ("-1s", "negative durations are not allowed"),
            ("3000000h", "too large"),
            ("99999999999999999999999s", "too large"),
        ];
        for (input, reason) in table {
            let err = input.parse::<Duration>().unwrap_err();
            assert_eq!(err.reason, *reason, "{input}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn formats_like_go() {
        let table: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_secs(25), "25s"),
            (Duration::from_secs(5_400), "1h30m0s"),
            (Duration::from_secs(720 * 3_600), "720h0m0s"),
            (ms(300), "300ms"),
            (ms(1_500), "1.5s"),
            (ms(60_250), "1m0.25s"),
            (std::time::Duration::from_nanos(1_500).into(), "1.5\u{b5}s"),
            (std::time::Duration::from_nanos(7).into(), "7ns"),
            (std::time::Duration::from_nanos(2_500_000).into(), "2.5ms"),
        ];
        for (duration, want) in table {
            assert_eq!(duration.to_string(), *want);
            assert_eq!(
                want.parse::<Duration>().as_ref(),
                Ok(duration),
                "round trip {want}"
            );
        }
    }

    #[test]
    fn serde_accepts_strings_and_integer_nanoseconds() {
        let d: Duration = serde_json::from_str("\"1.5s\"").unwrap();
        assert_eq!(d, ms(1_500));
        let d: Duration = serde_json::from_str("1000000000").unwrap();
        assert_eq!(d, Duration::from_secs(1));
        assert!(serde_json::from_str::<Duration>("-1").is_err());
        assert!(serde_json::from_str::<Duration>("1.5").is_err());
        assert_eq!(
            serde_json::to_string(&Duration::from_secs(90)).unwrap(),
            "\"1m30s\""
        );
        assert!(!ms(1_500).is_whole_seconds());
        assert!(Duration::from_secs(3).is_whole_seconds());
    }
}
