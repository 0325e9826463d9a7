//! The node: this core's identity, its broker, and the edges attached to it.

mod cluster;
mod edges;
mod emulation;
mod history;
mod maps;
mod presence;
mod publish;
mod serve;
mod shared_poll;
mod stream_proxy;
mod survey;
mod sweep;

pub use cluster::{NODE_INFO_EXPIRY, NODE_INFO_INTERVAL, REMOTE_SURVEY_TIMEOUT};
pub use edges::{CONTROL_SEND_TIMEOUT, ControlError, EDGE_QUEUE_CAPACITY, EdgeCounts};
pub use emulation::{EMULATION_TIMEOUT, EmulationError};
pub use history::HistoryError;
pub use maps::{MapCallError, MapPublishOptions, MapStateRead};
pub use presence::PresenceError;
pub use publish::PublishError;
pub use shared_poll::SharedPollError;
pub use survey::{EdgeInfo, NodeInfo, SURVEY_TIMEOUT};
pub use sweep::{SWEEP_INTERVAL, SweepReport};

use crate::broker::{
    AnyBroker, Broker, MemoryBroker, NatsBroker, NatsOptions, PostgresBroker, PostgresOptions,
    Publication, RedisBroker, RedisConnection, RedisOptions, StreamPosition,
};
use crate::clock::{Clock, SystemClock};
use crate::maps::{AnyMapBroker, MemoryMapBroker, RedisMapBroker};
use crate::presence::{
    AnyPresenceManager, MemoryPresenceManager, PRESENCE_TTL, RedisPresenceManager,
};
pub(crate) use edges::Edges;
use spindle_hub::channel::ChannelResolver;
use spindle_hub::config::Config;
use spindle_hub::config::{BrokerType, EngineType, PresenceManagerType};
use spindle_mesh::{CoreInbox, CoreLink, mesh};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::task::JoinHandle;

/// The server version reported to clients and in `info`: `"<crate version> spindle"`.
pub use spindle_hub::VERSION;

/// Who this node is, as `info` and the mesh report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// A UUIDv4 made at start.
    pub uid: String,
    /// `node.name`, or `<host name>_<port>`.
    pub name: String,
    /// [`VERSION`].
    pub version: String,
}

impl NodeIdentity {
    /// A fresh identity named by `node.name`, or by the host name and `port` when unset (as
    /// Centrifugo names nodes). `port` is the HTTP port actually bound, so nodes started with
    /// `-p 0` on one host get distinct names.
    pub fn new(config: &Config, port: u16) -> NodeIdentity {
        let name = match config.node.name.as_str() {
            "" => format!("{}_{port}", host_name()),
            name => name.to_owned(),
        };
        NodeIdentity::named(name)
    }

    /// A fresh identity with a new uid and the given name.
    pub fn named(name: impl Into<String>) -> NodeIdentity {
        NodeIdentity {
            uid: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            version: VERSION.to_owned(),
        }
    }
}

/// Map storage in this core's memory, for a broker without map storage of its own (NATS):
/// said at start when a namespace is a map, since cores then do not share maps.
fn memory_maps(config: &Config, edges: &Arc<Edges>) -> AnyMapBroker {
    let mut namespaces = config.channel.namespaces.iter().map(|n| &n.options);
    if config.channel.without_namespace.is_map() || namespaces.any(|o| o.is_map()) {
        tracing::warn!(
            "map channels are kept in this core's memory with the NATS broker: several cores \
             do not share them (Redis and PostgreSQL share them)"
        );
    }
    AnyMapBroker::Memory(MemoryMapBroker::new(edges.clone(), Arc::new(SystemClock)))
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "spindle".to_owned())
}

/// The name of an attached edge, for logs and replacement (attaching an id again replaces the
/// earlier edge of that id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeId(Arc<str>);

impl EdgeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for EdgeId {
    fn from(id: &str) -> Self {
        EdgeId(id.into())
    }
}

impl From<String> for EdgeId {
    fn from(id: String) -> Self {
        EdgeId(id.into())
    }
}

