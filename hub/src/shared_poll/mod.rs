//! Shared-poll channels (docs/shared-poll.md, PROTOCOL §2.10 type 4): clients track keys with
//! signed batches; the core polls the application backend for the union of tracked keys and
//! sends each change to the keys' trackers.
//!
//! This module holds the pure parts: what a namespace's `shared_poll` section resolves to
//! ([`SharedPollSettings`]), track signatures ([`signature`]), and the decision on a client's
//! track / untrack (`session/track.rs`, methods of [`crate::session::Session`]). Who tracks what lives
//! at the edge; polling lives at the core.

pub mod signature;
#[cfg(test)]
mod tests;

pub use crate::session::{TrackGrant, TrackKeysConfig, TrackedItem, UntrackGrant};

use crate::config::{ChannelOptions, SharedPollMode, SubscriptionType};
use std::time::Duration;

/// `SubRefreshRequest.type` of a track (add keys).
pub const TYPE_TRACK: i32 = 1;
/// `SubRefreshRequest.type` of an untrack (drop keys).
pub const TYPE_UNTRACK: i32 = 2;
/// `SubscribeResult.type` of a shared-poll subscription.
pub const RESULT_TYPE_SHARED_POLL: i32 = 4;

/// How often tracked keys are polled when `shared_poll.refresh_interval` is 0 (as Centrifugo).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Keys per backend call when `shared_poll.refresh_batch_size` is 0 (as Centrifugo).
pub const DEFAULT_REFRESH_BATCH_SIZE: usize = 1_000;
/// Keys one connection may track in a channel when `max_keys_per_connection` is 0.
pub const DEFAULT_MAX_KEYS_PER_CONNECTION: usize = 5_000;
/// How long a channel nobody tracks keeps its poller when `channel_shutdown_delay` is 0.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(1);
/// How long after its signature expires a key stays tracked (time for the SDK to sign again)
/// when `track_expired_extra_delay` is 0 (as Centrifugo).
pub const DEFAULT_TRACK_EXPIRED_EXTRA_DELAY: Duration = Duration::from_secs(25);
/// A signature this many seconds past its expiry is still accepted (clock skew; as Centrifugo).
pub const SIGNATURE_GRACE_SECS: i64 = 5;
/// Longest one backend refresh call may take before its keys wait for the next interval.
pub const REFRESH_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How one shared-poll channel behaves, from its namespace; defaults resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPollSettings {
    /// `versioned`: the backend gives versions; otherwise changes are found by comparing data
    /// and versions are the core's own.
    pub versioned: bool,
    pub refresh_interval: Duration,
    pub refresh_batch_size: usize,
    pub max_keys_per_connection: usize,
    pub shutdown_delay: Duration,
    pub track_expired_extra_delay: Duration,
    /// `shared_poll_publish` may write into the channel.
    pub publish_enabled: bool,
    /// The refresh proxy's name (`""` / `default` = `channel.proxy.shared_poll_refresh`).
    pub proxy_name: String,
}

impl SharedPollSettings {
    /// The settings of a `shared_poll` namespace; `None` for other subscription types.
    pub fn for_channel(options: &ChannelOptions) -> Option<SharedPollSettings> {
        if options.subscription_type != SubscriptionType::SharedPoll {
            return None;
        }
        let sp = &options.shared_poll;
        let or = |value: Duration, default: Duration| {
            if value.is_zero() { default } else { value }
        };
        let count = |value: u32, default: usize| match value {
            0 => default,
            n => n as usize,
        };
        Some(SharedPollSettings {
            versioned: sp.mode == SharedPollMode::Versioned,
            refresh_interval: or(sp.refresh_interval.as_std(), DEFAULT_REFRESH_INTERVAL),
            refresh_batch_size: count(sp.refresh_batch_size, DEFAULT_REFRESH_BATCH_SIZE),
            max_keys_per_connection: count(
                sp.max_keys_per_connection,
                DEFAULT_MAX_KEYS_PER_CONNECTION,
            ),
            shutdown_delay: or(sp.channel_shutdown_delay.as_std(), DEFAULT_SHUTDOWN_DELAY),
            track_expired_extra_delay: or(
                sp.track_expired_extra_delay.as_std(),
                DEFAULT_TRACK_EXPIRED_EXTRA_DELAY,
            ),
            publish_enabled: sp.publish_enabled,
            proxy_name: sp.proxy_name.clone(),
        })
    }
}
