//! One client connection's protocol state and the rules it obeys (docs/protocol.md §2.6, §2.8, §5,
//! §7.2, §7.3), as a pure state machine: the edge feeds it commands and timer ticks with the
//! current [`Now`], and it decides, records and says what to do. No I/O, no clock.
//!
//! **Signature change against `docs/design/serve.md`**: [`Session::new`] takes the rules first,
//! `Session::new(rules, client_id, format, now)`, because the stale-close timer (3502) starts
//! when the connection opens and its delay comes from `client.stale_close_delay`.
//!
//! Life of a session: `AwaitingConnect` → ([`Session::connect`]) `Connected` → `Closed`; a
//! connect that fails leaves it "unusable" (every further command 3501; the stale timer closes
//! it). Every client-facing refusal is a [`Failure`]; the edge turns it into an error reply or
//! a disconnect with [`Failure::outcome`]. Successful decisions are grants
//! ([`ConnectGrant`], [`SubscribeGrant`], [`PublishGrant`]) carrying what the edge needs to act
//! and reply; after registering a subscription the edge records it with
//! [`Session::add_subscription`].
//!
//! Timers: [`Session::next_deadline`] says when to call [`Session::on_timer`] next, which
//! returns [`TimerAction`]s: pings, disconnects (stale 3502, no pong 3012, connection expired
//! 3005, server-side subscription expired 3006) and unsubscribes (client subscription expired
//! 2501). The first ping is at `interval/2 + jitter·interval/2` after connect; the jitter in
//! `[0, 1)` is derived from the client id (a random UUID) unless given with
//! [`Session::with_ping_jitter`].
//!
//! Deliberate choices:
//! - `sub_refresh` with an already expired new token answers error 109 (the JS SDK then
//!   unsubscribes), where Centrifugo silently succeeds with `expires: false` (docs/protocol.md §5.4).
//! - Proxies (module `proxy`): the session says when a command needs the backend
//!   ([`ProxyCall`]) and completes it with the backend's answer; the edge makes the call through
//!   the core. A subscription stream (gRPC `subscribe_stream_proxy_enabled`,
//!   [`Session::subscribe_stream_proxy`]) is decided by its first message like a subscribe
//!   proxy's answer; a publish into its namespace is 108 here — the edge sends it up a
//!   bidirectional stream the client holds before asking the session (docs/stream-proxy.md).
//! - JWKS (`jwks_public_endpoint`): the edge resolves the token to (endpoint, `kid`) with
//!   [`SessionRules::connection_jwks`] / [`SessionRules::subscription_jwks`], the core fetches
//!   the key, and the `*_with_keys` methods verify with it ([`Session::connect_with_keys`],
//!   [`Session::refresh_with_keys`], [`Session::authorize_subscribe_with_keys`],
//!   [`Session::sub_refresh_with_keys`]); the plain methods use the static keys, which are
//!   empty when an endpoint is set.
//! - With the refresh proxy the connection result says `expires: false` (the client never
//!   refreshes; a client `refresh` is 3501) and the session asks the backend when the
//!   connection expires ([`TimerAction::RefreshProxy`]); likewise the sub_refresh proxy for
//!   subscriptions ([`TimerAction::SubRefreshProxy`], client `sub_refresh` 3501).
//! - Map and shared-poll subscriptions (types 1–4 on matching namespaces) and map publishes
//!   answer 108 until those features land; `sub_refresh` ignores its `type` meanwhile (as
//!   Centrifugo does for every subscription but a shared-poll one).
//! - The subscribing client counts as a subscriber for the `allow_*_for_subscriber` checks that
//!   decide its positioning / recovery / join-leave flags.
//! - A connection `refresh` compares the new token's channels with the subscriptions (3010
//!   when one of them is not subscribed, or a subscription from the connect token is gone).
//! - Where a connection's credentials came from decides its server-side subscriptions: a
//!   `user_id_http_header` user gets none (no personal channel, no `ConnectRequest.subs`),
//!   as in Centrifugo, where that user bypasses the connect handler.
//!
//! Layout:
//! - `rules`: [`SessionRules`], [`SessionRulesError`].
//! - `grants`: [`ConnectGrant`], [`SubscribeGrant`], [`SubscriptionOptions`], [`PublishGrant`],
//!   [`Subscription`], [`TimerAction`].
//! - `connect`: [`Session::connect`], credentials and server-side subscriptions.
//! - `subscribe`: [`Session::authorize_subscribe`], recording and removing subscriptions.
//! - `filter`: tags filter (`tf`) validation and [`tags_match`].
//! - `publish`: [`Session::authorize_publish`], presence and history access.
//! - `refresh`: [`Session::refresh`], [`Session::sub_refresh`].
//! - `proxy`: [`ProxyCall`], [`RpcRoute`], the `*_proxy` / `*_proxied` pairs.
//! - `api`: [`Session::matches`], [`Session::api_refresh`], [`Session::api_subscribe`].
//! - `timers`: pings, pongs, expiry and stale timers.

