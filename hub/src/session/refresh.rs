//! Client-side token refresh (docs/protocol.md §5.4): `refresh` for the connection, `sub_refresh`
//! for one subscription.

use std::collections::BTreeSet;

use spindle_proto::client;

use super::grants::ttl;
use super::{Now, Session, SessionRules};
use crate::channel::ChannelError;
use crate::jwt::{KeySet, verify_connection_token, verify_subscription_token};
use crate::outcome::Failure;

impl Session {
    /// A connection `refresh` with a new token.
    ///
    /// Order: empty token or a refresh proxy configured (3501) → verification (expired:
    /// disconnect 3005; invalid 3500) → a channel of an unknown namespace in `subs` /
    /// `channels` (102) → another user (3500) → server-side channels changed (3010, as
    /// Centrifugo's `tokenChannelsChanged`: a channel of the new token the connection is not
    /// subscribed to, or a subscription that came from the connect token and is not in the new
    /// one) → new expiry already past (error 110). On success the expiry (and the 3005
    /// deadline) moves, `info` replaces the connection info when the token has one, and the
    /// reply says whether and when the connection expires — under `client.insecure` too:
    /// Centrifugo ignores a token's expiry at connect then, but not at refresh.
    pub fn refresh(
        &mut self,
        rules: &SessionRules,
        request: &client::RefreshRequest,
        now: Now,
    ) -> Result<client::RefreshResult, Failure> {
        self.refresh_with_keys(rules, request, &rules.connection_keys, now)
    }

    /// [`Session::refresh`] verifying the token with `keys` (a fetched JWK set).
    pub fn refresh_with_keys(
        &mut self,
        rules: &SessionRules,
        request: &client::RefreshRequest,
        keys: &KeySet,
        now: Now,
    ) -> Result<client::RefreshResult, Failure> {
        self.tick(now);
        self.require_connected()?;
        // Refreshed by the server through the refresh proxy: the client has no say (3501).
        if request.token.is_empty() || self.refresh_proxy {
            return Err(Failure::ProtocolViolation);
        }
        let token = verify_connection_token(
            &request.token,
            keys,
            &rules.connection_claims,
            now.unix_secs(),
        )
        .map_err(Failure::RefreshToken)?;
        let channels: BTreeSet<&str> = if token.subs.is_empty() {
            token.channels.iter().map(String::as_str).collect()
        } else {
            token.subs.keys().map(String::as_str).collect()
        };
        // Part of verifying the token in Centrifugo (`VerifyConnectToken`): before the user.
        for channel in &channels {
            rules.resolver().resolve_namespace(channel)?;
        }
        if token.user_id != self.user() {
            return Err(Failure::TokenMismatch);
        }
        if self.token_channels_changed(&channels) {
            return Err(Failure::InsufficientState);
        }
        let expires_at = token.expires_at;
        let ttl = match expires_at {
            Some(at) => ttl(at, now.unix_secs()).ok_or(Failure::Expired)?,
            None => 0,
        };
        if let Some(info) = token.info {
            self.set_conn_info(info);
        }
        self.set_connection_expiry(expires_at, now);
        Ok(client::RefreshResult {
            expires: expires_at.is_some(),
            ttl,
            ..Default::default()
        })
    }

    /// A `sub_refresh` with a new subscription token.
    ///
    /// Order (Centrifugo's `handleSubRefresh`, then `Handler.OnSubRefresh`): empty channel
    /// (3501) → not subscribed (103) → refreshed by the server (3501): a server-side
    /// subscription, or any subscription in a `sub_refresh_proxy_enabled` namespace → empty
    /// token (107) → verification (expired: error 109 — a deliberate choice, where Centrifugo
    /// silently succeeds with `expires: false`; invalid: disconnect 3500) → the token's channel
    /// in an unknown namespace (102) → channel / user / client mismatch (3500) → new expiry
    /// already past (110). `type` (shared-poll track / untrack) is ignored: Centrifugo looks
    /// at it only for shared-poll subscriptions, which are not served. On success the expiry
    /// (and the 2501 / 3006 deadline) moves and `info` replaces the channel info when the
    /// token has one.
    pub fn sub_refresh(
        &mut self,
        rules: &SessionRules,
        request: &client::SubRefreshRequest,
        now: Now,
    ) -> Result<client::SubRefreshResult, Failure> {
        self.sub_refresh_with_keys(rules, request, &rules.subscription_keys, now)
    }

    /// [`Session::sub_refresh`] verifying the token with `keys` (a fetched JWK set).
    pub fn sub_refresh_with_keys(
        &mut self,
        rules: &SessionRules,
        request: &client::SubRefreshRequest,
        keys: &KeySet,
        now: Now,
    ) -> Result<client::SubRefreshResult, Failure> {
        self.tick(now);
        self.require_connected()?;
        let channel = request.channel.as_str();
        if channel.is_empty() {
            return Err(ChannelError::Empty.into());
        }
        let Some(subscription) = self.subscriptions.get(channel) else {
            return Err(Failure::PermissionDenied);
        };
        // No client-side refresh for these in Centrifugo (`flagClientSideRefresh` unset).
        if subscription.server_side || Session::sub_refresh_proxy(rules, channel).is_some() {
            return Err(Failure::ProtocolViolation);
        }
        if request.token.is_empty() {
            return Err(Failure::BadRequest);
        }
        let token = verify_subscription_token(
            &request.token,
            keys,
            &rules.subscription_claims,
            now.unix_secs(),
        )
        .map_err(Failure::SubRefreshToken)?;
        // Centrifugo's `VerifySubscribeToken` looks the token's channel up: 102 first.
        rules.resolver().resolve_namespace(&token.channel)?;
        if token.channel != channel
            || token.user_id != self.user()
            || token.client.as_ref().is_some_and(|c| *c != self.client_id)
        {
            return Err(Failure::TokenMismatch);
        }
        let ttl = match token.expires_at {
            Some(at) => ttl(at, now.unix_secs()).ok_or(Failure::Expired)?,
            None => 0,
        };
        let close_at = self.subscription_close_at(token.expires_at);
        if let Some(subscription) = self.subscriptions.get_mut(channel) {
            subscription.expires_at = token.expires_at;
            subscription.close_at = close_at;
            subscription.expiry_reported = false;
            if let Some(info) = token.info {
                subscription.info.chan_info = info.into();
            }
        }
        Ok(client::SubRefreshResult {
            expires: token.expires_at.is_some(),
            ttl,
            ..Default::default()
        })
    }

    /// Whether a refresh token's server-side channels differ from the connection's: one of
    /// `channels` is not subscribed (by any means), or a subscription that came from the
    /// connect token is not in `channels`.
    fn token_channels_changed(&self, channels: &BTreeSet<&str>) -> bool {
        let added = channels
            .iter()
            .any(|channel| !self.subscriptions.contains_key(*channel));
        let dropped = self.token_channels.iter().any(|channel| {
            self.subscriptions.contains_key(channel) && !channels.contains(channel.as_str())
        });
        added || dropped
    }

    /// Replaces the connection info, in the session and in every subscription's `ClientInfo`.
    pub(crate) fn set_conn_info(&mut self, info: Vec<u8>) {
        self.info.conn_info = info.into();
        for subscription in self.subscriptions.values_mut() {
            subscription.info.conn_info = self.info.conn_info.clone();
        }
    }
}
