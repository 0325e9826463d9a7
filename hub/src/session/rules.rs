//! [`SessionRules`]: everything a session decides with, built once per node from the
//! configuration — the channel resolver, the token keys and claim rules, and the `client`
//! section's switches, limits and timers.

use std::time::Duration;

use regex::Regex;
use thiserror::Error;

use crate::channel::{ChannelResolver, ResolvedChannel};
use crate::config::{ChannelOptions, Config, PublicationDataFormat, Token};
use crate::jwt::{ClaimRules, JwksEndpoint, JwksEndpointError, KeyError, KeySet};

/// Why a configuration cannot drive sessions. `Config::validate` catches most of these first,
/// by key path.
#[derive(Debug, Error)]
pub enum SessionRulesError {
    /// A `channel_regex` does not compile.
    #[error("channel_regex: {0}")]
    ChannelRegex(#[source] regex::Error),
    /// A token key (`client.token.*` or `client.subscription_token.*`) is unusable.
    #[error("{key}: {source}")]
    Key {
        /// Key path, e.g. `client.token.rsa_public_key`.
        key: String,
        /// What is wrong with it.
        #[source]
        source: KeyError,
    },
    /// `audience_regex` / `issuer_regex` does not compile.
    #[error("{key}: {source}")]
    ClaimRegex {
        /// Key path, e.g. `client.token.issuer_regex`.
        key: String,
        /// The compile error.
        #[source]
        source: regex::Error,
    },
    /// `jwks_public_endpoint` is malformed or fails the safety check.
    #[error("{key}: {source}")]
    Jwks {
        /// Key path, e.g. `client.token.jwks_public_endpoint`.
        key: String,
        /// What is wrong with it.
        #[source]
        source: JwksEndpointError,
    },
}

/// The `client` section's timers, as standard durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Application ping interval; zero = no pings.
    pub(crate) ping_interval: Duration,
    /// Wait for a pong after a ping; zero = pongs not required.
    pub(crate) pong_timeout: Duration,
    pub(crate) expired_close_delay: Duration,
    pub(crate) expired_sub_close_delay: Duration,
    pub(crate) stale_close_delay: Duration,
}

/// Outcome of the token-less subscribe rules (docs/protocol.md §7.3 steps 4–8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    Allowed,
    Denied,
    /// The namespace asks a proxy: the subscribe proxy (see `Session::subscribe_proxy`) or
    /// the subscription stream (see `Session::subscribe_stream_proxy`).
    NeedsProxy,
}

/// Rules shared by every session of a node (see the module doc of [`super`]).
#[derive(Debug)]
pub struct SessionRules {
    resolver: ChannelResolver,
    pub(crate) connection_keys: KeySet,
    pub(crate) connection_claims: ClaimRules,
    connection_jwks: Option<JwksEndpoint>,
    pub(crate) subscription_keys: KeySet,
    pub(crate) subscription_claims: ClaimRules,
    subscription_jwks: Option<JwksEndpoint>,
    pub(crate) timing: Timing,
    pub(crate) insecure: bool,
    pub(crate) allow_anonymous_connect_without_token: bool,
    pub(crate) disallow_anonymous_connection_tokens: bool,
    pub(crate) connect_include_server_time: bool,
    channel_limit: usize,
    user_id_http_header: String,
    /// `Some(namespace)` when `subscribe_to_user_personal_channel.enabled`.
    personal_namespace: Option<String>,
    personal_single_connection: bool,
    namespace_boundary: String,
    user_boundary: String,
    default_data_format: PublicationDataFormat,
    /// `client.proxy.connect.enabled`.
    pub(crate) connect_proxy: bool,
    /// `client.proxy.refresh.enabled`.
    pub(crate) refresh_proxy: bool,
    /// The `rpc` section (method routing).
    pub(crate) rpc: crate::config::Rpc,
    /// Some RPC namespace (or methods without namespace) has `proxy_enabled`: without one,
    /// Centrifugo has no RPC handler beyond the built-in ping (see `SessionRules::route_rpc`).
    pub(crate) any_rpc_proxy: bool,
    /// The top-level `shared_poll` keys verifying track signatures.
    pub(crate) shared_poll: super::TrackKeysConfig,
}