mod api;
mod connect;
mod filter;
mod grants;
mod proxy;
mod publish;
mod refresh;
mod rules;
mod subscribe;
mod timers;
mod track;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_api;
#[cfg(test)]
mod tests_audit;
#[cfg(test)]
mod tests_audit_connect;
#[cfg(test)]
mod tests_connect;
#[cfg(test)]
mod tests_jwks;
#[cfg(test)]
mod tests_proxy;
#[cfg(test)]
mod tests_publish;
#[cfg(test)]
mod tests_refresh;
#[cfg(test)]
mod tests_rules;
#[cfg(test)]
mod tests_server_subs;
#[cfg(test)]
mod tests_shared_poll;
#[cfg(test)]
mod tests_sub_token;
#[cfg(test)]
mod tests_subscribe;
#[cfg(test)]
mod tests_timers;
#[cfg(test)]
mod tests_user_limited;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use spindle_proto::{Command, Format, Request, client};

pub use filter::tags_match;
pub use grants::{
    ConnectGrant, MapChange, PublishGrant, SubscribeGrant, Subscription, SubscriptionOptions,
    TimerAction,
};
pub use proxy::{MapProxyAnswer, PROXY_RETRY_DELAY, ProxyCall, ProxyKind, RpcRoute, rpc_outcome};
pub use rules::{SessionRules, SessionRulesError};
pub use track::{TrackGrant, TrackKeysConfig, TrackedItem, UntrackGrant};

use crate::outcome::Failure;
use rules::Timing;
use timers::Timers;

/// The current time, as both clocks: `mono` for deadlines, `unix_ms` for token times. The edge
/// makes one per frame or timer tick (the constructor reading the clock lives in the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Wall-clock time, unix milliseconds.
    pub unix_ms: i64,
}

impl Now {
    /// Unix seconds (rounded down).
    pub fn unix_secs(self) -> i64 {
        self.unix_ms.div_euclid(1000)
    }

