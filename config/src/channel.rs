//! The `channel` section (PROTOCOL §7.3): name rules, default proxies, and the options of the
//! namespaces.

use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;
use super::enums::{DeltaType, PublicationDataFormat, RecoveryMode, SubscriptionType};
use super::keyed::deserialize_keyed;
use super::map::{MapOptions, SharedPollOptions};
use super::proxy::{DEFAULT_PROXY_NAME, Proxy};

/// `channel`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Channel {
    /// The "default" proxy of each kind, used by namespaces whose `*_proxy_name` is `default`.
    pub proxy: ChannelProxies,
    /// Options of channels without a namespace. Default: everything off.
    pub without_namespace: ChannelOptions,
    /// Namespaces; names unique and matching `^[-a-zA-Z0-9_.]{2,}$`. Default `[]`.
    pub namespaces: Vec<Namespace>,
    /// How long a stream's offset and epoch outlive its last publication, for namespaces that do
    /// not set their own. Default `720h`; whole seconds.
    pub history_meta_ttl: Duration,
    /// Payload format for channels whose options leave it `""`. Default `""` (any non-empty).
    pub publication_data_format: PublicationDataFormat,
    /// Longest channel name in bytes (107 above). Default `255`; `0` = default; at most 65,535.
    pub max_length: u32,
    /// Prefix of private channels (subscription token required). Default `"$"`.
    pub private_prefix: String,
    /// Separator between namespace and the rest of the name. Default `":"`.
    pub namespace_boundary: String,
    /// Separator before the user list of user-limited channels. Default `"#"`.
    pub user_boundary: String,
    /// Separator between users of a user-limited channel. Default `","`.
    pub user_separator: String,
}

impl Default for Channel {
    fn default() -> Self {
        Channel {
            proxy: ChannelProxies::default(),
            without_namespace: ChannelOptions::default(),
            namespaces: Vec::new(),
            history_meta_ttl: Duration::from_secs(720 * 3_600),
            publication_data_format: PublicationDataFormat::Any,
            max_length: 255,
            private_prefix: "$".to_owned(),
            namespace_boundary: ":".to_owned(),
            user_boundary: "#".to_owned(),
            user_separator: ",".to_owned(),
        }
    }
}

/// `channel.proxy`: the default proxy per kind. Default: none configured.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ChannelProxies {
    /// Subscribe proxy (`subscribe_proxy_enabled`).
    pub subscribe: Proxy,
    /// Publish proxy (`publish_proxy_enabled`).
    pub publish: Proxy,
    /// Subscription refresh proxy (`sub_refresh_proxy_enabled`).
    pub sub_refresh: Proxy,
    /// Streaming subscribe proxy, gRPC only (`subscribe_stream_proxy_enabled`).
    pub subscribe_stream: Proxy,
    /// Map publish proxy (`map.publish_proxy_enabled`).
    pub map_publish: Proxy,
    /// Map remove proxy (`map.remove_proxy_enabled`).
    pub map_remove: Proxy,
    /// Shared-poll refresh proxy (`shared_poll.proxy_name` empty or `default`).
    pub shared_poll_refresh: Proxy,
}

