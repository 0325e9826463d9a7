//! Channel history streams (docs/protocol.md §4): offsets, epochs, retention, idempotency and
//! versions, reads with `since` / `limit` / `reverse`, and the recovery decision.
//!
//! Pure: nothing here reads the clock or a random source. Every operation takes `now` (a
//! monotonic `Instant`) and a store takes its randomness as an [`Entropy`] value, so expiry and
//! epoch changes are tested without sleeping.
//!
//! Identity and payload are kept apart: a publication's identity in its channel is its
//! `(channel, epoch, offset)` — the epoch belongs to the stream, the offset to the entry — while
//! [`Publication`] is what was said (data, publisher info, tags), held behind an [`Arc`] so one
//! payload can later be replaced under a fixed identity (updates, deletions, appends).
//!
//! Layout:
//! - [`Streams`] (`store.rs`): every channel's stream in one bounded store, with the
//!   idempotency cache and the expiry indexes; [`Streams::sweep`] is the periodic pass.
//! - `stream.rs`: one channel's stream: append and read.
//! - `idempotency.rs`: the 5-minute result cache of idempotency keys.
//! - [`Entropy`] and [`new_epoch`] (`epoch.rs`): 8-letter epochs from a passed-in source.
//! - [`recover`] (`recovery.rs`): given the client's position and a history read, recovered or
//!   not (stream mode §4.3, cache mode §4.4) and what to send. The edge calls it with what the
//!   core answered.

mod epoch;
pub(crate) mod idempotency;
mod recovery;
mod store;
pub(crate) mod stream;
#[cfg(test)]
mod tests;

pub use epoch::{EPOCH_LENGTH, Entropy, new_epoch};
pub use idempotency::IDEMPOTENCY_WINDOW;
pub use recovery::{Offset, Recovery, cache_recovery_query, recover, stream_recovery_query};
pub use store::{Limits, PublishOutcome, PublishParams, Streams, Suppression, SweepStats};

use crate::config::ChannelOptions;
use bytes::Bytes;
use spindle_proto::client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Where a publication sits in its channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct StreamPosition {
    /// 1 for the first publication of a stream, then +1 each; 0 = nothing published yet.
    pub offset: u64,
    /// Opaque; changes whenever continuity of the stream cannot be proven.
    pub epoch: String,
}

impl StreamPosition {
    pub fn new(offset: u64, epoch: impl Into<String>) -> StreamPosition {
        StreamPosition {
            offset,
            epoch: epoch.into(),
        }
    }
}

impl From<client::StreamPosition> for StreamPosition {
    fn from(position: client::StreamPosition) -> Self {
        StreamPosition {
            offset: position.offset,
            epoch: position.epoch,
        }
    }
}

impl From<StreamPosition> for client::StreamPosition {
    fn from(position: StreamPosition) -> Self {
        client::StreamPosition {
            offset: position.offset,
            epoch: position.epoch,
        }
    }
}

/// What a publication says: its payload, without its identity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Publication {
    /// The payload, verbatim (JSON text for JSON channels, any bytes for binary ones).
    pub data: Bytes,
    /// The publishing client, for client publications; `None` for server API publications.
    pub info: Option<client::ClientInfo>,
    /// Application tags, delivered with the publication (and usable by tags filters).
    pub tags: BTreeMap<String, String>,
    /// When it was published, in unix milliseconds (0 = unknown). Brokers carry it between
    /// nodes so edges can tell a late publication (`client.channel_position_max_time_lag`).
    pub time: i64,
    /// Map channels only: the entry this publication writes (empty elsewhere).
    pub key: String,
    /// Map channels only: the publication removes `key` (and carries no data).
    pub removed: bool,
}

/// One retained publication as history returns it: its offset (its identity in the stream,
/// whose epoch is the result's) and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    pub offset: u64,
    pub publication: Arc<Publication>,
}

impl HistoryItem {
    /// The publication as the client protocol carries it (data, info, offset, tags).
    pub fn to_client(&self) -> client::Publication {
        client::Publication {
            data: self.publication.data.clone(),
            info: self.publication.info.clone(),
            offset: self.offset,
            tags: self.publication.tags.clone(),
            key: self.publication.key.clone(),
            removed: self.publication.removed,
            ..Default::default()
        }
    }
}

/// How a channel keeps its stream: the namespace's history options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Publications retained, at least 1.
    pub size: usize,
    /// How long the retained publications live after the last publish (`history_ttl`).
    pub ttl: Duration,
    /// How long offset, epoch and version outlive the last publish or read
    /// (`history_meta_ttl`); never shorter than `ttl`.
    pub meta_ttl: Duration,
}

