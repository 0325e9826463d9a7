//! The `rpc` section: how client RPC methods are routed (`ns:method` → namespace options).

use serde::{Deserialize, Deserializer, Serialize};

use super::keyed::deserialize_keyed;
use super::proxy::{DEFAULT_PROXY_NAME, Proxy};

/// `rpc`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Rpc {
    /// The "default" RPC proxy. Default: not configured.
    pub proxy: Proxy,
    /// Options of methods without a namespace.
    pub without_namespace: RpcOptions,
    /// RPC namespaces; names unique and matching `^[-a-zA-Z0-9_.]{2,}$`. Default `[]`.
    pub namespaces: Vec<RpcNamespace>,
    /// The built-in `ping` method. Default: off.
    pub ping: RpcPing,
    /// Separator between namespace and method. Default `":"`.
    pub namespace_boundary: String,
}

impl Default for Rpc {
    fn default() -> Self {
        Rpc {
            proxy: Proxy::default(),
            without_namespace: RpcOptions::default(),
            namespaces: Vec::new(),
            ping: RpcPing::default(),
            namespace_boundary: ":".to_owned(),
        }
    }
}

/// Options of an RPC namespace (or of methods without one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct RpcOptions {
    /// Forward RPCs to the proxy (otherwise 108). Default `false`.
    pub proxy_enabled: bool,
    /// Which proxy: `default` (= `rpc.proxy`, the default) or a name from `proxies`.
    pub proxy_name: String,
}

impl Default for RpcOptions {
    fn default() -> Self {
        RpcOptions {
            proxy_enabled: false,
            proxy_name: DEFAULT_PROXY_NAME.to_owned(),
        }
    }
}

/// An entry of `rpc.namespaces`: `name` plus the [`RpcOptions`] keys in one object.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct RpcNamespace {
    /// Name: the part of a method before `rpc.namespace_boundary`.
    pub name: String,
    /// The namespace's options.
    #[serde(flatten)]
    pub options: RpcOptions,
}

impl<'de> Deserialize<'de> for RpcNamespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (name, options) = deserialize_keyed(deserializer, "name")?;
        Ok(RpcNamespace {
            name: name.unwrap_or_default(),
            options,
        })
    }
}

/// `rpc.ping`: a built-in RPC method returning an empty result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct RpcPing {
    /// Answer the method. Default `false`.
    pub enabled: bool,
    /// Method name. Default `"ping"`.
    pub method: String,
}

impl Default for RpcPing {
    fn default() -> Self {
        RpcPing {
            enabled: false,
            method: "ping".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_namespace_is_name_plus_options() {
        let ns: RpcNamespace =
            serde_json::from_str(r#"{"name": "users", "proxy_enabled": true}"#).unwrap();
        assert_eq!(ns.name, "users");
        assert!(ns.options.proxy_enabled);
        assert_eq!(ns.options.proxy_name, "default");
        assert_eq!(Rpc::default().ping.method, "ping");
    }
}
