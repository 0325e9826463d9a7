//! The connect command (docs/protocol.md §5.2, §2.8, §7.3 "Connect without token"): credentials,
//! connection expiry, and the server-side subscriptions a connection starts with.

use std::collections::{BTreeMap, BTreeSet};

use spindle_proto::{client, proxy};

use super::grants::{Effective, ServerSub, SubscribeGrant, ttl};
use super::proxy::{expiry, failure_of, non_empty, override_of};
use super::{ConnectGrant, Now, Phase, Session, SessionRules};
use crate::VERSION;
use crate::jwt::{KeySet, SubscribeOptions, verify_connection_token};
use crate::outcome::Failure;

/// Where a connection's credentials came from. It decides which server-side subscriptions the
/// connection starts with, as in Centrifugo's `Handler.OnClientConnecting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A connection token: its channels, the personal channel, and the channels the client
    /// asks for (`ConnectRequest.subs`).
    Token,
    /// The connect proxy's result: its channels and the personal channel; the channels the
    /// client asks for are not looked at (the backend chose).
    Proxy,
    /// The `client.user_id_http_header` user. Centrifugo authenticates it outside its connect
    /// handler, so it gets no server-side subscriptions at all: neither the personal channel
    /// nor the channels the client asks for.
    Header,
    /// No credentials, admitted by `allow_anonymous_connect_without_token` or
    /// `client.insecure`: the channels the client asks for (and may subscribe to itself).
    Anonymous,
}

impl Source {
    /// Whether `ConnectRequest.subs` is looked at.
    fn takes_requested_channels(self) -> bool {
        matches!(self, Source::Token | Source::Anonymous)
    }

    /// Whether the user gets the personal channel (when the feature is on and the user is not
    /// anonymous).
    fn takes_personal_channel(self) -> bool {
        matches!(self, Source::Token | Source::Proxy)
    }
}

/// Who is connecting, before the session commits to it.
#[derive(Debug)]
struct Credentials {
    user: String,
    info: Vec<u8>,
    /// Connection expiry (unix seconds), already `None` under `client.insecure`.
    expires_at: Option<i64>,
    /// Token `subs` (or `channels` with default options when `subs` is empty); the connect
    /// proxy's `channels` and `subs` together.
    token_subs: BTreeMap<String, SubscribeOptions>,
    /// Expiry of server-side subscriptions (connect proxy `subs[].expire_at`).
    sub_expiry: BTreeMap<String, i64>,
    /// `ConnectResult.data` (connect proxy).
    data: Vec<u8>,
    /// Decides the server-side subscriptions; only a token's channels are compared with a
    /// later token refresh (3010).
    source: Source,
}

impl Session {
    /// Handles the connect command. On success the session is connected (pings scheduled,
    /// expiry armed) and the grant lists the server-side subscriptions for the edge to
    /// register. On failure the session is unusable: every further command is 3501 and the
    /// stale timer closes it.
    ///
    /// Order: credentials (token: invalid 3500, expired 109, a channel of an unknown namespace
    /// in `channels` / `subs` 102, anonymous token with `disallow_anonymous_connection_tokens`
    /// 3507; no token: `user_id_http_header` user, else anonymous if allowed or insecure, else
    /// 3501) → personal channel (unknown namespace 102) → `ConnectRequest.subs`, only with a
    /// token or as anonymous (unknown namespace 3501; kept only when the client could
    /// subscribe itself, other channels skipped silently) → more server-side channels than
    /// `client.channel_limit` (3505) → expiry already past (110). Server-side channels are
    /// checked for their namespace only, not for length or name rules (Centrifugo). Empty
    /// channel names are skipped.
    pub fn connect(
        &mut self,
        rules: &SessionRules,
        request: &client::ConnectRequest,
        now: Now,
    ) -> Result<ConnectGrant, Failure> {
        self.connect_with_keys(rules, request, &rules.connection_keys, now)
    }

