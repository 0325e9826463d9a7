//! [`MapStore`]: the map channels of one shard, bounded, with an explicit [`MapStore::sweep`]
//! that expires keys (into removals), retained changes and forgotten channels.

use super::channel::{Entry, MapChannel};
use super::{MapSettings, encode_cursor};
use crate::history::idempotency::IdempotencyCache;
use crate::history::{
    Entropy, HistoryQuery, HistoryResult, Publication, ReadError, StreamPosition, new_epoch,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

/// How much one store holds at most. Map state is data the application wrote, so nothing is
/// evicted to make room: a write past a bound is refused ([`MapWriteError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLimits {
    /// Map channels with a position or entries.
    pub max_channels: usize,
    /// Entries in one channel.
    pub max_keys: usize,
    /// Idempotency keys remembered (the oldest is forgotten first).
    pub max_idempotency_keys: usize,
}

impl Default for MapLimits {
    /// 65,536 channels of at most 1,048,576 keys; 65,536 idempotency keys.
    fn default() -> Self {
        MapLimits {
            max_channels: 65_536,
            max_keys: 1 << 20,
            max_idempotency_keys: 65_536,
        }
    }
}

/// Whether a write needs the key to be absent or present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyMode {
    /// Write whatever is there (the default).
    #[default]
    Replace,
    /// Only when the key is absent (`if_new`).
    IfNew,
    /// Only when the key is present (`if_exists`).
    IfExists,
}

/// One write into a map channel: a publish (`publication` set) or a removal (`None`).
#[derive(Debug, Clone, Default)]
pub struct MapWrite<'a> {
    pub key: &'a str,
    /// Data, publisher info, tags and time; the store sets `key` and `removed`. `None`
    /// removes the key (the removal carries the entry's tags, so tags filters route it).
    pub publication: Option<Publication>,
    pub key_mode: KeyMode,
    /// On an `if_new` write suppressed because the key exists, keep the entry alive for
    /// another `key_ttl` (presence maps refresh their entries this way).
    pub refresh_ttl_on_suppress: bool,
    /// Non-empty: a write with the same channel and key within 5 minutes returns this one's
    /// result instead.
    pub idempotency_key: &'a str,
    /// Drop the publish unless `version` is above the key's in the same `version_epoch`
    /// (0 = no check; maps with a stream only).
    pub version: u64,
    pub version_epoch: &'a str,
    /// Return the key's previous publication (delta compression).
    pub want_prev: bool,
}

/// Why a write changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapSuppression {
    Idempotent,
    StaleVersion,
    KeyExists,
    KeyNotFound,
}

impl MapSuppression {
    /// The server API's `suppress_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            MapSuppression::Idempotent => "idempotency",
            MapSuppression::StaleVersion => "version",
            MapSuppression::KeyExists => "key_exists",
            MapSuppression::KeyNotFound => "key_not_found",
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub enum MapOutcome {
    /// Deliver `publication` (a change with its `key`, `removed` for a removal).
    Written {
        /// Its place in the change stream; offset 0 for maps without a stream.
        position: StreamPosition,
        publication: Arc<Publication>,
        /// With `want_prev`: the key's publication before this write.
        prev: Option<Arc<Publication>>,
    },
    /// Nothing changed and nothing is delivered; `position` is the stream's top (for
    /// [`MapSuppression::Idempotent`], the earlier write's position).
    Suppressed {
        position: StreamPosition,
        reason: MapSuppression,
    },
}

/// A write that cannot be done.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MapWriteError {
    #[error("too many map channels")]
    TooManyChannels,
    #[error("too many keys in the map channel")]
    TooManyKeys,
    #[error("versions need a map with a stream")]
    VersionWithoutStream,
}

/// What a state read asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateQuery<'a> {
    /// Continue after this key (from the previous page's cursor).
    pub after: Option<&'a str>,
    /// Entries per page; `Some(0)` = only the position; `None` = all.
    pub limit: Option<usize>,
    /// Only this key (cursor and limit ignored).
    pub key: Option<&'a str>,
    /// A position the reader holds: another epoch fails the read with
    /// [`ReadError::Unrecoverable`].
    pub revision: Option<&'a StreamPosition>,
}