/// Options of a namespace, or of channels without one. Every key defaults to off / 0 / `""`,
/// except the `*_proxy_name` keys, which default to `"default"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct ChannelOptions {
    /// Keep presence; enables presence and presence_stats.
    pub presence: bool,
    /// Send join / leave messages.
    pub join_leave: bool,
    /// Deliver join / leave to all subscribers without them asking.
    pub force_push_join_leave: bool,
    /// Channel prefix (`ns:`) whose namespace receives this map's client presence.
    pub map_clients_presence_channel_prefix: String,
    /// Channel prefix (`ns:`) whose namespace receives this map's user presence.
    pub map_users_presence_channel_prefix: String,
    /// Publications kept per channel; `0` = no history. Set together with `history_ttl`; at most
    /// 10,000,000.
    pub history_size: u32,
    /// How long publications are kept after the last one; `0` = no history. Whole seconds.
    pub history_ttl: Duration,
    /// How long offset and epoch outlive the stream; `0` = `channel.history_meta_ttl`. Must be
    /// at least `history_ttl`; whole seconds.
    pub history_meta_ttl: Duration,
    /// Every subscription is positioned (offsets tracked); needs history to do anything.
    pub force_positioning: bool,
    /// Clients may ask for positioning.
    pub allow_positioning: bool,
    /// Every subscription is recoverable; requires history.
    pub force_recovery: bool,
    /// Clients may ask for recovery.
    pub allow_recovery: bool,
    /// `stream` (`""`, default: recover every missed publication) or `cache` (latest only).
    pub force_recovery_mode: RecoveryMode,
    /// Cache-recover on every subscribe; requires `force_recovery` and mode `cache`.
    pub auto_cache_recover: bool,
    /// Delta encodings subscribers may negotiate; only `fossil` exists. Default `[]`.
    pub allowed_delta_types: Vec<DeltaType>,
    /// Allow subscription tags filters (`tf`).
    pub allow_tags_filter: bool,
    /// Every publication is delta-capable; needs history to do anything.
    pub delta_publish: bool,
    /// With `allow_subscribe_for_client`: anonymous clients may subscribe too.
    pub allow_subscribe_for_anonymous: bool,
    /// Authenticated clients may subscribe without a token.
    pub allow_subscribe_for_client: bool,
    /// Extends the publish permissions below to anonymous clients.
    pub allow_publish_for_anonymous: bool,
    /// Subscribed clients may publish.
    pub allow_publish_for_subscriber: bool,
    /// Authenticated clients may publish.
    pub allow_publish_for_client: bool,
    /// Extends the presence permissions below to anonymous clients.
    pub allow_presence_for_anonymous: bool,
    /// Subscribed clients may ask for presence.
    pub allow_presence_for_subscriber: bool,
    /// Authenticated clients may ask for presence.
    pub allow_presence_for_client: bool,
    /// Extends the history permissions below to anonymous clients.
    pub allow_history_for_anonymous: bool,
    /// Subscribed clients may read history (and ask for positioning / recovery).
    pub allow_history_for_subscriber: bool,
    /// Authenticated clients may read history (and ask for positioning / recovery).
    pub allow_history_for_client: bool,
    /// `#`-limited channels: the users listed after `#` may subscribe.
    pub allow_user_limited_channels: bool,
    /// Regex the part after the namespace must match (otherwise names must be ASCII).
    pub channel_regex: String,
    /// Payload format: `""` (channel-wide default), `json`, `json_object`, `binary`.
    pub publication_data_format: PublicationDataFormat,
    /// Ask the subscribe proxy on subscribe.
    pub subscribe_proxy_enabled: bool,
    /// Which proxy: `default` (= `channel.proxy.subscribe`) or a name from `proxies`.
    pub subscribe_proxy_name: String,
    /// Ask the publish proxy on client publish.
    pub publish_proxy_enabled: bool,
    /// Which proxy: `default` (= `channel.proxy.publish`) or a name from `proxies`.
    pub publish_proxy_name: String,
    /// Refresh subscriptions through the sub_refresh proxy.
    pub sub_refresh_proxy_enabled: bool,
    /// Which proxy: `default` (= `channel.proxy.sub_refresh`) or a name from `proxies`.
    pub sub_refresh_proxy_name: String,
    /// Subscribe through the streaming proxy (gRPC); excludes the three proxies above.
    pub subscribe_stream_proxy_enabled: bool,
    /// Which proxy: `default` (= `channel.proxy.subscribe_stream`) or a name from `proxies`.
    pub subscribe_stream_proxy_name: String,
    /// The stream proxy also receives client publications.
    pub subscribe_stream_proxy_bidirectional: bool,
    /// `stream` (`""`, default), `map`, `map_clients`, `map_users` or `shared_poll`.
    pub subscription_type: SubscriptionType,
    /// Options of map subscription types.
    pub map: MapOptions,
    /// Options of shared-poll subscriptions.
    pub shared_poll: SharedPollOptions,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            presence: false,
            join_leave: false,
            force_push_join_leave: false,
            map_clients_presence_channel_prefix: String::new(),
            map_users_presence_channel_prefix: String::new(),
            history_size: 0,
            history_ttl: Duration::ZERO,
            history_meta_ttl: Duration::ZERO,
            force_positioning: false,
            allow_positioning: false,
            force_recovery: false,
            allow_recovery: false,
            force_recovery_mode: RecoveryMode::Stream,
            auto_cache_recover: false,
            allowed_delta_types: Vec::new(),
            allow_tags_filter: false,
            delta_publish: false,
            allow_subscribe_for_anonymous: false,
            allow_subscribe_for_client: false,
            allow_publish_for_anonymous: false,
            allow_publish_for_subscriber: false,
            allow_publish_for_client: false,
            allow_presence_for_anonymous: false,
            allow_presence_for_subscriber: false,
            allow_presence_for_client: false,
            allow_history_for_anonymous: false,
            allow_history_for_subscriber: false,
            allow_history_for_client: false,
            allow_user_limited_channels: false,
            channel_regex: String::new(),
            publication_data_format: PublicationDataFormat::Any,
            subscribe_proxy_enabled: false,
            subscribe_proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            publish_proxy_enabled: false,
            publish_proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            sub_refresh_proxy_enabled: false,
            sub_refresh_proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            subscribe_stream_proxy_enabled: false,
            subscribe_stream_proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            subscribe_stream_proxy_bidirectional: false,
            subscription_type: SubscriptionType::Stream,
            map: MapOptions::default(),
            shared_poll: SharedPollOptions::default(),
        }
    }
}