impl SessionRules {
    /// Builds the rules from a (validated) configuration. A `jwks_public_endpoint` replaces
    /// the section's static keys: the edge resolves each token with
    /// [`SessionRules::connection_jwks`] / [`SessionRules::subscription_jwks`], has the core
    /// fetch the key, and passes it to the `*_with_keys` session methods.
    pub fn new(config: &Config) -> Result<SessionRules, SessionRulesError> {
        let client = &config.client;
        let skip = client.insecure_skip_token_signature_verify;
        let connection_keys = key_set(&client.token, "client.token")?;
        let connection_claims = claim_rules(&client.token, "client.token", skip)?;
        let connection_jwks = jwks_endpoint(&client.token, "client.token", skip)?;
        let (subscription_keys, subscription_claims, subscription_jwks) =
            if client.subscription_token.enabled {
                let token = &client.subscription_token.token;
                let path = "client.subscription_token";
                (
                    key_set(token, path)?,
                    claim_rules(token, path, skip)?,
                    jwks_endpoint(token, path, skip)?,
                )
            } else {
                (
                    connection_keys.clone(),
                    connection_claims.clone(),
                    connection_jwks.clone(),
                )
            };
        let personal = &client.subscribe_to_user_personal_channel;
        Ok(SessionRules {
            resolver: ChannelResolver::new(&config.channel)
                .map_err(SessionRulesError::ChannelRegex)?,
            connection_keys,
            connection_claims,
            connection_jwks,
            subscription_keys,
            subscription_claims,
            subscription_jwks,
            timing: Timing {
                ping_interval: client.ping_interval.as_std(),
                pong_timeout: client.pong_timeout.as_std(),
                expired_close_delay: client.expired_close_delay.as_std(),
                expired_sub_close_delay: client.expired_sub_close_delay.as_std(),
                stale_close_delay: client.stale_close_delay.as_std(),
            },
            insecure: client.insecure,
            allow_anonymous_connect_without_token: client.allow_anonymous_connect_without_token,
            disallow_anonymous_connection_tokens: client.disallow_anonymous_connection_tokens,
            connect_include_server_time: client.connect_include_server_time,
            channel_limit: match client.channel_limit {
                0 => 128,
                limit => limit as usize,
            },
            user_id_http_header: client.user_id_http_header.clone(),
            personal_namespace: personal
                .enabled
                .then(|| personal.personal_channel_namespace.clone()),
            personal_single_connection: personal.enabled && personal.single_connection,
            namespace_boundary: config.channel.namespace_boundary.clone(),
            user_boundary: config.channel.user_boundary.clone(),
            default_data_format: config.channel.publication_data_format,
            connect_proxy: client.proxy.connect.enabled,
            refresh_proxy: client.proxy.refresh.enabled,
            rpc: config.rpc.clone(),
            any_rpc_proxy: config.rpc.without_namespace.proxy_enabled
                || config
                    .rpc
                    .namespaces
                    .iter()
                    .any(|ns| ns.options.proxy_enabled),
            shared_poll: super::TrackKeysConfig {
                secret: config.shared_poll.hmac_secret_key.expose().to_owned(),
                previous: config
                    .shared_poll
                    .hmac_previous_secret_key
                    .expose()
                    .to_owned(),
                previous_valid_until: config.shared_poll.hmac_previous_secret_key_valid_until,
            },
        })
    }

    /// Where connection tokens' keys come from when `client.token.jwks_public_endpoint` is
    /// set (`None` without it, or when signatures are not verified at all).
    pub fn connection_jwks(&self) -> Option<&JwksEndpoint> {
        self.connection_jwks.as_ref()
    }

    /// Where subscription tokens' keys come from: `client.subscription_token`'s endpoint when
    /// that section is enabled, else `client.token`'s.
    pub fn subscription_jwks(&self) -> Option<&JwksEndpoint> {
        self.subscription_jwks.as_ref()
    }