/// The node could not be built from its configuration.
#[derive(Debug, Error)]
pub enum NodeError {
    /// A namespace's `channel_regex` does not compile (config validation reports it first).
    #[error("channel_regex: {0}")]
    ChannelRegex(String),
    /// The configured engine cannot be used: Redis unreachable, or `engine.type: redis` given
    /// to the synchronous [`Node::new`] (use [`Node::connect`]).
    #[error("engine: {0}")]
    Engine(String),
    /// A TLS block towards the backend cannot be used (bad PEM, key not fitting).
    #[error("{0}")]
    Tls(String),
}

/// A snapshot of the node's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeStats {
    /// Publications accepted by the broker.
    pub publications: u64,
    /// Events queued to edges (one per edge with interest per publication).
    pub deliveries: u64,
    /// Publications not published: a repeated idempotency key or a stale version.
    pub suppressed: u64,
    /// Events dropped because an edge's queue was full.
    pub dropped_events: u64,
    /// Control commands queued to edges (one per edge per command).
    pub controls: u64,
    /// Control commands an edge did not accept within [`CONTROL_SEND_TIMEOUT`].
    pub dropped_controls: u64,
    /// Edges attached now.
    pub edges: usize,
    /// Channels with at least one edge with interest now.
    pub channels: usize,
    /// Channel streams held by the broker now.
    pub streams: usize,
    /// Presence entries held now, over all channels.
    pub presence_entries: usize,
}

/// A core node. Cheap to clone: every clone is the same node.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    identity: NodeIdentity,
    resolver: ChannelResolver,
    edges: Arc<Edges>,
    broker: AnyBroker,
    /// Map channels (see [`crate::maps`]).
    maps: crate::maps::AnyMapBroker,
    presence: AnyPresenceManager,
    /// Set once the periodic sweep task runs.
    sweeping: AtomicBool,
    /// Serializes interest changes with the broker subscriptions they cause, so a channel's
    /// subscribe and unsubscribe reach the broker in the order the interest changed.
    interest_gate: tokio::sync::Mutex<()>,
    started: Instant,
    next_survey_id: AtomicU64,
    /// The other nodes on the broker (empty for memory).
    cluster: cluster::Cluster,
    /// Proxies to the application backend (edges ask through the mesh).
    proxies: crate::proxy::Proxies,
    /// JWK sets for edges verifying tokens (`jwks_public_endpoint`).
    jwks: crate::jwks::JwksCache,
    /// Shared-poll channels: tracked keys and their pollers (see [`crate::shared_poll`]).
    shared_polls: crate::shared_poll::SharedPolls,
    /// Subscription streams open for edges' clients.
    open_streams: stream_proxy::OpenStreams,
}

impl Node {
    /// A node with the memory broker and presence manager (the only engines so far) and no
    /// edges. Inside a Tokio runtime it starts its expiry sweep at once; otherwise with the
    /// first [`Node::attach_edge`] or [`Node::api_router`].
    pub fn new(config: Arc<Config>, identity: NodeIdentity) -> Result<Node, NodeError> {
        Node::with_clock(config, identity, Arc::new(SystemClock))
    }

    /// [`Node::new`] taking time from `clock` (tests move a manual clock to expire history and
    /// presence without sleeping).
    pub fn with_clock(
        config: Arc<Config>,
        identity: NodeIdentity,
        clock: Arc<dyn Clock>,
    ) -> Result<Node, NodeError> {
        if config.engine.kind != EngineType::Memory {
            return Err(NodeError::Engine(format!(
                "engine.type {:?} needs Node::connect",
                config.engine.kind
            )));
        }
        let edges = Arc::new(Edges::default());
        let broker = AnyBroker::Memory(MemoryBroker::new(edges.clone(), clock.clone()));
        let presence = AnyPresenceManager::Memory(MemoryPresenceManager::new(
            clock.clone(),
            presence_ttl(&config),
        ));
        let maps = AnyMapBroker::Memory(MemoryMapBroker::new(edges.clone(), clock));
        Node::assemble(config, identity, edges, broker, presence, maps)
    }