impl StreamOptions {
    /// The stream options of a namespace; `None` when it keeps no history (`history_size` or
    /// `history_ttl` zero). A namespace `history_meta_ttl` of zero falls back to
    /// `default_meta_ttl` (`channel.history_meta_ttl`); the result is never below `history_ttl`.
    pub fn for_channel(
        options: &ChannelOptions,
        default_meta_ttl: crate::config::Duration,
    ) -> Option<StreamOptions> {
        if !options.has_history() {
            return None;
        }
        let ttl = options.history_ttl.as_std();
        let meta_ttl = match options.history_meta_ttl {
            meta if meta.is_zero() => default_meta_ttl,
            meta => meta,
        };
        Some(StreamOptions {
            size: options.history_size as usize,
            ttl,
            meta_ttl: meta_ttl.as_std().max(ttl),
        })
    }
}

/// What a history read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Only publications after this position (before it with `reverse`). A non-empty epoch
    /// that is not the stream's fails the read with [`ReadError::Unrecoverable`]; an empty
    /// epoch matches any.
    pub since: Option<StreamPosition>,
    /// At most this many publications; `Some(0)` = only the stream position; `None` = every
    /// retained publication.
    pub limit: Option<usize>,
    /// Newest first.
    pub reverse: bool,
}

impl HistoryQuery {
    /// A wire `limit` (client or API `int32`) as a query limit: negative means "all" and 0
    /// means "position only"; `cap` (the client `history_max_publication_limit`, `None` for
    /// the server API) bounds both "all" and positive limits.
    pub fn limit_from_wire(limit: i32, cap: Option<usize>) -> Option<usize> {
        match usize::try_from(limit) {
            Ok(limit) => Some(cap.map_or(limit, |cap| limit.min(cap))),
            Err(_) => cap,
        }
    }

    /// Whether a read's answer continues the reader's position: a forward read from `since`
    /// below the stream's `top` must start right after it (`first`: the first offset
    /// returned). Map change streams use it (docs/maps.md): trimmed or expired changes
    /// between the reader and the top are a position the stream no longer has
    /// ([`ReadError::Unrecoverable`]), never a silent skip.
    pub fn check_continues(&self, top: u64, first: Option<u64>) -> Result<(), ReadError> {
        match &self.since {
            Some(since)
                if !self.reverse
                    && self.limit != Some(0)
                    && since.offset < top
                    && first != Some(since.offset + 1) =>
            {
                Err(ReadError::Unrecoverable)
            }
            _ => Ok(()),
        }
    }

    /// The query as the signed bounds a storage-side script or SQL function takes: the
    /// `since` offset and the `limit`, each `-1` when absent (values past `i64::MAX` saturate).
    /// A reverse read from offset 0 is refused as by the in-process stream
    /// ([`ReadError::ReverseFromZero`]).
    pub fn signed_bounds(&self) -> Result<(i64, i64), ReadError> {
        if self.reverse && self.since.as_ref().is_some_and(|since| since.offset == 0) {
            return Err(ReadError::ReverseFromZero);
        }
        let since = self
            .since
            .as_ref()
            .map_or(-1, |since| i64::try_from(since.offset).unwrap_or(i64::MAX));
        let limit = self
            .limit
            .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        Ok((since, limit))
    }
}

/// A history read: the stream's current position (its top offset and epoch) and the
/// publications asked for. Generic so the recovery helper works on the wire type too.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryResult<P = HistoryItem> {
    pub top: StreamPosition,
    pub publications: Vec<P>,
}

impl From<client::HistoryResult> for HistoryResult<client::Publication> {
    fn from(result: client::HistoryResult) -> Self {
        HistoryResult {
            top: StreamPosition {
                offset: result.offset,
                epoch: result.epoch,
            },
            publications: result.publications,
        }
    }
}

impl From<HistoryResult> for client::HistoryResult {
    fn from(result: HistoryResult) -> Self {
        client::HistoryResult {
            publications: result
                .publications
                .iter()
                .map(HistoryItem::to_client)
                .collect(),
            epoch: result.top.epoch,
            offset: result.top.offset,
        }
    }
}

/// A history read that cannot be answered.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// `reverse` with `since.offset == 0`: nothing is before offset 0 (client error 107).
    #[error("reverse history read from offset 0")]
    ReverseFromZero,
    /// `since.epoch` is not the stream's epoch: the position no longer exists (error 112).
    #[error("unrecoverable position")]
    Unrecoverable,
}

impl ReadError {
    /// The client-protocol error code: 107 or 112.
    pub fn code(self) -> u32 {
        match self {
            ReadError::ReverseFromZero => 107,
            ReadError::Unrecoverable => 112,
        }
    }
}
