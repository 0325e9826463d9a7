//! The `map` and `shared_poll` sub-objects of [`super::ChannelOptions`] (PROTOCOL §2.10).
//! Parsed and validated now; served in a later phase.

use serde::{Deserialize, Serialize};

use super::duration::Duration;
use super::enums::{MapClientKey, MapMode, SharedPollMode};
use super::proxy::DEFAULT_PROXY_NAME;

/// `map`: options of the map subscription types. Every key defaults to off / 0 / `""`, except
/// the proxy names (`"default"`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct MapOptions {
    /// `ephemeral`, `recoverable` or `persistent`; required for map subscription types.
    pub mode: MapMode,
    /// Entry lifetime; required for `ephemeral` / `recoverable`, forbidden for `persistent`.
    pub key_ttl: Duration,
    /// Changes kept in the stream (`recoverable` / `persistent`; must be 0 for `ephemeral`);
    /// `0` = the built-in default; at most 10,000,000.
    pub stream_size: u32,
    /// Stream lifetime (not for `ephemeral`); `0` = the built-in default (1m).
    pub stream_ttl: Duration,
    /// Lifetime of stream metadata, at least `stream_ttl` (not for `ephemeral`); `0` = default.
    pub meta_ttl: Duration,
    /// Remove the client's entries when it unsubscribes (map types only).
    pub remove_client_on_unsubscribe: bool,
    /// Key client publications by `client_id` or `user_id`; `""` = client-chosen keys.
    /// Incompatible with the map proxies.
    pub client_key: MapClientKey,
    /// Authenticated clients may publish entries.
    pub allow_publish_for_client: bool,
    /// Subscribed clients may publish entries.
    pub allow_publish_for_subscriber: bool,
    /// Extends the publish permissions to anonymous clients.
    pub allow_publish_for_anonymous: bool,
    /// Authenticated clients may remove entries.
    pub allow_remove_for_client: bool,
    /// Subscribed clients may remove entries.
    pub allow_remove_for_subscriber: bool,
    /// Extends the remove permissions to anonymous clients.
    pub allow_remove_for_anonymous: bool,
    /// Ask the map publish proxy on client publish.
    pub publish_proxy_enabled: bool,
    /// Which proxy: `default` (= `channel.proxy.map_publish`) or a name from `proxies`.
    pub publish_proxy_name: String,
    /// Ask the map remove proxy on client remove.
    pub remove_proxy_enabled: bool,
    /// Which proxy: `default` (= `channel.proxy.map_remove`) or a name from `proxies`.
    pub remove_proxy_name: String,
    /// Page size when the client asks for none; `0` = built-in default; at most 100,000.
    pub default_page_size: u32,
    /// Smallest page size honoured; `0` = built-in default; at most 100,000.
    pub min_page_size: u32,
    /// Largest page size honoured; `0` = built-in default; at most 100,000.
    pub max_page_size: u32,
    /// Most publications replayed when a subscriber goes live; `0` = built-in default; at most
    /// 100,000.
    pub live_transition_max_publication_limit: u32,
    /// Longest catch-up phase of a subscribe; `0` = built-in default.
    pub subscribe_catch_up_timeout: Duration,
    /// Spindle's own key (Centrifugo has the option in its library only): sent to map
    /// subscribers as `publish_debounce`, so the SDK sends a key's first client publish at
    /// once and then at most the latest value per interval. `0` = off.
    pub publish_debounce: Duration,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            mode: MapMode::Unset,
            key_ttl: Duration::ZERO,
            stream_size: 0,
            stream_ttl: Duration::ZERO,
            meta_ttl: Duration::ZERO,
            remove_client_on_unsubscribe: false,
            client_key: MapClientKey::Unset,
            allow_publish_for_client: false,
            allow_publish_for_subscriber: false,
            allow_publish_for_anonymous: false,
            allow_remove_for_client: false,
            allow_remove_for_subscriber: false,
            allow_remove_for_anonymous: false,
            publish_proxy_enabled: false,
            publish_proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            remove_proxy_enabled: false,
            remove_proxy_name: DEFAULT_PROXY_NAME.to_owned(),
            default_page_size: 0,
            min_page_size: 0,
            max_page_size: 0,
            live_transition_max_publication_limit: 0,
            subscribe_catch_up_timeout: Duration::ZERO,
            publish_debounce: Duration::ZERO,
        }
    }
}

/// `shared_poll`: options of shared-poll subscriptions. Every key defaults to off / 0 / `""`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct SharedPollOptions {
    /// Refresh proxy: `""` / `default` (= `channel.proxy.shared_poll_refresh`) or a name from
    /// `proxies`.
    pub proxy_name: String,
    /// How often tracked keys are refreshed; `0` = built-in default.
    pub refresh_interval: Duration,
    /// Keys per refresh call; `0` = built-in default; at most 100,000.
    pub refresh_batch_size: u32,
    /// Keys one connection may track; `0` = built-in default; at most 100,000.
    pub max_keys_per_connection: u32,
    /// `versionless` (`""`, default) or `versioned`.
    pub mode: SharedPollMode,
    /// Delay before an unused channel's poller stops; `0` = built-in default.
    pub channel_shutdown_delay: Duration,
    /// Extra time before an expired key stops being tracked; `0` = built-in default.
    pub track_expired_extra_delay: Duration,
    /// Allow `shared_poll_publish` into the channel (needs `versioned` mode).
    pub publish_enabled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_options_parse() {
        let json = r#"{"mode": "recoverable", "key_ttl": "60s", "client_key": "user_id",
                       "max_page_size": 100}"#;
        let map: MapOptions = serde_json::from_str(json).unwrap();
        assert_eq!(map.mode, MapMode::Recoverable);
        assert_eq!(map.key_ttl, Duration::from_secs(60));
        assert_eq!(map.client_key, MapClientKey::UserId);
        assert_eq!(map.max_page_size, 100);
        assert_eq!(map.remove_proxy_name, "default");
        let err = serde_json::from_str::<MapOptions>(r#"{"mode": "durable"}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"ephemeral\", \"recoverable\", \"persistent\"")
        );
    }

    #[test]
    fn shared_poll_options_parse() {
        let json = r#"{"mode": "versioned", "publish_enabled": true, "refresh_interval": "5s"}"#;
        let sp: SharedPollOptions = serde_json::from_str(json).unwrap();
        assert_eq!(sp.mode, SharedPollMode::Versioned);
        assert!(sp.publish_enabled);
        assert_eq!(sp.refresh_interval, Duration::from_secs(5));
    }
}
