//! The edge: where client connections live.
//!
//! Owns: the transports (WebSocket, HTTP-stream and SSE emulation, `uni_websocket`,
//! `uni_http_stream`, `uni_sse`, `uni_grpc`, WebTransport), the local hub (channel → local sessions) and its fan-out, per-connection writer
//! queues, and the uplink to a core over a mesh link. It drives the session state machine from
//! `spindle-hub` (`spindle_hub::session`), which decides; the edge acts.
//!
//! Must not: store history or presence, or talk to a broker: those belong to the core and are
//! reached by messages over the link.
//!
//! Layout:
//! - [`Edge`]: built once per node; [`Edge::router`] serves the WebSocket endpoint,
//!   [`Edge::run_inbox`] applies what the core sends, [`Edge::shutdown`] closes everyone.
//! - `websocket`: the axum handler (format choice, size limit) adapting the socket to
//!   [`socket::Incoming`] / [`socket::Outgoing`], and `admit`, the checks before any WebSocket
//!   upgrade (origin, admission), shared with `uni_websocket`.
//! - `emulation`: HTTP-streaming and SSE (a streamed response fed by the writer) and the
//!   `/emulation` endpoint feeding later commands into a session.
//! - `unidirectional`: `uni_http_stream`, `uni_sse`, `uni_websocket` adapters (the connection
//!   task's uni mode does the protocol differences).
//! - `uni_grpc`: the `CentrifugoUniStream/Consume` gRPC service ([`Edge::serve_uni_grpc`], its
//!   own port), the same uni mode with Protobuf pushes.
//! - `webtransport`: WebTransport over HTTP/3 ([`Edge::serve_webtransport`], UDP on the main
//!   port): one bidirectional stream cut into messages for the same connection task.
//! - `connection`: one task per connection: frames → commands → session → replies, timers,
//!   control commands; generic over any `Stream`/`Sink` so tests need no socket.
//! - [`writer`]: the bounded byte queue ([`writer::Outbox`], 3008 on overflow) and the task
//!   draining it into one frame per batch.
//! - [`local_hub`]: connections by client and user, subscriptions by channel, fan-out encoding
//!   each event once per format.
//! - `inbox`: `Down` messages → fan-out, control, survey answers.
//! - [`subscription`]: one local subscription's delivery state (buffering while positioned or
//!   recovered, tracked offset, delta base, tags filter) and the shared encodings of an event.
//! - `deadline`: how long each kind of request to the core may take.
//! - `interest`: the interest set told to the core (`Up::Interest`, numbered, acknowledged with
//!   stream positions) and the wait for a channel's interest to be in effect.
//! - `presence`: the periodic presence refresh of local connections, batched per channel.
//! - [`role`]: the edge role as a process runs it (`spindle edge`, `spindle-edge`): listeners,
//!   the link to a core and its re-dialling, `/health`, `/metrics`.
//! - [`origins`]: `client.allowed_origins` (globs from `spindle_hub::glob`).
//! - [`clock`]: [`clock::SystemNow`], the real clock for the pure session.
//! - `limits`: `client.connection_rate_limit` as a token bucket; with `client.connection_limit`
//!   and shutdown it makes `Shared::refusal`, the one admission check every transport calls
//!   before accepting a connection (HTTP 503; WebTransport 429; uni_grpc `UNAVAILABLE`).

pub mod clock;
pub mod handle;
pub mod local_hub;
pub mod origins;
pub mod role;
pub mod socket;
pub mod writer;
pub mod ws;

pub mod subscription;

mod connection;
mod control;
mod deadline;
mod emulation;
mod inbox;
mod interest;
mod limits;
mod presence;
mod repair;
mod shared_poll;
mod streams;
mod uni_grpc;
mod unidirectional;
mod websocket;
mod webtransport;

