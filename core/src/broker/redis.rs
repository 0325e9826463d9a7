//! The Redis broker: channel streams in Redis, delivery over Redis PUB/SUB.
//!
//! Keys per channel `ch`, under the configured prefix `P`:
//! - `P.stream.ch`: a list of encoded publications, oldest first, at most `history_size`
//!   long, expiring `history_ttl` after the last publish. Offsets are not stored: the list is
//!   contiguous and ends at the top offset, so element `i` has offset `top − len + 1 + i`.
//! - `P.meta.ch`: a hash `e` (epoch), `s` (top offset), `v` / `ve` (version and version
//!   epoch), expiring `history_meta_ttl` after the last publish or read. A missing meta key
//!   means a new epoch: a lost key can never make one (epoch, offset) name two publications.
//! - `P.idem.ch.key`: the result of a publish with an idempotency key, for 5 minutes.
//!
//! One Lua script per publish decides (idempotency, version), appends, trims, sets the TTLs
//! and PUBLISHes the delivery message on the PUB/SUB channel `P.client.ch`, so the order of
//! offsets is the order on the PUB/SUB channel. One subscriber connection receives every
//! channel this node subscribed to and hands the messages, in arrival order, to the node's
//! handler. The same connection subscribes `P.control` (never a client channel's name, which
//! all start with `P.client.`) when the node wants cluster control messages
//! ([`RedisBroker::with_control`]).

use super::{
    Broker, BrokerError, EventHandler, HistoryItem, HistoryQuery, HistoryReadError, HistoryResult,
    JoinLeave, Publication, PublishOptions, PublishResult, ReadError, StreamOptions,
    StreamPosition, Suppression,
};
use bytes::Bytes;
use fred::prelude::{
    Client, ClientLike, Config as FredConfig, EventInterface, PubsubInterface, Value,
};
use fred::types::scripts::Script;
use fred::types::{Builder, Message};
use prost::Message as _;
use spindle_proto::client;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long an idempotency key is remembered: 5 minutes, as the [`Broker`] contract says.
const IDEMPOTENCY_TTL_MS: u64 = 300_000;

/// KEYS: meta, stream, idempotency (or a dummy). ARGV: pubsub channel, payload, history size
/// (0 = no history), ttl ms, meta ttl ms, new epoch, version, version epoch, want prev (0/1),
/// idempotency ttl ms, use idempotency (0/1).
/// Returns {status, offset, epoch}: status 0 published, 1 idempotent, 2 stale version.
const PUBLISH_LUA: &str = r#"
local meta, stream, idem = KEYS[1], KEYS[2], KEYS[3]
local channel, payload = ARGV[1], ARGV[2]
local size, ttl, meta_ttl = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local version, version_epoch = tonumber(ARGV[7]), ARGV[8]
if ARGV[11] == '1' then
  local earlier = redis.call('get', idem)
  if earlier then
    local sep = string.find(earlier, ':', 1, true)
    return {1, tonumber(string.sub(earlier, 1, sep - 1)), string.sub(earlier, sep + 1)}
  end
end
local offset, epoch, prev = 0, '', ''
if size > 0 then
  epoch = redis.call('hget', meta, 'e')
  local top = 0
  if not epoch then
    epoch = ARGV[6]
    redis.call('del', stream)
    redis.call('hset', meta, 'e', epoch, 's', 0)
  else
    top = tonumber(redis.call('hget', meta, 's') or '0')
    if version > 0 then
      local current = tonumber(redis.call('hget', meta, 'v') or '0')
      if current > 0 and redis.call('hget', meta, 've') == version_epoch and version <= current then
        redis.call('pexpire', meta, meta_ttl)
        return {2, top, epoch}
      end
    end
  end
  if ARGV[9] == '1' and top > 0 then
    prev = redis.call('lindex', stream, -1) or ''
  end
  offset = redis.call('hincrby', meta, 's', 1)
  if version > 0 then
    redis.call('hset', meta, 'v', version, 've', version_epoch)
  end
  redis.call('rpush', stream, payload)
  redis.call('ltrim', stream, -size, -1)
  redis.call('pexpire', stream, ttl)
  redis.call('pexpire', meta, meta_ttl)
end
if ARGV[11] == '1' then
  redis.call('set', idem, offset .. ':' .. epoch, 'px', ARGV[10])
end
redis.call('publish', channel, 'p' .. offset .. ',' .. epoch .. ',' .. string.len(prev) .. ',' .. prev .. payload)
return {0, offset, epoch}
"#;

/// KEYS: meta, stream. ARGV: meta ttl ms, new epoch, since offset (-1 = none), limit (-1 =
/// all), reverse (0/1). Returns {top, epoch, offset of the first item returned, items...}
/// (items oldest first; the caller reverses).
const HISTORY_LUA: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('hget', meta, 'e')
local top = 0
if not epoch then
  epoch = ARGV[2]
  redis.call('del', stream)
  redis.call('hset', meta, 'e', epoch, 's', 0)
else
  top = tonumber(redis.call('hget', meta, 's') or '0')
