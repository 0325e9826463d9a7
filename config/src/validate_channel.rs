//! Validation of `channel`: separators, namespaces, history and recovery options, map and
//! shared-poll options, the personal channel.

use std::collections::BTreeSet;

use super::Config;
use super::channel::ChannelOptions;
use super::duration::Duration;
use super::enums::{MapClientKey, MapMode, RecoveryMode, SharedPollMode, SubscriptionType};
use super::proxy::DEFAULT_PROXY_NAME;
use super::validate::{NAME_RULE, Problems, compile, is_valid_name};
use super::validate_proxy::{ProxyRefs, check_proxy, default_channel_proxy};

/// Checks `channel`: separators, namespaces and their options, the personal channel.
pub(crate) fn validate_channels(c: &Config, names: &[String], p: &mut Problems) {
    let ch = &c.channel;
    let separators = [
        ("channel.private_prefix", &ch.private_prefix),
        ("channel.namespace_boundary", &ch.namespace_boundary),
        ("channel.user_boundary", &ch.user_boundary),
        ("channel.user_separator", &ch.user_separator),
    ];
    for (path, value) in separators {
        if value.is_empty() {
            p.add(path, "must not be empty");
        }
    }
    p.range("channel.max_length", ch.max_length, 1, 65_535);
    p.whole_seconds("channel.history_meta_ttl", ch.history_meta_ttl);
    let mut refs = ProxyRefs {
        names,
        used_defaults: BTreeSet::new(),
    };
    check_options(
        c,
        "channel.without_namespace",
        &ch.without_namespace,
        &mut refs,
        p,
    );
    let mut seen: Vec<&str> = Vec::new();
    for (i, ns) in ch.namespaces.iter().enumerate() {
        let path = format!("channel.namespaces[{i}]");
        if !is_valid_name(&ns.name) {
            p.add(format!("{path}.name"), format!("{:?} {NAME_RULE}", ns.name));
        } else if seen.contains(&ns.name.as_str()) {
            p.add(
                format!("{path}.name"),
                format!("duplicate namespace name {:?}", ns.name),
            );
        }
        seen.push(&ns.name);
        check_options(c, &path, &ns.options, &mut refs, p);
    }
    for kind in refs.used_defaults {
        check_proxy(
            &format!("channel.proxy.{kind}"),
            default_channel_proxy(c, kind),
            p,
        );
    }
    let personal = &c.client.subscribe_to_user_personal_channel;
    if personal.enabled {
        let ns = &personal.personal_channel_namespace;
        let path = "client.subscribe_to_user_personal_channel";
        match c.channel_options((!ns.is_empty()).then_some(ns.as_str())) {
            None => p.add(
                format!("{path}.personal_channel_namespace"),
                format!("namespace {ns:?} not found"),
            ),
            Some(options) if personal.single_connection && !options.presence => p.add(
                format!("{path}.single_connection"),
                "needs presence in the personal channel's namespace",
            ),
            Some(_) => {}
        }
    }
}

