//! Keys Spindle reads (a Centrifugo configuration starts it unchanged) but does not act on
//! yet. A key set to anything other than its default is named in a warning at start
//! ([`ConfigWarning::NotServed`]) and fails `checkconfig --strict`: nobody switches on a
//! feature Spindle lacks and hears nothing. Every other key of the schema acts; the test
//! `every_key_acts_or_is_not_served` holds the list of those (`acting_keys.txt`), so a new key
//! cannot slip in without being put on one side or the other.

use serde_json::Value;

use super::Config;
use super::error::ConfigWarning;
use super::schema::named_list_template;

const LISTENER_TLS: &str = "a listener's TLS uses cert_pem and key_pem only: client certificates are not checked (no mTLS), the client-side settings do not apply";
const NO_COMPRESSION: &str = "WebSocket compression (permessage-deflate) is not served";
const WS_WRITER: &str = "the WebSocket writer manages its own buffer";
const UNI_WS: &str =
    "the unidirectional WebSocket uses the websocket section's buffers and timeouts";
const NO_METRIC_FAMILY: &str = "this family of metrics is not exported";
const REDIS_UNUSED: &str = "not used by Spindle's Redis client (docs/brokers.md)";
const REDIS_LISTS: &str = "history is always kept in Redis lists";
const PRESENCE_TTL: &str = "presence entries expire after client.presence_update_interval (x3)";
const PRESENCE_MAPPING: &str = "presence user mapping is not kept";
const CLIENT_CA: &str = "a client connection has no use for a client CA";
const NATS_UNUSED: &str = "not used by Spindle's NATS broker";
const POSTGRES_UNUSED: &str = "not used by Spindle's PostgreSQL broker (docs/brokers.md)";
const GRPC_METADATA: &str = "gRPC proxies send no extra metadata";
const GRPC_COMPRESSION: &str = "gRPC proxy calls are not compressed";
const PROXY_CLIENT_CA: &str = "a proxy client has no use for a client CA";
const STREAMS_GRPC_ONLY: &str = "subscription streams are gRPC only (as Centrifugo's)";
const NO_CLIENT: &str =
    "shared_poll_refresh is called for a channel, not for a client: nothing of a client to forward";