    /// Verifies a connection token with this node's keys and claim rules (for `checktoken`;
    /// sessions go through [`super::Session::connect`]).
    pub fn verify_connection_token(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<crate::jwt::ConnectionToken, crate::jwt::TokenError> {
        crate::jwt::verify_connection_token(
            token,
            &self.connection_keys,
            &self.connection_claims,
            now_unix,
        )
    }

    /// Verifies a subscription token with this node's subscription keys and claim rules.
    pub fn verify_subscription_token(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<crate::jwt::SubscriptionToken, crate::jwt::TokenError> {
        crate::jwt::verify_subscription_token(
            token,
            &self.subscription_keys,
            &self.subscription_claims,
            now_unix,
        )
    }

    /// The channel resolver built from the `channel` section.
    pub fn resolver(&self) -> &ChannelResolver {
        &self.resolver
    }

    /// `client.insecure`: no authentication or permission checks.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// `client.user_id_http_header` (`""` = off). When set and the upgrade request carries the
    /// header, the edge passes its value to [`Session::with_header_user`](super::Session::with_header_user).
    pub fn user_id_http_header(&self) -> &str {
        &self.user_id_http_header
    }

    /// `client.channel_limit`: most subscriptions per connection (0 in the config reads as the
    /// default 128).
    pub fn channel_limit(&self) -> usize {
        self.channel_limit
    }

    /// `subscribe_to_user_personal_channel.single_connection`: after a user's connect, the edge
    /// has every other connection of that user closed with 3504 (through its core, on every
    /// node).
    pub fn personal_single_connection(&self) -> bool {
        self.personal_single_connection
    }

    /// The personal channel of `user` (`#42` or `ns:#42`), when the feature is on and the user
    /// is not anonymous.
    pub fn personal_channel(&self, user: &str) -> Option<String> {
        let namespace = self.personal_namespace.as_deref()?;
        if user.is_empty() {
            return None;
        }
        Some(match namespace {
            "" => format!("{}{user}", self.user_boundary),
            ns => format!(
                "{ns}{}{}{user}",
                self.namespace_boundary, self.user_boundary
            ),
        })
    }

    /// The payload format of a channel: its own `publication_data_format`, or the channel-wide
    /// one when the namespace leaves it `""`.
    pub(crate) fn data_format(&self, options: &ChannelOptions) -> PublicationDataFormat {
        match options.publication_data_format {
            PublicationDataFormat::Any => self.default_data_format,
            format => format,
        }
    }

    /// The allow_*_for_client / _for_subscriber / _for_anonymous rule shared by publish,
    /// presence and history (docs/protocol.md §7.3), or `client.insecure`.
    pub(crate) fn access(
        &self,
        (for_client, for_subscriber, for_anonymous): (bool, bool, bool),
        user: &str,
        subscribed: bool,
    ) -> bool {
        let user_ok = !user.is_empty() || for_anonymous;
        (for_client && user_ok) || (for_subscriber && subscribed && user_ok) || self.insecure
    }

    /// Presence access (`allow_presence_for_*`) to a channel with these options.
    pub(crate) fn presence_access(&self, o: &ChannelOptions, user: &str, subscribed: bool) -> bool {
        let flags = (
            o.allow_presence_for_client,
            o.allow_presence_for_subscriber,
            o.allow_presence_for_anonymous,
        );
        self.access(flags, user, subscribed)
    }

    /// History access (`allow_history_for_*`) to a channel with these options.
    pub(crate) fn history_access(&self, o: &ChannelOptions, user: &str, subscribed: bool) -> bool {
        let flags = (
            o.allow_history_for_client,
            o.allow_history_for_subscriber,
            o.allow_history_for_anonymous,
        );
        self.access(flags, user, subscribed)
    }

    /// Subscribe permission without a token, for a non-private channel (docs/protocol.md §7.3 steps
    /// 4–8): a user-limited channel is allowed to the users it lists and otherwise only in
    /// insecure mode; any other channel goes to the proxies, then `allow_subscribe_for_client`
    /// (+ `_for_anonymous`), then `client.insecure` (Centrifugo's `Handler.OnSubscribe`).
    pub(crate) fn subscribe_without_token(
        &self,
        resolved: &ResolvedChannel<'_>,
        channel: &str,
        user: &str,
    ) -> Permission {
        let options = resolved.options;
        let proxied = options.subscribe_proxy_enabled || options.subscribe_stream_proxy_enabled;
        if proxied && !self.resolver.is_user_limited(resolved, channel) {
            Permission::NeedsProxy
        } else if self.subscribe_allowed(resolved, channel, user) {
            Permission::Allowed
        } else {
            Permission::Denied
        }
    }

    /// The proxy-free part of [`SessionRules::subscribe_without_token`]: a user-limited channel
    /// to the users it lists, any other to `allow_subscribe_for_client` (+ `_for_anonymous`),
    /// and everything under `client.insecure`. Channels asked for at connect use it alone
    /// (Centrifugo's `OnClientConnecting` skips only subscribe-proxy namespaces, not
    /// stream-proxy ones).
    pub(crate) fn subscribe_allowed(
        &self,
        resolved: &ResolvedChannel<'_>,
        channel: &str,
        user: &str,
    ) -> bool {
        let options = resolved.options;
        let allowed = if self.resolver.is_user_limited(resolved, channel) {
            self.resolver.user_allowed(resolved, channel, user)
        } else {
            options.allow_subscribe_for_client
                && (!user.is_empty() || options.allow_subscribe_for_anonymous)
        };
        allowed || self.insecure
    }
}

/// The static verification keys of one token section (none when a JWKS endpoint is set:
/// then only the fetched JWK set verifies, as in Centrifugo).
fn key_set(token: &Token, path: &str) -> Result<KeySet, SessionRulesError> {
    if !token.jwks_public_endpoint.is_empty() {
        return Ok(KeySet::new());
    }
    let key_error = |name: &str| {
        let key = format!("{path}.{name}");
        move |source| SessionRulesError::Key { key, source }
    };
    let mut keys = KeySet::new();
    if !token.hmac_secret_key.is_empty() {
        keys = keys
            .with_hmac_secret(token.hmac_secret_key.expose())
            .map_err(key_error("hmac_secret_key"))?;
    }
    if !token.hmac_previous_secret_key.is_empty() {
        let until = match token.hmac_previous_secret_key_valid_until {
            0 => i64::MAX,
            until => until,
        };
        keys = keys
            .with_hmac_previous_secret(token.hmac_previous_secret_key.expose(), until)
            .map_err(key_error("hmac_previous_secret_key"))?;
    }
    if !token.rsa_public_key.is_empty() {
        keys = keys
            .with_rsa_public_key_pem(&token.rsa_public_key)
            .map_err(key_error("rsa_public_key"))?;
    }
    if !token.ecdsa_public_key.is_empty() {
        keys = keys
            .with_ecdsa_public_key_pem(&token.ecdsa_public_key)
            .map_err(key_error("ecdsa_public_key"))?;
    }
    Ok(keys)
}

/// The JWKS endpoint of one token section; `None` when not set or when signatures are not
/// verified (`insecure_skip_token_signature_verify`: nothing to fetch).
fn jwks_endpoint(
    token: &Token,
    path: &str,
    skip_signature_verify: bool,
) -> Result<Option<JwksEndpoint>, SessionRulesError> {
    if token.jwks_public_endpoint.is_empty() || skip_signature_verify {
        return Ok(None);
    }
    JwksEndpoint::new(
        &token.jwks_public_endpoint,
        &token.issuer_regex,
        &token.audience_regex,
        token.insecure_skip_jwks_endpoint_safety_check,
    )
    .map(Some)
    .map_err(|source| SessionRulesError::Jwks {
        key: format!("{path}.jwks_public_endpoint"),
        source,
    })
}

/// The claim rules of one token section.
fn claim_rules(token: &Token, path: &str, skip: bool) -> Result<ClaimRules, SessionRulesError> {
    let regex = |name: &str, pattern: &str| -> Result<Option<Regex>, SessionRulesError> {
        if pattern.is_empty() {
            return Ok(None);
        }
        Regex::new(pattern)
            .map(Some)
            .map_err(|source| SessionRulesError::ClaimRegex {
                key: format!("{path}.{name}"),
                source,
            })
    };
    let non_empty = |value: &str| (!value.is_empty()).then(|| value.to_owned());
    Ok(ClaimRules {
        audience: non_empty(&token.audience),
        audience_regex: regex("audience_regex", &token.audience_regex)?,
        issuer: non_empty(&token.issuer),
        issuer_regex: regex("issuer_regex", &token.issuer_regex)?,
        user_id_claim: non_empty(&token.user_id_claim),
        skip_signature_verify: skip,
    })
}
