//! What the session hands to the edge: grants (a decision plus everything needed to act on it
//! and reply), the record of one subscription, and timer actions.
//!
//! Byte payloads the session owns are `Vec<u8>` (hub has no `bytes` dependency); turning one
//! into the protocol's `Bytes` with `.into()` does not copy.

use std::time::Instant;

use spindle_proto::{client, proxy};

use super::ProxyCall;

use crate::codes::{Disconnect, Unsubscribe};
use crate::config::{ChannelOptions, DeltaType, RecoveryMode};
use crate::jwt::Override;
use crate::map::MapSettings;
use crate::shared_poll::SharedPollSettings;

/// A successful connect: the edge registers `server_subs` (recovering them from
/// `ConnectRequest.subs` positions), fills `result.subs` with their results, calls
/// [`Session::add_subscription`](super::Session::add_subscription) for each, then replies.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectGrant {
    /// The user id (`""` = anonymous).
    pub user: String,
    /// Connection info (`ClientInfo.conn_info`); empty when none.
    pub conn_info: Vec<u8>,
    /// When the connection expires (unix seconds); `None` = never (always `None` with
    /// `client.insecure`).
    pub expires_at: Option<i64>,
    /// The reply: `client`, `version`, `expires`/`ttl`, `ping`/`pong`, `time`. `subs` is left
    /// empty for the edge to fill; `session`/`node` are the edge's (emulation, uni transports).
    pub result: client::ConnectResult,
    /// Server-side subscriptions (token `subs`/`channels`, personal channel, the client's
    /// `ConnectRequest.subs` it may subscribe to itself), in channel order.
    pub server_subs: Vec<SubscribeGrant>,
}

/// How one subscription behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Keep this connection in the channel's presence.
    pub presence: bool,
    /// Publish join / leave for this connection.
    pub emit_join_leave: bool,
    /// Deliver other connections' join / leave to this one.
    pub push_join_leave: bool,
    /// Offsets are tracked (stream position in the reply).
    pub positioned: bool,
    /// Recovery on resubscribe is possible (implies `positioned`).
    pub recoverable: bool,
    /// Fossil delta negotiated.
    pub delta: bool,
    /// The namespace's `force_recovery_mode` (stream or cache).
    pub recovery_mode: RecoveryMode,
    /// The namespace's `auto_cache_recover`: recover (cache mode) on every subscribe, even
    /// without `recover` from the client (docs/protocol.md §4.4).
    pub auto_cache_recover: bool,
    /// The core hears of this subscription's join, refresh and leave for map channels it feeds:
    /// the namespace's `map_clients_presence_channel_prefix` /
    /// `map_users_presence_channel_prefix`, or a map's `map.remove_client_on_unsubscribe`.
    pub map_presence: bool,
}

/// A subscription the session allows. The edge registers it (recovering from `recover_since`
/// when set), fills `result.epoch` / `offset` / `publications` / `recovered` /
/// `was_recovering`, calls [`Session::add_subscription`](super::Session::add_subscription) and
/// replies (or, for a server-side grant after connect, sends a `subscribe` push).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeGrant {
    /// The channel.
    pub channel: String,
    /// Server-side: its expiry or lost state disconnects (3006 / 3010) instead of
    /// unsubscribing.
    pub server_side: bool,
    /// Behaviour flags.
    pub options: SubscriptionOptions,
    /// Channel info (`ClientInfo.chan_info`) from the token; empty when none.
    pub chan_info: Vec<u8>,
    /// `SubscribeResult.data` (also in `result.data`); empty when none.
    pub data: Vec<u8>,
    /// When the subscription expires (unix seconds); `None` = never.
    pub expires_at: Option<i64>,
    /// The client's last known position, when it asked to recover and recovery is enabled.
    pub recover_since: Option<client::StreamPosition>,
    /// `SubscribeRequest.flag & 2`: answer error 112 instead of `recovered: false`.
    pub reject_unrecovered: bool,
    /// The reply so far: `expires`/`ttl`, `recoverable`, `positioned`, `data`, `delta`.
    pub result: client::SubscribeResult,
    /// Expiry is extended by this sub_refresh proxy (server-side), not by the client.
    pub refresh_proxy: Option<ProxyCall>,
    /// A map subscription (types 1–3): its channel's map settings. The edge runs the state,
    /// stream and live phases (docs/protocol.md §2.10) instead of the stream steps.
    pub map: Option<MapSettings>,
    /// A shared-poll subscription (type 4): its channel's settings. The edge asks the core
    /// for the channel's epoch and answers; keys come later with tracks.
    pub shared_poll: Option<SharedPollSettings>,
}

/// A client publication the session allows; the edge sends it to the core.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishGrant {
    /// The channel.
    pub channel: String,
    /// The payload, as the client sent it.
    pub data: Vec<u8>,
    /// The publisher (`Publication.info`): user, client, conn_info, and the chan_info of its
    /// subscription to this channel if it has one.
    pub info: client::ClientInfo,
    /// The publish proxy's result, when the backend was asked: `skip_history`, `tags`,
    /// `idempotency_key`, `delta`, `version`, `version_epoch` for the publish (its `data`, if
    /// any, is already in `data`).
    pub backend: Option<proxy::PublishResult>,
    /// A map publish (`PublishRequest.type` 1): which entry, and the write's options.
    pub map: Option<MapChange>,
}

/// The map write of a granted client map publish or removal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MapChange {
    /// The entry: the client's key, its client / user id with `map.client_key`, or the map
    /// proxy's `key`.
    pub key: String,
    pub removed: bool,
    /// From the map publish / remove proxy's result (empty / default without one).
    pub tags: std::collections::BTreeMap<String, String>,
    /// `""`, `if_new` or `if_exists`.
    pub key_mode: String,
    pub idempotency_key: String,
    pub delta: bool,
    pub version: u64,
    pub version_epoch: String,
}

