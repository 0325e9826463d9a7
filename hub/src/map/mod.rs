//! Map channels (docs/protocol.md §2.10): keyed state plus a change stream, with key expiry,
//! cursor pages over the state, and the settings a namespace's `map` section resolves to.
//!
//! A map channel holds one entry per key (the latest publication written to it) and, unless the
//! map is `ephemeral`, a stream of every change — publications carrying their `key`, removals
//! carrying `removed` — with the same `(epoch, offset)` identity as a history stream, so
//! recovery, gap repair and interest acknowledgements treat a map stream like any other.
//!
//! Pure: time (`now`) and randomness (an [`Entropy`]) are passed in; nothing here locks.
//!
//! Layout:
//! - [`MapSettings`] (this file): what `map.mode`, `map.key_ttl`, `map.stream_*` and the page
//!   options mean, defaults resolved once.
//! - [`MapStore`] (`store.rs`): every map channel of one shard: writes, state pages, stream
//!   reads, stats, clear, and the expiry sweep that turns expired keys into removals.
//! - `channel.rs`: one map channel.
//! - `cursor.rs`: state-page cursors, bound to their channel.

mod channel;
mod cursor;
mod store;
#[cfg(test)]
mod tests;

pub use cursor::{CursorError, decode_cursor, encode_cursor};
pub use store::{
    KeyMode, MapEntry, MapExpired, MapLimits, MapOutcome, MapState, MapStore, MapSuppression,
    MapWrite, MapWriteError, StateQuery,
};

use crate::config::{ChannelOptions, MapMode};
use std::time::Duration;

/// Changes a map stream keeps when `map.stream_size` is 0 (as Centrifugo).
pub const DEFAULT_STREAM_SIZE: usize = 100;
/// How long a map stream's changes live when `map.stream_ttl` is 0 (as Centrifugo).
pub const DEFAULT_STREAM_TTL: Duration = Duration::from_secs(60);
/// State page size when neither the client nor `map.default_page_size` sets one.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Smallest page when `map.min_page_size` is 0: a smaller request is raised to it.
pub const DEFAULT_MIN_PAGE_SIZE: usize = 100;
/// Largest page when `map.max_page_size` is 0.
pub const DEFAULT_MAX_PAGE_SIZE: usize = 1_000;
/// Longest a subscriber may take from its first state page to going live, when
/// `map.subscribe_catch_up_timeout` is 0.
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// How one map channel behaves, from its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSettings {
    /// The change stream; `None` for `ephemeral` maps (no offsets, no recovery).
    pub stream: Option<MapStream>,
    /// How long an entry lives after its last write; `None` for `persistent` maps.
    pub key_ttl: Option<Duration>,
    /// How long the channel's epoch and offset outlive its last write or read; `None` =
    /// never forgotten (`persistent`). An `ephemeral` channel is forgotten once it holds no
    /// entry and has been idle for `key_ttl`.
    pub meta_ttl: Option<Duration>,
    /// State page sizes.
    pub pages: PageSizes,
    /// Most changes a subscriber may catch up on when it goes live; more → 112 (the SDK
    /// starts over from the state).
    pub catch_up_limit: usize,
    /// From the first state page to going live; past it the next page request is
    /// disconnected with 3008. `None` = no limit.
    pub catch_up_timeout: Option<Duration>,
    /// Told to subscribers (`publish_debounce`): the SDK coalesces a key's client publishes
    /// to one per interval. Zero = off.
    pub publish_debounce: Duration,
}

/// A map's change stream: retained changes and their lifetime after the last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapStream {
    pub size: usize,
    pub ttl: Duration,
}

/// State page sizes: a request's `limit` (0 = `default`) is clamped to `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSizes {
    pub default: usize,
    pub min: usize,
    pub max: usize,
}

impl PageSizes {
    /// The page size for a request's `limit`.
    pub fn for_request(&self, limit: i32) -> usize {
        let asked = usize::try_from(limit)
            .ok()
            .filter(|&l| l > 0)
            .unwrap_or(self.default);
        asked.clamp(self.min, self.max)
    }
}

impl MapSettings {
    /// The settings of a map namespace; `None` when the namespace is not a map type or has no
    /// `map.mode` (configuration validation refuses the latter).
    pub fn for_channel(options: &ChannelOptions) -> Option<MapSettings> {
        if !options.is_map() {
            return None;
        }
        let m = &options.map;
        let key_ttl = Some(m.key_ttl.as_std()).filter(|ttl| !ttl.is_zero());
        let stream = || MapStream {
            size: match m.stream_size {
                0 => DEFAULT_STREAM_SIZE,
                size => size as usize,
            },
            ttl: Some(m.stream_ttl.as_std())
                .filter(|ttl| !ttl.is_zero())
                .unwrap_or(DEFAULT_STREAM_TTL),
        };
        let (stream, meta_ttl) = match m.mode {
            MapMode::Unset => return None,
            MapMode::Ephemeral => (None, key_ttl),
            MapMode::Recoverable => {
                let stream = stream();
                let meta = match m.meta_ttl.as_std() {
                    meta if meta.is_zero() => stream.ttl * 10,
                    meta => meta,
                };
                let meta = meta.max(stream.ttl).max(key_ttl.unwrap_or_default());
                (Some(stream), Some(meta))
            }
            MapMode::Persistent => (Some(stream()), None),
        };
        let or = |value: u32, default: usize| match value {
            0 => default,
            value => value as usize,
        };
        let max = or(m.max_page_size, DEFAULT_MAX_PAGE_SIZE);
        let min = or(m.min_page_size, DEFAULT_MIN_PAGE_SIZE).min(max);
        let pages = PageSizes {
            default: or(m.default_page_size, DEFAULT_PAGE_SIZE).clamp(min, max),
            min,
            max,
        };
        Some(MapSettings {
            stream,
            key_ttl,
            meta_ttl,
            pages,
            catch_up_limit: or(m.live_transition_max_publication_limit, max),
            catch_up_timeout: Some(match m.subscribe_catch_up_timeout.as_std() {
                timeout if timeout.is_zero() => DEFAULT_CATCH_UP_TIMEOUT,
                timeout => timeout,
            }),
            publish_debounce: m.publish_debounce.as_std(),
        })
    }

    /// Whether the map keeps a change stream (positioned, recoverable subscriptions).
    pub fn positioned(&self) -> bool {
        self.stream.is_some()
    }

    /// The settings as storage-side scripts and SQL functions take them.
    pub fn storage_args(&self) -> StorageArgs {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let (stream_size, stream_ttl_ms) = self
            .stream
            .map_or((0, 1), |s| (s.size.max(1) as u64, ms(s.ttl)));
        StorageArgs {
            stream_size,
            stream_ttl_ms,
            meta_ttl_ms: self.meta_ttl.map_or(0, ms),
            key_ttl_ms: self.key_ttl.map_or(0, ms),
        }
    }
}

/// [`MapSettings`] in the numbers storage-side code takes: milliseconds, and 0 for "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageArgs {
    /// Changes retained; 0 = no stream (`ephemeral`).
    pub stream_size: u64,
    pub stream_ttl_ms: u64,
    /// 0 = never forgotten (`persistent`).
    pub meta_ttl_ms: u64,
    /// 0 = entries never expire.
    pub key_ttl_ms: u64,
}