fn check_options(
    c: &Config,
    path: &str,
    o: &ChannelOptions,
    refs: &mut ProxyRefs<'_>,
    p: &mut Problems,
) {
    p.whole_seconds(&format!("{path}.history_ttl"), o.history_ttl);
    p.whole_seconds(&format!("{path}.history_meta_ttl"), o.history_meta_ttl);
    if (o.history_size == 0) != o.history_ttl.is_zero() {
        p.add(
            format!("{path}.history_size"),
            "history_size and history_ttl must be set together",
        );
    }
    p.range(
        &format!("{path}.history_size"),
        o.history_size,
        0,
        10_000_000,
    );
    let meta_ttl = if o.history_meta_ttl.is_zero() {
        c.channel.history_meta_ttl
    } else {
        o.history_meta_ttl
    };
    if meta_ttl < o.history_ttl {
        p.add(
            format!("{path}.history_meta_ttl"),
            format!("{meta_ttl} is shorter than history_ttl {}", o.history_ttl),
        );
    }
    if o.force_recovery && !o.has_history() {
        p.add(
            format!("{path}.force_recovery"),
            "requires history (history_size and history_ttl)",
        );
    }
    if o.auto_cache_recover && !(o.force_recovery && o.force_recovery_mode == RecoveryMode::Cache) {
        p.add(
            format!("{path}.auto_cache_recover"),
            "requires force_recovery and force_recovery_mode \"cache\"",
        );
    }
    if let Err(err) = compile(&o.channel_regex) {
        p.add(format!("{path}.channel_regex"), err);
    }
    if o.subscribe_stream_proxy_enabled
        && (o.subscribe_proxy_enabled || o.publish_proxy_enabled || o.sub_refresh_proxy_enabled)
    {
        p.add(
            format!("{path}.subscribe_stream_proxy_enabled"),
            "cannot be combined with the subscribe, publish or sub_refresh proxies",
        );
    }
    let stream_proxy = match o.subscribe_stream_proxy_name.as_str() {
        "" | DEFAULT_PROXY_NAME => Some(&c.channel.proxy.subscribe_stream),
        name => c.named_proxy(name),
    };
    if o.subscribe_stream_proxy_enabled
        && stream_proxy.is_some_and(|proxy| proxy.endpoint.starts_with("http"))
    {
        p.add(
            format!("{path}.subscribe_stream_proxy_name"),
            "subscription streams are gRPC only: the proxy's endpoint must be host:port or grpc://",
        );
    }
    let proxy_refs = [
        (
            "subscribe_proxy_name",
            o.subscribe_proxy_enabled,
            &o.subscribe_proxy_name,
            "subscribe",
        ),
        (
            "publish_proxy_name",
            o.publish_proxy_enabled,
            &o.publish_proxy_name,
            "publish",
        ),
        (
            "sub_refresh_proxy_name",
            o.sub_refresh_proxy_enabled,
            &o.sub_refresh_proxy_name,
            "sub_refresh",
        ),
        (
            "subscribe_stream_proxy_name",
            o.subscribe_stream_proxy_enabled,
            &o.subscribe_stream_proxy_name,
            "subscribe_stream",
        ),
        (
            "map.publish_proxy_name",
            o.map.publish_proxy_enabled,
            &o.map.publish_proxy_name,
            "map_publish",
        ),
        (
            "map.remove_proxy_name",
            o.map.remove_proxy_enabled,
            &o.map.remove_proxy_name,
            "map_remove",
        ),
    ];
    for (key, enabled, name, kind) in proxy_refs {
        refs.check(p, format!("{path}.{key}"), enabled, name, kind);
    }
    check_map(path, o, p);
    if o.subscription_type == SubscriptionType::SharedPoll {
        check_shared_poll(c, path, o, refs, p);
    }
    let presence_prefixes = [
        (
            "map_clients_presence_channel_prefix",
            &o.map_clients_presence_channel_prefix,
            SubscriptionType::MapClients,
        ),
        (
            "map_users_presence_channel_prefix",
            &o.map_users_presence_channel_prefix,
            SubscriptionType::MapUsers,
        ),
    ];
    for (key, prefix, wanted) in presence_prefixes {
        if prefix.is_empty() {
            continue;
        }
        let namespace = prefix
            .split_once(c.channel.namespace_boundary.as_str())
            .map(|(ns, _)| ns);
        match c.channel_options(namespace) {
            None => p.add(
                format!("{path}.{key}"),
                format!("namespace of {prefix:?} not found"),
            ),
            Some(target) if target.subscription_type != wanted => p.add(
                format!("{path}.{key}"),
                format!(
                    "the namespace of {prefix:?} must have subscription_type {:?}",
                    wanted.as_str()
                ),
            ),
            Some(_) => {}
        }
    }
}