/// One entry of a state page.
#[derive(Debug, Clone, PartialEq)]
pub struct MapEntry {
    /// The change that wrote it (0 without a stream).
    pub offset: u64,
    /// Its publication, `key` set.
    pub publication: Arc<Publication>,
}

/// A page of a map's state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MapState {
    /// The stream's position when the page was read.
    pub position: StreamPosition,
    pub entries: Vec<MapEntry>,
    /// The cursor of the next page; `None` on the last.
    pub cursor: Option<String>,
}

/// A key the sweep removed: deliver `publication` (a removal) at `position` (`None` without
/// a stream).
#[derive(Debug, Clone, PartialEq)]
pub struct MapExpired {
    pub channel: String,
    pub position: Option<StreamPosition>,
    pub publication: Arc<Publication>,
}

/// The map channels of one shard. Not synchronized: the owner keeps it under a lock, which
/// makes a state change and its stream offset one step.
#[derive(Debug)]
pub struct MapStore<E> {
    limits: MapLimits,
    entropy: E,
    channels: HashMap<Arc<str>, MapChannel>,
    /// Key deadlines: (when, channel, key).
    expiries: BTreeSet<(Instant, Arc<str>, String)>,
    idempotency: IdempotencyCache,
}

impl<E: Entropy> MapStore<E> {
    pub fn new(limits: MapLimits, entropy: E) -> MapStore<E> {
        MapStore {
            limits,
            entropy,
            channels: HashMap::new(),
            expiries: BTreeSet::new(),
            idempotency: IdempotencyCache::new(limits.max_idempotency_keys),
        }
    }