    /// A node on the engine `engine.type` names: memory, or Redis (`engine.redis.address`
    /// sharded client-side, `cluster_address`, `sentinel_address`; `engine.redis.prefix`).
    /// Fails with a clear
    /// [`NodeError::Engine`] when Redis cannot be reached. Must be called inside a Tokio
    /// runtime.
    pub async fn connect(config: Arc<Config>, identity: NodeIdentity) -> Result<Node, NodeError> {
        if config.broker.enabled {
            match config.broker.kind {
                BrokerType::Nats => return Node::connect_nats(config, identity).await,
                BrokerType::Postgres => return Node::connect_postgres(config, identity).await,
                BrokerType::Redis => {
                    let options = RedisOptions::from_config(&config.broker.redis)
                        .map_err(|error| NodeError::Engine(error.to_string()))?;
                    return Node::connect_redis(config, identity, options).await;
                }
                BrokerType::Memory => {}
                other => {
                    return Err(NodeError::Engine(format!(
                        "broker.type {other:?} is not supported yet (use engine.type, or \
                         broker.type nats)"
                    )));
                }
            }
        }
        if config.engine.kind == EngineType::Memory {
            return Node::new(config, identity);
        }
        let options = RedisOptions::from_config(&config.engine.redis)
            .map_err(|error| NodeError::Engine(error.to_string()))?;
        Node::connect_redis(config, identity, options).await
    }

    /// A node whose broker is Redis: `engine.type: redis` (`engine.redis`) or
    /// `broker.type: redis` (`broker.redis`). Presence comes from the `presence_manager` section
    /// when it is enabled, else from this Redis when it is the engine, else as for the other
    /// split setups (`engine.type: redis` elsewhere, or memory).
    async fn connect_redis(
        config: Arc<Config>,
        identity: NodeIdentity,
        options: RedisOptions,
    ) -> Result<Node, NodeError> {
        let engine = |error: crate::broker::BrokerError| NodeError::Engine(error.to_string());
        let connection = RedisConnection::connect(&options).await.map_err(engine)?;
        let edges = Arc::new(Edges::default());
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(cluster::CONTROL_QUEUE_CAPACITY);
        let broker = RedisBroker::with_control(connection.clone(), edges.clone(), Some(control_tx))
            .await
            .map_err(engine)?;
        let broker_section = config.broker.enabled && config.broker.kind == BrokerType::Redis;
        let maps = AnyMapBroker::Redis(Box::new(RedisMapBroker::new(connection.clone())));
        let presence = if config.presence_manager.enabled || broker_section {
            split_presence(&config).await?
        } else {
            AnyPresenceManager::Redis(Box::new(RedisPresenceManager::new(
                connection,
                presence_ttl(&config),
            )))
        };
        let node = Node::assemble(
            config,
            identity,
            edges,
            AnyBroker::Redis(Box::new(broker)),
            presence,
            maps,
        )?;
        node.start_cluster(control_rx);
        Ok(node)
    }

    /// A node on NATS PUB/SUB (`broker.enabled`, `broker.type: nats`, `broker.nats.url` and
    /// `.prefix`). NATS keeps no history: history reads fail and publications get no offset,
    /// as Centrifugo's NATS broker. Presence lives in Redis when `presence_manager.type` (when
    /// enabled) or else `engine.type` says `redis`, in memory otherwise.
    async fn connect_nats(config: Arc<Config>, identity: NodeIdentity) -> Result<Node, NodeError> {
        let engine = |error: crate::broker::BrokerError| NodeError::Engine(error.to_string());
        let channel = &config.channel;
        let with_history = std::iter::once(("", &channel.without_namespace))
            .chain(
                channel
                    .namespaces
                    .iter()
                    .map(|n| (n.name.as_str(), &n.options)),
            )
            .filter(|(_, options)| options.history_size > 0)
            .map(|(name, _)| name.to_owned())
            .collect::<Vec<_>>();
        if !with_history.is_empty() {
            tracing::warn!(
                namespaces = ?with_history,
                "broker.type nats keeps no history: these namespaces publish without offsets"
            );
        }
        let presence = split_presence(&config).await?;
        let edges = Arc::new(Edges::default());
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(cluster::CONTROL_QUEUE_CAPACITY);
        let options = NatsOptions::from_config(&config.broker.nats);
        let broker = NatsBroker::connect(&options, edges.clone(), Some(control_tx))
            .await
            .map_err(engine)?;
        let maps = memory_maps(&config, &edges);
        let node = Node::assemble(
            config,
            identity,
            edges,
            AnyBroker::Nats(Box::new(broker)),
            presence,
            maps,
        )?;
        node.start_cluster(control_rx);
        Ok(node)
    }

