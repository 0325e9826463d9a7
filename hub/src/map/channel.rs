//! One map channel: its position, its entries and its retained changes. Deadlines of keys are
//! indexed by the store; this type only keeps them next to the entries.

use super::MapSettings;
use crate::history::stream::Stream;
use crate::history::{HistoryQuery, HistoryResult, Publication, ReadError, StreamPosition};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an empty map channel without `meta_ttl` (`persistent`) keeps its position after
/// its last access. Forgetting it only costs its readers a resynchronization of an empty map.
pub(super) const EMPTY_IDLE: Duration = Duration::from_secs(3_600);

#[derive(Debug)]
pub(super) struct Entry {
    pub publication: Arc<Publication>,
    /// The stream offset of the change that wrote it (0 for `ephemeral` maps).
    pub offset: u64,
    pub expires_at: Option<Instant>,
    /// Highest accepted `version` of this key and its version epoch (0 = none).
    pub version: u64,
    pub version_epoch: String,
}

#[derive(Debug)]
pub(super) struct MapChannel {
    /// Epoch, top offset (always 0 without a stream) and the retained changes, as a channel's
    /// history keeps them.
    pub stream: Stream,
    /// Keys in byte order: state pages continue after the cursor's key.
    pub entries: BTreeMap<String, Entry>,
    /// When the retained changes expire (`map.stream_ttl` after the last change).
    pub changes_until: Option<Instant>,
    /// From when the channel (epoch, offset) may be forgotten, once it holds no entry.
    pub meta_until: Instant,
    /// The settings of the last access, for the sweep (which has no namespace at hand).
    pub settings: MapSettings,
}

impl MapChannel {
    pub fn new(epoch: String, settings: MapSettings, now: Instant) -> MapChannel {
        MapChannel {
            stream: Stream::new(epoch),
            entries: BTreeMap::new(),
            changes_until: None,
            meta_until: now,
            settings,
        }
    }

    pub fn position(&self) -> StreamPosition {
        self.stream.position()
    }

    pub fn epoch(&self) -> &str {
        &self.stream.epoch
    }

    /// Records an access: settings as of now, metadata kept alive for another `meta_ttl`
    /// (a map without one keeps its position while it holds entries, and for
    /// [`EMPTY_IDLE`] after its last access when empty).
    pub fn touch(&mut self, settings: MapSettings, now: Instant) {
        self.settings = settings;
        self.meta_until = now + settings.meta_ttl.unwrap_or(EMPTY_IDLE);
    }

    /// Appends a change when the map has a stream; returns its offset (0 without one).
    pub fn append(&mut self, change: &Arc<Publication>, now: Instant) -> u64 {
        let Some(stream) = self.settings.stream else {
            return 0;
        };
        self.changes_until = Some(now + stream.ttl);
        self.stream.append(Arc::clone(change), stream.size)
    }

    /// Drops the retained changes (their `stream_ttl` passed); the position stays.
    pub fn forget_changes(&mut self) {
        self.stream.items.clear();
        self.changes_until = None;
    }

    /// Reads the retained changes per `query`. A forward read from a position this stream
    /// no longer covers (trimmed or expired changes between `since` and the top) fails with
    /// [`ReadError::Unrecoverable`] rather than skipping what was lost.
    pub fn read(&self, query: &HistoryQuery) -> Result<HistoryResult, ReadError> {
        if query.reverse && query.since.as_ref().is_some_and(|since| since.offset == 0) {
            return Err(ReadError::ReverseFromZero);
        }
        let result = self.stream.read(query)?;
        query.check_continues(
            result.top.offset,
            result.publications.first().map(|p| p.offset),
        )?;
        Ok(result)
    }
}
