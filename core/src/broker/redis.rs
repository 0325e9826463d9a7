//! The Redis broker: channel streams in Redis, delivery over Redis PUB/SUB.
//!
//! Keys per channel `ch`, under the configured prefix `P` (`{ch}` is the channel's Redis
//! Cluster hash tag, see [`shard`]):
//! - `P.stream.{ch}`: a list of encoded publications, oldest first, at most `history_size`
//!   long, expiring `history_ttl` after the last publish. Offsets are not stored: the list is
//!   contiguous and ends at the top offset, so element `i` has offset `top − len + 1 + i`.
//! - `P.meta.{ch}`: a hash `e` (epoch), `s` (top offset), `r` (the `master_replid` of the
//!   server that wrote it), `v` / `ve` (version and version epoch), expiring
//!   `history_meta_ttl` after the last publish or read. A missing meta key means a new epoch
//!   and an empty stream; an `r` that differs from the server's current `master_replid` (a
//!   failover, a restart) means a new epoch over the kept stream: neither a lost key nor a
//!   promoted replica that lagged can make one (epoch, offset) name two publications
//!   ([`scripts`] says why and what it costs).
//! - `P.idem.{ch}.<len>.ch.key`: the result of a publish with an idempotency key, for 5 minutes.
//!
//! One Lua script per publish decides (epoch, idempotency, version), appends, trims, sets the TTLs
//! and PUBLISHes the delivery message on the PUB/SUB channel `P.client.{ch}` (SPUBLISH on a
//! Redis Cluster, so the message stays on the slot's node), so the order of offsets is the
//! order on the PUB/SUB channel.
//!
//! Several shards (`engine.redis.address` as a list; each entry a server, a cluster or a
//! Sentinel master): a channel lives on the shard [`shard::shard_index`] picks, which is
//! Centrifugo's choice for the same list. Each shard has its own command connection and its
//! own subscriber connection; a channel's messages all come through one subscriber, in
//! arrival order, to the node's handler. Every shard's subscriber also subscribes `P.control`
//! (never a client channel's name, which all start with `P.client.`) when the node wants
//! cluster control messages ([`RedisBroker::with_control`]); control messages are published
//! round-robin over the shards, as Centrifugo does, so every node receives each once.

use super::{
    Broker, BrokerError, EventHandler, HistoryItem, HistoryQuery, HistoryReadError, HistoryResult,
    JoinLeave, Publication, PublishOptions, PublishResult, ReadError, StreamOptions,
    StreamPosition, new_epoch,
};
use bytes::Bytes;
use fred::prelude::{Client, ClientLike, EventInterface, PubsubInterface, Value};
use fred::types::scripts::Script;
use fred::types::{Builder, Message};
use prost::Message as _;
use scripts::{HISTORY_LUA, PUBLISH_LUA};
use spindle_proto::client;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

mod probe;
// `continuity_lua!` is shared with the map scripts.
#[macro_use]
mod scripts;
mod map_scripts;
mod maps;
mod shard;

pub use maps::RedisMapBroker;
pub use shard::{RedisServer, RedisTls};

/// How long an idempotency key is remembered: 5 minutes, as the [`Broker`] contract says.
const IDEMPOTENCY_TTL_MS: u64 = 300_000;

/// Where to find Redis and under which prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The shards, in configuration order (a channel's shard depends on this order and count).
    pub servers: Vec<RedisServer>,
    /// Key and channel prefix (`engine.redis.prefix`).
    pub prefix: String,
    /// How long to wait for the first connection.
    pub connect_timeout: Duration,
    /// ACL user (`engine.redis.user`) when the address does not carry one.
    pub user: String,
    /// Password (`engine.redis.password`) when the address does not carry one.
    pub password: String,
    /// Database number (`engine.redis.db`) when not 0 and the address does not carry one.
    pub db: u32,
    /// TLS (`engine.redis.tls`; `rediss://` addresses use it too).
    pub tls: RedisTls,
    /// How often each subscriber connection is probed ([`probe`]); zero turns probes off.
    pub pubsub_probe_interval: Duration,
    /// PUB/SUB connections per shard (at least 1): a channel's messages always come through
    /// the same one, so its order holds, while many channels spread their traffic (and the
    /// resubscription after a reconnect) over several connections and readers.
    pub subscribers_per_shard: usize,
}

