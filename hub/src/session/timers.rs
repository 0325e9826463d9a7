//! Timers of a session (docs/protocol.md §2.6, §5.4): stale close before connect, pings and the
//! pong deadline, connection expiry and subscription expiry. Deadlines are instants computed
//! when they are set; the edge sleeps until [`Session::next_deadline`] and calls
//! [`Session::on_timer`].

use std::time::{Duration, Instant};

use super::{Now, Phase, ProxyCall, ProxyKind, Session, TimerAction, Timing};
use crate::codes::{Disconnect, Unsubscribe};
use crate::config::DEFAULT_PROXY_NAME;
use crate::outcome::Failure;

/// The pending deadlines of one connection.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// Close with 3502 unless connected by then.
    stale_at: Option<Instant>,
    /// Next ping.
    next_ping: Option<Instant>,
    /// A ping was sent and no pong has come back yet.
    ping_outstanding: bool,
    /// Close with 3012 unless the outstanding ping is answered by then.
    pong_due: Option<Instant>,
    /// Close with 3005 (connection expiry plus `expired_close_delay`).
    expire_close_at: Option<Instant>,
    /// Ask the refresh proxy (server-side refresh: the connection's expiry, or a retry).
    refresh_at: Option<Instant>,
}

impl Timers {
    pub(crate) fn new(now: Now, timing: &Timing) -> Timers {
        Timers {
            stale_at: Some(now.mono + timing.stale_close_delay),
            ..Timers::default()
        }
    }

    /// After a successful connect: no stale close, first ping scheduled, expiry set.
    pub(crate) fn connected(&mut self, now: Now, timing: &Timing, jitter: f64) {
        self.stale_at = None;
        self.next_ping = (!timing.ping_interval.is_zero())
            .then(|| now.mono + first_ping_delay(timing.ping_interval, jitter));
    }

    /// Sets (or clears) the connection's close deadline.
    pub(crate) fn set_expiry(&mut self, close_at: Option<Instant>) {
        self.expire_close_at = close_at;
    }

    /// Sets (or clears) when the refresh proxy is asked next.
    pub(crate) fn set_refresh(&mut self, at: Option<Instant>) {
        self.refresh_at = at;
    }
}

/// `interval/2 + jitter·interval/2`, always in `[interval/2, interval)`.
pub(crate) fn first_ping_delay(interval: Duration, jitter: f64) -> Duration {
    let half = interval / 2;
    let rest = interval - half;
    let extra = rest.mul_f64(jitter.clamp(0.0, 1.0));
    if extra >= rest {
        rest.saturating_sub(Duration::from_nanos(1)) + half
    } else {
        half + extra
    }
}

impl Session {
    /// A pong (an empty command) arrived. Without an outstanding ping — none sent yet, or
    /// already answered — it is a protocol violation (3501).
    pub fn on_pong(&mut self, now: Now) -> Result<(), Failure> {
        self.tick(now);
        self.require_connected()?;
        if !self.timers.ping_outstanding {
            return Err(Failure::ProtocolViolation);
        }
        self.timers.ping_outstanding = false;
        self.timers.pong_due = None;
        Ok(())
    }

    /// The earliest deadline the edge must wake up for; `None` when closed or nothing is
    /// pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.phase == Phase::Closed {
            return None;
        }
        let t = &self.timers;
        let subscriptions = self
            .subscriptions
            .values()
            .filter(|s| !s.expiry_reported)
            .filter_map(|s| s.close_at);
        [
            t.stale_at,
            t.next_ping,
            t.pong_due,
            t.expire_close_at,
            t.refresh_at,
        ]
        .into_iter()
        .flatten()
        .chain(subscriptions)
        .min()
    }

    /// Everything due at `now`, in order. A disconnect comes alone (the session is then
    /// closed); otherwise unsubscribes (channel order) and then a ping. Checked: stale (3502,
    /// only before connect), no pong (3012), connection expired (3005), server-side
    /// subscription expired (3006), client subscription expired (unsubscribe 2501), ping due.
    pub fn on_timer(&mut self, now: Now) -> Vec<TimerAction> {
        self.tick(now);
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now.mono);
        if self.phase == Phase::Closed {
            return Vec::new();
        }
        if self.phase != Phase::Connected {
            if due(self.timers.stale_at) {
                return self.disconnect(Disconnect::STALE);
            }
            return Vec::new();
        }
        if due(self.timers.pong_due) {
            return self.disconnect(Disconnect::NO_PONG);
        }
        if due(self.timers.expire_close_at) {
            return self.disconnect(Disconnect::EXPIRED);
        }
        let mut actions: Vec<TimerAction> = Vec::new();
        if self.refresh_proxy && due(self.timers.refresh_at) {
            // Pending until `refresh_proxied` sets the next one.
            self.timers.refresh_at = None;
            actions.push(TimerAction::RefreshProxy(ProxyCall {
                kind: ProxyKind::Refresh,
                proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            }));
        }
        let mut expired: Vec<(String, bool, Option<ProxyCall>)> = self
            .subscriptions
            .values_mut()
            .filter(|s| !s.expiry_reported && due(s.close_at))
            .map(|s| {
                s.expiry_reported = true;
                (s.channel.clone(), s.server_side, s.refresh_proxy.clone())
            })
            .collect();
        if expired
            .iter()
            .any(|(_, server_side, proxy)| *server_side && proxy.is_none())
        {
            return self.disconnect(Disconnect::SUBSCRIPTION_EXPIRED);
        }
        expired.sort_by(|a, b| a.0.cmp(&b.0));
        actions.extend(expired.into_iter().map(|(channel, _, proxy)| match proxy {
            Some(call) => TimerAction::SubRefreshProxy(channel, call),
            None => TimerAction::Unsubscribe(channel, Unsubscribe::EXPIRED),
        }));
        if due(self.timers.next_ping) {
            actions.push(TimerAction::SendPing);
            self.timers.ping_outstanding = true;
            if !self.timing.pong_timeout.is_zero() {
                self.timers.pong_due = Some(now.mono + self.timing.pong_timeout);
            }
            self.timers.next_ping = Some(now.mono + self.timing.ping_interval);
        }
        actions
    }

    fn disconnect(&mut self, disconnect: Disconnect) -> Vec<TimerAction> {
        self.phase = Phase::Closed;
        vec![TimerAction::Disconnect(disconnect)]
    }

    /// The connection's expiry: records it and sets the 3005 deadline (expiry plus
    /// `expired_close_delay`).
    /// With the refresh proxy, the proxy is asked at the expiry itself instead.
    pub(crate) fn set_connection_expiry(&mut self, expires_at: Option<i64>, now: Now) {
        self.expires_at = expires_at;
        if self.refresh_proxy {
            self.timers
                .set_refresh(expires_at.map(|at| now.instant_at(at, Duration::ZERO)));
            self.timers.set_expiry(None);
            return;
        }
        let close_at = expires_at.map(|at| now.instant_at(at, self.timing.expired_close_delay));
        self.timers.set_expiry(close_at);
    }

    /// The instant a subscription expiring at `expires_at` is closed (expiry plus
    /// `expired_sub_close_delay`), by the latest known time.
    pub(crate) fn subscription_close_at(&self, expires_at: Option<i64>) -> Option<Instant> {
        expires_at.map(|at| {
            self.clock
                .instant_at(at, self.timing.expired_sub_close_delay)
        })
    }
}