impl ChannelOptions {
    /// True when channels keep a publication stream (`history_size` and `history_ttl` set).
    pub fn has_history(&self) -> bool {
        self.history_size > 0 && !self.history_ttl.is_zero()
    }

    /// Whether subscriptions here feed map channels: the map presence channels
    /// (`map_clients_presence_channel_prefix`, `map_users_presence_channel_prefix`) or, for a
    /// map, `map.remove_client_on_unsubscribe`.
    pub fn feeds_map_presence(&self) -> bool {
        !self.map_clients_presence_channel_prefix.is_empty()
            || !self.map_users_presence_channel_prefix.is_empty()
            || (self.is_map() && self.map.remove_client_on_unsubscribe)
    }

    /// True for the map subscription types.
    pub fn is_map(&self) -> bool {
        matches!(
            self.subscription_type,
            SubscriptionType::Map | SubscriptionType::MapClients | SubscriptionType::MapUsers
        )
    }
}

/// An entry of `channel.namespaces`: `name` plus every [`ChannelOptions`] key in one object.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct Namespace {
    /// Name: the part of a channel before `namespace_boundary`.
    pub name: String,
    /// The namespace's options.
    #[serde(flatten)]
    pub options: ChannelOptions,
}

impl Namespace {
    /// A namespace with the given options.
    pub fn new(name: impl Into<String>, options: ChannelOptions) -> Self {
        Namespace {
            name: name.into(),
            options,
        }
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, options) = deserialize_keyed(deserializer, "name")?;
        Ok(Namespace {
            name: name.unwrap_or_default(),
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_reads_name_and_options_from_one_object() {
        let json = r#"{"name": "chat", "presence": true, "history_size": 10,
                       "history_ttl": "60s", "force_recovery_mode": "cache"}"#;
        let ns: Namespace = serde_json::from_str(json).unwrap();
        assert_eq!(ns.name, "chat");
        assert!(ns.options.presence);
        assert!(ns.options.has_history());
        assert_eq!(ns.options.force_recovery_mode, RecoveryMode::Cache);
        assert_eq!(ns.options.publish_proxy_name, "default");
        let back = serde_json::to_value(&ns).unwrap();
        assert_eq!(back["name"], "chat");
        assert_eq!(back["history_ttl"], "1m0s");
        assert_eq!(serde_json::from_value::<Namespace>(back).unwrap(), ns);
    }

    #[test]
    fn channel_defaults() {
        let c = Channel::default();
        assert_eq!(c.history_meta_ttl.to_string(), "720h0m0s");
        assert_eq!(c.max_length, 255);
        assert_eq!(
            (c.private_prefix.as_str(), c.namespace_boundary.as_str()),
            ("$", ":")
        );
        assert_eq!(
            (c.user_boundary.as_str(), c.user_separator.as_str()),
            ("#", ",")
        );
        assert!(!ChannelOptions::default().has_history());
    }
}