/// The default number of PUB/SUB connections per shard.
pub const SUBSCRIBERS_PER_SHARD: usize = 2;

/// How many PUB/SUB messages a subscriber buffers for its reader before the oldest are lost.
const SUBSCRIBER_BUFFER: usize = 8_192;

/// The default probe interval: a lost subscriber is noticed within about 10 s.
pub const PUBSUB_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Splits `a,b` shard entries (Centrifugo's form for a shard's several cluster seeds or
/// sentinels).
fn seeds(entry: &str) -> Vec<String> {
    entry
        .split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(str::to_owned)
        .collect()
}

impl RedisOptions {
    /// Options for one server at `address` (no credentials, database 0).
    pub fn single(address: impl Into<String>, prefix: impl Into<String>) -> RedisOptions {
        RedisOptions {
            servers: vec![RedisServer::Single(address.into())],
            prefix: prefix.into(),
            connect_timeout: Duration::from_secs(1),
            user: String::new(),
            password: String::new(),
            db: 0,
            tls: RedisTls::default(),
            pubsub_probe_interval: PUBSUB_PROBE_INTERVAL,
            subscribers_per_shard: SUBSCRIBERS_PER_SHARD,
        }
    }

    /// The options of a `engine.redis` / `broker.redis` section: `cluster_address` (one
    /// cluster per entry) wins over `sentinel_address` (one master per entry, all named
    /// `sentinel_master_name`), which wins over `address` (one server per entry).
    pub fn from_config(redis: &spindle_hub::config::Redis) -> Result<RedisOptions, BrokerError> {
        let servers: Vec<RedisServer> = if !redis.cluster_address.is_empty() {
            redis
                .cluster_address
                .iter()
                .map(|entry| RedisServer::Cluster(seeds(entry)))
                .collect()
        } else if !redis.sentinel_address.is_empty() {
            if redis.sentinel_master_name.is_empty() {
                return Err(BrokerError::Unavailable(
                    "engine.redis.sentinel_master_name is required with sentinel_address".into(),
                ));
            }
            redis
                .sentinel_address
                .iter()
                .map(|entry| RedisServer::Sentinel {
                    addresses: seeds(entry),
                    master_name: redis.sentinel_master_name.clone(),
                    sentinel_user: redis.sentinel_user.clone(),
                    sentinel_password: redis.sentinel_password.expose().to_owned(),
                })
                .collect()
        } else {
            redis
                .address
                .iter()
                .map(|address| RedisServer::Single(address.clone()))
                .collect()
        };
        if servers.is_empty() {
            return Err(BrokerError::Unavailable(
                "engine.redis.address is empty".into(),
            ));
        }
        warn_unused(redis);
        Ok(RedisOptions {
            servers,
            prefix: redis.prefix.clone(),
            connect_timeout: redis
                .connect_timeout
                .as_std()
                .max(Duration::from_millis(100)),
            user: redis.user.clone(),
            password: redis.password.expose().to_owned(),
            db: redis.db,
            tls: tls_options(&redis.tls)?,
            pubsub_probe_interval: PUBSUB_PROBE_INTERVAL,
            subscribers_per_shard: SUBSCRIBERS_PER_SHARD,
        })
    }
}

/// `engine.redis.tls`: the server verified with `server_ca_pem` or the system's roots, a client
/// certificate when `cert_pem` / `key_pem` are set, `insecure_skip_verify` for tests.
/// `server_name` is refused rather than silently ignored.
fn tls_options(tls: &spindle_hub::config::Tls) -> Result<RedisTls, BrokerError> {
    if !tls.server_name.is_empty() {
        return Err(BrokerError::Unavailable(
            "engine.redis.tls.server_name is not supported by Spindle yet: the address's host \
             is the name verified"
                .into(),
        ));
    }
    Ok(RedisTls {
        enabled: tls.enabled,
        server_ca_pem: tls.server_ca_pem.clone(),
        cert_pem: tls.cert_pem.clone(),
        key_pem: tls.key_pem.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
    })
}

/// Options a Centrifugo config may carry that this broker accepts but does not act on yet:
/// said at start, so nobody relies on them unknowingly.
fn warn_unused(redis: &spindle_hub::config::Redis) {
    let defaults = spindle_hub::config::Redis::default();
    let unused = [
        ("io_timeout", redis.io_timeout != defaults.io_timeout),
        ("client_name", !redis.client_name.is_empty()),
        (
            "sentinel_client_name",
            !redis.sentinel_client_name.is_empty(),
        ),
        ("sentinel_tls", redis.sentinel_tls.enabled),
        ("replica_client", redis.replica_client.enabled),
    ];
    for (key, set) in unused {
        if set {
            tracing::warn!(
                "Redis option {key} is accepted but not used yet: Spindle ignores it \
                 (reads go to the master, no client name, no per-command timeout)"
            );
        }
    }
}

fn num(value: impl ToString) -> Value {
    Value::from(value.to_string())
}

fn unavailable(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// One shard's command connection.
#[derive(Clone)]
pub(crate) struct Shard {
    pub(crate) client: Client,
    server: RedisServer,
}

impl Shard {
    /// `spublish` on a cluster (the message stays on the slot's node), `publish` elsewhere.
    fn publish_command(&self) -> &'static str {
        match self.server.is_cluster() {
            true => "spublish",
            false => "publish",
        }
    }
}

/// Connected clients (commands and scripts), one per shard, shared by the broker and the
/// presence manager.
#[derive(Clone)]
pub struct RedisConnection {
    shards: Arc<[Shard]>,
    pub(crate) prefix: Arc<str>,
    options: RedisOptions,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("servers", &self.options.servers)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisConnection {
    /// Connects to every shard, failing with a clear message when one does not answer within
    /// the connect timeout.
    pub async fn connect(options: &RedisOptions) -> Result<RedisConnection, BrokerError> {
        let mut shards: Vec<Shard> = Vec::with_capacity(options.servers.len());
        for server in &options.servers {
            let client = build(server, options)?
                .build()
                .map_err(|e| unavailable(format!("redis {}: {e}", server.describe())))?;
            let ready = match init(&client, server, options).await {
                Ok(()) => scripts::check_info_allowed(&client, server).await,
                Err(error) => Err(error),
            };
            if let Err(error) = ready {
                let _ = client.quit().await;
                for shard in &shards {
                    let _ = shard.client.quit().await;
                }
                return Err(error);
            }
            shards.push(Shard {
                client,
                server: server.clone(),
            });
        }
        if shards.is_empty() {
            return Err(unavailable("no redis address configured"));
        }
        Ok(RedisConnection {
            shards: shards.into(),
            prefix: options.prefix.as_str().into(),
            options: options.clone(),
        })
    }

    /// The shard that holds `channel`.
    pub(crate) fn shard(&self, channel: &str) -> &Shard {
        &self.shards[shard::shard_index(channel, self.shards.len())]
    }

    /// Every shard, in order.
    pub(crate) fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The index of the shard that holds `channel` (for tests and diagnostics).
    pub fn shard_of(&self, channel: &str) -> usize {
        shard::shard_index(channel, self.shards.len())
    }

    /// `P.<kind>.{ch}`: a channel's key, hash-tagged (see [`shard`]).
    pub(crate) fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}.{kind}.{}", self.prefix, shard::tagged(channel))
    }

    async fn quit(&self) {
        for shard in self.shards.iter() {
            let _ = shard.client.quit().await;
        }
    }
}

