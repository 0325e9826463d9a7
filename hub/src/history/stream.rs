//! One channel's stream: its position (epoch, top offset), the retained publications and the
//! version of the last versioned publication. Deadlines are kept by the store, which owns the
//! expiry indexes.

use super::{HistoryItem, HistoryQuery, HistoryResult, Publication, ReadError, StreamPosition};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Stream {
    pub epoch: String,
    /// Offset of the last publication appended in this epoch; 0 before the first.
    pub top: u64,
    /// Retained publications, oldest first. Identity (the offset) next to the payload, never
    /// inside it.
    pub items: VecDeque<(u64, Arc<Publication>)>,
    /// Highest accepted `version` and its `version_epoch` (0 = none yet).
    pub version: u64,
    pub version_epoch: String,
}

impl Stream {
    pub fn new(epoch: String) -> Stream {
        Stream {
            epoch,
            top: 0,
            items: VecDeque::new(),
            version: 0,
            version_epoch: String::new(),
        }
    }

    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }

    /// The retained publication just before the next one (offset `top`), if any.
    pub fn last(&self) -> Option<&Arc<Publication>> {
        self.items
            .back()
            .filter(|(offset, _)| *offset == self.top)
            .map(|(_, publication)| publication)
    }

    /// True when a publication with this version must be dropped: versions compare only
    /// within the same version epoch, and 0 means "no version".
    pub fn is_stale(&self, version: u64, version_epoch: &str) -> bool {
        version > 0
            && self.version > 0
            && self.version_epoch == version_epoch
            && version <= self.version
    }

    /// Appends at `top + 1`, keeping at most `size` publications; returns the new offset.
    pub fn append(&mut self, publication: Arc<Publication>, size: usize) -> u64 {
        self.top += 1;
        self.items.push_back((self.top, publication));
        while self.items.len() > size.max(1) {
            self.items.pop_front();
        }
        self.top
    }

    pub fn set_version(&mut self, version: u64, version_epoch: &str) {
        if version > 0 {
            self.version = version;
            self.version_epoch.clear();
            self.version_epoch.push_str(version_epoch);
        }
    }

    /// Reads per `query`; the caller has checked `reverse` against `since.offset == 0`.
    pub fn read(&self, query: &HistoryQuery) -> Result<HistoryResult, ReadError> {
        if let Some(since) = &query.since
            && !since.epoch.is_empty()
            && since.epoch != self.epoch
        {
            return Err(ReadError::Unrecoverable);
        }
        let limit = query.limit.unwrap_or(usize::MAX);
        let item = |(offset, publication): &(u64, Arc<Publication>)| HistoryItem {
            offset: *offset,
            publication: Arc::clone(publication),
        };
        let publications = if limit == 0 {
            Vec::new()
        } else if query.reverse {
            // Newest first, strictly before `since.offset` when given.
            let end = match &query.since {
                Some(since) => self.items.partition_point(|(o, _)| *o < since.offset),
                None => self.items.len(),
            };
            self.items
                .range(..end)
                .rev()
                .take(limit)
                .map(item)
                .collect()
        } else {
            // Oldest first, strictly after `since.offset` when given.
            let start = match &query.since {
                Some(since) => self.items.partition_point(|(o, _)| *o <= since.offset),
                None => 0,
            };
            self.items.range(start..).take(limit).map(item).collect()
        };
        Ok(HistoryResult {
            top: self.position(),
            publications,
        })
    }
}