use crate::handle::ConnectionHandle;
use crate::local_hub::LocalHub;
use crate::origins::OriginPolicy;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use spindle_hub::codes::Disconnect;
use spindle_hub::config::Config;
use spindle_hub::session::SessionRules;
use spindle_mesh::{EdgeInbox, EdgeLink};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use clock::SystemNow;
pub use handle::ClientId;
pub use webtransport::WebTransportError;
/// The rustls of the WebTransport endpoint (certificate and key types).
pub use wtransport::tls::rustls;

/// WebSocket read buffer when `websocket.read_buffer_size` is 0.
const DEFAULT_WS_READ_BUFFER: usize = 4096;

/// Who this node is: its id (a UUIDv4 made at start) and its name (config or host name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub uid: String,
    pub name: String,
}

/// Counts of one edge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeStats {
    /// Open connections, connected or not yet.
    pub connections: usize,
    /// Connections that completed connect.
    pub clients: usize,
    /// Distinct users among them.
    pub users: usize,
    /// Channels with at least one local subscriber.
    pub channels: usize,
    /// Local subscriptions in all.
    pub subscriptions: usize,
    /// Core events fanned out to at least one local subscriber.
    pub events: u64,
    /// Encodes those events cost: at most one per format per event.
    pub encodes: u64,
    /// Gap repairs started (one per channel and gap).
    pub repairs: u64,
    /// Publications fanned out from core history by repairs.
    pub repaired_publications: u64,
    /// Times a channel's subscribers were signalled a gap nothing could repair.
    pub signalled_channels: u64,
    /// Repairs that ended with their channel live again; their total and longest time.
    pub repaired_channels: u64,
    pub repair_time: Duration,
    pub longest_repair: Duration,
}

/// The client transport a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    HttpStream,
    Sse,
    UniWebSocket,
    UniHttpStream,
    UniSse,
    UniGrpc,
    WebTransport,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::HttpStream => "http_stream",
            Transport::Sse => "sse",
            Transport::UniWebSocket => "uni_websocket",
            Transport::UniHttpStream => "uni_http_stream",
            Transport::UniSse => "uni_sse",
            Transport::UniGrpc => "uni_grpc",
            Transport::WebTransport => "webtransport",
        }
    }
}

/// The edge of one node. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Edge {
    shared: Arc<Shared>,
}

/// Sizes and durations read once from the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub message_size: usize,
    pub read_buffer_size: usize,
    pub queue_max_size: usize,
    pub write_timeout: Duration,
    pub connection_limit: usize,
    /// Native-ping mode: interval and read deadline extension.
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    /// `client.history_max_publication_limit`.
    pub history_max: usize,
    /// `client.recovery_max_publication_limit`.
    pub recovery_max: usize,
    /// Publications a subscription may buffer while positioned or recovered, beyond
    /// `recovery_max` (its bytes are bounded by `queue_max_size`).
    pub buffer_publications: usize,
    /// `client.channel_position_check_delay`.
    pub position_check_delay: Duration,
    /// `client.presence_update_interval`.
    pub presence_interval: Duration,
    /// `client.channel_position_max_time_lag` (zero = off): a publication reaching the edge
    /// later than this after it was published loses positioned subscribers' positions.
    pub max_time_lag: Duration,
    /// How long a proxy request to the core may take ([`deadline::proxy`]).
    pub proxy_deadline: Duration,
    /// `mesh.repair`.
    pub repair: repair::RepairLimits,
    /// `mesh.unlinked_grace`.
    pub unlinked_grace: Duration,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Arc<Config>,
    pub rules: SessionRules,
    /// The link to the core now (replaced when the edge links again after losing it).
    link: RwLock<EdgeLink>,
    /// Whether a link to a core is up: without one, new connections are refused and `/health`
    /// says so.
    pub linked: AtomicBool,
    pub node: NodeIdentity,
    pub hub: LocalHub,
    /// What the core has been told of the channels with local subscribers.
    pub interest: interest::InterestTable,
    /// Where the edge is in each channel's stream, and the repairs running.
    pub streams: streams::Streams,
    /// `mesh.repair.concurrency` permits.
    pub repair_slots: tokio::sync::Semaphore,
    pub repair_counters: repair::RepairCounters,
    /// Links made so far: a grace timer started at a link loss acts only if no link came
    /// after it.
    pub links: std::sync::atomic::AtomicU64,
    pub origins: OriginPolicy,
    pub limits: Limits,
    pub started: Instant,
    pub shutting_down: AtomicBool,
    /// Connection tasks still running (their close frames possibly not written yet).
    pub live_tasks: AtomicUsize,
    /// Connections of emulation transports by session id, for `/emulation`.
    pub emulated: Mutex<HashMap<String, ConnectionHandle>>,
    /// `client.connection_rate_limit`.
    pub connection_rate: limits::ConnectionRate,
    /// Shared-poll keys tracked here, their values, what the core was told.
    pub shared_poll: Arc<shared_poll::SharedPollKeys>,
}

