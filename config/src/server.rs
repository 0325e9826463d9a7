//! Server-level sections: `http_server`, `log`, TLS blocks, `http_api`, `grpc_api`, `admin`,
//! the small endpoint sections (`prometheus`, `health`, `swagger`, `debug`, `init`), `node`,
//! `shutdown` and the global `shared_poll` keys.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::duration::Duration;
use super::enums::{ErrorMode, LogLevel};
use super::secret::Secret;

/// `http_server`: the main HTTP listener (client transports, and by default the internal
/// endpoints too).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct HttpServer {
    /// Host to bind; `""` (the default) binds all interfaces.
    pub address: String,
    /// Port of the main listener. Default `8000`; `0` lets the OS pick one (tests).
    pub port: u16,
    /// Host for the internal endpoints (API, health, metrics); `""` (default) = `address`.
    pub internal_address: String,
    /// Separate port for the internal endpoints; `0` or `""` (default) = served on `port`.
    /// Centrifugo writes this key as a string; both `"9000"` and `9000` are accepted.
    #[serde(deserialize_with = "port_or_empty")]
    pub internal_port: u16,
    /// TLS for the main listener (HTTPS; also the certificate of the HTTP/3 endpoint). Default:
    /// off.
    pub tls: Tls,
    /// ACME (Let's Encrypt) certificates. Default: off.
    pub tls_autocert: TlsAutocert,
    /// TLS only on external endpoints, internal ones stay plain. Default `false`.
    pub tls_external: bool,
    /// Separate TLS for the internal endpoints; default: off (the main `tls` applies).
    pub internal_tls: Tls,
    /// HTTP/3 on the UDP port of the same number as `port` (needs `tls`; carries WebTransport).
    /// Default: off.
    pub http3: Http3,
    /// Cleartext HTTP/2 on external endpoints; needs a separate `internal_port`. Default `false`.
    pub h2c_external: bool,
}

impl Default for HttpServer {
    fn default() -> Self {
        HttpServer {
            address: String::new(),
            port: 8000,
            internal_address: String::new(),
            internal_port: 0,
            tls: Tls::default(),
            tls_autocert: TlsAutocert::default(),
            tls_external: false,
            internal_tls: Tls::default(),
            http3: Http3::default(),
            h2c_external: false,
        }
    }
}

/// Accepts a port as a number, a decimal string, or `""` (= 0, not set).
fn port_or_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    struct PortVisitor;

    impl Visitor<'_> for PortVisitor {
        type Value = u16;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a port number 0-65535 (number or string)")
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<u16, E> {
            u16::try_from(value).map_err(|_| E::custom(format!("port {value} is above 65535")))
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<u16, E> {
            u16::try_from(value).map_err(|_| E::custom(format!("port {value} is out of range")))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<u16, E> {
            if value.is_empty() {
                return Ok(0);
            }
            value
                .parse()
                .map_err(|_| E::custom(format!("{value:?} is not a port number")))
        }
    }

    deserializer.deserialize_any(PortVisitor)
}

/// A TLS block (Centrifugo's `TLSConfig`). PEM fields take a file path, PEM text, or
/// base64-encoded PEM; reading the files is the binary's job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Tls {
    /// Turns TLS on. Default `false`.
    pub enabled: bool,
    /// Certificate (chain) PEM. Default `""`.
    pub cert_pem: String,
    /// Private key PEM (secret). Default `""`.
    pub key_pem: Secret,
    /// CA used to verify the server when this block configures a client. Default `""`.
    pub server_ca_pem: String,
    /// CA used to verify client certificates (enables mutual TLS). Default `""`.
    pub client_ca_pem: String,
    /// Skip verification of the peer (testing only). Default `false`.
    pub insecure_skip_verify: bool,
    /// Server name to verify / send as SNI. Default `""`.
    pub server_name: String,
}