    /// Map channels held.
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Writes into `channel`, in this order: a remembered idempotency key returns its earlier
    /// result; a stale `version` of the key, `if_new` on a present key, `if_exists` (or a
    /// removal) on an absent key change nothing; otherwise the entry is set or removed, the
    /// change appended to the stream (offset assigned in the same step) and returned to be
    /// delivered.
    pub fn write(
        &mut self,
        channel: &str,
        settings: MapSettings,
        write: MapWrite<'_>,
        now: Instant,
    ) -> Result<MapOutcome, MapWriteError> {
        if write.version > 0 && settings.stream.is_none() {
            return Err(MapWriteError::VersionWithoutStream);
        }
        if !write.idempotency_key.is_empty()
            && let Some(earlier) = self.idempotency.get(channel, write.idempotency_key, now)
        {
            return Ok(MapOutcome::Suppressed {
                position: earlier.unwrap_or_default(),
                reason: MapSuppression::Idempotent,
            });
        }
        let max_keys = self.limits.max_keys;
        let (name, ch) = open(
            &mut self.channels,
            &mut self.entropy,
            self.limits.max_channels,
            channel,
            settings,
            now,
        )
        .ok_or(MapWriteError::TooManyChannels)?;
        let present = ch.entries.get(write.key);
        let suppressed = match (&write.publication, present) {
            (Some(_), Some(entry))
                if write.version > 0
                    && entry.version > 0
                    && (write.version_epoch.is_empty()
                        || write.version_epoch == entry.version_epoch)
                    && write.version <= entry.version =>
            {
                Some(MapSuppression::StaleVersion)
            }
            (Some(_), Some(_)) if write.key_mode == KeyMode::IfNew => {
                Some(MapSuppression::KeyExists)
            }
            (Some(_), None) if write.key_mode == KeyMode::IfExists => {
                Some(MapSuppression::KeyNotFound)
            }
            (None, None) => Some(MapSuppression::KeyNotFound),
            (Some(_), None) if ch.entries.len() >= max_keys => {
                return Err(MapWriteError::TooManyKeys);
            }
            _ => None,
        };
        if let Some(reason) = suppressed {
            if reason == MapSuppression::KeyExists && write.refresh_ttl_on_suppress {
                let expires_at = settings.key_ttl.map(|ttl| now + ttl);
                if let Some(entry) = ch.entries.get_mut(write.key) {
                    let old = std::mem::replace(&mut entry.expires_at, expires_at);
                    reindex(&mut self.expiries, &name, write.key, old, expires_at);
                }
            }
            return Ok(MapOutcome::Suppressed {
                position: ch.position(),
                reason,
            });
        }

        let previous = match write.publication {
            Some(mut publication) => {
                publication.key = write.key.to_owned();
                publication.removed = false;
                let publication = Arc::new(publication);
                let offset = ch.append(&publication, now);
                let expires_at = settings.key_ttl.map(|ttl| now + ttl);
                let (version, version_epoch) = match ch.entries.get(write.key) {
                    // An unversioned write keeps the key's version.
                    Some(entry) if write.version == 0 => {
                        (entry.version, entry.version_epoch.clone())
                    }
                    _ => (write.version, write.version_epoch.to_owned()),
                };
                let entry = Entry {
                    publication: Arc::clone(&publication),
                    offset,
                    expires_at,
                    version,
                    version_epoch,
                };
                let previous = ch.entries.insert(write.key.to_owned(), entry);
                let old = previous.as_ref().and_then(|e| e.expires_at);
                reindex(&mut self.expiries, &name, write.key, old, expires_at);
                (publication, offset, previous)
            }
            None => {
                let previous = ch.entries.remove(write.key);
                let tags = previous
                    .as_ref()
                    .map(|e| e.publication.tags.clone())
                    .unwrap_or_default();
                let removal = Arc::new(Publication {
                    key: write.key.to_owned(),
                    removed: true,
                    tags,
                    ..Publication::default()
                });
                let offset = ch.append(&removal, now);
                let old = previous.as_ref().and_then(|e| e.expires_at);
                reindex(&mut self.expiries, &name, write.key, old, None);
                (removal, offset, previous)
            }
        };
        let (publication, offset, previous) = previous;
        let position = StreamPosition::new(offset, ch.epoch());
        if !write.idempotency_key.is_empty() {
            self.idempotency
                .insert(channel, write.idempotency_key, Some(position.clone()), now);
        }
        Ok(MapOutcome::Written {
            position,
            publication,
            prev: previous
                .filter(|_| write.want_prev)
                .map(|entry| entry.publication),
        })
    }

    /// A page of `channel`'s state, in key order, with the stream position it was read at.
    pub fn state(
        &mut self,
        channel: &str,
        settings: MapSettings,
        query: StateQuery<'_>,
        now: Instant,
    ) -> Result<MapState, ReadError> {
        let max = self.limits.max_channels;
        let Some((_, ch)) = open(
            &mut self.channels,
            &mut self.entropy,
            max,
            channel,
            settings,
            now,
        ) else {
            return Ok(MapState::default());
        };
        if let Some(revision) = query.revision
            && !revision.epoch.is_empty()
            && revision.epoch != ch.epoch()
        {
            return Err(ReadError::Unrecoverable);
        }
        let entry = |(_, e): (&String, &Entry)| super::MapEntry {
            offset: e.offset,
            publication: Arc::clone(&e.publication),
        };
        let position = ch.position();
        if let Some(key) = query.key {
            let entries = ch
                .entries
                .get_key_value(key)
                .map(entry)
                .into_iter()
                .collect();
            return Ok(MapState {
                position,
                entries,
                cursor: None,
            });
        }
        let limit = query.limit.unwrap_or(usize::MAX);
        let range = match query.after {
            Some(after) => ch
                .entries
                .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => ch.entries.range::<str, _>(..),
        };
        let mut page = range.peekable();
        let mut entries = Vec::new();
        while entries.len() < limit {
            match page.next() {
                Some(item) => entries.push(entry(item)),
                None => break,
            }
        }
        let more = limit > 0 && page.peek().is_some();
        let cursor = match entries.last() {
            Some(last) if more => Some(encode_cursor(channel, &last.publication.key)),
            _ => None,
        };
        Ok(MapState {
            position,
            entries,
            cursor,
        })
    }