impl Shared {
    /// The link to the core now.
    pub(crate) fn link(&self) -> EdgeLink {
        self.link
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// HTTP refusal of a new connection, if one is due (shutting down, node connection limit,
    /// connection rate limit): 503 with the reason as body.
    pub(crate) fn admission(&self) -> Option<Response> {
        self.refusal()
            .map(|reason| (StatusCode::SERVICE_UNAVAILABLE, reason).into_response())
    }

    /// Why a new connection is refused, if it is: shutting down, `client.connection_limit`
    /// reached, or `client.connection_rate_limit` exceeded. Call it once per new connection,
    /// just before accepting it: an admitted connection uses up one unit of the rate.
    pub(crate) fn refusal(&self) -> Option<&'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Some("shutting down");
        }
        if !self.linked.load(Ordering::Acquire) {
            return Some("no core link");
        }
        let limit = self.limits.connection_limit;
        if limit > 0 && self.hub.connection_count() >= limit {
            return Some("connection limit");
        }
        if !self.connection_rate.admit(Instant::now()) {
            return Some("connection rate limit");
        }
        None
    }

    pub(crate) fn emulation_open(&self, session: String, handle: ConnectionHandle) {
        self.emulated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session, handle);
    }

    pub(crate) fn emulation_closed(&self, session: &str) {
        self.emulated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session);
    }

    pub(crate) fn emulation_target(&self, session: &str) -> Option<ConnectionHandle> {
        self.emulated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session)
            .cloned()
    }
}