fn check_map(path: &str, o: &ChannelOptions, p: &mut Problems) {
    let m = &o.map;
    let at = |key: &str| format!("{path}.map.{key}");
    if o.is_map() && m.mode == MapMode::Unset {
        p.add(
            at("mode"),
            format!(
                "required when subscription_type is {:?}",
                o.subscription_type.as_str()
            ),
        );
    }
    match m.mode {
        MapMode::Ephemeral | MapMode::Recoverable if m.key_ttl.is_zero() => {
            p.add(
                at("key_ttl"),
                format!("required when map.mode is {:?}", m.mode.as_str()),
            );
        }
        MapMode::Persistent if !m.key_ttl.is_zero() => {
            p.add(
                at("key_ttl"),
                "must not be set when map.mode is \"persistent\"",
            );
        }
        _ => {}
    }
    let presence_map = matches!(
        o.subscription_type,
        SubscriptionType::MapClients | SubscriptionType::MapUsers
    );
    if m.mode == MapMode::Persistent && presence_map {
        p.add(
            at("mode"),
            "\"persistent\" is not allowed for map_clients / map_users",
        );
    }
    if m.mode == MapMode::Ephemeral {
        let streams = [
            ("stream_size", m.stream_size != 0),
            ("stream_ttl", !m.stream_ttl.is_zero()),
            ("meta_ttl", !m.meta_ttl.is_zero()),
        ];
        for (key, set) in streams {
            if set {
                p.add(at(key), "must be 0 when map.mode is \"ephemeral\"");
            }
        }
    }
    if matches!(m.mode, MapMode::Recoverable | MapMode::Persistent) && !m.meta_ttl.is_zero() {
        let stream_ttl = if m.stream_ttl.is_zero() {
            Duration::from_secs(60)
        } else {
            m.stream_ttl
        };
        if m.meta_ttl < stream_ttl {
            p.add(
                at("meta_ttl"),
                format!("{} is shorter than the stream ttl {stream_ttl}", m.meta_ttl),
            );
        }
    }
    if m.remove_client_on_unsubscribe && !o.is_map() {
        p.add(
            at("remove_client_on_unsubscribe"),
            "requires a map subscription_type",
        );
    }
    if m.client_key != MapClientKey::Unset && (m.publish_proxy_enabled || m.remove_proxy_enabled) {
        p.add(
            at("client_key"),
            "cannot be used with the map publish / remove proxies",
        );
    }
    p.range(&at("stream_size"), m.stream_size, 0, 10_000_000);
    let counts = [
        ("default_page_size", m.default_page_size),
        ("min_page_size", m.min_page_size),
        ("max_page_size", m.max_page_size),
        (
            "live_transition_max_publication_limit",
            m.live_transition_max_publication_limit,
        ),
    ];
    for (key, value) in counts {
        p.range(&at(key), value, 0, 100_000);
    }
    let (min, max, default) = (m.min_page_size, m.max_page_size, m.default_page_size);
    if min > 0 && max > 0 && min > max {
        p.add(
            at("min_page_size"),
            format!("{min} exceeds max_page_size {max}"),
        );
    }
    if default > 0 && max > 0 && default > max {
        p.add(
            at("default_page_size"),
            format!("{default} exceeds max_page_size {max}"),
        );
    }
    if default > 0 && min > 0 && default < min {
        p.add(
            at("default_page_size"),
            format!("{default} is below min_page_size {min}"),
        );
    }
}

fn check_shared_poll(
    c: &Config,
    path: &str,
    o: &ChannelOptions,
    refs: &mut ProxyRefs<'_>,
    p: &mut Problems,
) {
    let sp = &o.shared_poll;
    if c.shared_poll.hmac_secret_key.is_empty() {
        p.add(
            format!("{path}.subscription_type"),
            "\"shared_poll\" needs shared_poll.hmac_secret_key",
        );
    }
    let name = if sp.proxy_name.is_empty() {
        DEFAULT_PROXY_NAME
    } else {
        sp.proxy_name.as_str()
    };
    refs.check(
        p,
        format!("{path}.shared_poll.proxy_name"),
        true,
        name,
        "shared_poll_refresh",
    );
    if sp.publish_enabled && sp.mode == SharedPollMode::Versionless {
        p.add(
            format!("{path}.shared_poll.publish_enabled"),
            "needs shared_poll.mode \"versioned\"",
        );
    }
    p.range(
        &format!("{path}.shared_poll.refresh_batch_size"),
        sp.refresh_batch_size,
        0,
        100_000,
    );
    let max_keys = sp.max_keys_per_connection;
    p.range(
        &format!("{path}.shared_poll.max_keys_per_connection"),
        max_keys,
        0,
        100_000,
    );
}

#[cfg(test)]
#[path = "validate_channel_tests.rs"]
mod tests;
