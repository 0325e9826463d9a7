//! Fossil deltas of publication payloads (docs/protocol.md §4.6).
//!
//! The format is the one of the Fossil SCM (`delta.c`, "Delta Encoding"), which the SDKs apply:
//!
//! ```text
//! delta   = INT "\n" command* INT ";"      the target's length, commands, the target's checksum
//! command = INT "@" INT ","                copy INT bytes from the source at offset INT
//!         | INT ":" <INT literal bytes>    insert bytes
//! INT     = digits of "0-9A-Z_a-z~", base 64, most significant first ("0" for zero)
//! ```
//!
//! The checksum is the wrapping sum of the target read as big-endian 32-bit words, the last one
//! padded with zero bytes.
//!
//! [`create`] is our own encoder: a rolling hash over the target finds blocks of the source
//! (indexed every [`WINDOW`] bytes), extended both ways into the longest match, taken when the
//! copy command is shorter than the bytes it replaces. When the target is UTF-8 text, copies
//! start and end on character boundaries, so every inserted run is whole characters and the
//! patch itself is UTF-8 (JSON clients receive it as a string, docs/protocol.md §4.6). [`apply`] is a
//! checked decoder for tests and for anyone who must read untrusted deltas: malformed input is
//! an error, never a panic, and the output never grows past the length the header announces.

use thiserror::Error;

/// Bytes per indexed source block and per rolling-hash window.
pub const WINDOW: usize = 16;

/// Candidates looked at per hash bucket before giving up (bounds the work on repetitive input).
const MAX_CHAIN: usize = 64;

const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// A delta that makes `target` from `source`.
pub fn create(source: &[u8], target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() / 2 + 16);
    put_int(&mut out, target.len() as u64);
    out.push(b'\n');
    let utf8 = std::str::from_utf8(target).is_ok();
    let mut base = 0;
    if source.len() >= WINDOW && target.len() >= WINDOW {
        let index = Index::new(source);
        base = encode_copies(&index, source, target, utf8, &mut out);
    }
    if base < target.len() {
        put_insert(&mut out, &target[base..]);
    }
    put_int(&mut out, u64::from(checksum(target)));
    out.push(b';');
    out
}

/// Why a delta could not be applied.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ApplyError {
    #[error("delta: malformed integer")]
    BadInt,
    #[error("delta: size not terminated by a newline")]
    BadHeader,
    #[error("delta: copy command not terminated by ','")]
    BadCopy,
    #[error("delta: copy outside the source")]
    CopyOutOfRange,
    #[error("delta: insert past the end of the delta")]
    InsertOutOfRange,
    #[error("delta: output larger than announced")]
    TooLarge,
    #[error("delta: unknown operator")]
    UnknownOperator,
    #[error("delta: checksum mismatch")]
    BadChecksum,
    #[error("delta: output size differs from the announced size")]
    SizeMismatch,
    #[error("delta: unterminated")]
    Unterminated,
}

/// Applies `delta` to `source`. Every malformed input is an [`ApplyError`].
pub fn apply(source: &[u8], delta: &[u8]) -> Result<Vec<u8>, ApplyError> {
    let mut reader = Reader {
        data: delta,
        pos: 0,
    };
    let limit = reader.int()?;
    if reader.byte() != Some(b'\n') {
        return Err(ApplyError::BadHeader);
    }
    let limit = usize::try_from(limit).map_err(|_| ApplyError::TooLarge)?;
    let mut out = Vec::with_capacity(limit.min(source.len().saturating_add(delta.len())));
    while reader.pos < delta.len() {
        let count = usize::try_from(reader.int()?).map_err(|_| ApplyError::TooLarge)?;
        match reader.byte() {
            Some(b'@') => {
                let offset = usize::try_from(reader.int()?).map_err(|_| ApplyError::BadCopy)?;
                if reader.byte() != Some(b',') {
                    return Err(ApplyError::BadCopy);
                }
                let end = offset
                    .checked_add(count)
                    .filter(|end| *end <= source.len())
                    .ok_or(ApplyError::CopyOutOfRange)?;
                if out.len() + count > limit {
                    return Err(ApplyError::TooLarge);
                }
                out.extend_from_slice(&source[offset..end]);
            }
            Some(b':') => {
                let end = reader
                    .pos
                    .checked_add(count)
                    .filter(|end| *end <= delta.len())
                    .ok_or(ApplyError::InsertOutOfRange)?;
                if out.len() + count > limit {
                    return Err(ApplyError::TooLarge);
                }
                out.extend_from_slice(&delta[reader.pos..end]);
                reader.pos = end;
            }
            Some(b';') => {
                if u64::from(checksum(&out)) != count as u64 {
                    return Err(ApplyError::BadChecksum);
                }
                if out.len() != limit {
                    return Err(ApplyError::SizeMismatch);
                }
                return Ok(out);
            }
            Some(_) => return Err(ApplyError::UnknownOperator),
            None => return Err(ApplyError::Unterminated),
        }
    }
    Err(ApplyError::Unterminated)
}

