//! One map channel: its position, its entries and its retained changes. Deadlines of keys are
//! indexed by the store; this type only keeps them next to the entries.

use super::MapSettings;
use crate::history::{
    HistoryItem, HistoryQuery, HistoryResult, Publication, ReadError, StreamPosition,
};
use std::collections::{BTreeMap, VecDeque};
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
    pub epoch: String,
    /// Offset of the last change in this epoch (always 0 without a stream).
    pub top: u64,
    /// Keys in byte order: state pages continue after the cursor's key.
    pub entries: BTreeMap<String, Entry>,
    /// Retained changes, oldest first.
    pub changes: VecDeque<(u64, Arc<Publication>)>,
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
            epoch,
            top: 0,
            entries: BTreeMap::new(),
            changes: VecDeque::new(),
            changes_until: None,
            meta_until: now,
            settings,
        }
    }

    pub fn position(&self) -> StreamPosition {
        StreamPosition::new(self.top, self.epoch.clone())
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
        self.top += 1;
        self.changes.push_back((self.top, Arc::clone(change)));
        while self.changes.len() > stream.size.max(1) {
            self.changes.pop_front();
        }
        self.changes_until = Some(now + stream.ttl);
        self.top
    }

    /// Reads the retained changes per `query`. A forward read from a position this stream
    /// no longer covers (trimmed or expired changes between `since` and the top) fails with
    /// [`ReadError::Unrecoverable`] rather than skipping what was lost.
    pub fn read(&self, query: &HistoryQuery) -> Result<HistoryResult, ReadError> {
        if let Some(since) = &query.since {
            if !since.epoch.is_empty() && since.epoch != self.epoch {
                return Err(ReadError::Unrecoverable);
            }
            if query.reverse && since.offset == 0 {
                return Err(ReadError::ReverseFromZero);
            }
        }
        let limit = query.limit.unwrap_or(usize::MAX);
        let item = |(offset, publication): &(u64, Arc<Publication>)| HistoryItem {
            offset: *offset,
            publication: Arc::clone(publication),
        };
        let publications: Vec<HistoryItem> = if query.reverse {
            let end = match &query.since {
                Some(since) => self.changes.partition_point(|(o, _)| *o < since.offset),
                None => self.changes.len(),
            };
            self.changes
                .range(..end)
                .rev()
                .take(limit)
                .map(item)
                .collect()
        } else {
            let start = match &query.since {
                Some(since) => self.changes.partition_point(|(o, _)| *o <= since.offset),
                None => 0,
            };
            if let Some(since) = &query.since
                && since.offset < self.top
                && limit > 0
            {
                let next = self.changes.get(start).map(|(offset, _)| *offset);
                if next != Some(since.offset + 1) {
                    return Err(ReadError::Unrecoverable);
                }
            }
            self.changes.range(start..).take(limit).map(item).collect()
        };
        Ok(HistoryResult {
            top: self.position(),
            publications,
        })
    }
}