/// `http_server.tls_autocert`: automatic certificates over ACME.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct TlsAutocert {
    /// Turns ACME on. Default `false`.
    pub enabled: bool,
    /// Host names certificates may be requested for. Default `[]`.
    pub host_whitelist: Vec<String>,
    /// Directory caching certificates. Default `""`.
    pub cache_dir: String,
    /// Contact e-mail for the ACME account. Default `""`.
    pub email: String,
    /// Server name used when the client sends no SNI. Default `""`.
    pub server_name: String,
    /// Serve the HTTP-01 challenge on `http_addr`. Default `false`.
    pub http: bool,
    /// Address of the HTTP-01 challenge listener. Default `":80"`.
    pub http_addr: String,
}

impl Default for TlsAutocert {
    fn default() -> Self {
        TlsAutocert {
            enabled: false,
            host_whitelist: Vec::new(),
            cache_dir: String::new(),
            email: String::new(),
            server_name: String::new(),
            http: false,
            http_addr: ":80".to_owned(),
        }
    }
}

/// `http_server.http3`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Http3 {
    /// Serve HTTP/3 (experimental; needs `http_server.tls`). Spindle's HTTP/3 endpoint serves
    /// WebTransport sessions only: it listens when `webtransport.enabled` is on too. Default
    /// `false`.
    pub enabled: bool,
}

/// `log`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Log {
    /// Minimum level: `none`, `trace`, `debug`, `info`, `warn`, `error`. Default `info`.
    pub level: LogLevel,
    /// Log file path; `""` (default) logs to stdout.
    pub file: String,
}

/// `http_api`: the server HTTP API (`/api/<method>`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct HttpApi {
    /// Turns the HTTP API off. Default `false` (on).
    pub disabled: bool,
    /// Path prefix. Default `"/api"`.
    pub handler_prefix: String,
    /// API key (secret); empty and not `insecure` = every request gets 401. Default `""`.
    pub key: Secret,
    /// `""` (errors in a 200 body, the default) or `"transport"` (HTTP status codes).
    pub error_mode: ErrorMode,
    /// Serve on the external (main) port instead of the internal one. Default `false`.
    pub external: bool,
    /// No API key check (development only). Default `false`.
    pub insecure: bool,
}

impl Default for HttpApi {
    fn default() -> Self {
        HttpApi {
            disabled: false,
            handler_prefix: "/api".to_owned(),
            key: Secret::default(),
            error_mode: ErrorMode::Body,
            external: false,
            insecure: false,
        }
    }
}

/// `grpc_api`: the server gRPC API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct GrpcApi {
    /// Turns the gRPC API on. Default `false`.
    pub enabled: bool,
    /// `""` (default) or `"transport"` (errors as gRPC status codes).
    pub error_mode: ErrorMode,
    /// Host to bind; `""` = all interfaces (default).
    pub address: String,
    /// Port. Default `10000`.
    pub port: u16,
    /// Required `authorization: apikey <key>` metadata when set (secret). Default `""`.
    pub key: Secret,
    /// TLS for the gRPC listener. Default: off.
    pub tls: Tls,
    /// Serve gRPC reflection. Default `false`.
    pub reflection: bool,
    /// Largest accepted request message in bytes; `0` (default) = 4 MiB, at most 256 MiB.
    pub max_receive_message_size: u32,
}

impl Default for GrpcApi {
    fn default() -> Self {
        GrpcApi {
            enabled: false,
            error_mode: ErrorMode::Body,
            address: String::new(),
            port: 10000,
            key: Secret::default(),
            tls: Tls::default(),
            reflection: false,
            max_receive_message_size: 0,
        }
    }
}

/// `admin`: the admin web UI and its API.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Admin {
    /// Serve the admin UI. Default `false`.
    pub enabled: bool,
    /// Path prefix; `""` (default) serves the UI at `/`.
    pub handler_prefix: String,
    /// Login password (secret). Default `""`.
    pub password: Secret,
    /// Key signing admin session tokens (secret). Default `""`.
    pub secret: Secret,
    /// No login (development only). Default `false`.
    pub insecure: bool,
    /// Serve the UI from this directory instead of the embedded copy. Default `""`.
    pub web_path: String,
    /// Proxy the UI to this address (UI development). Default `""`.
    pub web_proxy_address: String,
    /// Serve on the external (main) port. Default `false`.
    pub external: bool,
}

