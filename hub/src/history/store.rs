//! [`Streams`]: the streams of many channels in one bounded store, with lazy expiry on access
//! and an explicit [`Streams::sweep`].

use super::epoch::{Entropy, next_epoch};
use super::idempotency::IdempotencyCache;
use super::stream::Stream;
use super::{HistoryQuery, HistoryResult, Publication, ReadError, StreamOptions, StreamPosition};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// How much one store keeps at most. Both bounds evict the oldest first; an evicted stream is
/// recreated with a new epoch, so a client that relied on it is told (never a silent gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams (channels with a position) kept. Past it, the stream whose metadata expires
    /// first — the one published to or read least recently — is forgotten.
    pub max_streams: usize,
    /// Idempotency keys remembered. Past it, the oldest key is forgotten.
    pub max_idempotency_keys: usize,
}

impl Default for Limits {
    /// 65,536 streams and 65,536 idempotency keys.
    fn default() -> Self {
        Limits {
            max_streams: 65_536,
            max_idempotency_keys: 65_536,
        }
    }
}

/// How to publish one publication, besides the payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishParams<'a> {
    /// The channel's stream options; `None` for channels without history (no offset, no
    /// version checks; idempotency keys still apply).
    pub history: Option<StreamOptions>,
    /// Do not append this publication (no offset, no version check).
    pub skip_history: bool,
    /// Non-empty: a publish with the same channel and key within
    /// [`IDEMPOTENCY_WINDOW`](super::IDEMPOTENCY_WINDOW) returns this one's result instead.
    pub idempotency_key: &'a str,
    /// Drop the publication when it is not above the stream's version in the same
    /// `version_epoch` (0 = no check).
    pub version: u64,
    pub version_epoch: &'a str,
    /// Return the publication before this one (for delta compression).
    pub want_prev: bool,
}

/// Why a publication was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// Its idempotency key was seen within the window; the earlier result is returned.
    Idempotent,
    /// Its version is not above the stream's in the same version epoch.
    StaleVersion,
}

/// What [`Streams::publish`] decided.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// Publish it (deliver to subscribers).
    Accepted {
        /// Its place in the stream; `None` without history or with `skip_history`.
        position: Option<StreamPosition>,
        /// The payload, as stored (shared, not copied).
        publication: Arc<Publication>,
        /// With `want_prev`: the publication at `offset − 1` when it is still retained.
        prev: Option<Arc<Publication>>,
    },
    /// Do not deliver it.
    Suppressed {
        /// For [`Suppression::Idempotent`] the earlier publication's position; for
        /// [`Suppression::StaleVersion`] the stream's current top.
        position: Option<StreamPosition>,
        reason: Suppression,
    },
}

/// What one [`Streams::sweep`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepStats {
    /// Streams whose retained publications expired (`history_ttl`); position kept.
    pub windows: usize,
    /// Streams forgotten because their metadata expired (`history_meta_ttl`).
    pub streams: usize,
    /// Idempotency keys forgotten.
    pub idempotency_keys: usize,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    name: Arc<str>,
    stream: Stream,
    /// When the retained publications expire; `Some` exactly while some are retained.
    window_until: Option<Instant>,
    /// When the whole stream (position, epoch, version) is forgotten.
    meta_until: Instant,
}

/// Expiry indexes: one entry per slot in `metas`, one per slot with retained publications in
/// `windows`, so expiry needs no task per channel and a sweep touches only what expired.
#[derive(Debug, Default)]
struct Deadlines {
    windows: BTreeMap<(Instant, u64), Arc<str>>,
    metas: BTreeMap<(Instant, u64), Arc<str>>,
}

impl Deadlines {
    fn set_window(&mut self, slot: &mut Slot, until: Option<Instant>) {
        if let Some(old) = slot.window_until {
            self.windows.remove(&(old, slot.id));
        }
        if let Some(new) = until {
            self.windows.insert((new, slot.id), Arc::clone(&slot.name));
        }
        slot.window_until = until;
    }

