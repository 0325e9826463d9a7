//! After deserializing: zeros that Centrifugo reads as "unlimited" become the defaults (DESIGN
//! §6: 0 never means unbounded), and settings that do nothing are pointed out.

use std::fmt::Display;

use super::Config;
use super::channel::ChannelOptions;
use super::error::ConfigWarning;

/// Replaces a zero by `default` (when the default is not zero itself) and says so.
fn zero_to_default<T: Copy + Default + PartialEq + Display>(
    value: &mut T,
    default: T,
    path: &str,
    warnings: &mut Vec<ConfigWarning>,
) {
    if *value == T::default() && default != T::default() {
        *value = default;
        warnings.push(ConfigWarning::ZeroMeansDefault {
            path: path.to_owned(),
            default: default.to_string(),
        });
    }
}

/// `zero!(config, defaults, warnings; client.ping_interval, ...)`: the field path is also the
/// key path.
macro_rules! zero {
    ($config:ident, $defaults:ident, $warnings:ident; $($($field:ident).+),+ $(,)?) => {
        $(
            zero_to_default(
                &mut $config.$($field).+,
                $defaults.$($field).+,
                &stringify!($($field).+).replace(' ', ""),
                $warnings,
            );
        )+
    };
}

/// Replaces zeros that would mean "unbounded" (or "no timeout") by the defaults, with a
/// [`ConfigWarning::ZeroMeansDefault`] for each.
pub(crate) fn zeros_to_defaults(config: &mut Config, warnings: &mut Vec<ConfigWarning>) {
    let defaults = Config::default();
    zero!(config, defaults, warnings;
        client.ping_interval,
        client.pong_timeout,
        client.expired_close_delay,
        client.expired_sub_close_delay,
        client.stale_close_delay,
        client.presence_update_interval,
        client.channel_position_check_delay,
        client.channel_limit,
        client.queue_max_size,
        client.history_max_publication_limit,
        client.recovery_max_publication_limit,
        channel.history_meta_ttl,
        channel.max_length,
        websocket.write_timeout,
        websocket.message_size_limit,
        uni_websocket.write_timeout,
        uni_websocket.message_size_limit,
        webtransport.message_size_limit,
        sse.max_request_body_size,
        http_stream.max_request_body_size,
        emulation.max_request_body_size,
        uni_sse.max_request_body_size,
        uni_http_stream.max_request_body_size,
        engine.redis.connect_timeout,
        engine.redis.io_timeout,
        engine.redis.presence_ttl,
        broker.redis.connect_timeout,
        broker.redis.io_timeout,
        presence_manager.redis.connect_timeout,
        presence_manager.redis.io_timeout,
        presence_manager.redis.presence_ttl,
        broker.nats.dial_timeout,
        broker.nats.write_timeout,
        broker.postgres.pool_size,
        broker.postgres.num_shards,
        broker.postgres.outbox.batch_size,
        broker.postgres.partition_lookahead_days,
        broker.postgres.partition_retention_days,
        node.info_metrics_aggregate_interval,
        shutdown.timeout,
        mesh.heartbeat_interval,
        mesh.link_timeout,
        mesh.lanes,
        mesh.edge_queue_max_size,
        mesh.repair.max_publications,
        mesh.repair.concurrency,
        mesh.repair.timeout,
        mesh.unlinked_grace,
    );
}

/// Settings that are accepted (Centrifugo accepts them) but do nothing in this combination.
pub(crate) fn advisories(config: &Config) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    channel_advisories(
        "channel.without_namespace",
        &config.channel.without_namespace,
        &mut out,
    );
    for (i, ns) in config.channel.namespaces.iter().enumerate() {
        channel_advisories(&format!("channel.namespaces[{i}]"), &ns.options, &mut out);
    }
    out
}

fn channel_advisories(path: &str, options: &ChannelOptions, out: &mut Vec<ConfigWarning>) {
    if options.has_history() {
        return;
    }
    let no_history = "the channel keeps no history (set history_size and history_ttl)";
    let flags = [
        ("force_positioning", options.force_positioning),
        ("delta_publish", options.delta_publish),
        (
            "allowed_delta_types",
            !options.allowed_delta_types.is_empty(),
        ),
    ];
    for (key, set) in flags {
        if set {
            out.push(ConfigWarning::NoEffect {
                path: format!("{path}.{key}"),
                reason: no_history.to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Duration;

    #[test]
    fn zeros_become_defaults_with_a_warning() {
        let mut config = Config::default();
        config.client.channel_limit = 0;
        config.client.ping_interval = Duration::ZERO;
        config.websocket.message_size_limit = 0;
        config.client.connection_limit = 0; // default 0: stays, no warning
        let mut warnings = Vec::new();
        zeros_to_defaults(&mut config, &mut warnings);
        assert_eq!(config.client.channel_limit, 128);
        assert_eq!(config.client.ping_interval, Duration::from_secs(25));
        assert_eq!(config.websocket.message_size_limit, 65_536);
        assert_eq!(config.client.connection_limit, 0);
        let paths: Vec<&str> = warnings.iter().map(ConfigWarning::subject).collect();
        assert_eq!(
            paths,
            [
                "client.ping_interval",
                "client.channel_limit",
                "websocket.message_size_limit"
            ]
        );
        assert_eq!(
            warnings[1],
            ConfigWarning::ZeroMeansDefault {
                path: "client.channel_limit".into(),
                default: "128".into()
            }
        );
    }

    #[test]
    fn settings_needing_history_are_pointed_out() {
        let mut config = Config::default();
        config.channel.without_namespace.force_positioning = true;
        config.channel.without_namespace.delta_publish = true;
        let warnings = advisories(&config);
        let paths: Vec<&str> = warnings.iter().map(ConfigWarning::subject).collect();
        assert_eq!(
            paths,
            [
                "channel.without_namespace.force_positioning",
                "channel.without_namespace.delta_publish"
            ]
        );
        config.channel.without_namespace.history_size = 10;
        config.channel.without_namespace.history_ttl = Duration::from_secs(60);
        assert!(advisories(&config).is_empty());
    }
}
