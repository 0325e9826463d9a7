//! Spindle's configuration: the tree, its loading rules and its role views. Pure and below the
//! hub (docs/architecture.md §2): every role's binary loads its configuration through this
//! crate, including the slim `spindle-edge`.
//!
//! Owns: [`Config`], one typed tree with Centrifugo v6 key names for every feature Spindle has
//! (so a Centrifugo v6 configuration for those features starts Spindle), plus the Spindle-only
//! `mesh` section; how that tree is assembled from its sources ([`load`]); and the rules a
//! tree must satisfy ([`Config::validate`]).
//!
//! Must not: do I/O. This crate never reads a file, the environment or the clock. The binary
//! reads the file and the variables and passes them in as [`ConfigSources`] (text,
//! `(name, value)` pairs, `(key path, value)` flag pairs).
//!
//! Precedence, low to high: built-in defaults (Centrifugo's), the file (JSON, YAML or TOML),
//! environment variables, command-line flags. The layers are merged as JSON trees (objects
//! merge key by key, anything else replaces), then deserialized once; keys nobody knows are
//! reported as [`ConfigWarning`]s with their full path, e.g. `channel.namespaces[1].histroy_size`
//! (errors in strict mode).
//!
//! Environment variables: `SPINDLE_` or `CENTRIFUGO_` followed by the key path in upper case with
//! `_` between keys, e.g. `SPINDLE_CLIENT_TOKEN_HMAC_SECRET_KEY`, `CENTRIFUGO_HTTP_SERVER_PORT`.
//! Since key names contain `_` themselves, the path is found by walking the known keys, longest
//! match first. When both prefixes name the same key, `SPINDLE_` wins. Values are typed by the
//! key they land on: booleans `true`/`false`/`1`/`0`, numbers, durations (`"25s"`), strings;
//! lists as JSON (`[...]`) or space-separated words; objects as JSON. Named lists
//! (`channel.namespaces`, `rpc.namespaces`, `proxies`) take a JSON array or space-separated
//! names, and options per entry: `SPINDLE_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE=100`.
//! `SPINDLE_CONFIG` and `SPINDLE_BLESS` are reserved for the binary and tests.
//!
//! Zero: where Centrifugo reads `0` as "unlimited" for a size or count with a non-zero default,
//! Spindle uses the default and warns (DESIGN §6: 0 never means unbounded). Each field's doc says
//! what `0` means for it.

mod channel;
mod client;
mod duration;
mod engine;
mod enums;
mod env;
mod error;
pub mod glob;
mod keyed;
mod load;
mod map;
mod mesh;
mod normalize;
mod not_served;
mod proxy;
mod role;
mod rpc;
mod schema;
mod secret;
mod server;
mod transport;
mod validate;
mod validate_channel;
mod validate_infra;
mod validate_proxy;
mod vars;

use serde::{Deserialize, Serialize};

pub use channel::{Channel, ChannelOptions, ChannelProxies, Namespace};
pub use client::{
    Client, ClientProxies, PersonalChannel, SubscriptionToken, Token, UniDisconnectTransform,
    UniDisconnectTransforms,
};
pub use duration::{Duration, InvalidDuration};
pub use engine::{
    Broker, Engine, Nats, NatsRawMode, Postgres, PostgresOutbox, PresenceManager, Redis, Toggle,
};
pub use enums::{
    BrokerType, DeltaType, EngineType, ErrorMode, LogLevel, MapClientKey, MapMode,
    PresenceManagerType, PublicationDataFormat, RecoveryMode, SharedPollMode, SubscriptionType,
};
pub use error::{ConfigError, ConfigProblem, ConfigWarning};
pub use load::{ConfigFile, ConfigFormat, ConfigSources, Loaded, load};
pub use map::{MapOptions, SharedPollOptions};
pub use mesh::{Mesh, MeshRepair, MeshTls};
pub use proxy::{
    DEFAULT_PROXY_NAME, NamedProxy, Proxy, ProxyGrpc, ProxyHttp, StatusToCodeTransform,
    SwitchedProxy, TransformDisconnect, TransformError,
};
pub use role::Role;
pub use rpc::{Rpc, RpcNamespace, RpcOptions, RpcPing};
pub use secret::Secret;
pub use server::{
    Admin, DebugEndpoint, GrpcApi, Health, Http3, HttpApi, HttpServer, Init, Log, Node, Prometheus,
    SharedPollKeys, Shutdown, Swagger, Tls, TlsAutocert,
};
pub use transport::{
    ConnectCodeToHttpResponse, ConnectCodeToHttpTransform, Emulation, HttpResponseTransform,
    HttpStream, Sse, UniGrpc, UniHttpStream, UniSse, UniWebSocket, WebSocket, WebTransport,
};

