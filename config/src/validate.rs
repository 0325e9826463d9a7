//! [`Config::validate`]: every rule a loaded configuration must satisfy. All problems are
//! collected, each with the key path and the reason. This file holds the shared helpers and the
//! server, client and token rules; `validate_channel.rs`, `validate_proxy.rs` (proxies and RPC)
//! and `validate_infra.rs` (engine, transports, mesh, consumers) the rest.

use std::fmt::Display;

use super::Config;
use super::client::Token;
use super::error::{ConfigError, ConfigProblem};
use super::proxy::TransformDisconnect;
use super::validate_channel::validate_channels;
use super::validate_infra::{
    validate_consumers, validate_engine, validate_mesh, validate_transports,
};
use super::validate_proxy::{validate_proxies, validate_rpc};
use super::{Duration, Role, Tls};

pub(crate) const KIB: u32 = 1024;
pub(crate) const MIB: u32 = 1024 * KIB;
pub(crate) const GIB: u32 = 1024 * MIB;
/// How names (namespaces, RPC namespaces, proxies) must look.
pub(crate) const NAME_RULE: &str = "must match ^[-a-zA-Z0-9_.]{2,}$";
/// Longest reason / message a transform may carry (WebSocket close frame limit).
pub(crate) const MAX_REASON_LEN: usize = 123;

/// The problems found so far, and the role they are judged for.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigProblem>, pub(crate) Role);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// `value` must lie in `min..=max`.
    pub(crate) fn range<T: PartialOrd + Display>(&mut self, path: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.add(path, format!("{value} is outside {min}..={max}"));
        }
    }

    /// A duration that must be a whole number of seconds.
    pub(crate) fn whole_seconds(&mut self, path: &str, value: Duration) {
        if !value.is_whole_seconds() {
            self.add(
                path,
                format!("{value}: sub-second precision is not supported here"),
            );
        }
    }
}

/// `^[-a-zA-Z0-9_.]{2,}$`: namespace, RPC namespace and proxy names.
pub(crate) fn is_valid_name(name: &str) -> bool {
    name.len() >= 2
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// A transform's reason or message: ASCII and at most 123 bytes.
pub(crate) fn check_reason(problems: &mut Problems, path: &str, text: &str) {
    if !text.is_ascii() {
        problems.add(path, "must be ASCII");
    } else if text.len() > MAX_REASON_LEN {
        problems.add(path, format!("longer than {MAX_REASON_LEN} bytes"));
    }
}

impl Config {
    /// Checks every rule (names, history settings, proxies, token rules, bounds, addresses) for
    /// `spindle serve` and returns all problems found as [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_for(Role::Serve)
    }

    /// [`Config::validate`] for one role: an edge needs no proxy endpoint (its core calls the
    /// backend) but needs `mesh.cores`; edges and cores need `mesh.tls` and a mesh name.
    pub fn validate_for(&self, role: Role) -> Result<(), ConfigError> {
        let mut problems = Problems(Vec::new(), role);
        validate_server(self, &mut problems);
        validate_client(self, &mut problems);
        let proxy_names = validate_proxies(self, &mut problems);
        validate_channels(self, &proxy_names, &mut problems);
        validate_rpc(self, &proxy_names, &mut problems);
        validate_engine(self, &mut problems);
        validate_transports(self, &mut problems);
        validate_mesh(self, &mut problems);
        validate_consumers(self, &mut problems);
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.0))
        }
    }
}

fn validate_server(c: &Config, p: &mut Problems) {
    let http = &c.http_server;
    if http.h2c_external && (http.internal_port == 0 || http.internal_port == http.port) {
        p.add(
            "http_server.h2c_external",
            "needs a separate http_server.internal_port",
        );
    }
    if http.h2c_external && http.tls.enabled {
        p.add(
            "http_server.h2c_external",
            "cannot be used with http_server.tls enabled",
        );
    }
    let prefixes = [
        ("http_api.handler_prefix", &c.http_api.handler_prefix),
        ("admin.handler_prefix", &c.admin.handler_prefix),
        ("prometheus.handler_prefix", &c.prometheus.handler_prefix),
        ("health.handler_prefix", &c.health.handler_prefix),
        ("swagger.handler_prefix", &c.swagger.handler_prefix),
        ("debug.handler_prefix", &c.debug.handler_prefix),
        ("init.handler_prefix", &c.init.handler_prefix),
        ("websocket.handler_prefix", &c.websocket.handler_prefix),
        ("sse.handler_prefix", &c.sse.handler_prefix),
        ("http_stream.handler_prefix", &c.http_stream.handler_prefix),
        ("emulation.handler_prefix", &c.emulation.handler_prefix),
        (
            "webtransport.handler_prefix",
            &c.webtransport.handler_prefix,
        ),
        (
            "uni_websocket.handler_prefix",
            &c.uni_websocket.handler_prefix,
        ),
        ("uni_sse.handler_prefix", &c.uni_sse.handler_prefix),
        (
            "uni_http_stream.handler_prefix",
            &c.uni_http_stream.handler_prefix,
        ),
    ];
    for (path, prefix) in prefixes {
        if !prefix.is_empty() && !prefix.starts_with('/') {
            p.add(path, format!("{prefix:?} must start with '/'"));
        }
    }
    p.range(
        "grpc_api.max_receive_message_size",
        c.grpc_api.max_receive_message_size,
        0,
        256 * MIB,
    );
    p.range(
        "uni_grpc.max_receive_message_size",
        c.uni_grpc.max_receive_message_size,
        0,
        256 * MIB,
    );
    for (path, tls) in [
        ("http_server.tls", &c.http_server.tls),
        ("http_server.internal_tls", &c.http_server.internal_tls),
        ("grpc_api.tls", &c.grpc_api.tls),
        ("uni_grpc.tls", &c.uni_grpc.tls),
    ] {
        validate_server_tls(path, tls, p);
    }
}