/// The PEM certificate chain and private key `uni_grpc` serves TLS with.
#[derive(Debug, Clone)]
pub struct UniGrpcTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Edge {
    /// An edge for `config`, deciding with `rules`, talking to its core over `link`.
    ///
    /// [`Edge::run_inbox`] must be running for publications and API commands to arrive.
    pub fn new(
        config: Arc<Config>,
        rules: SessionRules,
        link: EdgeLink,
        node: NodeIdentity,
    ) -> Edge {
        let websocket = &config.websocket;
        let client = &config.client;
        // Loading already replaced zeros with these (config/src/normalize.rs); a tree built
        // by hand falls back to the same defaults, defined once in the config crate.
        let defaults = Config::default();
        let message_size = match websocket.message_size_limit {
            0 => spindle_proto::DEFAULT_MAX_FRAME_SIZE,
            limit => limit as usize,
        };
        let limits = Limits {
            message_size,
            // `websocket.read_buffer_size: 0` means the documented built-in 4096, not
            // tungstenite's 128 KiB, which made an idle connection cost ~140 KiB of RSS.
            read_buffer_size: match websocket.read_buffer_size {
                0 => DEFAULT_WS_READ_BUFFER,
                size => size as usize,
            },
            queue_max_size: positive(
                client.queue_max_size,
                defaults.client.queue_max_size as usize,
            ),
            write_timeout: nonzero(
                websocket.write_timeout.as_std(),
                defaults.websocket.write_timeout.as_std(),
            ),
            connection_limit: client.connection_limit as usize,
            ping_interval: nonzero(
                client.ping_interval.as_std(),
                defaults.client.ping_interval.as_std(),
            ),
            pong_timeout: nonzero(
                client.pong_timeout.as_std(),
                defaults.client.pong_timeout.as_std(),
            ),
            history_max: positive(
                client.history_max_publication_limit,
                defaults.client.history_max_publication_limit as usize,
            ),
            recovery_max: positive(
                client.recovery_max_publication_limit,
                defaults.client.recovery_max_publication_limit as usize,
            ),
            buffer_publications: BUFFER_PUBLICATIONS,
            position_check_delay: nonzero(
                client.channel_position_check_delay.as_std(),
                defaults.client.channel_position_check_delay.as_std(),
            ),
            presence_interval: nonzero(
                client.presence_update_interval.as_std(),
                defaults.client.presence_update_interval.as_std(),
            ),
            max_time_lag: client.channel_position_max_time_lag.as_std(),
            proxy_deadline: deadline::proxy(&config),
            repair: repair::RepairLimits {
                max_publications: positive(
                    config.mesh.repair.max_publications,
                    defaults.mesh.repair.max_publications as usize,
                ),
                timeout: nonzero(
                    config.mesh.repair.timeout.as_std(),
                    defaults.mesh.repair.timeout.as_std(),
                ),
            },
            unlinked_grace: nonzero(
                config.mesh.unlinked_grace.as_std(),
                defaults.mesh.unlinked_grace.as_std(),
            ),
        };
        let streams = streams::Streams::new(streams::RepairBounds {
            publications: limits.repair.max_publications,
            held_bytes: limits.queue_max_size,
            total_bytes: HELD_TOTAL_BYTES,
        });
        let repair_slots = tokio::sync::Semaphore::new(positive(
            config.mesh.repair.concurrency,
            defaults.mesh.repair.concurrency as usize,
        ));
        let origins = OriginPolicy::lenient(&client.allowed_origins);
        let connection_rate =
            limits::ConnectionRate::new(client.connection_rate_limit, Instant::now());
        Edge {
            shared: Arc::new(Shared {
                config,
                rules,
                link: RwLock::new(link),
                linked: AtomicBool::new(true),
                node,
                hub: LocalHub::with_max_time_lag(limits.max_time_lag),
                interest: interest::InterestTable::default(),
                streams,
                repair_slots,
                repair_counters: repair::RepairCounters::default(),
                links: std::sync::atomic::AtomicU64::new(0),
                origins,
                limits,
                started: Instant::now(),
                shutting_down: AtomicBool::new(false),
                live_tasks: AtomicUsize::new(0),
                emulated: Mutex::new(HashMap::new()),
                connection_rate,
                shared_poll: Arc::default(),
            }),
        }
    }

    /// An edge with no link yet (`spindle edge` before its first core answers): it refuses
    /// connections (503) and reports so on `/health` until [`Edge::run_link`] gives it one.
    pub fn unlinked(config: Arc<Config>, rules: SessionRules, node: NodeIdentity) -> Edge {
        // A link whose core end is gone: every use of it fails at once.
        let ((link, _), _) = spindle_mesh::in_process(1);
        let edge = Edge::new(config, rules, link, node);
        edge.shared.linked.store(false, Ordering::Release);
        edge
    }

    /// Applies what the core sends until the link closes. Spawn it once per link.
    /// Also sends the interest changes of local subscriptions, refreshes the presence of
    /// local connections every `client.presence_update_interval` and checks idle channels'
    /// positions every `client.channel_position_check_delay`, while the link is up.
    pub async fn run_inbox(&self, mut inbox: EdgeInbox) {
        let shared = &self.shared;
        let mut lanes: tokio::task::JoinSet<()> = inbox
            .take_lanes()
            .into_iter()
            .map(|lane| inbox::drain_lane(Arc::clone(shared), lane))
            .collect();
        let link = shared.link();
        tokio::select! {
            () = inbox::run(shared, inbox) => {}
            _ = interest::run(&shared.interest, &shared.hub, &shared.streams, &link) => {}
            () = presence::refresh(shared) => {}
            () = repair::check_idle(Arc::clone(shared)) => {}
        }
        shared.interest.close();
        // What the lanes still hold is fanned out before the next link's lanes start, so a
        // channel's events never come from two links at once (its order would not hold).
        let drained = tokio::time::timeout(LANE_DRAIN, async {
            while lanes.join_next().await.is_some() {}
        });
        if drained.await.is_err() {
            tracing::warn!("event lanes not drained within {LANE_DRAIN:?} after the link closed");
            lanes.abort_all();
        }
    }

