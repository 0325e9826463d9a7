//! Validation of proxies (named, client, the per-kind defaults) and of `rpc`.

use std::collections::BTreeSet;

use super::Config;
use super::duration::Duration;
use super::mesh::check_host_port;
use super::proxy::{DEFAULT_PROXY_NAME, Proxy};
use super::validate::{NAME_RULE, Problems, check_reason, is_valid_name, validate_disconnect};

/// Checks `proxies` and the client proxies; returns the names of the named proxies.
pub(crate) fn validate_proxies(c: &Config, p: &mut Problems) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, named) in c.proxies.iter().enumerate() {
        let path = format!("proxies[{i}]");
        let name = &named.name;
        if name == DEFAULT_PROXY_NAME {
            p.add(format!("{path}.name"), "\"default\" is reserved");
        } else if !is_valid_name(name) {
            p.add(format!("{path}.name"), format!("{name:?} {NAME_RULE}"));
        } else if names.contains(name) {
            p.add(
                format!("{path}.name"),
                format!("duplicate proxy name {name:?}"),
            );
        }
        check_proxy(&path, &named.proxy, p);
        names.push(name.clone());
    }
    let client_proxies = [
        ("client.proxy.connect", &c.client.proxy.connect),
        ("client.proxy.refresh", &c.client.proxy.refresh),
    ];
    for (path, switched) in client_proxies {
        if switched.enabled {
            check_proxy(path, &switched.proxy, p);
        }
    }
    names
}

/// A proxy that will be called: endpoint, timeout, transforms.
pub(crate) fn check_proxy(path: &str, proxy: &Proxy, p: &mut Problems) {
    let endpoint = &proxy.endpoint;
    if endpoint.is_empty() {
        // An edge does not call the backend: its core does, with its own endpoint.
        if p.1.calls_proxies() {
            p.add(format!("{path}.endpoint"), "must be set");
        }
    } else if let Some((scheme, rest)) = endpoint.split_once("://") {
        if !matches!(scheme, "http" | "https" | "grpc") || rest.is_empty() {
            p.add(
                format!("{path}.endpoint"),
                format!("{endpoint:?}: expected http(s)://… or grpc://host:port"),
            );
        }
    } else if let Err(reason) = check_host_port(endpoint, false) {
        p.add(format!("{path}.endpoint"), reason);
    }
    if proxy.timeout.is_zero() {
        p.add(format!("{path}.timeout"), "must not be 0");
    }
    let max_timeout = Duration::from_secs(3_600);
    p.range(
        &format!("{path}.timeout"),
        proxy.timeout,
        Duration::ZERO,
        max_timeout,
    );
    for (i, t) in proxy.http.status_to_code_transforms.iter().enumerate() {
        let path = format!("{path}.http.status_to_code_transforms[{i}]");
        p.range(&format!("{path}.status_code"), t.status_code, 100, 599);
        match (t.to_error.code != 0, t.to_disconnect.code != 0) {
            (false, false) => p.add(&path, "set to_error.code or to_disconnect.code"),
            (true, true) => p.add(&path, "set only one of to_error and to_disconnect"),
            _ => {}
        }
        check_reason(p, &format!("{path}.to_error.message"), &t.to_error.message);
        validate_disconnect(&format!("{path}.to_disconnect"), &t.to_disconnect, false, p);
    }
}

/// Records a `*_proxy_name` reference: `default` marks the kind's default proxy as used,
/// anything else must be a named proxy.
pub(crate) struct ProxyRefs<'a> {
    pub(crate) names: &'a [String],
    pub(crate) used_defaults: BTreeSet<&'static str>,
}

impl ProxyRefs<'_> {
    pub(crate) fn check(
        &mut self,
        p: &mut Problems,
        path: String,
        enabled: bool,
        name: &str,
        kind: &'static str,
    ) {
        if name.is_empty() {
            if enabled {
                p.add(path, "must name a proxy when the proxy is enabled");
            }
        } else if name == DEFAULT_PROXY_NAME {
            if enabled {
                self.used_defaults.insert(kind);
            }
        } else if !self.names.iter().any(|n| n == name) {
            p.add(path, format!("proxy {name:?} not found in proxies"));
        }
    }
}

pub(crate) fn default_channel_proxy<'c>(c: &'c Config, kind: &str) -> &'c Proxy {
    let proxies = &c.channel.proxy;
    match kind {
        "publish" => &proxies.publish,
        "sub_refresh" => &proxies.sub_refresh,
        "subscribe_stream" => &proxies.subscribe_stream,
        "map_publish" => &proxies.map_publish,
        "map_remove" => &proxies.map_remove,
        "shared_poll_refresh" => &proxies.shared_poll_refresh,
        _ => &proxies.subscribe,
    }
}

/// Checks `rpc`: boundary, namespaces, proxy references, ping.
pub(crate) fn validate_rpc(c: &Config, names: &[String], p: &mut Problems) {
    let rpc = &c.rpc;
    if rpc.namespace_boundary.is_empty() {
        p.add("rpc.namespace_boundary", "must not be empty");
    }
    let mut refs = ProxyRefs {
        names,
        used_defaults: BTreeSet::new(),
    };
    let without = &rpc.without_namespace;
    refs.check(
        p,
        "rpc.without_namespace.proxy_name".into(),
        without.proxy_enabled,
        &without.proxy_name,
        "rpc",
    );
    let mut seen: Vec<&str> = Vec::new();
    for (i, ns) in rpc.namespaces.iter().enumerate() {
        let path = format!("rpc.namespaces[{i}]");
        if !is_valid_name(&ns.name) {
            p.add(format!("{path}.name"), format!("{:?} {NAME_RULE}", ns.name));
        } else if seen.contains(&ns.name.as_str()) {
            p.add(
                format!("{path}.name"),
                format!("duplicate rpc namespace name {:?}", ns.name),
            );
        }
        seen.push(&ns.name);
        let o = &ns.options;
        refs.check(
            p,
            format!("{path}.proxy_name"),
            o.proxy_enabled,
            &o.proxy_name,
            "rpc",
        );
    }
    if !refs.used_defaults.is_empty() {
        check_proxy("rpc.proxy", &rpc.proxy, p);
    }
    if rpc.ping.enabled && rpc.ping.method.is_empty() {
        p.add("rpc.ping.method", "must be set when rpc.ping.enabled");
    }
}