    /// [`Session::connect`] verifying the token with `keys`: the JWK set the core fetched for
    /// it when `client.token.jwks_public_endpoint` is set (see [`SessionRules::connection_jwks`]).
    pub fn connect_with_keys(
        &mut self,
        rules: &SessionRules,
        request: &client::ConnectRequest,
        keys: &KeySet,
        now: Now,
    ) -> Result<ConnectGrant, Failure> {
        self.tick(now);
        if self.phase != Phase::AwaitingConnect {
            return Err(Failure::ProtocolViolation);
        }
        let outcome = self
            .credentials(rules, request, keys, now)
            .and_then(|credentials| self.try_connect(rules, request, credentials, now));
        self.settle(outcome)
    }

    /// Handles the connect command with the connect proxy's answer (asked because
    /// [`Session::connect_proxy`] said so), in the order of [`Session::connect`] with the
    /// proxy in place of the token: the backend's `disconnect` / `error` first; no `result`
    /// falls back to a connect without credentials (`user_id_http_header` user, anonymous if
    /// allowed, else 3501); a result gives the user, `info`, `expire_at` (0 = never), `data`
    /// (`ConnectResult.data`), `channels` and `subs` (server-side subscriptions, unknown
    /// namespace 102) and `meta`. The channels of `ConnectRequest.subs` are not looked at
    /// after a result (the backend chose), only after the fallback to anonymous.
    pub fn connect_proxied(
        &mut self,
        rules: &SessionRules,
        request: &client::ConnectRequest,
        response: &proxy::ConnectResponse,
        now: Now,
    ) -> Result<ConnectGrant, Failure> {
        self.tick(now);
        if self.phase != Phase::AwaitingConnect {
            return Err(Failure::ProtocolViolation);
        }
        let outcome = self
            .proxy_credentials(rules, response, now)
            .and_then(|credentials| self.try_connect(rules, request, credentials, now));
        if outcome.is_ok()
            && let Some(result) = &response.result
        {
            self.meta = result.meta.to_vec();
        }
        self.settle(outcome)
    }

    /// A failed connect leaves the session unusable.
    fn settle(&mut self, outcome: Result<ConnectGrant, Failure>) -> Result<ConnectGrant, Failure> {
        if outcome.is_err() {
            self.phase = Phase::ConnectFailed;
        }
        outcome
    }