    /// Serves a (new) link to a core until it is lost. Client connections stay open across
    /// a loss: the next link (to this core or another) is told the whole interest set as one
    /// snapshot, and every channel is repaired from core history or, where nothing can repair
    /// it, signalled to its subscribers (channels without history at once). While unlinked,
    /// new connections are refused (503) and `/health` says why; past `mesh.unlinked_grace`
    /// without a link the open connections are closed with 3010 (insufficient state), so
    /// their SDKs reconnect to an edge that has a core.
    pub async fn run_link(&self, link: EdgeLink, inbox: EdgeInbox) {
        let shared = &self.shared;
        *shared.link.write().unwrap_or_else(PoisonError::into_inner) = link;
        let generation = shared.links.fetch_add(1, Ordering::AcqRel) + 1;
        shared.interest.reopen(&shared.hub);
        shared.linked.store(true, Ordering::Release);
        self.run_inbox(inbox).await;
        shared.linked.store(false, Ordering::Release);
        repair::link_lost(shared);
        let grace = shared.limits.unlinked_grace;
        let edge = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let shared = &edge.shared;
            if shared.linked.load(Ordering::Acquire)
                || shared.links.load(Ordering::Acquire) != generation
            {
                return;
            }
            tracing::warn!(
                ?grace,
                "no core link within mesh.unlinked_grace: client connections closed (3010)"
            );
            for connection in shared.hub.all_connections() {
                connection.close(Disconnect::INSUFFICIENT_STATE);
            }
        });
    }

    /// `Ok` while a link to a core is up; the reason otherwise.
    pub fn health(&self) -> Result<(), String> {
        if self.shared.linked.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("no live link to a core".to_owned())
        }
    }

    /// The client endpoints, each at its configured `handler_prefix`: the WebSocket (unless
    /// `websocket.disabled`), HTTP-streaming and SSE emulation with `/emulation` (when
    /// `http_stream.enabled` / `sse.enabled`), the uni transports (their `enabled`) and
    /// `/connection/init` (`init.enabled`).
    pub fn router(&self) -> Router {
        let config = &self.shared.config;
        let mut router = Router::new();
        if !config.websocket.disabled {
            router = router.route(
                &path_of(&config.websocket.handler_prefix),
                axum::routing::any(websocket::handle),
            );
        }
        if config.http_stream.enabled {
            router = router.route(
                &path_of(&config.http_stream.handler_prefix),
                axum::routing::any(emulation::http_stream),
            );
        }
        if config.sse.enabled {
            router = router.route(
                &path_of(&config.sse.handler_prefix),
                axum::routing::any(emulation::sse),
            );
        }
        if config.http_stream.enabled || config.sse.enabled {
            router = router.route(
                &path_of(&config.emulation.handler_prefix),
                axum::routing::any(emulation::emulation),
            );
        }
        if config.uni_websocket.enabled {
            router = router.route(
                &path_of(&config.uni_websocket.handler_prefix),
                axum::routing::any(unidirectional::websocket),
            );
        }
        if config.uni_http_stream.enabled {
            router = router.route(
                &path_of(&config.uni_http_stream.handler_prefix),
                axum::routing::any(unidirectional::http_stream),
            );
        }
        if config.uni_sse.enabled {
            router = router.route(
                &path_of(&config.uni_sse.handler_prefix),
                axum::routing::any(unidirectional::sse),
            );
        }
        if config.init.enabled {
            router = router.route(
                &path_of(&config.init.handler_prefix),
                axum::routing::get(|| async {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        "{}",
                    )
                }),
            );
        }
        router.with_state(Arc::clone(&self.shared))
    }

    /// Serves `uni_grpc` (the `CentrifugoUniStream` gRPC service) on `listener`, over TLS when
    /// `tls` is given (`uni_grpc.tls`), until `shutdown` resolves and the open calls have ended. Call [`Edge::shutdown`] first (or
    /// with `shutdown`) so that every stream ends with its disconnect push.
    pub async fn serve_uni_grpc(
        &self,
        listener: tokio::net::TcpListener,
        tls: Option<UniGrpcTls>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            let identity = tonic::transport::Identity::from_pem(tls.cert_pem, tls.key_pem);
            server =
                server.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
        }
        server
            .add_service(uni_grpc::service(Arc::clone(&self.shared)))
            .serve_with_incoming_shutdown(
                // Without Nagle's algorithm, as the HTTP listener: pushes are small and urgent.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await
    }

    /// Serves WebTransport (`webtransport.handler_prefix`, HTTP/3) on the UDP `socket` with the
    /// certificate chain and key of `http_server.tls`, until `shutdown` resolves. Call
    /// [`Edge::shutdown`] first (or with `shutdown`) so that every session ends with its
    /// disconnect push.
    pub async fn serve_webtransport(
        &self,
        socket: std::net::UdpSocket,
        certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<(), WebTransportError> {
        let endpoint = webtransport::endpoint(socket, certificates, key)?;
        webtransport::serve(Arc::clone(&self.shared), endpoint, shutdown).await;
        Ok(())
    }

    /// Refuses new connections and closes every open one with 3001 `shutdown`.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        for connection in self.shared.hub.all_connections() {
            connection.close(Disconnect::SHUTDOWN);
        }
    }

    /// Waits until every connection task has ended (after [`Edge::shutdown`]: close frames
    /// written and the clients' closes received, or their 5 s wait over), at most `limit`.
    /// Returns whether they all did. Call it before leaving the runtime, so the 3001 close
    /// frames reach the clients.
    pub async fn wait_drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.shared.live_tasks.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    pub fn stats(&self) -> EdgeStats {
        let counts = self.shared.hub.counts();
        let (events, encodes) = self.shared.hub.fanout_counters();
        EdgeStats {
            connections: counts.connections,
            clients: counts.clients,
            users: counts.users,
            channels: counts.channels,
            subscriptions: counts.subscriptions,
            events,
            encodes,
            repairs: self.shared.repair_counters.started.load(Ordering::Relaxed),
            repaired_publications: self
                .shared
                .repair_counters
                .publications
                .load(Ordering::Relaxed),
            signalled_channels: self
                .shared
                .repair_counters
                .signalled
                .load(Ordering::Relaxed),
            repaired_channels: self.shared.repair_counters.repaired.load(Ordering::Relaxed),
            repair_time: Duration::from_micros(
                self.shared
                    .repair_counters
                    .repair_micros
                    .load(Ordering::Relaxed),
            ),
            longest_repair: Duration::from_micros(
                self.shared
                    .repair_counters
                    .longest_micros
                    .load(Ordering::Relaxed),
            ),
        }
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.shared.node
    }
}

/// How long a closed link's event lanes may take to fan out what they still hold.
const LANE_DRAIN: Duration = Duration::from_secs(2);

/// Bytes of live events all running repairs may hold together; beyond it they are dropped and
/// read back from history (costing a history read, never a publication).
const HELD_TOTAL_BYTES: usize = 64 << 20;

/// Publications a subscribing connection may have buffered beyond its recovery limit.
const BUFFER_PUBLICATIONS: usize = 4096;

/// A configured path with its leading `/`.
pub(crate) fn path_of(prefix: &str) -> String {
    if prefix.starts_with('/') {
        prefix.to_owned()
    } else {
        format!("/{prefix}")
    }
}

fn positive(value: u32, default: usize) -> usize {
    if value == 0 { default } else { value as usize }
}

fn nonzero(value: Duration, default: Duration) -> Duration {
    if value.is_zero() { default } else { value }
}