/// `prometheus`: metrics endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Prometheus {
    /// Serve metrics. Default `false`.
    pub enabled: bool,
    /// Path. Default `"/metrics"`.
    pub handler_prefix: String,
    /// Also measure HTTP handlers. Default `false`.
    pub instrument_http_handlers: bool,
    /// Histogram of recovered publication counts. Default `false`.
    pub recovered_publications_histogram: bool,
    /// Prometheus native histograms. Default `false`.
    pub native_histograms: bool,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            enabled: false,
            handler_prefix: "/metrics".to_owned(),
            instrument_http_handlers: false,
            recovered_publications_histogram: false,
            native_histograms: false,
        }
    }
}

/// Defines a section that only switches an internal endpoint on and places it.
macro_rules! endpoint_section {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[serde(default)]
        pub struct $name {
            /// Serve the endpoint. Default `false`.
            pub enabled: bool,
            #[doc = concat!("Path. Default `\"", $prefix, "\"`.")]
            pub handler_prefix: String,
        }

        impl Default for $name {
            fn default() -> Self {
                $name { enabled: false, handler_prefix: $prefix.to_owned() }
            }
        }
    };
}

endpoint_section!(
    /// `health`: `GET` returns `200 {}` while the delivery path is healthy.
    Health,
    "/health"
);
endpoint_section!(
    /// `swagger`: API documentation UI.
    Swagger,
    "/swagger"
);
endpoint_section!(
    /// `debug`: profiling endpoints.
    DebugEndpoint,
    "/debug/pprof"
);
endpoint_section!(
    /// `init`: `GET` returns `{}` (load-balancer health checks, HTTP/2 warm-up).
    Init,
    "/connection/init"
);

/// `node`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Node {
    /// Node name shown in `info`; `""` (default) = host name and port.
    pub name: String,
    /// How often node metrics are aggregated for `info`. Default `60s`.
    pub info_metrics_aggregate_interval: Duration,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            name: String::new(),
            info_metrics_aggregate_interval: Duration::from_secs(60),
        }
    }
}

/// `shutdown`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Shutdown {
    /// Longest graceful shutdown before exiting anyway. Default `30s`.
    pub timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            timeout: Duration::from_secs(30),
        }
    }
}

/// Top-level `shared_poll`: keys for shared-poll subscription tokens (needed by namespaces with
/// `subscription_type: shared_poll`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct SharedPollKeys {
    /// HMAC key verifying shared-poll tokens (secret). Default `""`.
    pub hmac_secret_key: Secret,
    /// Previous HMAC key accepted during rotation (secret). Default `""`.
    pub hmac_previous_secret_key: Secret,
    /// Unix seconds until which the previous key is accepted. Default `0`.
    pub hmac_previous_secret_key_valid_until: i64,
    /// Most shared-poll requests handled at once; `0` (default) = the built-in limit; at most
    /// 100,000.
    pub concurrency_limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_port_accepts_number_string_and_empty() {
        for (json, want) in [("9000", 9000), ("\"9000\"", 9000), ("\"\"", 0)] {
            let text = format!("{{\"internal_port\": {json}}}");
            let server: HttpServer = serde_json::from_str(&text).unwrap();
            assert_eq!(server.internal_port, want, "{json}");
        }
        assert!(serde_json::from_str::<HttpServer>("{\"internal_port\": 70000}").is_err());
        assert!(serde_json::from_str::<HttpServer>("{\"internal_port\": \"x\"}").is_err());
    }

    #[test]
    fn defaults_match_centrifugo() {
        let server = HttpServer::default();
        assert_eq!(server.port, 8000);
        assert_eq!(HttpApi::default().handler_prefix, "/api");
        assert_eq!(GrpcApi::default().port, 10000);
        assert_eq!(Shutdown::default().timeout, Duration::from_secs(30));
        assert_eq!(TlsAutocert::default().http_addr, ":80");
        let health: Health = serde_json::from_str("{\"enabled\": true}").unwrap();
        assert_eq!(health.handler_prefix, "/health");
        assert_eq!(Init::default().handler_prefix, "/connection/init");
        let tls: Tls = serde_json::from_str("{\"key_pem\": \"PRIVATE\"}").unwrap();
        assert!(!format!("{tls:?}").contains("PRIVATE"));
    }
}