    /// Both clocks moved forward by `by`.
    pub fn after(self, by: Duration) -> Now {
        Now {
            mono: self.mono + by,
            unix_ms: self
                .unix_ms
                .saturating_add(i64::try_from(by.as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// The instant at which the wall clock reads `unix_secs` (by this pair's mapping), plus
    /// `delay`. Times in the past give `mono` itself (or earlier, when representable).
    pub(crate) fn instant_at(self, unix_secs: i64, delay: Duration) -> Instant {
        let target_ms = unix_secs.saturating_mul(1000);
        let delta = target_ms.saturating_sub(self.unix_ms);
        let base = if delta >= 0 {
            self.mono + Duration::from_millis(delta.unsigned_abs())
        } else {
            self.mono
                .checked_sub(Duration::from_millis(delta.unsigned_abs()))
                .unwrap_or(self.mono)
        };
        base + delay
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    Connected,
    /// The connect was refused with an error reply: everything else is 3501.
    ConnectFailed,
    Closed,
}

/// One client connection's state (see the module doc).
#[derive(Debug)]
pub struct Session {
    client_id: String,
    session_id: String,
    format: Format,
    phase: Phase,
    /// user, client, conn_info (chan_info empty).
    info: client::ClientInfo,
    expires_at: Option<i64>,
    /// Channels of the connect token's `subs` / `channels` still subscribed from it (not the
    /// personal channel), for the refresh 3010 check.
    token_channels: BTreeSet<String>,
    subscriptions: HashMap<String, Subscription>,
    timing: Timing,
    timers: Timers,
    /// The latest time the session was told (to turn unix expiry times into instants).
    clock: Now,
    ping_jitter: f64,
    header_user: Option<String>,
    /// `meta` from the connect / refresh proxy (sent with later proxy requests).
    meta: Vec<u8>,
    /// The connection's expiry is extended by the refresh proxy (server-side refresh).
    refresh_proxy: bool,
}

impl Session {
    /// A new connection awaiting its connect command; the stale timer (3502 after
    /// `client.stale_close_delay`) starts now.
    pub fn new(rules: &SessionRules, client_id: String, format: Format, now: Now) -> Session {
        let ping_jitter = jitter_from(&client_id);
        Session {
            info: client::ClientInfo {
                client: client_id.clone(),
                ..Default::default()
            },
            client_id,
            session_id: String::new(),
            format,
            phase: Phase::AwaitingConnect,
            expires_at: None,
            token_channels: BTreeSet::new(),
            subscriptions: HashMap::new(),
            timing: rules.timing,
            timers: Timers::new(now, &rules.timing),
            clock: now,
            ping_jitter,
            header_user: None,
            meta: Vec::new(),
            refresh_proxy: false,
        }
    }

    /// Where in `[interval/2, interval)` the first ping goes: `jitter` in `[0, 1)` (clamped).
    pub fn with_ping_jitter(mut self, jitter: f64) -> Session {
        self.ping_jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The session id of uni / emulation transports, matched by API commands naming one.
    pub fn with_session_id(mut self, session_id: String) -> Session {
        self.session_id = session_id;
        self
    }

    /// The user named by the `client.user_id_http_header` request header: a connect without
    /// token then authenticates as this user (docs/protocol.md §7.3 "Connect without token").
    pub fn with_header_user(mut self, user: String) -> Session {
        self.header_user = Some(user);
        self
    }

    /// The connection id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The session id (`""` unless set with [`Session::with_session_id`]).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The user id; `""` before connect and for anonymous connections.
    pub fn user(&self) -> &str {
        &self.info.user
    }

    /// The connection's encoding.
    pub fn format(&self) -> Format {
        self.format
    }

    /// True after a successful connect, until closed.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// This connection as presence / publications show it: user, client, conn_info.
    pub fn client_info(&self) -> &client::ClientInfo {
        &self.info
    }

    /// When the connection expires (unix seconds), if it does.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// The subscription to `channel`, if any.
    pub fn subscription(&self, channel: &str) -> Option<&Subscription> {
        self.subscriptions.get(channel)
    }

    /// Every subscription, in no particular order.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Subscription> {
        self.subscriptions.values()
    }

    /// Marks the session closed (the edge closes the connection for any reason): no more
    /// commands, no more deadlines.
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
    }

    /// Order rules (docs/protocol.md §2.6): the first command must be `connect`, a second `connect`
    /// is refused, and after a failed connect (or close) nothing is accepted — all 3501. After
    /// connect, `send` is refused with 3508: there is no message handler (Centrifugo OSS).
    /// Pongs are admitted here and judged by [`Session::on_pong`].
    pub fn admit(&self, command: &Command) -> Result<(), Failure> {
        match (self.phase, &command.request) {
            (Phase::AwaitingConnect, Request::Connect(_)) => Ok(()),
            (Phase::Connected, Request::Connect(_)) => Err(Failure::ProtocolViolation),
            (Phase::Connected, Request::Send(_)) => Err(Failure::NoMessageHandler),
            (Phase::Connected, _) => Ok(()),
            _ => Err(Failure::ProtocolViolation),
        }
    }

    /// `Ok` when connected, else a protocol violation (commands before connect).
    fn require_connected(&self) -> Result<(), Failure> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(Failure::ProtocolViolation)
        }
    }

    /// Remembers the latest time (never moving backwards on the monotonic clock).
    fn tick(&mut self, now: Now) {
        if now.mono >= self.clock.mono {
            self.clock = now;
        }
    }
}

/// A number in `[0, 1)` from the client id (FNV-1a): client ids are random UUIDs, so first
/// pings spread out without a random source here.
fn jitter_from(client_id: &str) -> f64 {
    let hash = client_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    // 53 bits fit an f64 mantissa exactly.
    (hash >> 11) as f64 / (1_u64 << 53) as f64
}