fn build(server: &RedisServer, options: &RedisOptions) -> Result<Builder, BrokerError> {
    let mut config = shard::fred_config(server, &options.tls)?;
    if config.username.is_none() && !options.user.is_empty() {
        config.username = Some(options.user.clone());
    }
    if config.password.is_none() && !options.password.is_empty() {
        config.password = Some(options.password.clone());
    }
    if config.database.is_none() && options.db != 0 && !server.is_cluster() {
        let db = u8::try_from(options.db)
            .map_err(|_| unavailable(format!("redis db {} out of range", options.db)))?;
        config.database = Some(db);
    }
    let mut builder = Builder::from_config(config);
    builder.with_connection_config(|c| c.connection_timeout = options.connect_timeout);
    builder.set_policy(fred::types::config::ReconnectPolicy::new_exponential(
        0, 100, 2_000, 2,
    ));
    Ok(builder)
}

async fn init(
    client: &impl ClientLike,
    server: &RedisServer,
    options: &RedisOptions,
) -> Result<(), BrokerError> {
    let wait = options.connect_timeout + Duration::from_millis(500);
    match tokio::time::timeout(wait, client.init()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            let _ = client.quit().await;
            Err(unavailable(format!(
                "cannot connect to redis at {}: {e}",
                server.describe()
            )))
        }
        Err(_) => {
            let _ = client.quit().await;
            Err(unavailable(format!(
                "cannot connect to redis at {}: no answer within {wait:?}",
                server.describe()
            )))
        }
    }
}

