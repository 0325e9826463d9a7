//! Client subscribe (docs/protocol.md §7.3 permission order, §5.3 subscription tokens, §2.10 types,
//! §2.11 tags filter) and the record of subscriptions.

use spindle_proto::{client, proxy};

use super::filter::valid_filter;
use super::grants::{Effective, SubscribeGrant, SubscriptionOptions, ttl};
use super::proxy::{expiry, failure_of, override_of};
use super::rules::Permission;
use super::{Now, Session, SessionRules, Subscription};
use crate::config::{ChannelOptions, SubscriptionType};
use crate::jwt::{KeySet, Override, verify_subscription_token};
use crate::map::MapSettings;
use crate::outcome::Failure;
use crate::shared_poll::{RESULT_TYPE_SHARED_POLL, SharedPollSettings};

/// The subscribe request's `flag` bit asking for error 112 instead of `recovered: false`.
const FLAG_REJECT_UNRECOVERED: i64 = 2;

impl Session {
    /// Decides a client subscribe. Nothing is recorded: after registering the subscription the
    /// edge calls [`Session::add_subscription`]. (With `client.concurrency` > 1 the edge must
    /// not authorize a second subscribe to a channel before recording the first.)
    ///
    /// Order: empty channel (3501) → unknown `delta` (3501) → longer than `channel.max_length`
    /// (107) → already subscribed (105) → `client.channel_limit` (106) → namespace (102) /
    /// name (107) → subscription type (103; type 4 elsewhere 108; other types on shared-poll
    /// 107) → private without token (103) →
    /// token (invalid 103, expired 109; its channel in an unknown namespace 102; channel /
    /// user / client mismatch 3500) or the token-less rules (user-limited channel,
    /// proxies 108, `allow_subscribe_for_client` / `_for_anonymous`, insecure, else 103) →
    /// tags filter (107 unless `allow_tags_filter` and well formed) → token expiry already
    /// past (110).
    pub fn authorize_subscribe(
        &self,
        rules: &SessionRules,
        request: &client::SubscribeRequest,
        now: Now,
    ) -> Result<SubscribeGrant, Failure> {
        self.decide_subscribe(rules, request, None, &rules.subscription_keys, now)
    }

    /// [`Session::authorize_subscribe`] verifying the subscription token with `keys` (the JWK
    /// set fetched for it, see [`SessionRules::subscription_jwks`]).
    pub fn authorize_subscribe_with_keys(
        &self,
        rules: &SessionRules,
        request: &client::SubscribeRequest,
        keys: &KeySet,
        now: Now,
    ) -> Result<SubscribeGrant, Failure> {
        self.decide_subscribe(rules, request, None, keys, now)
    }

    /// Decides a client subscribe with the subscribe proxy's answer (asked because
    /// [`Session::subscribe_proxy`] said so): the same order as
    /// [`Session::authorize_subscribe`], with the backend in place of the token-less rules.
    /// Its `disconnect` / `error` refuse; otherwise the subscribe is allowed — **a response
    /// without `result` too**, with the namespace's options (as Centrifugo) — with the
    /// result's `info` (channel info), `data`, `expire_at` (0 = never) and `override`.
    pub fn authorize_subscribe_proxied(
        &self,
        rules: &SessionRules,
        request: &client::SubscribeRequest,
        response: &proxy::SubscribeResponse,
        now: Now,
    ) -> Result<SubscribeGrant, Failure> {
        self.decide_subscribe(
            rules,
            request,
            Some(response),
            &rules.subscription_keys,
            now,
        )
    }