    fn try_connect(
        &mut self,
        rules: &SessionRules,
        request: &client::ConnectRequest,
        credentials: Credentials,
        now: Now,
    ) -> Result<ConnectGrant, Failure> {
        let user = credentials.user.as_str();
        let mut token_channels: BTreeSet<String> = match credentials.source {
            Source::Token => credentials.token_subs.keys().cloned().collect(),
            _ => BTreeSet::new(),
        };

        let mut subs: BTreeMap<String, SubscribeGrant> = BTreeMap::new();
        for (channel, options) in &credentials.token_subs {
            let resolved = rules.resolver().resolve_namespace(channel)?;
            let refresh_proxy = Session::sub_refresh_proxy(rules, channel);
            let expires_at = credentials
                .sub_expiry
                .get(channel)
                .copied()
                .filter(|at| *at > now.unix_secs());
            let sub = ServerSub {
                channel: channel.clone(),
                effective: Effective::new(resolved.options, &options.overrides),
                chan_info: options.info.clone().unwrap_or_default(),
                data: options.data.clone().unwrap_or_default(),
                expires_at,
                ttl: match (expires_at, &refresh_proxy) {
                    (Some(at), None) => ttl(at, now.unix_secs()).unwrap_or(0),
                    _ => 0,
                },
                recover: None,
                delta_requested: false,
            };
            let mut grant = with_position(sub, request).grant();
            if refresh_proxy.is_some() {
                grant.result.expires = false;
            }
            grant.refresh_proxy = refresh_proxy;
            subs.insert(channel.clone(), grant);
        }
        if credentials.source.takes_personal_channel()
            && let Some(channel) = rules.personal_channel(user)
        {
            let resolved = rules.resolver().resolve_namespace(&channel)?;
            // As Centrifugo: the personal channel replaces a token entry for the same channel
            // (namespace options only), and is no longer the token's for the refresh check.
            token_channels.remove(&channel);
            let sub = plain_server_sub(channel.clone(), resolved.options);
            subs.insert(channel, with_position(sub, request).grant());
        }
        if credentials.source.takes_requested_channels() {
            for channel in request.subs.keys() {
                if channel.is_empty() || subs.contains_key(channel) {
                    continue;
                }
                // Only an unknown namespace fails the connect (Centrifugo's
                // `DisconnectBadRequest`); a channel the client could not subscribe to itself —
                // private, behind the subscribe proxy, a bad name, not permitted — is skipped.
                let resolved = rules
                    .resolver()
                    .resolve_namespace(channel)
                    .map_err(|_| Failure::ProtocolViolation)?;
                if resolved.private
                    || resolved.options.subscribe_proxy_enabled
                    || !rules.resolver().name_is_valid(channel)
                    || !rules.subscribe_allowed(&resolved, channel, user)
                {
                    continue;
                }
                let sub = plain_server_sub(channel.clone(), resolved.options);
                subs.insert(channel.clone(), with_position(sub, request).grant());
            }
        }

        if subs.len() > rules.channel_limit() {
            return Err(Failure::ServerSideChannelLimit);
        }
        let ttl = match credentials.expires_at {
            Some(at) => ttl(at, now.unix_secs()).ok_or(Failure::Expired)?,
            None => 0,
        };

        let timing = self.timing;
        // With the refresh proxy the server refreshes: the client is told nothing expires.
        let client_refresh = credentials.expires_at.is_some() && !rules.refresh_proxy;
        let result = client::ConnectResult {
            client: self.client_id.clone(),
            version: VERSION.to_owned(),
            expires: client_refresh,
            ttl: if client_refresh { ttl } else { 0 },
            data: credentials.data.clone().into(),
            ping: u32::try_from(timing.ping_interval.as_secs()).unwrap_or(u32::MAX),
            pong: !timing.ping_interval.is_zero() && !timing.pong_timeout.is_zero(),
            time: if rules.connect_include_server_time {
                now.unix_ms
            } else {
                0
            },
            ..Default::default()
        };

        self.phase = Phase::Connected;
        self.info = client::ClientInfo {
            user: credentials.user.clone(),
            client: self.client_id.clone(),
            conn_info: credentials.info.clone().into(),
            chan_info: Default::default(),
        };
        self.token_channels = token_channels;
        self.refresh_proxy = rules.refresh_proxy;
        self.set_connection_expiry(credentials.expires_at, now);
        self.timers.connected(now, &timing, self.ping_jitter);

        Ok(ConnectGrant {
            user: credentials.user,
            conn_info: credentials.info,
            expires_at: credentials.expires_at,
            result,
            server_subs: subs.into_values().collect(),
        })
    }

    fn credentials(
        &self,
        rules: &SessionRules,
        request: &client::ConnectRequest,
        keys: &KeySet,
        now: Now,
    ) -> Result<Credentials, Failure> {
        if request.token.is_empty() {
            return match &self.header_user {
                Some(user) => Ok(Credentials::without_token(user.clone(), Source::Header)),
                None if rules.allow_anonymous_connect_without_token || rules.insecure => {
                    Ok(Credentials::without_token(String::new(), Source::Anonymous))
                }
                None => Err(Failure::NoCredentials),
            };
        }
        let token = verify_connection_token(
            &request.token,
            keys,
            &rules.connection_claims,
            now.unix_secs(),
        )
        .map_err(Failure::ConnectionToken)?;
        let token_subs: BTreeMap<String, SubscribeOptions> = if token.subs.is_empty() {
            token
                .channels
                .into_iter()
                .map(|channel| (channel, SubscribeOptions::default()))
                .collect()
        } else {
            token.subs
        };
        // Part of verifying the token in Centrifugo (`VerifyConnectToken`): before 3507.
        known_namespaces(rules, token_subs.keys())?;
        if token.user_id.is_empty() && rules.disallow_anonymous_connection_tokens {
            return Err(Failure::AnonymousTokenDisallowed);
        }
        let token_subs = without_empty(token_subs);
        Ok(Credentials {
            user: token.user_id,
            info: token.info.unwrap_or_default(),
            expires_at: if rules.insecure {
                None
            } else {
                token.expires_at
            },
            token_subs,
            sub_expiry: BTreeMap::new(),
            data: Vec::new(),
            source: Source::Token,
        })
    }