    fn set_meta(&mut self, slot: &mut Slot, until: Instant) {
        self.metas.remove(&(slot.meta_until, slot.id));
        self.metas.insert((until, slot.id), Arc::clone(&slot.name));
        slot.meta_until = until;
    }

    fn forget(&mut self, slot: &Slot) {
        if let Some(window) = slot.window_until {
            self.windows.remove(&(window, slot.id));
        }
        self.metas.remove(&(slot.meta_until, slot.id));
    }
}

/// The streams of many channels and their idempotency keys. Not synchronized: the caller
/// holds it under a lock (the core shards channels over several stores), which makes an append
/// and its offset assignment one step.
///
/// Expiry is lazy — every access first applies the accessed stream's deadlines — plus
/// [`Streams::sweep`], which the owner calls periodically to free what nobody accesses.
#[derive(Debug)]
pub struct Streams<E> {
    limits: Limits,
    entropy: E,
    slots: HashMap<Arc<str>, Slot>,
    deadlines: Deadlines,
    idempotency: IdempotencyCache,
    next_id: u64,
}

impl<E: Entropy> Streams<E> {
    pub fn new(limits: Limits, entropy: E) -> Streams<E> {
        Streams {
            limits,
            entropy,
            slots: HashMap::new(),
            deadlines: Deadlines::default(),
            idempotency: IdempotencyCache::new(limits.max_idempotency_keys),
            next_id: 0,
        }
    }

    /// Publishes into `channel`, in this order: a remembered idempotency key returns its
    /// earlier result; with history (and without `skip_history`) a stale version returns the
    /// current top; otherwise the publication is appended at `top + 1` (retention trimmed to
    /// `size`, publication window extended to `now + ttl`, metadata to `now + meta_ttl`) and
    /// its result remembered under its idempotency key.
    pub fn publish(
        &mut self,
        channel: &str,
        publication: Publication,
        params: &PublishParams<'_>,
        now: Instant,
    ) -> PublishOutcome {
        let key = params.idempotency_key;
        if !key.is_empty()
            && let Some(earlier) = self.idempotency.get(channel, key, now)
        {
            return PublishOutcome::Suppressed {
                position: earlier,
                reason: Suppression::Idempotent,
            };
        }
        let publication = Arc::new(publication);
        let (position, prev) = match params.history {
            Some(options) if !params.skip_history => {
                let (slot, deadlines) = self.prepare(channel, &options, now);
                if slot.stream.is_stale(params.version, params.version_epoch) {
                    return PublishOutcome::Suppressed {
                        position: Some(slot.stream.position()),
                        reason: Suppression::StaleVersion,
                    };
                }
                let prev = match params.want_prev {
                    true => slot.stream.last().cloned(),
                    false => None,
                };
                slot.stream.append(Arc::clone(&publication), options.size);
                slot.stream
                    .set_version(params.version, params.version_epoch);
                deadlines.set_window(slot, Some(now + options.ttl));
                deadlines.set_meta(slot, now + options.meta_ttl);
                (Some(slot.stream.position()), prev)
            }
            _ => (None, None),
        };
        if !key.is_empty() {
            self.idempotency.insert(channel, key, position.clone(), now);
        }
        PublishOutcome::Accepted {
            position,
            publication,
            prev,
        }
    }

    /// Reads `channel`'s stream. A channel with no stream yet gets one (offset 0, a new epoch)
    /// so that a later publication continues the position this read reported. A read keeps
    /// the stream's metadata alive for another `meta_ttl`.
    ///
    /// Errors: `reverse` with `since.offset == 0` → [`ReadError::ReverseFromZero`]; a
    /// non-empty `since.epoch` other than the stream's → [`ReadError::Unrecoverable`].
    pub fn read(
        &mut self,
        channel: &str,
        options: &StreamOptions,
        query: &HistoryQuery,
        now: Instant,
    ) -> Result<HistoryResult, ReadError> {
        if query.reverse && query.since.as_ref().is_some_and(|since| since.offset == 0) {
            return Err(ReadError::ReverseFromZero);
        }
        let (slot, deadlines) = self.prepare(channel, options, now);
        let meta_until = slot.meta_until.max(now + options.meta_ttl);
        deadlines.set_meta(slot, meta_until);
        slot.stream.read(query)
    }