    /// Reads `channel`'s change stream (see [`MapChannel::read`] for the gap rule).
    pub fn stream(
        &mut self,
        channel: &str,
        settings: MapSettings,
        query: &HistoryQuery,
        now: Instant,
    ) -> Result<HistoryResult, ReadError> {
        let max = self.limits.max_channels;
        match open(
            &mut self.channels,
            &mut self.entropy,
            max,
            channel,
            settings,
            now,
        ) {
            Some((_, ch)) => ch.read(query),
            None => Ok(HistoryResult {
                top: StreamPosition::default(),
                publications: Vec::new(),
            }),
        }
    }

    /// Entries in `channel` (0 for an unknown one).
    pub fn stats(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |ch| ch.entries.len())
    }

    /// Forgets `channel`: entries, changes and position. The next access starts a new epoch,
    /// so subscribers holding the old one resynchronize.
    pub fn clear(&mut self, channel: &str) -> bool {
        let Some((name, ch)) = self.channels.remove_entry(channel) else {
            return false;
        };
        for (key, entry) in ch.entries {
            reindex(&mut self.expiries, &name, &key, entry.expires_at, None);
        }
        true
    }

    /// Applies every deadline passed at `now`: expired keys become removals (appended to the
    /// stream and returned for delivery), expired changes are dropped (position kept), and
    /// channels whose metadata expired are forgotten.
    pub fn sweep(&mut self, now: Instant) -> Vec<MapExpired> {
        let mut expired = Vec::new();
        while let Some(first) = self.expiries.first() {
            if first.0 > now {
                break;
            }
            let Some((_, name, key)) = self.expiries.pop_first() else {
                break;
            };
            let Some(ch) = self.channels.get_mut(&name) else {
                continue;
            };
            let Some(entry) = ch.entries.remove(&key) else {
                continue;
            };
            let removal = Arc::new(Publication {
                key,
                removed: true,
                tags: entry.publication.tags.clone(),
                ..Publication::default()
            });
            let offset = ch.append(&removal, now);
            expired.push(MapExpired {
                channel: name.to_string(),
                position: ch
                    .settings
                    .stream
                    .map(|_| StreamPosition::new(offset, ch.epoch())),
                publication: removal,
            });
        }
        self.channels.retain(|_, ch| {
            if ch.changes_until.is_some_and(|until| until <= now) {
                ch.forget_changes();
            }
            !(ch.meta_until <= now && ch.entries.is_empty())
        });
        self.idempotency.sweep(now);
        expired
    }
}

/// The channel, created (a new epoch, offset 0) when absent and there is room.
fn open<'a, E: Entropy>(
    channels: &'a mut HashMap<Arc<str>, MapChannel>,
    entropy: &mut E,
    max_channels: usize,
    name: &str,
    settings: MapSettings,
    now: Instant,
) -> Option<(Arc<str>, &'a mut MapChannel)> {
    if !channels.contains_key(name) {
        if channels.len() >= max_channels {
            return None;
        }
        let epoch = new_epoch(entropy);
        channels.insert(Arc::from(name), MapChannel::new(epoch, settings, now));
    }
    let (name, _) = channels.get_key_value(name)?;
    let name = Arc::clone(name);
    let channel = channels.get_mut(&name)?;
    channel.touch(settings, now);
    Some((name, channel))
}

/// Moves a key's deadline in the index.
fn reindex(
    expiries: &mut BTreeSet<(Instant, Arc<str>, String)>,
    channel: &Arc<str>,
    key: &str,
    old: Option<Instant>,
    new: Option<Instant>,
) {
    if let Some(old) = old {
        expiries.remove(&(old, Arc::clone(channel), key.to_owned()));
    }
    if let Some(new) = new {
        expiries.insert((new, Arc::clone(channel), key.to_owned()));
    }
}