/// A TLS block of a listener needs a certificate and key when enabled.
fn validate_server_tls(path: &str, tls: &Tls, p: &mut Problems) {
    if tls.enabled && (tls.cert_pem.is_empty() || tls.key_pem.is_empty()) {
        p.add(path, "enabled without cert_pem and key_pem");
    }
}

fn validate_client(c: &Config, p: &mut Problems) {
    let client = &c.client;
    if client.ping_interval <= client.pong_timeout {
        p.add(
            "client.ping_interval",
            format!(
                "{} must be greater than client.pong_timeout ({})",
                client.ping_interval, client.pong_timeout
            ),
        );
    }
    p.range(
        "client.ping_interval",
        client.ping_interval,
        Duration::ZERO,
        Duration::from_secs(3_600),
    );
    p.range("client.channel_limit", client.channel_limit, 1, 1_000_000);
    p.range("client.queue_max_size", client.queue_max_size, KIB, GIB);
    let limits = [
        (
            "client.history_max_publication_limit",
            client.history_max_publication_limit,
        ),
        (
            "client.recovery_max_publication_limit",
            client.recovery_max_publication_limit,
        ),
    ];
    for (path, value) in limits {
        p.range(path, value, 1, 100_000);
    }
    p.range("client.concurrency", client.concurrency, 0, 1024);
    for (i, pattern) in client.allowed_origins.iter().enumerate() {
        if let Err(error) = crate::glob::Glob::new(&pattern.to_lowercase()) {
            p.add(format!("client.allowed_origins[{i}]"), error.to_string());
        }
    }
    validate_token("client.token", &client.token, p);
    validate_token(
        "client.subscription_token",
        &client.subscription_token.token,
        p,
    );
    let transforms = &client.connect_code_to_unidirectional_disconnect.transforms;
    for (i, t) in transforms.iter().enumerate() {
        let path = format!("client.connect_code_to_unidirectional_disconnect.transforms[{i}]");
        if t.code == 0 {
            p.add(format!("{path}.code"), "must be set");
        }
        validate_disconnect(&format!("{path}.to"), &t.to, true, p);
    }
}

pub(crate) fn validate_disconnect(
    path: &str,
    d: &TransformDisconnect,
    required: bool,
    p: &mut Problems,
) {
    if required && d.code == 0 {
        p.add(format!("{path}.code"), "must be set");
    }
    check_reason(p, &format!("{path}.reason"), &d.reason);
}

fn validate_token(path: &str, token: &Token, p: &mut Problems) {
    if !token.audience.is_empty() && !token.audience_regex.is_empty() {
        p.add(
            format!("{path}.audience_regex"),
            "cannot be used together with audience",
        );
    }
    if !token.issuer.is_empty() && !token.issuer_regex.is_empty() {
        p.add(
            format!("{path}.issuer_regex"),
            "cannot be used together with issuer",
        );
    }
    for (key, pattern) in [
        ("audience_regex", &token.audience_regex),
        ("issuer_regex", &token.issuer_regex),
    ] {
        if let Err(err) = compile(pattern) {
            p.add(format!("{path}.{key}"), err);
        }
    }
    let claim = &token.user_id_claim;
    if !claim.is_empty() && !claim.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        p.add(
            format!("{path}.user_id_claim"),
            format!("{claim:?} must match ^[a-zA-Z_]+$"),
        );
    }
    let jwks = &token.jwks_public_endpoint;
    if !(jwks.is_empty() || jwks.starts_with("http://") || jwks.starts_with("https://")) {
        p.add(
            format!("{path}.jwks_public_endpoint"),
            "must be an http:// or https:// URL",
        );
    }
    if token.hmac_previous_secret_key_valid_until != 0 && token.hmac_previous_secret_key.is_empty()
    {
        p.add(
            format!("{path}.hmac_previous_secret_key_valid_until"),
            "set without hmac_previous_secret_key",
        );
    }
}

/// Compiles a regex option (empty = not set).
pub(crate) fn compile(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Ok(());
    }
    regex::Regex::new(pattern)
        .map(drop)
        .map_err(|e| format!("invalid regex: {e}"))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
pub(crate) mod tests;