end
redis.call('pexpire', meta, ARGV[1])
local since, limit, reverse = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local len = redis.call('llen', stream)
local first = top - len + 1
if limit == 0 or len == 0 then
  return {top, epoch, 0}
end
local lo, hi = 0, len - 1
if reverse then
  if since >= 0 then hi = math.min(hi, since - 1 - first) end
  if limit > 0 then lo = math.max(lo, hi - limit + 1) end
else
  if since >= 0 then lo = math.max(lo, since + 1 - first) end
  if limit > 0 then hi = math.min(hi, lo + limit - 1) end
end
if lo > hi then
  return {top, epoch, 0}
end
local result = {top, epoch, first + lo}
for _, item in ipairs(redis.call('lrange', stream, lo, hi)) do
  table.insert(result, item)
end
return result
"#;

/// Where to find Redis and under which prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://host:port[/db]` or `host:port`. Only the first configured address is used
    /// for now (client-side sharding over several comes later).
    pub address: String,
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
}

impl RedisOptions {
    /// The options of a `engine.redis` / `broker.redis` section.
    pub fn from_config(redis: &spindle_hub::config::Redis) -> Result<RedisOptions, BrokerError> {
        let address = redis
            .address
            .first()
            .cloned()
            .ok_or_else(|| BrokerError::Unavailable("engine.redis.address is empty".into()))?;
        Ok(RedisOptions {
            address,
            prefix: redis.prefix.clone(),
            connect_timeout: redis
                .connect_timeout
                .as_std()
                .max(Duration::from_millis(100)),
            user: redis.user.clone(),
            password: redis.password.expose().to_owned(),
            db: redis.db,
        })
    }

    fn url(&self) -> String {
        if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("redis://{}", self.address)
        }
    }
}

fn num(value: impl ToString) -> Value {
    Value::from(value.to_string())
}

fn unavailable(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// A connected client (commands and scripts) for one Redis, shared by the broker and the
/// presence manager.
#[derive(Clone)]
pub struct RedisConnection {
    pub(crate) client: Client,
    pub(crate) prefix: Arc<str>,
    options: RedisOptions,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("address", &self.options.address)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisConnection {
    /// Connects, failing with a clear message when Redis does not answer within the connect
    /// timeout.
    pub async fn connect(options: &RedisOptions) -> Result<RedisConnection, BrokerError> {
        let client = build(options)?
            .build()
            .map_err(|e| unavailable(format!("redis {}: {e}", options.address)))?;
        init(&client, options).await?;
        Ok(RedisConnection {
            client,
            prefix: options.prefix.as_str().into(),
            options: options.clone(),
        })
    }
}

fn build(options: &RedisOptions) -> Result<Builder, BrokerError> {
    let mut config = FredConfig::from_url(&options.url())
        .map_err(|e| unavailable(format!("redis address {:?}: {e}", options.address)))?;
    if config.username.is_none() && !options.user.is_empty() {
        config.username = Some(options.user.clone());
    }
    if config.password.is_none() && !options.password.is_empty() {
        config.password = Some(options.password.clone());
    }
    if config.database.is_none() && options.db != 0 {
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

async fn init(client: &impl ClientLike, options: &RedisOptions) -> Result<(), BrokerError> {
    let wait = options.connect_timeout + Duration::from_millis(500);
    match tokio::time::timeout(wait, client.init()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(format!(
            "cannot connect to redis at {}: {e}",
            options.address
        ))),
        Err(_) => {
            let _ = client.quit().await;
            Err(unavailable(format!(
                "cannot connect to redis at {}: no answer within {wait:?}",
                options.address
            )))
        }
    }
}

/// A broker on one Redis server (see the module docs for the data layout).
pub struct RedisBroker {
    connection: RedisConnection,
    control_channel: String,
    subscriber: fred::clients::SubscriberClient,
    publish_script: Script,
    history_script: Script,
    reader: tokio::task::JoinHandle<()>,
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
        self.reader.abort();
        let client = self.connection.client.clone();
        let subscriber = self.subscriber.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = subscriber.quit().await;
                let _ = client.quit().await;
            });
        }
    }
}

impl RedisBroker {
    /// Connects a command client and a subscriber connection and starts delivering to
    /// `handler`. Must be called inside a Tokio runtime.
    pub async fn connect(
        options: &RedisOptions,
        handler: Arc<dyn EventHandler>,
    ) -> Result<RedisBroker, BrokerError> {
        let connection = RedisConnection::connect(options).await?;
        RedisBroker::with_connection(connection, handler).await
    }

    /// [`RedisBroker::connect`] reusing a command connection.
    pub async fn with_connection(
        connection: RedisConnection,
        handler: Arc<dyn EventHandler>,
    ) -> Result<RedisBroker, BrokerError> {
        RedisBroker::with_control(connection, handler, None).await
    }