/// A broker on one or several Redis shards (see the module docs for the data layout).
pub struct RedisBroker {
    connection: RedisConnection,
    control_channel: String,
    /// `per_shard` subscriber connections per shard, in shard order.
    subscribers: Vec<fred::clients::SubscriberClient>,
    per_shard: usize,
    /// Which shard the next control message goes to.
    control_round: AtomicUsize,
    publish_script: Script,
    history_script: Script,
    /// Message readers and probe tasks.
    readers: Vec<tokio::task::JoinHandle<()>>,
    probes: Vec<Arc<probe::ProbeState>>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("connection", &self.connection)
            .finish()
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
        let connection = self.connection.clone();
        let subscribers = self.subscribers.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for subscriber in subscribers {
                    let _ = subscriber.quit().await;
                }
                connection.quit().await;
            });
        }
    }
}

impl RedisBroker {
    /// Connects command clients and subscriber connections to every shard and starts
    /// delivering to `handler`. Must be called inside a Tokio runtime.
    pub async fn connect(
        options: &RedisOptions,
        handler: Arc<dyn EventHandler>,
    ) -> Result<RedisBroker, BrokerError> {
        let connection = RedisConnection::connect(options).await?;
        RedisBroker::with_connection(connection, handler).await
    }

    /// [`RedisBroker::connect`] reusing command connections.
    pub async fn with_connection(
        connection: RedisConnection,
        handler: Arc<dyn EventHandler>,
    ) -> Result<RedisBroker, BrokerError> {
        RedisBroker::with_control(connection, handler, None).await
    }