    /// Credentials from the connect proxy's answer (see [`Session::connect_proxied`]).
    fn proxy_credentials(
        &self,
        rules: &SessionRules,
        response: &proxy::ConnectResponse,
        now: Now,
    ) -> Result<Credentials, Failure> {
        if let Some(failure) = failure_of(response.error.as_ref(), response.disconnect.as_ref()) {
            return Err(failure);
        }
        let Some(result) = &response.result else {
            let no_token = client::ConnectRequest::default();
            return self.credentials(rules, &no_token, &rules.connection_keys, now);
        };
        let mut token_subs: BTreeMap<String, SubscribeOptions> = result
            .channels
            .iter()
            .map(|channel| (channel.clone(), SubscribeOptions::default()))
            .collect();
        let mut sub_expiry = BTreeMap::new();
        for (channel, options) in &result.subs {
            token_subs.insert(
                channel.clone(),
                SubscribeOptions {
                    info: non_empty(&options.info),
                    data: non_empty(&options.data),
                    overrides: override_of(options.r#override.as_ref()),
                },
            );
            if let Some(at) = expiry(options.expire_at) {
                sub_expiry.insert(channel.clone(), at);
            }
        }
        known_namespaces(rules, token_subs.keys())?;
        let token_subs = without_empty(token_subs);
        Ok(Credentials {
            user: result.user.clone(),
            info: result.info.to_vec(),
            expires_at: if rules.insecure {
                None
            } else {
                expiry(result.expire_at)
            },
            token_subs,
            sub_expiry,
            data: result.data.to_vec(),
            source: Source::Proxy,
        })
    }
}

impl Credentials {
    /// A connect without token: only the user (maybe `""`).
    fn without_token(user: String, source: Source) -> Credentials {
        Credentials {
            user,
            info: Vec::new(),
            expires_at: None,
            token_subs: BTreeMap::new(),
            sub_expiry: BTreeMap::new(),
            data: Vec::new(),
            source,
        }
    }
}

/// 102 when one of these server-side channels names an unknown namespace; nothing else about
/// the names is checked (Centrifugo looks server-side channels up, it does not validate them).
fn known_namespaces<'c>(
    rules: &SessionRules,
    channels: impl IntoIterator<Item = &'c String>,
) -> Result<(), Failure> {
    for channel in channels {
        rules.resolver().resolve_namespace(channel)?;
    }
    Ok(())
}

/// Server-side channels without the empty name, which Centrifugo skips (`connectCmd`).
fn without_empty(
    mut subs: BTreeMap<String, SubscribeOptions>,
) -> BTreeMap<String, SubscribeOptions> {
    subs.remove("");
    subs
}

/// A server-side subscription with the namespace's options and nothing from a token.
fn plain_server_sub(channel: String, options: &crate::config::ChannelOptions) -> ServerSub {
    ServerSub {
        channel,
        effective: Effective::new(options, &Default::default()),
        chan_info: Vec::new(),
        data: Vec::new(),
        expires_at: None,
        ttl: 0,
        recover: None,
        delta_requested: false,
    }
}

/// Adds the client's recovery state from `ConnectRequest.subs[channel]` (only `recover`,
/// `epoch`, `offset` and `delta` are used).
fn with_position(sub: ServerSub, request: &client::ConnectRequest) -> ServerSub {
    let state = request.subs.get(&sub.channel);
    ServerSub {
        delta_requested: state.is_some_and(|s| s.delta == "fossil"),
        recover: state.filter(|s| s.recover).map(|s| client::StreamPosition {
            offset: s.offset,
            epoch: s.epoch.clone(),
        }),
        ..sub
    }
}