    /// A node on PostgreSQL (`broker.enabled`, `broker.type: postgres`, `broker.postgres`):
    /// streams in tables, delivery through the outbox. Presence as with NATS: Redis when
    /// `presence_manager` (when enabled) or else `engine` says `redis`, memory otherwise.
    async fn connect_postgres(
        config: Arc<Config>,
        identity: NodeIdentity,
    ) -> Result<Node, NodeError> {
        let engine = |error: crate::broker::BrokerError| NodeError::Engine(error.to_string());
        let presence = split_presence(&config).await?;
        let edges = Arc::new(Edges::default());
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(cluster::CONTROL_QUEUE_CAPACITY);
        let options = PostgresOptions::from_config(&config.broker.postgres);
        let broker = PostgresBroker::connect(&options, edges.clone(), Some(control_tx))
            .await
            .map_err(engine)?;
        let maps = AnyMapBroker::Postgres(broker.maps());
        let node = Node::assemble(
            config,
            identity,
            edges,
            AnyBroker::Postgres(Box::new(broker)),
            presence,
            maps,
        )?;
        node.start_cluster(control_rx);
        Ok(node)
    }

    fn assemble(
        config: Arc<Config>,
        identity: NodeIdentity,
        edges: Arc<Edges>,
        broker: AnyBroker,
        presence: AnyPresenceManager,
        maps: AnyMapBroker,
    ) -> Result<Node, NodeError> {
        let resolver = ChannelResolver::new(&config.channel)
            .map_err(|error| NodeError::ChannelRegex(error.to_string()))?;
        let proxies = crate::proxy::Proxies::new(Arc::clone(&config))
            .map_err(|error| NodeError::Tls(error.to_string()))?;
        let shared_polls = crate::shared_poll::SharedPolls::new(
            Arc::clone(&edges),
            proxies.clone(),
            config.shared_poll.concurrency_limit,
        );
        let node = Node {
            inner: Arc::new(Inner {
                proxies,
                shared_polls,
                open_streams: stream_proxy::OpenStreams::default(),
                jwks: crate::jwks::JwksCache::new(crate::jwks::JwksLimits::default())
                    .map_err(|error| NodeError::Tls(format!("JWKS client: {error}")))?,
                config,
                identity,
                resolver,
                edges,
                broker,
                maps,
                presence,
                sweeping: AtomicBool::new(false),
                interest_gate: tokio::sync::Mutex::new(()),
                started: Instant::now(),
                next_survey_id: AtomicU64::new(1),
                cluster: cluster::Cluster::default(),
            }),
        };
        node.start_sweeping();
        Ok(node)
    }

