//! Stream epochs: 8 ASCII letters drawn from a passed-in source of randomness.

/// Letters in an epoch.
pub const EPOCH_LENGTH: usize = 8;

const LETTERS: &[u8; 52] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A source of random numbers for epochs. The core passes a real random generator; tests pass
/// a counter so epochs are predictable. Any `FnMut() -> u64` is one.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Entropy for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// A fresh epoch: [`EPOCH_LENGTH`] letters `A–Z a–z` taken from one draw (52⁸ ≈ 5·10¹³
/// values fit in a `u64`).
pub fn new_epoch(entropy: &mut impl Entropy) -> String {
    let mut value = entropy.next_u64();
    let mut epoch = String::with_capacity(EPOCH_LENGTH);
    for _ in 0..EPOCH_LENGTH {
        epoch.push(char::from(LETTERS[(value % 52) as usize]));
        value /= 52;
    }
    epoch
}

/// A fresh epoch that differs from `previous` (a few draws at most with any source that is not
/// constant).
pub(crate) fn next_epoch(entropy: &mut impl Entropy, previous: Option<&str>) -> String {
    let mut epoch = new_epoch(entropy);
    for _ in 0..16 {
        if Some(epoch.as_str()) != previous {
            break;
        }
        epoch = new_epoch(entropy);
    }
    epoch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_eight_letters() {
        let mut zero = || 0u64;
        assert_eq!(new_epoch(&mut zero), "AAAAAAAA");
        let mut one = || 1u64;
        assert_eq!(new_epoch(&mut one), "BAAAAAAA");
        let mut max = || u64::MAX;
        let epoch = new_epoch(&mut max);
        assert_eq!(epoch.len(), EPOCH_LENGTH);
        assert!(epoch.bytes().all(|b| b.is_ascii_alphabetic()), "{epoch}");
        let mut last = || 51u64 + 52 * 26;
        assert_eq!(new_epoch(&mut last), "zaAAAAAA");
    }

    #[test]
    fn next_epoch_differs_from_the_previous_one() {
        let mut values = [7u64, 7, 7, 8].into_iter();
        let mut source = move || values.next().unwrap_or(9);
        let first = new_epoch(&mut source);
        let second = next_epoch(&mut source, Some(&first));
        assert_ne!(first, second);
        assert_eq!(second, new_epoch(&mut || 8u64));
    }
}
