//! Proxy objects (PROTOCOL §7.4): how Spindle calls the application backend for connect,
//! refresh, subscribe, publish, sub_refresh, RPC and the map / shared-poll hooks.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;
use super::keyed::deserialize_keyed;
use super::secret::Secret;
use super::server::Tls;

/// The proxy name that means "the default proxy of this kind" (`channel.proxy.<kind>`,
/// `rpc.proxy`). Reserved: a named proxy may not use it.
pub const DEFAULT_PROXY_NAME: &str = "default";

/// A proxy to the backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Proxy {
    /// `http://` / `https://` URL (HTTP proxy) or `host:port` (gRPC proxy). Default `""`
    /// (not configured; required when the proxy is used).
    pub endpoint: String,
    /// Timeout of one proxy call. Default `1s`; must not be `0`.
    pub timeout: Duration,
    /// Client HTTP request headers forwarded to the backend. Default `[]`.
    pub http_headers: Vec<String>,
    /// Client gRPC metadata keys forwarded to the backend. Default `[]`.
    pub grpc_metadata: Vec<String>,
    /// Headers from `ConnectRequest.headers` that may be forwarded. Default `[]`.
    pub emulated_headers: Vec<String>,
    /// Send payloads base64-encoded (`b64data`, `"encoding":"binary"`). Default `false`.
    pub binary_encoding: bool,
    /// Send the connection's `meta` with each request. Default `false`.
    pub include_connection_meta: bool,
    /// Options of HTTP proxies.
    pub http: ProxyHttp,
    /// Options of gRPC proxies.
    pub grpc: ProxyGrpc,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            endpoint: String::new(),
            timeout: Duration::from_secs(1),
            http_headers: Vec::new(),
            grpc_metadata: Vec::new(),
            emulated_headers: Vec::new(),
            binary_encoding: false,
            include_connection_meta: false,
            http: ProxyHttp::default(),
            grpc: ProxyGrpc::default(),
        }
    }
}

/// `http` block of a [`Proxy`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ProxyHttp {
    /// TLS towards the backend (client side). Default: off.
    pub tls: Tls,
    /// Headers added to every request; values are secrets (they often carry credentials).
    /// Default `{}`.
    pub static_headers: BTreeMap<String, Secret>,
    /// Backend HTTP status → client error or disconnect. Default `[]`.
    pub status_to_code_transforms: Vec<StatusToCodeTransform>,
}

/// `grpc` block of a [`Proxy`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct ProxyGrpc {
    /// TLS towards the backend. Default: off.
    pub tls: Tls,
    /// Per-call credentials metadata key. Default `""`.
    pub credentials_key: String,
    /// Per-call credentials value (secret). Default `""`.
    pub credentials_value: Secret,
    /// gzip-compress calls. Default `false`.
    pub compression: bool,
    /// Metadata added to every call; values are secrets. Default `{}`.
    pub static_metadata: BTreeMap<String, Secret>,
}

/// One entry of `status_to_code_transforms`: exactly one of `to_error` / `to_disconnect`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct StatusToCodeTransform {
    /// Backend HTTP status to match (required).
    pub status_code: u16,
    /// Reply to the client with this error.
    pub to_error: TransformError,
    /// Or disconnect the client with this code.
    pub to_disconnect: TransformDisconnect,
}

/// A client error produced by a transform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct TransformError {
    /// Error code; `0` = not set.
    pub code: u32,
    /// ASCII message, at most 123 bytes.
    pub message: String,
    /// Mark the error temporary (the SDK retries).
    pub temporary: bool,
}

/// A disconnect produced by a transform.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct TransformDisconnect {
    /// Disconnect code; `0` = not set.
    pub code: u32,
    /// ASCII reason, at most 123 bytes (WebSocket close frame limit).
    pub reason: String,
}

/// An entry of the top-level `proxies` list: `name` plus the [`Proxy`] keys in one object.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct NamedProxy {
    /// Name referenced from `*_proxy_name`; must match `^[-a-zA-Z0-9_.]{2,}$`, not `default`.
    pub name: String,
    /// The proxy.
    #[serde(flatten)]
    pub proxy: Proxy,
}

impl<'de> Deserialize<'de> for NamedProxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, proxy) = deserialize_keyed(deserializer, "name")?;
        Ok(NamedProxy {
            name: name.unwrap_or_default(),
            proxy,
        })
    }
}

/// `client.proxy.connect` / `client.proxy.refresh`: `enabled` plus the [`Proxy`] keys.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct SwitchedProxy {
    /// Use this proxy. Default `false`.
    pub enabled: bool,
    /// The proxy.
    #[serde(flatten)]
    pub proxy: Proxy,
}

impl<'de> Deserialize<'de> for SwitchedProxy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (enabled, proxy) = deserialize_keyed(deserializer, "enabled")?;
        Ok(SwitchedProxy {
            enabled: enabled.unwrap_or_default(),
            proxy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_proxy_reads_name_and_proxy_keys_from_one_object() {
        let json = r#"{"name": "auth", "endpoint": "http://app/proxy", "timeout": "3s",
                       "http": {"static_headers": {"Authorization": "Bearer t"}}}"#;
        let named: NamedProxy = serde_json::from_str(json).unwrap();
        assert_eq!(named.name, "auth");
        assert_eq!(named.proxy.endpoint, "http://app/proxy");
        assert_eq!(named.proxy.timeout, Duration::from_secs(3));
        assert!(!format!("{named:?}").contains("Bearer"));
        let back = serde_json::to_value(&named).unwrap();
        assert_eq!(back["name"], "auth");
        assert_eq!(back["timeout"], "3s");
        assert_eq!(back["http"]["static_headers"]["Authorization"], "Bearer t");
    }

    #[test]
    fn switched_proxy_defaults() {
        let p: SwitchedProxy = serde_json::from_str(r#"{"endpoint": "grpc:9000"}"#).unwrap();
        assert!(!p.enabled);
        assert_eq!(p.proxy.timeout, Duration::from_secs(1));
        let p: SwitchedProxy = serde_json::from_str(r#"{"enabled": true}"#).unwrap();
        assert!(p.enabled);
    }
}