    /// [`RedisBroker::with_connection`] that also subscribes the control channel `P.control`
    /// on every shard and hands its messages to `control` (dropped, with a warning, when that
    /// queue is full).
    pub async fn with_control(
        connection: RedisConnection,
        handler: Arc<dyn EventHandler>,
        control: Option<mpsc::Sender<Bytes>>,
    ) -> Result<RedisBroker, BrokerError> {
        let options = connection.options.clone();
        let client_prefix = format!("{}.client.", connection.prefix);
        let control_channel = format!("{}.control", connection.prefix);
        let probe_channel = format!(
            "{}.probe.{}",
            connection.prefix,
            uuid::Uuid::new_v4().simple()
        );
        let mut subscribers: Vec<fred::clients::SubscriberClient> =
            Vec::with_capacity(options.servers.len());
        let mut readers: Vec<tokio::task::JoinHandle<()>> =
            Vec::with_capacity(options.servers.len());
        let mut probes = Vec::with_capacity(options.servers.len());
        let per_shard = options.subscribers_per_shard.max(1);
        for (slot, (index, server)) in options
            .servers
            .iter()
            .enumerate()
            .flat_map(|shard| std::iter::repeat_n(shard, per_shard))
            .enumerate()
        {
            // The first connection of each shard also carries the control channel (once per
            // shard, so a control message reaches this node once); each has its own probes.
            let first_of_shard = slot % per_shard == 0;
            let probe_channel = format!("{probe_channel}.{slot}");
            let mut builder = build(server, &options)?;
            // fred hands messages to the reader through a broadcast channel that drops the
            // oldest when the reader falls behind (default 32 slots: a burst while the reader
            // waits for a core loses publications). Room for a large burst instead.
            builder.with_performance_config(|perf| {
                perf.broadcast_channel_capacity = SUBSCRIBER_BUFFER;
            });
            let subscriber = builder
                .build_subscriber_client()
                .map_err(|e| unavailable(format!("redis {}: {e}", server.describe())))?;
            let messages = subscriber.message_rx();
            if let Err(error) = init(&subscriber, server, &options).await {
                for reader in &readers {
                    reader.abort();
                }
                for subscriber in &subscribers {
                    let _ = subscriber.quit().await;
                }
                return Err(error);
            }
            // Resubscribe to every channel after a reconnection.
            subscriber.manage_subscriptions();
            if control.is_some() && first_of_shard {
                subscriber
                    .subscribe(control_channel.clone())
                    .await
                    .map_err(unavailable)?;
            }
            let probe = Arc::new(probe::ProbeState::default());
            if !options.pubsub_probe_interval.is_zero() {
                subscriber
                    .subscribe(probe_channel.clone())
                    .await
                    .map_err(unavailable)?;
                readers.push(tokio::spawn(probe::run(
                    connection.shards[index].client.clone(),
                    subscriber.clone(),
                    probe_channel.clone(),
                    probe.clone(),
                    options.pubsub_probe_interval,
                    server.describe(),
                )));
            }
            readers.push(tokio::spawn(read_messages(
                messages,
                Channels {
                    client_prefix: client_prefix.clone(),
                    control: control_channel.clone(),
                    probe: probe_channel.clone(),
                },
                handler.clone(),
                control.clone(),
                probe.clone(),
            )));
            probes.push(probe);
            subscribers.push(subscriber);
        }
        Ok(RedisBroker {
            connection,
            control_channel,
            subscribers,
            per_shard,
            control_round: AtomicUsize::new(0),
            publish_script: Script::from_lua(PUBLISH_LUA),
            history_script: Script::from_lua(HISTORY_LUA),
            readers,
            probes,
        })
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        self.connection.key(kind, channel)
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        self.key("client", channel)
    }

    fn subscriber(&self, channel: &str) -> (&fred::clients::SubscriberClient, bool) {
        let index = self.connection.shard_of(channel);
        let within = subscriber_within_shard(channel, self.per_shard);
        (
            &self.subscribers[index * self.per_shard + within],
            self.connection.shards[index].server.is_cluster(),
        )
    }

    /// Whether publications can flow: every command and subscriber connection is up and the
    /// last liveness probe of each subscriber came back. `Err` names what is wrong.
    pub fn health(&self) -> Result<(), String> {
        for shard in self.connection.shards.iter() {
            if !shard.client.is_connected() {
                return Err(format!("redis {}: not connected", shard.server.describe()));
            }
        }
        for (slot, subscriber) in self.subscribers.iter().enumerate() {
            let shard = &self.connection.shards[slot / self.per_shard];
            if !subscriber.is_connected() {
                return Err(format!(
                    "redis {}: PUB/SUB connection down",
                    shard.server.describe()
                ));
            }
            if self
                .probes
                .get(slot)
                .is_some_and(|probe| !probe.delivering())
            {
                return Err(format!(
                    "redis {}: PUB/SUB probe not delivered",
                    shard.server.describe()
                ));
            }
        }
        Ok(())
    }

    /// How many times, in all, a subscriber was reconnected because a probe was lost.
    pub fn probe_reconnects(&self) -> u64 {
        self.probes
            .iter()
            .map(|probe| probe.reconnects.load(Ordering::Relaxed))
            .sum()
    }