/// The Fossil checksum: the wrapping sum of big-endian 32-bit words, the tail zero-padded.
pub fn checksum(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(4);
    let mut sum = 0u32;
    for word in chunks.by_ref() {
        sum = sum.wrapping_add(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    let mut tail = [0u8; 4];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    sum.wrapping_add(u32::from_be_bytes(tail))
}

/// Scans `target` for runs found in `source`, writing inserts and copies; returns where the
/// last command ended (the caller inserts the rest).
fn encode_copies(
    index: &Index,
    source: &[u8],
    target: &[u8],
    utf8: bool,
    out: &mut Vec<u8>,
) -> usize {
    let mut base = 0;
    'outer: while base + WINDOW <= target.len() {
        let mut hash = Rolling::new(&target[base..base + WINDOW]);
        let mut i = 0;
        loop {
            if let Some(best) = index.best_match(source, target, base, i, hash.value(), utf8) {
                if best.literal > 0 {
                    put_insert(out, &target[base..base + best.literal]);
                }
                put_int(out, best.count as u64);
                out.push(b'@');
                put_int(out, best.offset as u64);
                out.push(b',');
                base += best.literal + best.count;
                continue 'outer;
            }
            if base + i + WINDOW >= target.len() {
                return base;
            }
            hash.roll(target[base + i], target[base + i + WINDOW]);
            i += 1;
        }
    }
    base
}

/// A copy command candidate: `literal` bytes inserted first, then `count` bytes from `offset`.
#[derive(Debug, Clone, Copy)]
struct Match {
    literal: usize,
    count: usize,
    offset: usize,
}

/// The source's blocks by hash: bucket heads and a chain through the blocks.
struct Index {
    heads: Vec<u32>,
    next: Vec<u32>,
    mask: usize,
}

const NONE: u32 = u32::MAX;

impl Index {
    fn new(source: &[u8]) -> Index {
        let blocks = (source.len() / WINDOW).min(NONE as usize - 1);
        let size = blocks.next_power_of_two().max(1);
        let mut index = Index {
            heads: vec![NONE; size],
            next: vec![NONE; blocks],
            mask: size - 1,
        };
        for block in 0..blocks {
            let start = block * WINDOW;
            let bucket = Rolling::new(&source[start..start + WINDOW]).value() as usize & index.mask;
            // `blocks` fits u32 (bounded above).
            index.next[block] = index.heads[bucket];
            index.heads[bucket] = block as u32;
        }
        index
    }

    /// The best worthwhile copy for the window at `base + i`, extended forwards and backwards
    /// (backwards only over the `i` pending literal bytes).
    fn best_match(
        &self,
        source: &[u8],
        target: &[u8],
        base: usize,
        i: usize,
        hash: u32,
        utf8: bool,
    ) -> Option<Match> {
        let at = base + i;
        let mut best: Option<Match> = None;
        let mut block = self.heads[hash as usize & self.mask];
        let mut looked = 0;
        while block != NONE && looked < MAX_CHAIN {
            looked += 1;
            let s = block as usize * WINDOW;
            block = self.next[block as usize];
            let forward = source[s..]
                .iter()
                .zip(&target[at..])
                .take_while(|(a, b)| a == b)
                .count();
            if forward < WINDOW {
                continue;
            }
            let backward = source[..s]
                .iter()
                .rev()
                .zip(target[base..at].iter().rev())
                .take_while(|(a, b)| a == b)
                .count();
            let mut start = at - backward;
            let mut end = at + forward;
            let mut offset = s - backward;
            if utf8 {
                while start < end && !is_char_boundary(target, start) {
                    start += 1;
                    offset += 1;
                }
                while end > start && !is_char_boundary(target, end) {
                    end -= 1;
                }
            }
            let candidate = Match {
                literal: start - base,
                count: end - start,
                offset,
            };
            let cost = int_len(candidate.literal as u64)
                + int_len(candidate.count as u64)
                + int_len(candidate.offset as u64)
                + 3;
            if candidate.count >= cost && best.is_none_or(|b| candidate.count > b.count) {
                best = Some(candidate);
            }
        }
        best
    }
}

fn is_char_boundary(text: &[u8], index: usize) -> bool {
    index >= text.len() || (text[index] & 0xC0) != 0x80
}

/// An Adler-style rolling hash over [`WINDOW`] bytes.
struct Rolling {
    a: u16,
    b: u16,
}

impl Rolling {
    fn new(window: &[u8]) -> Rolling {
        let mut a = 0u16;
        let mut b = 0u16;
        for &byte in window {
            a = a.wrapping_add(u16::from(byte));
            b = b.wrapping_add(a);
        }
        Rolling { a, b }
    }

    /// Slides the window one byte: `old` leaves, `new` enters.
    fn roll(&mut self, old: u8, new: u8) {
        self.a = self
            .a
            .wrapping_sub(u16::from(old))
            .wrapping_add(u16::from(new));
        self.b = self
            .b
            .wrapping_sub((WINDOW as u16).wrapping_mul(u16::from(old)))
            .wrapping_add(self.a);
    }

    fn value(&self) -> u32 {
        u32::from(self.a) | (u32::from(self.b) << 16)
    }
}

fn put_insert(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, bytes.len() as u64);
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn put_int(out: &mut Vec<u8>, mut value: u64) {
    if value == 0 {
        out.push(b'0');
        return;
    }
    let mut digits = [0u8; 11];
    let mut n = 0;
    while value > 0 {
        digits[n] = DIGITS[(value & 63) as usize];
        value >>= 6;
        n += 1;
    }
    out.extend(digits[..n].iter().rev());
}

fn int_len(mut value: u64) -> usize {
    let mut n = 1;
    while value >= 64 {
        value >>= 6;
        n += 1;
    }
    n
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    /// One integer: at least one digit, at most what fits 64 bits.
    fn int(&mut self) -> Result<u64, ApplyError> {
        let mut value: u64 = 0;
        let mut digits = 0;
        while let Some(&byte) = self.data.get(self.pos) {
            let Some(digit) = digit_value(byte) else {
                break;
            };
            value = value
                .checked_mul(64)
                .map(|v| v | u64::from(digit))
                .ok_or(ApplyError::BadInt)?;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return Err(ApplyError::BadInt);
        }
        Ok(value)
    }
}

fn digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'Z' => Some(byte - b'A' + 10),
        b'_' => Some(36),
        b'a'..=b'z' => Some(byte - b'a' + 37),
        b'~' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