/// Keys parsed but not acted on, and what the operator should know. A path names a key and
/// everything under it; `[]` after a named list (`proxies[]`) stands for each of its elements.
pub(crate) const NOT_SERVED: &[(&str, &str)] = &[
    (
        "grpc_api",
        "the gRPC server API is not served; use the HTTP API",
    ),
    ("admin", "the admin web UI is not served"),
    ("swagger", "the Swagger UI is not served"),
    ("debug", "the pprof debug endpoints are not served"),
    (
        "consumers",
        "asynchronous consumers (PostgreSQL outbox, Kafka) are not served",
    ),
    (
        "http_server.tls_autocert",
        "automatic TLS (ACME) is not served; give http_server.tls.cert_pem and key_pem",
    ),
    (
        "http_server.h2c_external",
        "the listener always accepts HTTP/2 without TLS (h2c); this switch changes nothing",
    ),
    ("http_server.tls.server_ca_pem", LISTENER_TLS),
    ("http_server.tls.client_ca_pem", LISTENER_TLS),
    ("http_server.tls.insecure_skip_verify", LISTENER_TLS),
    ("http_server.tls.server_name", LISTENER_TLS),
    ("http_server.internal_tls.server_ca_pem", LISTENER_TLS),
    ("http_server.internal_tls.client_ca_pem", LISTENER_TLS),
    (
        "http_server.internal_tls.insecure_skip_verify",
        LISTENER_TLS,
    ),
    ("http_server.internal_tls.server_name", LISTENER_TLS),
    ("uni_grpc.tls.server_ca_pem", LISTENER_TLS),
    ("uni_grpc.tls.client_ca_pem", LISTENER_TLS),
    ("uni_grpc.tls.insecure_skip_verify", LISTENER_TLS),
    ("uni_grpc.tls.server_name", LISTENER_TLS),
    ("websocket.compression", NO_COMPRESSION),
    ("websocket.compression_min_size", NO_COMPRESSION),
    ("websocket.compression_level", NO_COMPRESSION),
    ("websocket.decompressed_message_size_limit", NO_COMPRESSION),
    ("websocket.use_write_buffer_pool", WS_WRITER),
    ("websocket.write_buffer_size", WS_WRITER),
    ("uni_websocket.compression", NO_COMPRESSION),
    ("uni_websocket.compression_min_size", NO_COMPRESSION),
    ("uni_websocket.compression_level", NO_COMPRESSION),
    (
        "uni_websocket.decompressed_message_size_limit",
        NO_COMPRESSION,
    ),
    ("uni_websocket.read_buffer_size", UNI_WS),
    ("uni_websocket.use_write_buffer_pool", UNI_WS),
    ("uni_websocket.write_buffer_size", UNI_WS),
    ("uni_websocket.write_timeout", UNI_WS),
    (
        "client.concurrency",
        "commands of a connection are handled in order, not concurrently",
    ),
    ("prometheus.instrument_http_handlers", NO_METRIC_FAMILY),
    (
        "prometheus.recovered_publications_histogram",
        NO_METRIC_FAMILY,
    ),
    ("prometheus.native_histograms", NO_METRIC_FAMILY),
    (
        "node.info_metrics_aggregate_interval",
        "info carries no metrics",
    ),
    ("pid_file", "no pid file is written"),
    (
        "enable_unreleased_features",
        "no unreleased Centrifugo feature is implemented",
    ),
    ("engine.redis.io_timeout", REDIS_UNUSED),
    ("engine.redis.client_name", REDIS_UNUSED),
    ("engine.redis.sentinel_client_name", REDIS_UNUSED),
    ("engine.redis.sentinel_tls", REDIS_UNUSED),
    ("engine.redis.replica_client", REDIS_UNUSED),
    ("engine.redis.force_resp2", REDIS_UNUSED),
    ("engine.redis.history_use_lists", REDIS_LISTS),
    ("engine.redis.presence_ttl", PRESENCE_TTL),
    ("engine.redis.presence_hash_field_ttl", PRESENCE_TTL),
    ("engine.redis.presence_user_mapping", PRESENCE_MAPPING),
    ("engine.redis.tls.client_ca_pem", CLIENT_CA),
    ("broker.redis.io_timeout", REDIS_UNUSED),
    ("broker.redis.client_name", REDIS_UNUSED),
    ("broker.redis.sentinel_client_name", REDIS_UNUSED),
    ("broker.redis.sentinel_tls", REDIS_UNUSED),
    ("broker.redis.replica_client", REDIS_UNUSED),
    ("broker.redis.force_resp2", REDIS_UNUSED),
    ("broker.redis.history_use_lists", REDIS_LISTS),
    ("broker.redis.presence_ttl", PRESENCE_TTL),
    ("broker.redis.presence_hash_field_ttl", PRESENCE_TTL),
    ("broker.redis.presence_user_mapping", PRESENCE_MAPPING),
    ("broker.redis.tls.client_ca_pem", CLIENT_CA),
    ("presence_manager.redis.io_timeout", REDIS_UNUSED),
    ("presence_manager.redis.client_name", REDIS_UNUSED),
    ("presence_manager.redis.sentinel_client_name", REDIS_UNUSED),
    ("presence_manager.redis.sentinel_tls", REDIS_UNUSED),
    ("presence_manager.redis.replica_client", REDIS_UNUSED),
    ("presence_manager.redis.force_resp2", REDIS_UNUSED),
    ("presence_manager.redis.history_use_lists", REDIS_LISTS),
    ("presence_manager.redis.presence_ttl", PRESENCE_TTL),
    (
        "presence_manager.redis.presence_hash_field_ttl",
        PRESENCE_TTL,
    ),
    (
        "presence_manager.redis.presence_user_mapping",
        PRESENCE_MAPPING,
    ),
    ("presence_manager.redis.tls.client_ca_pem", CLIENT_CA),
    ("broker.nats.write_timeout", NATS_UNUSED),
    ("broker.nats.allow_wildcards", NATS_UNUSED),
    ("broker.nats.tls", "TLS to NATS is not served yet"),
    ("broker.nats.raw_mode", "NATS raw mode is not served"),
    ("broker.postgres.tls", "TLS to PostgreSQL is not served yet"),
    ("broker.postgres.num_shards", POSTGRES_UNUSED),
    ("broker.postgres.binary_data", POSTGRES_UNUSED),
    ("broker.postgres.notify_dsn", POSTGRES_UNUSED),
    ("broker.postgres.partition_lookahead_days", POSTGRES_UNUSED),
    ("broker.postgres.partition_retention_days", POSTGRES_UNUSED),
    ("client.proxy.connect.grpc_metadata", GRPC_METADATA),
    ("client.proxy.connect.grpc.compression", GRPC_COMPRESSION),
    (
        "client.proxy.connect.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "client.proxy.connect.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("client.proxy.refresh.grpc_metadata", GRPC_METADATA),
    ("client.proxy.refresh.grpc.compression", GRPC_COMPRESSION),
    (
        "client.proxy.refresh.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "client.proxy.refresh.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("channel.proxy.subscribe.grpc_metadata", GRPC_METADATA),
    ("channel.proxy.subscribe.grpc.compression", GRPC_COMPRESSION),
    (
        "channel.proxy.subscribe.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.subscribe.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("channel.proxy.publish.grpc_metadata", GRPC_METADATA),
    ("channel.proxy.publish.grpc.compression", GRPC_COMPRESSION),
    (
        "channel.proxy.publish.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.publish.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("channel.proxy.sub_refresh.grpc_metadata", GRPC_METADATA),
    (
        "channel.proxy.sub_refresh.grpc.compression",
        GRPC_COMPRESSION,
    ),
    (
        "channel.proxy.sub_refresh.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.sub_refresh.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("channel.proxy.map_publish.grpc_metadata", GRPC_METADATA),
    (
        "channel.proxy.map_publish.grpc.compression",
        GRPC_COMPRESSION,
    ),
    (
        "channel.proxy.map_publish.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.map_publish.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("channel.proxy.map_remove.grpc_metadata", GRPC_METADATA),
    (
        "channel.proxy.map_remove.grpc.compression",
        GRPC_COMPRESSION,
    ),
    (
        "channel.proxy.map_remove.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.map_remove.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.shared_poll_refresh.grpc_metadata",
        GRPC_METADATA,
    ),
    (
        "channel.proxy.shared_poll_refresh.grpc.compression",
        GRPC_COMPRESSION,
    ),
    (
        "channel.proxy.shared_poll_refresh.http.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    (
        "channel.proxy.shared_poll_refresh.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("rpc.proxy.grpc_metadata", GRPC_METADATA),
    ("rpc.proxy.grpc.compression", GRPC_COMPRESSION),
    ("rpc.proxy.http.tls.client_ca_pem", PROXY_CLIENT_CA),
    ("rpc.proxy.grpc.tls.client_ca_pem", PROXY_CLIENT_CA),
    ("proxies[].grpc_metadata", GRPC_METADATA),
    ("proxies[].grpc.compression", GRPC_COMPRESSION),
    ("proxies[].http.tls.client_ca_pem", PROXY_CLIENT_CA),
    ("proxies[].grpc.tls.client_ca_pem", PROXY_CLIENT_CA),
    (
        "channel.proxy.subscribe_stream.grpc_metadata",
        GRPC_METADATA,
    ),
    (
        "channel.proxy.subscribe_stream.grpc.compression",
        GRPC_COMPRESSION,
    ),
    (
        "channel.proxy.subscribe_stream.grpc.tls.client_ca_pem",
        PROXY_CLIENT_CA,
    ),
    ("channel.proxy.subscribe_stream.http", STREAMS_GRPC_ONLY),
    (
        "channel.proxy.subscribe_stream.emulated_headers",
        "gRPC proxies forward only http_headers",
    ),
    ("channel.proxy.shared_poll_refresh.http_headers", NO_CLIENT),
    (
        "channel.proxy.shared_poll_refresh.emulated_headers",
        NO_CLIENT,
    ),
    (
        "channel.proxy.shared_poll_refresh.include_connection_meta",
        NO_CLIENT,
    ),
    (
        "channel.proxy.shared_poll_refresh.binary_encoding",
        "shared_poll_refresh data is always JSON (as Centrifugo's)",
    ),
];

/// A warning for each not-served key whose value differs from its default.
pub(crate) fn not_served_warnings(config: &Config) -> Vec<ConfigWarning> {
    let (Ok(actual), Ok(defaults)) = (
        serde_json::to_value(config),
        serde_json::to_value(Config::default()),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, reason) in NOT_SERVED {
        let segments: Vec<&str> = path.split('.').collect();
        differing(&actual, &defaults, &segments, "", "", &mut |path| {
            out.push(ConfigWarning::NotServed {
                path,
                reason: (*reason).to_owned(),
            });
        });
    }
    out
}

/// Calls `found` with the concrete path of every leaf under `segments` where `actual` differs
/// from `default`. `schema_path` is the path with `[]` for list elements (what
/// [`named_list_template`] knows lists by, without the brackets).
fn differing(
    actual: &Value,
    default: &Value,
    segments: &[&str],
    concrete: &str,
    schema_path: &str,
    found: &mut impl FnMut(String),
) {
    let join = |base: &str, key: &str| {
        if base.is_empty() {
            key.to_owned()
        } else {
            format!("{base}.{key}")
        }
    };
    let Some((first, rest)) = segments.split_first() else {
        // A section switched off does nothing in Centrifugo either: nothing is missed.
        if actual.get("enabled") != Some(&Value::Bool(false)) {
            leaves_differing(actual, default, concrete, found);
        }
        return;
    };
    if let Some(list) = first.strip_suffix("[]") {
        let list_path = join(schema_path, list);
        let Some(Ok(template)) = named_list_template(&list_path) else {
            return;
        };
        let Some(Value::Array(elements)) = actual.get(list) else {
            return;
        };
        for (i, element) in elements.iter().enumerate() {
            let at = format!("{}[{i}]", join(concrete, list));
            differing(
                element,
                &template,
                rest,
                &at,
                &format!("{list_path}[]"),
                found,
            );
        }
        return;
    }
    let (Some(actual), Some(default)) = (actual.get(*first), default.get(*first)) else {
        return;
    };
    differing(
        actual,
        default,
        rest,
        &join(concrete, first),
        &join(schema_path, first),
        found,
    );
}

/// Every leaf of `actual` that differs from `default`, or `actual` itself when it is not an
/// object (a list, a value).
fn leaves_differing(actual: &Value, default: &Value, path: &str, found: &mut impl FnMut(String)) {
    match (actual, default) {
        (Value::Object(actual), Value::Object(default)) if !actual.is_empty() => {
            for (key, value) in actual {
                let child = format!("{path}.{key}");
                match default.get(key) {
                    Some(default) => leaves_differing(value, default, &child, found),
                    None => found(child),
                }
            }
        }
        _ if actual != default => found(path.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
#[path = "not_served_tests.rs"]
mod tests;