    /// Forgets `channel`'s stream: its publications, position and version. The next publish
    /// or read starts a new stream (offset from 1, a new epoch). True when there was one.
    pub fn remove(&mut self, channel: &str) -> bool {
        match self.slots.remove(channel) {
            Some(slot) => {
                self.deadlines.forget(&slot);
                true
            }
            None => false,
        }
    }

    /// Applies every deadline passed at `now`: expired publication windows are emptied,
    /// streams with expired metadata and expired idempotency keys are forgotten. Costs in
    /// proportion to what expired.
    pub fn sweep(&mut self, now: Instant) -> SweepStats {
        let mut stats = SweepStats::default();
        while let Some(entry) = self.deadlines.windows.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let name = entry.remove();
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.window_until = None;
                slot.stream.items.clear();
                stats.windows += 1;
            }
        }
        while let Some(entry) = self.deadlines.metas.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let name = entry.remove();
            if let Some(slot) = self.slots.remove(&name) {
                self.deadlines.forget(&slot);
                stats.streams += 1;
            }
        }
        stats.idempotency_keys = self.idempotency.sweep(now);
        stats
    }

    /// Streams kept now (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Idempotency keys remembered now (expired ones not yet swept included).
    pub fn idempotency_keys(&self) -> usize {
        self.idempotency.len()
    }

    /// The live slot of `channel` at `now`: its expired window emptied, a stream with expired
    /// metadata replaced by a new one with another epoch, a missing one created (evicting the
    /// oldest past [`Limits::max_streams`]). Returned with the expiry indexes, to update them.
    fn prepare(
        &mut self,
        channel: &str,
        options: &StreamOptions,
        now: Instant,
    ) -> (&mut Slot, &mut Deadlines) {
        enum State {
            Missing,
            Live { window_expired: bool },
            Expired(String),
        }
        let state = match self.slots.get(channel) {
            None => State::Missing,
            Some(slot) if slot.meta_until <= now => State::Expired(slot.stream.epoch.clone()),
            Some(slot) => State::Live {
                window_expired: slot.window_until.is_some_and(|until| until <= now),
            },
        };
        let previous_epoch = match state {
            State::Live { window_expired } => {
                if window_expired && let Some(slot) = self.slots.get_mut(channel) {
                    slot.stream.items.clear();
                    self.deadlines.set_window(slot, None);
                }
                None
            }
            State::Expired(epoch) => {
                self.remove(channel);
                Some(epoch)
            }
            State::Missing => None,
        };
        if previous_epoch.is_some() || !self.slots.contains_key(channel) {
            self.make_room();
        }
        match self.slots.entry(Arc::from(channel)) {
            Entry::Occupied(occupied) => (occupied.into_mut(), &mut self.deadlines),
            Entry::Vacant(vacant) => {
                let epoch = next_epoch(&mut self.entropy, previous_epoch.as_deref());
                let id = self.next_id;
                self.next_id += 1;
                let meta_until = now + options.meta_ttl;
                self.deadlines
                    .metas
                    .insert((meta_until, id), Arc::clone(vacant.key()));
                let name = Arc::clone(vacant.key());
                let slot = vacant.insert(Slot {
                    id,
                    name,
                    stream: Stream::new(epoch),
                    window_until: None,
                    meta_until,
                });
                (slot, &mut self.deadlines)
            }
        }
    }

    /// Forgets the streams whose metadata expires first until one more fits.
    fn make_room(&mut self) {
        while self.slots.len() >= self.limits.max_streams.max(1) {
            let Some(((_, _), name)) = self.deadlines.metas.pop_first() else {
                return;
            };
            if let Some(slot) = self.slots.remove(&name) {
                self.deadlines.forget(&slot);
            }
        }
    }
}
