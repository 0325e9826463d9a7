//! The `client` section (PROTOCOL §7.2): connection authentication, limits and timers.

use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;
use super::keyed::deserialize_keyed;
use super::proxy::{SwitchedProxy, TransformDisconnect};
use super::secret::Secret;

/// `client`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Client {
    /// `connect` / `refresh` proxies to the backend. Default: both off.
    pub proxy: ClientProxies,
    /// Glob patterns of allowed `Origin`s (compared lower-cased). `[]` (default) allows only
    /// requests without `Origin`; `["*"]` allows all.
    pub allowed_origins: Vec<String>,
    /// Keys and rules for connection tokens (and subscription tokens unless
    /// `subscription_token.enabled`). Default: no key configured.
    pub token: Token,
    /// A separate verifier for subscription tokens. Default: off.
    pub subscription_token: SubscriptionToken,
    /// Accept a connect without token as anonymous user `""`. Default `false`.
    pub allow_anonymous_connect_without_token: bool,
    /// Reject tokens with an empty `sub` (disconnect 3507). Default `false`.
    pub disallow_anonymous_connection_tokens: bool,
    /// Interval of application-level pings. Default `25s`; must exceed `pong_timeout`;
    /// `0` = default.
    pub ping_interval: Duration,
    /// How long to wait for a pong after a ping. Default `8s`; `0` = default.
    pub pong_timeout: Duration,
    /// Grace period after a connection's expiry before disconnect 3005. Default `25s`;
    /// `0` = default.
    pub expired_close_delay: Duration,
    /// Grace period after a subscription's expiry. Default `25s`; `0` = default.
    pub expired_sub_close_delay: Duration,
    /// Longest time from opening a connection to a successful connect. Default `10s`;
    /// `0` = default.
    pub stale_close_delay: Duration,
    /// Most subscriptions per connection (106 / 3505 above). Default `128`; `0` = default
    /// (Centrifugo: unlimited); at most 1,000,000.
    pub channel_limit: u32,
    /// Bytes queued to one connection before it is closed with 3008 `slow`. Default `1048576`;
    /// `0` = default; at most 1 GiB.
    pub queue_max_size: u32,
    /// How often a connection refreshes its presence. Default `27s`; `0` = default.
    pub presence_update_interval: Duration,
    /// Commands of one connection processed concurrently; `0` (default) = one at a time;
    /// at most 1024.
    pub concurrency: u32,
    /// How often a positioned subscription's position is checked against the stream top.
    /// Default `40s`; `0` = default.
    pub channel_position_check_delay: Duration,
    /// Publications older than this on arrival mean lost position; `0` (default) = not checked.
    pub channel_position_max_time_lag: Duration,
    /// Most connections per node (HTTP 503 above); `0` (default) = this limit is off (memory
    /// stays bounded by the per-connection limits).
    pub connection_limit: u32,
    /// Most connections per user (3504 above); `0` (default) = this limit is off.
    pub user_connection_limit: u32,
    /// New connections per second per node (HTTP 503 above); `0` (default) = this limit is off.
    pub connection_rate_limit: u32,
    /// Put the server time into the connect result. Default `false`.
    pub connect_include_server_time: bool,
    /// Cap of a client `history` limit. Default `300`; `0` = default; at most 100,000.
    pub history_max_publication_limit: u32,
    /// Most publications read for one recovery. Default `300`; `0` = default; at most 100,000.
    pub recovery_max_publication_limit: u32,
    /// Skip token signature checks (testing only). Default `false`.
    pub insecure_skip_token_signature_verify: bool,
    /// Take the user id from this request header (a trusted proxy in front). Default `""`.
    pub user_id_http_header: String,
    /// No authentication or permission checks at all (development only). Default `false`.
    pub insecure: bool,
    /// Automatic server-side subscription to the user's personal channel. Default: off.
    pub subscribe_to_user_personal_channel: PersonalChannel,
    /// Connect error → disconnect mapping for unidirectional transports. Default: off.
    pub connect_code_to_unidirectional_disconnect: UniDisconnectTransforms,
}

impl Default for Client {
    fn default() -> Self {
        Client {
            proxy: ClientProxies::default(),
            allowed_origins: Vec::new(),
            token: Token::default(),
            subscription_token: SubscriptionToken::default(),
            allow_anonymous_connect_without_token: false,
            disallow_anonymous_connection_tokens: false,
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(8),
            expired_close_delay: Duration::from_secs(25),
            expired_sub_close_delay: Duration::from_secs(25),
            stale_close_delay: Duration::from_secs(10),
            channel_limit: 128,
            queue_max_size: 1_048_576,
            presence_update_interval: Duration::from_secs(27),
            concurrency: 0,
            channel_position_check_delay: Duration::from_secs(40),
            channel_position_max_time_lag: Duration::ZERO,
            connection_limit: 0,
            user_connection_limit: 0,
            connection_rate_limit: 0,
            connect_include_server_time: false,
            history_max_publication_limit: 300,
            recovery_max_publication_limit: 300,
            insecure_skip_token_signature_verify: false,
            user_id_http_header: String::new(),
            insecure: false,
            subscribe_to_user_personal_channel: PersonalChannel::default(),
            connect_code_to_unidirectional_disconnect: UniDisconnectTransforms::default(),
        }
    }
}