/// One subscription of a connection, as recorded by
/// [`Session::add_subscription`](super::Session::add_subscription).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// The channel.
    pub channel: String,
    /// Server-side (see [`SubscribeGrant::server_side`]).
    pub server_side: bool,
    /// Behaviour flags.
    pub options: SubscriptionOptions,
    /// This connection in this channel: user, client, conn_info, chan_info (join / leave,
    /// presence, publications).
    pub info: client::ClientInfo,
    /// When the subscription expires (unix seconds); `None` = never.
    pub expires_at: Option<i64>,
    /// `expires_at + expired_sub_close_delay` as an instant.
    pub(crate) close_at: Option<Instant>,
    /// The expiry was reported by `on_timer`; waiting for the edge to remove it (or for the
    /// sub_refresh proxy's answer).
    pub(crate) expiry_reported: bool,
    /// Server-side refresh through this sub_refresh proxy.
    pub(crate) refresh_proxy: Option<ProxyCall>,
    /// A shared-poll subscription: track / untrack apply to it.
    pub(crate) shared_poll: Option<SharedPollSettings>,
}

/// What a timer asks the edge to do (from [`Session::on_timer`](super::Session::on_timer)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a ping (an empty reply).
    SendPing,
    /// Close the connection. The session is already closed.
    Disconnect(Disconnect),
    /// Send this unsubscribe push for the channel and drop the subscription: the edge calls
    /// [`Session::remove_subscription`](super::Session::remove_subscription) (which returns
    /// the record, for the leave message).
    Unsubscribe(String, Unsubscribe),
    /// The connection expires now: ask the refresh proxy, then call
    /// [`Session::refresh_proxied`](super::Session::refresh_proxied).
    RefreshProxy(ProxyCall),
    /// The subscription to the channel expires now: ask the sub_refresh proxy, then call
    /// [`Session::sub_refresh_proxied`](super::Session::sub_refresh_proxied).
    SubRefreshProxy(String, ProxyCall),
}

/// Namespace options with a token's `override` applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Effective {
    pub(crate) presence: bool,
    pub(crate) join_leave: bool,
    pub(crate) force_push_join_leave: bool,
    pub(crate) force_recovery: bool,
    pub(crate) force_positioning: bool,
    pub(crate) fossil_allowed: bool,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) auto_cache_recover: bool,
    pub(crate) map_presence: bool,
}

impl Effective {
    pub(crate) fn new(options: &ChannelOptions, overrides: &Override) -> Effective {
        Effective {
            presence: overrides.presence.unwrap_or(options.presence),
            join_leave: overrides.join_leave.unwrap_or(options.join_leave),
            force_push_join_leave: overrides
                .force_push_join_leave
                .unwrap_or(options.force_push_join_leave),
            force_recovery: overrides.force_recovery.unwrap_or(options.force_recovery),
            force_positioning: overrides
                .force_positioning
                .unwrap_or(options.force_positioning),
            fossil_allowed: options.allowed_delta_types.contains(&DeltaType::Fossil),
            recovery_mode: options.force_recovery_mode,
            auto_cache_recover: options.auto_cache_recover,
            map_presence: options.feeds_map_presence(),
        }
    }
}

/// The parts of a server-side grant (connect, API subscribe).
#[derive(Debug)]
pub(crate) struct ServerSub {
    pub(crate) channel: String,
    pub(crate) effective: Effective,
    pub(crate) chan_info: Vec<u8>,
    pub(crate) data: Vec<u8>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) ttl: u32,
    /// The client's recovery request from `ConnectRequest.subs` (API: `recover_since`).
    pub(crate) recover: Option<client::StreamPosition>,
    /// Fossil asked for in `ConnectRequest.subs[channel].delta`.
    pub(crate) delta_requested: bool,
}

impl ServerSub {
    /// Server-side subscriptions take the forced flags only: `force_recovery` (which implies
    /// positioning) and `force_positioning`; join / leave is pushed with
    /// `force_push_join_leave`.
    pub(crate) fn grant(self) -> SubscribeGrant {
        let e = self.effective;
        let options = SubscriptionOptions {
            presence: e.presence,
            emit_join_leave: e.join_leave,
            push_join_leave: e.force_push_join_leave,
            positioned: e.force_positioning || e.force_recovery,
            recoverable: e.force_recovery,
            delta: self.delta_requested && e.fossil_allowed,
            recovery_mode: e.recovery_mode,
            auto_cache_recover: e.auto_cache_recover,
            map_presence: e.map_presence,
        };
        let recover_since = self.recover.filter(|_| options.recoverable);
        let result = client::SubscribeResult {
            expires: self.expires_at.is_some(),
            ttl: self.ttl,
            recoverable: options.recoverable,
            positioned: options.positioned,
            data: self.data.clone().into(),
            delta: options.delta,
            ..Default::default()
        };
        SubscribeGrant {
            channel: self.channel,
            server_side: true,
            options,
            chan_info: self.chan_info,
            data: self.data,
            expires_at: self.expires_at,
            recover_since,
            reject_unrecovered: false,
            result,
            refresh_proxy: None,
            map: None,
            shared_poll: None,
        }
    }
}

/// Seconds from `now_secs` to `expires_at`, for `ttl` fields; `None` when already past.
pub(crate) fn ttl(expires_at: i64, now_secs: i64) -> Option<u32> {
    let left = expires_at.saturating_sub(now_secs);
    (left > 0).then(|| u32::try_from(left).unwrap_or(u32::MAX))
}
