//! What the API said about every publish, per channel: the offsets and the epoch it returned.
//! Checked at the end: each channel's offsets must be exactly the run `start+1 ..= start+n`
//! (no gap, no duplicate) under one epoch, so a publish counted as done really got a place in
//! its channel's stream.

/// A publication's place in its channel's stream, as the API returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    pub epoch: String,
}

/// Offsets and epoch per channel (channels by index).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    offsets: Vec<Vec<u64>>,
    epochs: Vec<Option<String>>,
    /// Positions whose epoch differed from the first one seen for their channel.
    epoch_mismatches: u64,
}

/// The outcome of [`Ledger::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerCheck {
    /// Positions recorded over all channels.
    pub recorded: u64,
    /// Channels whose offsets are exactly `start+1 ..= start+n`.
    pub contiguous_channels: u64,
    /// Channels with a gap, a duplicate or an offset outside the run.
    pub broken_channels: u64,
    pub epoch_mismatches: u64,
    /// The first broken channel, described.
    pub first_problem: Option<String>,
}

impl LedgerCheck {
    pub fn is_clean(&self) -> bool {
        self.broken_channels == 0 && self.epoch_mismatches == 0
    }
}

impl Ledger {
    pub fn new(channels: usize) -> Ledger {
        Ledger {
            offsets: vec![Vec::new(); channels],
            epochs: vec![None; channels],
            epoch_mismatches: 0,
        }
    }

    /// Records that a publish to `channel` got `position`.
    pub fn record(&mut self, channel: usize, position: Position) {
        if let Some(offsets) = self.offsets.get_mut(channel) {
            offsets.push(position.offset);
            self.record_epoch(channel, position.epoch);
        }
    }

    /// Adds what `other` recorded (another connection's ledger over the same channels).
    pub fn merge(&mut self, other: Ledger) {
        self.epoch_mismatches += other.epoch_mismatches;
        for (channel, (offsets, epoch)) in other.offsets.into_iter().zip(other.epochs).enumerate() {
            if let Some(epoch) = epoch {
                self.record_epoch(channel, epoch);
            }
            if let Some(mine) = self.offsets.get_mut(channel) {
                mine.extend(offsets);
            }
        }
    }

    fn record_epoch(&mut self, channel: usize, epoch: String) {
        if let Some(slot) = self.epochs.get_mut(channel) {
            match slot {
                Some(known) if *known != epoch => self.epoch_mismatches += 1,
                Some(_) => {}
                None => *slot = Some(epoch),
            }
        }
    }

    /// Publishes recorded for `channel`.
    pub fn count(&self, channel: usize) -> u64 {
        self.offsets.get(channel).map_or(0, |o| o.len() as u64)
    }

    /// The highest offset returned for `channel`.
    pub fn top(&self, channel: usize) -> Option<u64> {
        self.offsets.get(channel)?.iter().copied().max()
    }

    /// The epoch returned for `channel`.
    pub fn epoch(&self, channel: usize) -> Option<&str> {
        self.epochs.get(channel)?.as_deref()
    }

    pub fn channels(&self) -> usize {
        self.offsets.len()
    }

    /// Checks that each channel's offsets are exactly `start(channel)+1 ..= start(channel)+n`.
    pub fn check(&mut self, start: impl Fn(usize) -> u64) -> LedgerCheck {
        let mut check = LedgerCheck {
            epoch_mismatches: self.epoch_mismatches,
            ..LedgerCheck::default()
        };
        for (channel, offsets) in self.offsets.iter_mut().enumerate() {
            offsets.sort_unstable();
            check.recorded += offsets.len() as u64;
            let first = start(channel) + 1;
            let broken = offsets
                .iter()
                .zip(first..)
                .position(|(&got, want)| got != want);
            match broken {
                None => check.contiguous_channels += 1,
                Some(i) => {
                    check.broken_channels += 1;
                    check.first_problem.get_or_insert_with(|| {
                        format!(
                            "channel #{channel}: offset #{i} is {} where {} was due ({} offsets)",
                            offsets[i],
                            first + i as u64,
                            offsets.len()
                        )
                    });
                }
            }
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, epoch: &str) -> Position {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }

    #[test]
    fn contiguous_runs_pass_and_gaps_or_duplicates_fail() {
        let mut a = Ledger::new(3);
        let mut b = Ledger::new(3);
        for offset in [1, 3] {
            a.record(0, at(offset, "e"));
        }
        b.record(0, at(2, "e"));
        a.record(1, at(1, "e"));
        b.record(1, at(3, "e")); // gap at 2
        a.record(2, at(6, "e"));
        b.record(2, at(6, "e")); // duplicate
        a.merge(b);
        assert_eq!(a.count(0), 3);
        assert_eq!(a.top(1), Some(3));
        let check = a.check(|c| if c == 2 { 5 } else { 0 });
        assert_eq!(check.recorded, 7);
        assert_eq!(check.contiguous_channels, 1);
        assert_eq!(check.broken_channels, 2);
        assert!(!check.is_clean());
        assert!(check.first_problem.unwrap().starts_with("channel #1"));
    }

    #[test]
    fn a_second_epoch_on_one_channel_is_a_mismatch() {
        let mut a = Ledger::new(1);
        a.record(0, at(1, "x"));
        let mut b = Ledger::new(1);
        b.record(0, at(2, "y"));
        a.merge(b);
        let check = a.check(|_| 0);
        assert_eq!((check.epoch_mismatches, check.broken_channels), (1, 0));
        assert!(!check.is_clean());
        assert_eq!(a.epoch(0), Some("x"));
    }
}