/// The whole configuration. Every section defaults to Centrifugo's defaults; see each field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct Config {
    /// Main HTTP listener (port 8000).
    pub http_server: HttpServer,
    /// Logging (level `info`, stdout).
    pub log: Log,
    /// Broker + presence in one (`memory`).
    pub engine: Engine,
    /// Broker configured apart from the engine (off).
    pub broker: Broker,
    /// Presence manager configured apart from the engine (off).
    pub presence_manager: PresenceManager,
    /// Keys of shared-poll tokens.
    pub shared_poll: SharedPollKeys,
    /// Client connections: tokens, limits, timers.
    pub client: Client,
    /// Channels and namespaces.
    pub channel: Channel,
    /// Client RPC routing.
    pub rpc: Rpc,
    /// Named proxies referenced by `*_proxy_name` (`[]`).
    pub proxies: Vec<NamedProxy>,
    /// Server HTTP API (on, `/api`).
    pub http_api: HttpApi,
    /// Server gRPC API (off, port 10000).
    pub grpc_api: GrpcApi,
    /// Asynchronous consumers (`[]`); kept as raw JSON objects until consumers are implemented
    /// (each needs a unique `name` matching `^[a-zA-Z0-9_]{2,}$` and a `type`).
    pub consumers: Vec<serde_json::Value>,
    /// Bidirectional WebSocket (on).
    pub websocket: WebSocket,
    /// SSE emulation (off).
    pub sse: Sse,
    /// HTTP-streaming emulation (off).
    pub http_stream: HttpStream,
    /// WebTransport (off).
    pub webtransport: WebTransport,
    /// Unidirectional SSE (off).
    pub uni_sse: UniSse,
    /// Unidirectional HTTP streaming (off).
    pub uni_http_stream: UniHttpStream,
    /// Unidirectional WebSocket (off).
    pub uni_websocket: UniWebSocket,
    /// Unidirectional gRPC (off, port 11000).
    pub uni_grpc: UniGrpc,
    /// `/emulation` endpoint of SSE / HTTP-stream clients.
    pub emulation: Emulation,
    /// Admin web UI (off).
    pub admin: Admin,
    /// Metrics endpoint (off).
    pub prometheus: Prometheus,
    /// Health endpoint (off).
    pub health: Health,
    /// Swagger UI (off).
    pub swagger: Swagger,
    /// Profiling endpoints (off).
    pub debug: DebugEndpoint,
    /// Connection init endpoint (off).
    pub init: Init,
    /// Node name and metrics aggregation.
    pub node: Node,
    /// Graceful shutdown (30s).
    pub shutdown: Shutdown,
    /// Write the process id to this file; `""` (default) = don't.
    pub pid_file: String,
    /// Turn on features not yet released in Centrifugo. Default `false`.
    pub enable_unreleased_features: bool,
    /// Spindle only: the edge ↔ core mesh.
    pub mesh: Mesh,
}

impl Config {
    /// Options of the namespace called `name`, if configured.
    pub fn namespace(&self, name: &str) -> Option<&ChannelOptions> {
        self.channel
            .namespaces
            .iter()
            .find(|ns| ns.name == name)
            .map(|ns| &ns.options)
    }

    /// Options for a channel's namespace: `None` (no namespace in the channel name) gives
    /// `channel.without_namespace`; `Some(name)` the namespace, or `None` when it does not exist
    /// (the caller answers 102 unknown channel).
    pub fn channel_options(&self, namespace: Option<&str>) -> Option<&ChannelOptions> {
        match namespace {
            None => Some(&self.channel.without_namespace),
            Some(name) => self.namespace(name),
        }
    }

    /// Options for an RPC method's namespace: `None` gives `rpc.without_namespace`, `Some(name)`
    /// the RPC namespace if it exists (otherwise the caller answers 104).
    pub fn rpc_options(&self, namespace: Option<&str>) -> Option<&RpcOptions> {
        match namespace {
            None => Some(&self.rpc.without_namespace),
            Some(name) => self
                .rpc
                .namespaces
                .iter()
                .find(|ns| ns.name == name)
                .map(|ns| &ns.options),
        }
    }

    /// The named proxy `name` from `proxies` (not the `default` ones, which depend on the kind).
    pub fn named_proxy(&self, name: &str) -> Option<&Proxy> {
        self.proxies
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.proxy)
    }

    /// Every proxy block of the configuration, configured or not: the kinds' defaults
    /// (`client.proxy.connect` / `.refresh`, `channel.proxy.subscribe` / `.publish` /
    /// `.sub_refresh` / `.map_publish` / `.map_remove` / `.shared_poll_refresh`, `rpc.proxy`),
    /// `channel.proxy.subscribe_stream`, then the named ones.
    pub fn all_proxies(&self) -> impl Iterator<Item = &Proxy> {
        [
            &self.client.proxy.connect.proxy,
            &self.client.proxy.refresh.proxy,
            &self.channel.proxy.subscribe,
            &self.channel.proxy.publish,
            &self.channel.proxy.sub_refresh,
            &self.channel.proxy.map_publish,
            &self.channel.proxy.map_remove,
            &self.channel.proxy.shared_poll_refresh,
            &self.channel.proxy.subscribe_stream,
            &self.rpc.proxy,
        ]
        .into_iter()
        .chain(self.proxies.iter().map(|p| &p.proxy))
    }
}

#[cfg(test)]
mod tests;