    /// Whether this node's delivery path (its broker) is up; `Err` says what is not. `/health`
    /// answers with it.
    pub fn health(&self) -> Result<(), String> {
        self.inner.broker.health()
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Channel name rules of this node's configuration.
    pub fn channel_resolver(&self) -> &ChannelResolver {
        &self.inner.resolver
    }

    /// Starts serving an edge: spawns the task that reads its [`spindle_mesh::Up`] messages
    /// (interest, presence, requests) and the forwarder that drains its outgoing queue into
    /// `link`. Returns the serving task, which ends when the edge closes its side of the link;
    /// the edge's interest is then forgotten. Attaching an id that is already attached replaces
    /// the earlier edge. Must be called inside a Tokio runtime.
    pub fn attach_edge(
        &self,
        edge_id: impl Into<EdgeId>,
        link: CoreLink,
        inbox: CoreInbox,
    ) -> JoinHandle<()> {
        self.attach(edge_id.into(), None, link, inbox)
    }

    /// [`Node::attach_edge`] for an edge in another process (a QUIC link), from `region`
    /// (`mesh.region` of its config, as its `Hello` said): `info` lists it.
    pub fn attach_remote_edge(
        &self,
        edge_id: impl Into<EdgeId>,
        region: String,
        link: CoreLink,
        inbox: CoreInbox,
    ) -> JoinHandle<()> {
        self.attach(edge_id.into(), Some(region), link, inbox)
    }

    fn attach(
        &self,
        id: EdgeId,
        region: Option<String>,
        link: CoreLink,
        inbox: CoreInbox,
    ) -> JoinHandle<()> {
        self.start_sweeping();
        let attachment = self.inner.edges.attach(id.clone(), region, link.clone());
        tokio::spawn(serve::forward(attachment.queue, link));
        let node = self.clone();
        let released = attachment.released;
        let serial = attachment.serial;
        tokio::spawn(async move {
            node.unsubscribe_broker(released).await;
            serve::serve_edge(node, id, serial, inbox).await;
        })
    }

    /// Hands a publication to every edge with interest in `channel`: one
    /// [`spindle_mesh::Down::Event`] per edge, never one per subscriber. `prev` is the
    /// publication at `offset − 1` for delta publishes (its data goes in the event's
    /// `prev_data`). Returns the number of edges it was queued for. The broker calls this
    /// (through the node's event handler) in publish order per channel.
    pub fn deliver(
        &self,
        channel: &str,
        position: Option<&StreamPosition>,
        publication: &Publication,
        prev: Option<&Publication>,
    ) -> usize {
        self.inner
            .edges
            .deliver(channel, position, publication, prev)
    }

    /// Sends an API command (disconnect, unsubscribe, subscribe, refresh) to every attached
    /// edge, each matching it against its local connections, and — on a broker shared by
    /// several nodes — to every other node, which hands it to its own edges (each node applies
    /// it once). Returns the number of local edges it was queued for. A failed publish to the
    /// other nodes counts as one more failed edge in the [`ControlError`].
    pub async fn control(&self, control: mesh::Control) -> Result<usize, ControlError> {
        let remote = self.broadcast_control(&control).await;
        let local = self.inner.edges.send_control(control).await;
        match (local, remote) {
            (local, Ok(())) => local,
            (Ok(_), Err(())) => Err(ControlError { failed: 1 }),
            (Err(error), Err(())) => Err(ControlError {
                failed: error.failed + 1,
            }),
        }
    }

    /// Per attached edge: events sent and interest size (`spindle_mesh_*` metrics).
    pub fn edge_counts(&self) -> Vec<EdgeCounts> {
        self.inner.edges.counts()
    }

    /// The node's counters.
    pub fn stats(&self) -> NodeStats {
        let counters = &self.inner.edges.counters;
        let (edges, channels) = self.inner.edges.sizes();
        NodeStats {
            publications: counters.publications.load(Ordering::Relaxed),
            suppressed: counters.suppressed.load(Ordering::Relaxed),
            deliveries: counters.deliveries.load(Ordering::Relaxed),
            dropped_events: counters.dropped_events.load(Ordering::Relaxed),
            controls: counters.controls.load(Ordering::Relaxed),
            dropped_controls: counters.dropped_controls.load(Ordering::Relaxed),
            edges,
            channels,
            streams: self.inner.broker.streams(),
            presence_entries: self.inner.presence.len(),
        }
    }

    /// Applies an edge's interest change (a snapshot replaces the edge's whole set), tells the
    /// broker about channels the node gained or lost, and answers with the acknowledgement:
    /// from then on publications of the added channels reach the edge, and the positions in
    /// the ack were read after that point, so nothing published after them can be missed.
    async fn apply_interest(&self, serial: u64, interest: mesh::Interest) -> mesh::InterestAck {
        let mut failed = Vec::new();
        {
            let _gate = self.inner.interest_gate.lock().await;
            let (gained, lost) = if interest.snapshot {
                self.inner.edges.replace_interest(serial, &interest.add)
            } else {
                let gained = self.inner.edges.add_interest(serial, &interest.add);
                (
                    gained,
                    self.inner.edges.remove_interest(serial, &interest.remove),
                )
            };
            for channel in gained {
                if let Err(error) = self.inner.broker.subscribe(&channel).await {
                    // Acknowledging it would let subscribers wait for publications that never
                    // come: the channel is taken back out and the edge told so.
                    tracing::error!(%error, channel, "broker subscribe failed");
                    failed.push(channel);
                }
            }
            self.inner.edges.remove_interest(serial, &failed);
            self.unsubscribe_channels(lost).await;
        }
        let mut positions = Vec::new();
        for channel in interest.add.into_iter().filter(|c| !failed.contains(c)) {
            if let Some(position) = self.stream_top(&channel).await {
                positions.push(mesh::ChannelPosition {
                    channel,
                    offset: position.offset,
                    epoch: position.epoch,
                });
            }
        }
        mesh::InterestAck {
            seq: interest.seq,
            positions,
            failed,
        }
    }

    /// The top position of a channel's stream; `None` without history or when the broker
    /// cannot say.
    async fn stream_top(&self, channel: &str) -> Option<StreamPosition> {
        let query = crate::broker::HistoryQuery {
            since: None,
            limit: Some(0),
            reverse: false,
        };
        match self.history(channel, &query).await {
            Ok(result) => Some(result.top),
            Err(HistoryError::NotAvailable | HistoryError::Channel(_)) => None,
            Err(error) => {
                tracing::warn!(channel, %error, "stream position for an interest ack");
                None
            }
        }
    }

    /// Queues a message for one edge, waiting up to [`CONTROL_SEND_TIMEOUT`] for room (acks and
    /// answers must not vanish; a stuck edge is logged and, after the wait, skipped).
    async fn send_to_edge(&self, serial: u64, message: spindle_mesh::Down) {
        let Some(queue) = self.inner.edges.queue_of(serial) else {
            return;
        };
        if let Err(tokio::sync::mpsc::error::SendTimeoutError::Timeout(_)) =
            queue.send_timeout(message, CONTROL_SEND_TIMEOUT).await
        {
            tracing::warn!(serial, "edge queue full: message to the edge not sent");
        }
    }

    /// Forgets an edge and its interest.
    async fn detach(&self, serial: u64) {
        let _gate = self.inner.interest_gate.lock().await;
        self.inner.shared_polls.edge_gone(serial);
        self.inner.open_streams.edge_gone(serial);
        let lost = self.inner.edges.detach(serial);
        self.unsubscribe_channels(lost).await;
    }

    async fn unsubscribe_broker(&self, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        let _gate = self.inner.interest_gate.lock().await;
        self.unsubscribe_channels(channels).await;
    }

    /// Call with the interest gate held. A channel some edge wants again is kept.
    async fn unsubscribe_channels(&self, channels: Vec<String>) {
        for channel in channels {
            if self.inner.edges.has_interest(&channel) {
                continue;
            }
            if let Err(error) = self.inner.broker.unsubscribe(&channel).await {
                tracing::error!(%error, channel, "broker unsubscribe failed");
            }
        }
    }

    fn next_survey_id(&self) -> u64 {
        self.inner.next_survey_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Presence for a broker without its own (NATS, PostgreSQL): Redis when `presence_manager`
/// (when enabled) or else `engine` says `redis`, memory otherwise.
async fn split_presence(config: &Config) -> Result<AnyPresenceManager, NodeError> {
    let engine = |error: crate::broker::BrokerError| NodeError::Engine(error.to_string());
    let presence_redis = if config.presence_manager.enabled {
        (config.presence_manager.kind == PresenceManagerType::Redis)
            .then_some(&config.presence_manager.redis)
    } else {
        (config.engine.kind == EngineType::Redis).then_some(&config.engine.redis)
    };
    Ok(match presence_redis {
        Some(redis) => {
            let options = RedisOptions::from_config(redis).map_err(engine)?;
            let connection = RedisConnection::connect(&options).await.map_err(engine)?;
            AnyPresenceManager::Redis(Box::new(RedisPresenceManager::new(
                connection,
                presence_ttl(config),
            )))
        }
        None => AnyPresenceManager::Memory(MemoryPresenceManager::new(
            Arc::new(SystemClock),
            presence_ttl(config),
        )),
    })
}

/// How long presence entries live without a refresh: [`PRESENCE_TTL`], or twice
/// `client.presence_update_interval` when that is longer.
fn presence_ttl(config: &Config) -> Duration {
    PRESENCE_TTL.max(config.client.presence_update_interval.as_std() * 2)
}