    fn decide_subscribe(
        &self,
        rules: &SessionRules,
        request: &client::SubscribeRequest,
        proxied: Option<&proxy::SubscribeResponse>,
        keys: &KeySet,
        now: Now,
    ) -> Result<SubscribeGrant, Failure> {
        self.require_connected()?;
        let channel = request.channel.as_str();
        if channel.is_empty() {
            return Err(crate::channel::ChannelError::Empty.into());
        }
        let delta_requested = match request.delta.as_str() {
            "" => false,
            "fossil" => true,
            _ => return Err(Failure::ProtocolViolation),
        };
        // As Centrifugo's `validateSubscribeRequest`: length before 105 / 106.
        rules.resolver().check_length(channel)?;
        self.check_room_for(channel, rules)?;
        let resolved = rules.resolver().resolve(channel)?;
        let options = resolved.options;
        check_subscription_type(options, request.r#type)?;

        let mut overrides = Override::default();
        let mut chan_info = Vec::new();
        let mut data = Vec::new();
        let mut expires_at = None;
        if !request.token.is_empty() {
            let token = verify_subscription_token(
                &request.token,
                keys,
                &rules.subscription_claims,
                now.unix_secs(),
            )
            .map_err(Failure::SubscriptionToken)?;
            // Centrifugo's `VerifySubscribeToken` looks the token's channel up: 102 before
            // the mismatch check.
            rules.resolver().resolve_namespace(&token.channel)?;
            if token.channel != channel
                || token.user_id != self.user()
                || token.client.as_ref().is_some_and(|c| *c != self.client_id)
            {
                return Err(Failure::TokenMismatch);
            }
            overrides = token.overrides;
            chan_info = token.info.unwrap_or_default();
            data = token.data.unwrap_or_default();
            expires_at = token.expires_at;
        } else if resolved.private {
            return Err(Failure::PermissionDenied);
        } else {
            match (
                rules.subscribe_without_token(&resolved, channel, self.user()),
                proxied,
            ) {
                (Permission::Allowed, _) => {}
                (Permission::Denied, _) => return Err(Failure::PermissionDenied),
                (Permission::NeedsProxy, Some(response))
                    if options.subscribe_proxy_enabled
                        || options.subscribe_stream_proxy_enabled =>
                {
                    if let Some(failure) =
                        failure_of(response.error.as_ref(), response.disconnect.as_ref())
                    {
                        return Err(failure);
                    }
                    if let Some(result) = &response.result {
                        overrides = override_of(result.r#override.as_ref());
                        chan_info = result.info.to_vec();
                        data = result.data.to_vec();
                        expires_at = expiry(result.expire_at);
                    }
                }
                (Permission::NeedsProxy, _) => return Err(Failure::NotAvailable),
            }
        }
        if let Some(filter) = &request.tf
            && !(options.allow_tags_filter && valid_filter(filter))
        {
            return Err(Failure::BadRequest);
        }
        let ttl = match expires_at {
            Some(at) => ttl(at, now.unix_secs()).ok_or(Failure::Expired)?,
            None => 0,
        };
        // With the sub_refresh proxy the server refreshes: the client is told nothing expires.
        let refresh_proxy = expires_at.and_then(|_| Session::sub_refresh_proxy(rules, channel));
        let client_refresh = expires_at.is_some() && refresh_proxy.is_none();

        let map = MapSettings::for_channel(options).filter(|_| request.r#type != 0);
        let shared_poll = SharedPollSettings::for_channel(options);
        // A subscription stream's publications are the backend's, for this subscriber only:
        // no stream position, no recovery, no delta (as Centrifugo).
        let streamed = proxied.is_some()
            && options.subscribe_stream_proxy_enabled
            && !options.subscribe_proxy_enabled;
        let options = client_options(rules, options, &overrides, request, self.user());
        let options = match map {
            None if streamed => SubscriptionOptions {
                positioned: false,
                recoverable: false,
                delta: false,
                ..options
            },
            // A map's mode decides positioning and recovery (the SDK asks for neither).
            Some(settings) => SubscriptionOptions {
                positioned: settings.positioned(),
                recoverable: settings.positioned(),
                delta: delta_requested && options.delta,
                ..options
            },
            // Shared poll: no stream, so no position; per-key versions instead.
            None if shared_poll.is_some() => SubscriptionOptions {
                positioned: false,
                recoverable: false,
                delta: delta_requested && options.delta,
                ..options
            },
            None => SubscriptionOptions {
                delta: delta_requested && options.delta,
                ..options
            },
        };
        let recover_since =
            (request.recover && options.recoverable).then(|| client::StreamPosition {
                offset: request.offset,
                epoch: request.epoch.clone(),
            });
        let result = client::SubscribeResult {
            expires: client_refresh,
            ttl: if client_refresh { ttl } else { 0 },
            recoverable: options.recoverable,
            positioned: options.positioned,
            data: data.clone().into(),
            delta: options.delta,
            r#type: if shared_poll.is_some() {
                RESULT_TYPE_SHARED_POLL
            } else {
                0
            },
            ..Default::default()
        };
        Ok(SubscribeGrant {
            channel: channel.to_owned(),
            server_side: false,
            options,
            chan_info,
            data,
            expires_at,
            recover_since,
            reject_unrecovered: request.flag & FLAG_REJECT_UNRECOVERED != 0,
            result,
            refresh_proxy,
            map,
            shared_poll,
        })
    }

    /// 105 when already subscribed to `channel`, 106 when at `client.channel_limit`.
    pub(crate) fn check_room_for(
        &self,
        channel: &str,
        rules: &SessionRules,
    ) -> Result<(), Failure> {
        if self.subscriptions.contains_key(channel) {
            return Err(Failure::AlreadySubscribed);
        }
        if self.subscriptions.len() >= rules.channel_limit() {
            return Err(Failure::ChannelLimit);
        }
        Ok(())
    }

    /// Records a subscription the edge has registered (from any grant: client, connect or API).
    /// A subscription to the same channel is replaced. Its expiry timer starts here.
    pub fn add_subscription(&mut self, grant: &SubscribeGrant) {
        let subscription = Subscription {
            channel: grant.channel.clone(),
            server_side: grant.server_side,
            options: grant.options,
            info: client::ClientInfo {
                chan_info: grant.chan_info.clone().into(),
                ..self.info.clone()
            },
            expires_at: grant.expires_at,
            close_at: match grant.refresh_proxy {
                // The backend is asked at expiry itself, not after the close delay.
                Some(_) => grant
                    .expires_at
                    .map(|at| self.clock.instant_at(at, std::time::Duration::ZERO)),
                None => self.subscription_close_at(grant.expires_at),
            },
            expiry_reported: false,
            refresh_proxy: grant.refresh_proxy.clone(),
            shared_poll: grant.shared_poll.clone(),
        };
        self.subscriptions
            .insert(grant.channel.clone(), subscription);
    }

    /// Forgets a subscription (client or API unsubscribe, expiry, lost state); returns it, for
    /// the leave message and presence. A later subscription to the channel no longer counts
    /// as the connect token's (see [`Session::refresh`]).
    pub fn remove_subscription(&mut self, channel: &str) -> Option<Subscription> {
        self.token_channels.remove(channel);
        self.subscriptions.remove(channel)
    }

    /// A client `unsubscribe`: an empty channel is 3501; unsubscribing from a channel the
    /// client is not subscribed to succeeds with `None`.
    pub fn unsubscribe(
        &mut self,
        request: &client::UnsubscribeRequest,
    ) -> Result<Option<Subscription>, Failure> {
        self.require_connected()?;
        if request.channel.is_empty() {
            return Err(crate::channel::ChannelError::Empty.into());
        }
        Ok(self.remove_subscription(&request.channel))
    }
}

/// The client's requested type against the namespace's `subscription_type` (docs/protocol.md
/// §2.10): 0 stream, 1 map, 2 map_clients, 3 map_users, 4 shared_poll.
fn check_subscription_type(options: &ChannelOptions, requested: i32) -> Result<(), Failure> {
    let expected = match options.subscription_type {
        SubscriptionType::Stream => 0,
        SubscriptionType::Map => 1,
        SubscriptionType::MapClients => 2,
        SubscriptionType::MapUsers => 3,
        SubscriptionType::SharedPoll => 4,
    };
    match (requested == expected, expected, requested) {
        (true, _, _) => Ok(()),
        (false, 4, _) => Err(Failure::BadRequest),
        (false, _, 4) => Err(Failure::NotAvailable),
        (false, _, _) => Err(Failure::PermissionDenied),
    }
}

/// Flags of a client subscription (docs/protocol.md §7.3, end): forced ones from the namespace (with
/// the token's overrides), requested ones when allowed. The subscribing client counts as a
/// subscriber for the access checks. `delta` here means "fossil allowed".
fn client_options(
    rules: &SessionRules,
    namespace: &ChannelOptions,
    overrides: &Override,
    request: &client::SubscribeRequest,
    user: &str,
) -> SubscriptionOptions {
    let e = Effective::new(namespace, overrides);
    let history = rules.history_access(namespace, user, true);
    let presence = rules.presence_access(namespace, user, true);
    let recoverable =
        e.force_recovery || (request.recoverable && (namespace.allow_recovery || history));
    let positioned = recoverable
        || e.force_positioning
        || (request.positioned && (namespace.allow_positioning || history));
    SubscriptionOptions {
        presence: e.presence,
        emit_join_leave: e.join_leave,
        push_join_leave: e.force_push_join_leave
            || (request.join_leave && e.join_leave && presence),
        positioned,
        recoverable,
        delta: e.fossil_allowed,
        recovery_mode: e.recovery_mode,
        auto_cache_recover: e.auto_cache_recover,
        map_presence: e.map_presence,
    }
}