    /// [`RedisBroker::with_connection`] that also subscribes the control channel `P.control`
    /// and hands its messages to `control` (dropped, with a warning, when that queue is full).
    pub async fn with_control(
        connection: RedisConnection,
        handler: Arc<dyn EventHandler>,
        control: Option<mpsc::Sender<Bytes>>,
    ) -> Result<RedisBroker, BrokerError> {
        let options = connection.options.clone();
        let subscriber = build(&options)?
            .build_subscriber_client()
            .map_err(|e| unavailable(format!("redis {}: {e}", options.address)))?;
        let messages = subscriber.message_rx();
        init(&subscriber, &options).await?;
        // Resubscribe to every channel after a reconnection.
        subscriber.manage_subscriptions();
        let client_prefix = format!("{}.client.", connection.prefix);
        let control_channel = format!("{}.control", connection.prefix);
        if control.is_some() {
            subscriber
                .subscribe(control_channel.clone())
                .await
                .map_err(unavailable)?;
        }
        let reader = tokio::spawn(read_messages(
            messages,
            client_prefix,
            control_channel.clone(),
            handler,
            control,
        ));
        Ok(RedisBroker {
            connection,
            control_channel,
            subscriber,
            publish_script: Script::from_lua(PUBLISH_LUA),
            history_script: Script::from_lua(HISTORY_LUA),
            reader,
        })
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}.{kind}.{channel}", self.connection.prefix)
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        format!("{}.client.{channel}", self.connection.prefix)
    }

    /// Publishes a cluster control message on `P.control` (every node with a control queue
    /// receives it, this one included).
    pub async fn publish_control(&self, payload: Bytes) -> Result<(), BrokerError> {
        self.connection
            .client
            .publish::<(), _, _>(self.control_channel.as_str(), payload)
            .await
            .map_err(unavailable)
    }
}

fn new_epoch() -> String {
    let mut entropy = rand::random::<u64>;
    spindle_hub::history::new_epoch(&mut entropy)
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

fn position(offset: u64, epoch: String) -> Option<StreamPosition> {
    (offset > 0 || !epoch.is_empty()).then(|| StreamPosition::new(offset, epoch))
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

async fn read_messages(
    mut messages: tokio::sync::broadcast::Receiver<Message>,
    client_prefix: String,
    control_channel: String,
    handler: Arc<dyn EventHandler>,
    control: Option<mpsc::Sender<Bytes>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match messages.recv().await {
            Ok(message) => {
                let payload = as_bytes(&message.value);
                if *message.channel == *control_channel {
                    if let Some(control) = &control
                        && control.try_send(payload).is_err()
                    {
                        tracing::warn!("control queue full or closed: control message dropped");
                    }
                    continue;
                }
                let Some(channel) = message.channel.strip_prefix(client_prefix.as_str()) else {
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
                "{}.idem.{}.{channel}.{}",
                self.connection.prefix,
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
        ];
        let reply: Vec<Value> = self
            .publish_script
            .evalsha_with_reload(&self.connection.client, keys, args)
            .await
            .map_err(unavailable)?;
        let [status, offset, epoch] = reply.as_slice() else {
            return Err(unavailable("unexpected publish script reply"));
        };
        let position = position(as_u64(offset), as_string(epoch));
        let suppressed = match as_u64(status) {
            0 => None,
            1 => Some(Suppression::Idempotent),
            _ => Some(Suppression::StaleVersion),
        };
        Ok(PublishResult {
            position,
            suppressed,
        })
    }

    async fn publish_join_leave(&self, channel: &str, event: JoinLeave) -> Result<(), BrokerError> {
        let (kind, info) = match &event {
            JoinLeave::Join(info) => (b'j', info),
            JoinLeave::Leave(info) => (b'l', info),
        };
        let mut payload = vec![kind];
        info.encode(&mut payload).map_err(unavailable)?;
        self.connection
            .client
            .publish::<(), _, _>(self.pubsub_channel(channel), Bytes::from(payload))
            .await
            .map_err(unavailable)
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.subscriber
            .subscribe(self.pubsub_channel(channel))
            .await
            .map_err(unavailable)?;
        // A round trip on the subscriber connection: once the server answered it, it has
        // processed the SUBSCRIBE before it, so a publication made after this returns, from
        // any node, is delivered.
        self.subscriber.ping::<()>(None).await.map_err(unavailable)
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.subscriber
            .unsubscribe(self.pubsub_channel(channel))
            .await
            .map_err(unavailable)
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        stream: &StreamOptions,
    ) -> Result<HistoryResult, HistoryReadError> {
        if query.reverse && query.since.as_ref().is_some_and(|since| since.offset == 0) {
            return Err(ReadError::ReverseFromZero.into());
        }
        let since = query
            .since
            .as_ref()
            .map_or(-1, |since| i64::try_from(since.offset).unwrap_or(i64::MAX));
        let limit = query
            .limit
            .map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let keys = vec![self.key("meta", channel), self.key("stream", channel)];
        let args: Vec<Value> = vec![
            num(millis(stream.meta_ttl.max(stream.ttl))),
            new_epoch().into(),
            num(since),
            num(limit),
            num(u64::from(query.reverse)),
        ];
        let reply: Vec<Value> = self
            .history_script
            .evalsha_with_reload(&self.connection.client, keys, args)
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

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        use fred::interfaces::KeysInterface;
        self.connection
            .client
            .del::<(), _>(vec![self.key("meta", channel), self.key("stream", channel)])
            .await
            .map_err(unavailable)
    }
}