/// `client.proxy`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ClientProxies {
    /// Ask the backend on connect without a token. Default: off.
    pub connect: SwitchedProxy,
    /// Ask the backend when a connection expires (server-side refresh). Default: off.
    pub refresh: SwitchedProxy,
}

/// Token verification keys and claim rules (`client.token`, PROTOCOL §5.1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Token {
    /// HMAC key: enables HS256/384/512 (secret). Default `""`.
    pub hmac_secret_key: Secret,
    /// Previous HMAC key accepted during rotation (secret). Default `""`.
    pub hmac_previous_secret_key: Secret,
    /// Unix seconds until which the previous key is accepted; `0` (default) = not limited.
    pub hmac_previous_secret_key_valid_until: i64,
    /// RSA public key PEM: enables RS256/384/512. Default `""`.
    pub rsa_public_key: String,
    /// ECDSA public key PEM: enables ES256/384/512. Default `""`.
    pub ecdsa_public_key: String,
    /// JWKS URL (`http(s)://`, may hold `{{var}}` placeholders); when set, static keys are not
    /// used. Default `""`.
    pub jwks_public_endpoint: String,
    /// Required `aud`. Default `""` (not checked). Exclusive with `audience_regex`.
    pub audience: String,
    /// Regex `aud` must match. Default `""`. Exclusive with `audience`.
    pub audience_regex: String,
    /// Required `iss`. Default `""` (not checked). Exclusive with `issuer_regex`.
    pub issuer: String,
    /// Regex `iss` must match. Default `""`. Exclusive with `issuer`.
    pub issuer_regex: String,
    /// Claim holding the user id instead of `sub`; must match `^[a-zA-Z_]+$`. Default `""`.
    pub user_id_claim: String,
    /// Allow a JWKS endpoint that fails the safety check. Default `false`.
    pub insecure_skip_jwks_endpoint_safety_check: bool,
}

/// `client.subscription_token`: `enabled` plus the [`Token`] keys in one object.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct SubscriptionToken {
    /// Verify subscription tokens with these keys instead of `client.token`. Default `false`.
    pub enabled: bool,
    /// The keys and rules.
    #[serde(flatten)]
    pub token: Token,
}

impl<'de> Deserialize<'de> for SubscriptionToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (enabled, token) = deserialize_keyed(deserializer, "enabled")?;
        Ok(SubscriptionToken {
            enabled: enabled.unwrap_or_default(),
            token,
        })
    }
}

/// `client.subscribe_to_user_personal_channel`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct PersonalChannel {
    /// Subscribe every authenticated connection to `#<user>` (or `<ns>:#<user>`). Default
    /// `false`.
    pub enabled: bool,
    /// Namespace of the personal channel; `""` (default) = no namespace.
    pub personal_channel_namespace: String,
    /// Keep one connection per user: older ones are disconnected with 3504 (needs presence in
    /// that namespace). Default `false`.
    pub single_connection: bool,
}

/// `client.connect_code_to_unidirectional_disconnect`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct UniDisconnectTransforms {
    /// Apply the transforms. Default `false`.
    pub enabled: bool,
    /// Connect error code → disconnect. Default `[]`.
    pub transforms: Vec<UniDisconnectTransform>,
}

/// One entry of [`UniDisconnectTransforms::transforms`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct UniDisconnectTransform {
    /// Connect error code to match (required, non-zero).
    pub code: u32,
    /// Disconnect to send instead (code required).
    pub to: TransformDisconnect,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centrifugo_defaults() {
        let c = Client::default();
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.pong_timeout, Duration::from_secs(8));
        assert_eq!(c.channel_limit, 128);
        assert_eq!(c.queue_max_size, 1_048_576);
        assert_eq!(c.history_max_publication_limit, 300);
        assert_eq!(c.presence_update_interval, Duration::from_secs(27));
    }

    #[test]
    fn subscription_token_is_enabled_plus_token_keys() {
        let json = r#"{"enabled": true, "hmac_secret_key": "s", "audience": "a"}"#;
        let st: SubscriptionToken = serde_json::from_str(json).unwrap();
        assert!(st.enabled);
        assert_eq!(st.token.hmac_secret_key.expose(), "s");
        assert_eq!(st.token.audience, "a");
        assert!(!format!("{st:?}").contains("\"s\""));
    }
}