    /// Publishes a cluster control message on `P.control` of the next shard in turn (every
    /// node subscribes it on every shard, so each receives the message once, this one
    /// included).
    pub async fn publish_control(&self, payload: Bytes) -> Result<(), BrokerError> {
        let round = self.control_round.fetch_add(1, Ordering::Relaxed);
        let shard = &self.connection.shards[round % self.connection.shards.len()];
        shard
            .client
            .publish::<(), _, _>(self.control_channel.as_str(), payload)
            .await
            .map_err(unavailable)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn encode_publication(publication: &Publication) -> Bytes {
    client::Publication {
        data: publication.data.clone(),
        info: publication.info.clone(),
        tags: publication.tags.clone(),
        time: publication.time,
        key: publication.key.clone(),
        removed: publication.removed,
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

fn decode_publication(bytes: &[u8]) -> Option<Publication> {
    let wire = client::Publication::decode(bytes).ok()?;
    Some(Publication {
        data: wire.data,
        info: wire.info,
        tags: wire.tags,
        time: wire.time,
        key: wire.key,
        removed: wire.removed,
    })
}

fn as_u64(value: &Value) -> u64 {
    match value {
        Value::Integer(i) => u64::try_from(*i).unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    }
}

fn as_bytes(value: &Value) -> Bytes {
    match value {
        Value::Bytes(bytes) => bytes.clone(),
        Value::String(text) => Bytes::copy_from_slice(text.as_bytes()),
        _ => Bytes::new(),
    }
}

fn as_string(value: &Value) -> String {
    String::from_utf8_lossy(&as_bytes(value)).into_owned()
}

/// Runs a stream read script (`HISTORY_LUA` on a channel's or a map's keys) and decodes its
/// answer: the top position, then the publications asked for (newest first with `reverse`).
/// A non-empty `since` epoch other than the stream's is [`ReadError::Unrecoverable`].
pub(super) async fn read_stream(
    script: &Script,
    client: &Client,
    keys: Vec<String>,
    args: Vec<Value>,
    query: &HistoryQuery,
) -> Result<HistoryResult, HistoryReadError> {
    let reply: Vec<Value> = script
        .evalsha_with_reload(client, keys, args)
        .await
        .map_err(unavailable)?;
    let [top, epoch, first, items @ ..] = reply.as_slice() else {
        return Err(unavailable("unexpected history script reply").into());
    };
    let top = StreamPosition::new(as_u64(top), as_string(epoch));
    if let Some(since) = &query.since
        && !since.epoch.is_empty()
        && since.epoch != top.epoch
    {
        return Err(ReadError::Unrecoverable.into());
    }
    let first = as_u64(first);
    let mut publications = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let publication = decode_publication(&as_bytes(item))
            .ok_or_else(|| unavailable("undecodable publication in redis history"))?;
        publications.push(HistoryItem {
            offset: first + index as u64,
            publication: Arc::new(publication),
        });
    }
    if query.reverse {
        publications.reverse();
    }
    Ok(HistoryResult { top, publications })
}

/// Splits a delivery message: `p<offset>,<epoch>,<prev len>,<prev><publication>`,
/// `j<client info>` or `l<client info>`.
pub(crate) fn dispatch(handler: &dyn EventHandler, channel: &str, payload: &Bytes) -> Option<()> {
    let (&kind, rest) = payload.split_first()?;
    match kind {
        b'p' => {
            let mut fields = rest.splitn(4, |&b| b == b',');
            let offset: u64 = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let epoch = std::str::from_utf8(fields.next()?).ok()?.to_owned();
            let prev_len: usize = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
            let body = fields.next()?;
            let (prev, publication) = body.split_at_checked(prev_len)?;
            let publication = decode_publication(publication)?;
            let prev = match prev_len {
                0 => None,
                _ => Some(decode_publication(prev)?),
            };
            let position = match offset {
                0 => None,
                _ => Some(StreamPosition::new(offset, epoch)),
            };
            handler.on_publication(channel, position.as_ref(), &publication, prev.as_ref());
        }
        b'j' | b'l' => {
            let info = client::ClientInfo::decode(rest).ok()?;
            let event = match kind {
                b'j' => JoinLeave::Join(info),
                _ => JoinLeave::Leave(info),
            };
            handler.on_join_leave(channel, &event);
        }
        _ => return None,
    }
    Some(())
}

/// Which of a shard's `per_shard` subscriber connections carries `channel`: FNV-1a 32 of the
/// name, a hash unrelated to the shard choice (jump hash over FNV-1a 64), so the channels of
/// one shard spread over its connections.
fn subscriber_within_shard(channel: &str, per_shard: usize) -> usize {
    let hash = channel.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    usize::try_from(hash).unwrap_or(0) % per_shard.max(1)
}

/// The PUB/SUB channel names a subscriber's reader tells apart.
struct Channels {
    client_prefix: String,
    control: String,
    probe: String,
}

async fn read_messages(
    mut messages: tokio::sync::broadcast::Receiver<Message>,
    channels: Channels,
    handler: Arc<dyn EventHandler>,
    control: Option<mpsc::Sender<Bytes>>,
    probe: Arc<probe::ProbeState>,
) {
    let Channels {
        client_prefix,
        control: control_channel,
        probe: probe_channel,
    } = channels;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match messages.recv().await {
            Ok(message) => {
                let payload = as_bytes(&message.value);
                if *message.channel == *probe_channel {
                    probe.received(&payload);
                    continue;
                }
                if *message.channel == *control_channel {
                    if let Some(control) = &control
                        && control.try_send(payload).is_err()
                    {
                        tracing::warn!("control queue full or closed: control message dropped");
                    }
                    continue;
                }
                let Some(channel) = message
                    .channel
                    .strip_prefix(client_prefix.as_str())
                    .and_then(shard::untag)
                else {
                    continue;
                };
                if dispatch(handler.as_ref(), channel, &payload).is_none() {
                    tracing::warn!(channel, "undecodable redis broker message");
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::error!(missed, "redis broker fell behind: messages lost");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl Broker for RedisBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> Result<PublishResult, BrokerError> {
        let history = options.history.filter(|_| !options.skip_history);
        let (size, ttl, meta_ttl) = match history {
            Some(stream) => (
                stream.size.max(1) as u64,
                millis(stream.ttl),
                millis(stream.meta_ttl.max(stream.ttl)),
            ),
            None => (0, 1, 1),
        };
        let with_key = !options.idempotency_key.is_empty();
        let idem = match with_key {
            // The channel's length keeps (channel, key) pairs apart.
            true => format!(
                "{}.{}.{channel}.{}",
                self.key("idem", channel),
                channel.len(),
                options.idempotency_key
            ),
            false => self.key("idem", channel),
        };
        let keys = vec![self.key("meta", channel), self.key("stream", channel), idem];
        let args: Vec<Value> = vec![
            self.pubsub_channel(channel).into(),
            Value::Bytes(encode_publication(&publication)),
            num(size),
            num(ttl),
            num(meta_ttl),
            new_epoch().into(),
            num(options.version),
            options.version_epoch.as_str().into(),
            num(u64::from(options.delta)),
            num(IDEMPOTENCY_TTL_MS),
            num(u64::from(with_key)),
            self.connection.shard(channel).publish_command().into(),
        ];
        let reply: Vec<Value> = self
            .publish_script
            .evalsha_with_reload(&self.connection.shard(channel).client, keys, args)
            .await
            .map_err(unavailable)?;
        let [status, offset, epoch] = reply.as_slice() else {
            return Err(unavailable("unexpected publish script reply"));
        };
        Ok(PublishResult::from_storage(
            as_u64(status),
            as_u64(offset),
            as_string(epoch),
        ))
    }

    async fn publish_join_leave(&self, channel: &str, event: JoinLeave) -> Result<(), BrokerError> {
        let (kind, info) = match &event {
            JoinLeave::Join(info) => (b'j', info),
            JoinLeave::Leave(info) => (b'l', info),
        };
        let mut payload = vec![kind];
        info.encode(&mut payload).map_err(unavailable)?;
        let shard = self.connection.shard(channel);
        let target = self.pubsub_channel(channel);
        let payload = Bytes::from(payload);
        match shard.server.is_cluster() {
            true => shard.client.spublish::<(), _, _>(target, payload).await,
            false => shard.client.publish::<(), _, _>(target, payload).await,
        }
        .map_err(unavailable)
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let (subscriber, cluster) = self.subscriber(channel);
        if cluster {
            // SSUBSCRIBE goes to the slot's node and is confirmed from there.
            return subscriber
                .ssubscribe(self.pubsub_channel(channel))
                .await
                .map_err(unavailable);
        }
        subscriber
            .subscribe(self.pubsub_channel(channel))
            .await
            .map_err(unavailable)?;
        // A round trip on the subscriber connection: once the server answered it, it has
        // processed the SUBSCRIBE before it, so a publication made after this returns, from
        // any node, is delivered.
        subscriber.ping::<()>(None).await.map_err(unavailable)
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let (subscriber, cluster) = self.subscriber(channel);
        match cluster {
            true => subscriber.sunsubscribe(self.pubsub_channel(channel)).await,
            false => subscriber.unsubscribe(self.pubsub_channel(channel)).await,
        }
        .map_err(unavailable)
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        stream: &StreamOptions,
    ) -> Result<HistoryResult, HistoryReadError> {
        let (since, limit) = query.signed_bounds()?;
        let keys = vec![self.key("meta", channel), self.key("stream", channel)];
        let args: Vec<Value> = vec![
            num(millis(stream.meta_ttl.max(stream.ttl))),
            new_epoch().into(),
            num(since),
            num(limit),
            num(u64::from(query.reverse)),
        ];
        read_stream(
            &self.history_script,
            &self.connection.shard(channel).client,
            keys,
            args,
            query,
        )
        .await
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        use fred::interfaces::KeysInterface;
        self.connection
            .shard(channel)
            .client
            .del::<(), _>(vec![self.key("meta", channel), self.key("stream", channel)])
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_hub::config::{Redis, Secret};

    #[test]
    fn config_picks_cluster_then_sentinel_then_addresses() {
        let mut redis = Redis {
            address: vec!["a:1".into(), "rediss://b:2".into()],
            ..Redis::default()
        };
        let options = RedisOptions::from_config(&redis).unwrap();
        assert_eq!(
            options.servers,
            [
                RedisServer::Single("a:1".into()),
                RedisServer::Single("rediss://b:2".into())
            ]
        );
        assert_eq!(options.pubsub_probe_interval, PUBSUB_PROBE_INTERVAL);

        redis.sentinel_address = vec!["s1:26379, s2:26379".into()];
        redis.sentinel_master_name = "mymaster".into();
        redis.sentinel_password = Secret::new("pw");
        let options = RedisOptions::from_config(&redis).unwrap();
        assert_eq!(
            options.servers,
            [RedisServer::Sentinel {
                addresses: vec!["s1:26379".into(), "s2:26379".into()],
                master_name: "mymaster".into(),
                sentinel_user: String::new(),
                sentinel_password: "pw".into(),
            }]
        );

        redis.cluster_address = vec!["c1:7000,c2:7001".into(), "d1:7000".into()];
        let options = RedisOptions::from_config(&redis).unwrap();
        assert_eq!(
            options.servers,
            [
                RedisServer::Cluster(vec!["c1:7000".into(), "c2:7001".into()]),
                RedisServer::Cluster(vec!["d1:7000".into()])
            ]
        );
    }

    #[test]
    fn config_errors_are_clear() {
        let redis = Redis {
            sentinel_address: vec!["s:26379".into()],
            ..Redis::default()
        };
        let error = RedisOptions::from_config(&redis).unwrap_err().to_string();
        assert!(error.contains("sentinel_master_name"), "{error}");

        let mut redis = Redis::default();
        redis.tls.enabled = true;
        redis.tls.server_name = "other".into();
        let error = RedisOptions::from_config(&redis).unwrap_err().to_string();
        assert!(error.contains("server_name"), "{error}");

        redis.tls.server_name = String::new();
        redis.tls.server_ca_pem = "PEM".into();
        redis.tls.cert_pem = "CERT".into();
        redis.tls.key_pem = "KEY".into();
        redis.tls.insecure_skip_verify = true;
        let options = RedisOptions::from_config(&redis).unwrap();
        assert_eq!(
            options.tls,
            RedisTls {
                enabled: true,
                server_ca_pem: "PEM".into(),
                cert_pem: "CERT".into(),
                key_pem: "KEY".into(),
                insecure_skip_verify: true,
            }
        );
    }
}
