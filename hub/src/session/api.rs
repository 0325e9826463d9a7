//! Server API commands the edge applies to its matching local sessions (docs/protocol.md §6.2
//! `subscribe`, `refresh`; `disconnect` and `unsubscribe` need only [`Session::matches`] and
//! [`Session::remove_subscription`]).

use spindle_proto::{client, mesh};

use super::grants::{Effective, ServerSub, SubscribeGrant, ttl};
use super::{Now, Phase, Session, SessionRules};
use crate::codes::Disconnect;
use crate::outcome::Failure;

impl Session {
    /// Whether an API command addressed to (`user`, `client`, `session`) applies to this
    /// connection: it must be connected and its user equal `user` (`""` = anonymous
    /// connections); a non-empty `client` / `session` must equal this connection's.
    pub fn matches(&self, user: &str, client: &str, session: &str) -> bool {
        self.is_connected()
            && self.user() == user
            && (client.is_empty() || client == self.client_id)
            && (session.is_empty() || session == self.session_id)
    }

    /// API `refresh`: `expired` closes the connection with 3005; otherwise `expire_at` > 0 is
    /// the new expiry (already past: 3005 as well), `expire_at` <= 0 means the connection no
    /// longer expires, and non-empty `info` replaces the connection info. Returns the `refresh`
    /// push to send. A disconnect leaves the session closed.
    pub fn api_refresh(
        &mut self,
        expired: bool,
        expire_at: i64,
        info: &[u8],
        now: Now,
    ) -> Result<client::Refresh, Disconnect> {
        self.tick(now);
        let expires_at = (expire_at > 0).then_some(expire_at);
        let ttl = match expires_at {
            Some(at) => ttl(at, now.unix_secs()),
            None => Some(0),
        };
        let Some(ttl) = ttl.filter(|_| !expired) else {
            self.phase = Phase::Closed;
            return Err(Disconnect::EXPIRED);
        };
        if !info.is_empty() {
            self.set_conn_info(info.to_vec());
        }
        self.set_connection_expiry(expires_at, now);
        Ok(client::Refresh {
            expires: expires_at.is_some(),
            ttl,
        })
    }

    /// API `subscribe` for this connection: a server-side subscription with the namespace's
    /// options (forced positioning / recovery only), `info` as channel info, `data` for the
    /// `subscribe` push, expiring at `expire_at` when > 0 (then 3006 if not refreshed), and
    /// recovery from `recover_since` when the namespace enables recovery.
    ///
    /// Order (Centrifugo's `Executor.Subscribe`, then centrifuge's `Client.Subscribe`): empty
    /// channel 107 → unknown namespace 102 (the name is not checked otherwise: the server
    /// chose it) → at `client.channel_limit` already, [`Failure::ServerSideChannelLimit`]: the
    /// edge closes the connection with 3505, as Centrifugo → already subscribed 105 →
    /// `expire_at` already past 110. The API itself succeeds anyway; the error replies are
    /// for the edge's log.
    pub fn api_subscribe(
        &self,
        rules: &SessionRules,
        command: &mesh::SubscribeCommand,
        now: Now,
    ) -> Result<SubscribeGrant, Failure> {
        self.require_connected()?;
        let channel = command.channel.as_str();
        if channel.is_empty() {
            return Err(Failure::BadRequest);
        }
        let options = rules.resolver().resolve_namespace(channel)?.options;
        if self.subscriptions.len() >= rules.channel_limit() {
            return Err(Failure::ServerSideChannelLimit);
        }
        if self.subscriptions.contains_key(channel) {
            return Err(Failure::AlreadySubscribed);
        }
        let expires_at = (command.expire_at > 0).then_some(command.expire_at);
        let ttl = match expires_at {
            Some(at) => ttl(at, now.unix_secs()).ok_or(Failure::Expired)?,
            None => 0,
        };
        Ok(ServerSub {
            channel: channel.to_owned(),
            effective: Effective::new(options, &Default::default()),
            chan_info: command.info.to_vec(),
            data: command.data.to_vec(),
            expires_at,
            ttl,
            recover: command.recover_since.clone(),
            delta_requested: false,
        }
        .grant())
    }
}
