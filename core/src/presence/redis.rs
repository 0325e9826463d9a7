//! Presence in Redis: per channel `ch` under prefix `P`, a hash `P.presence.data.{ch}` (client
//! id → encoded client info) and a sorted set `P.presence.expire.{ch}` (client id → expiry time
//! in Redis server milliseconds), on the channel's shard and, in a Redis Cluster, in the
//! channel's slot (`{ch}` is its hash tag). Every script first drops the expired entries; both keys expire
//! with the TTL after the last add or refresh, so an abandoned channel disappears by itself.
//! Time comes from the Redis server (`TIME`), so every node agrees on expiry.

use super::{PresenceManager, PresenceStats, PresenceStoreError};
use crate::broker::RedisConnection;
use bytes::Bytes;
use fred::prelude::Value;
use fred::types::scripts::Script;
use prost::Message as _;
use spindle_proto::client::ClientInfo;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Shared prologue: `now` in ms and expired entries dropped. KEYS: data hash, expiry zset.
const PROLOGUE: &str = r#"
local data, expire = KEYS[1], KEYS[2]
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('zrangebyscore', expire, '-inf', now)
if #expired > 0 then
  redis.call('hdel', data, unpack(expired))
  redis.call('zremrangebyscore', expire, '-inf', now)
end
"#;

/// ARGV: client, info, ttl ms. Returns 1 when the client was not present.
const ADD_LUA: &str = r#"
local new = redis.call('hset', data, ARGV[1], ARGV[2])
redis.call('zadd', expire, now + tonumber(ARGV[3]), ARGV[1])
redis.call('pexpire', data, ARGV[3])
redis.call('pexpire', expire, ARGV[3])
return new
"#;

/// ARGV: client, ttl ms. Returns 1 when the entry was live (and is extended).
const REFRESH_LUA: &str = r#"
if not redis.call('zscore', expire, ARGV[1]) then
  return 0
end
redis.call('zadd', expire, now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', data, ARGV[2])
redis.call('pexpire', expire, ARGV[2])
return 1
"#;

/// ARGV: client. Returns the removed info or false.
const REMOVE_LUA: &str = r#"
local info = redis.call('hget', data, ARGV[1])
redis.call('hdel', data, ARGV[1])
redis.call('zrem', expire, ARGV[1])
return info
"#;

/// Returns the live entries as a flat client, info list.
const ALL_LUA: &str = r#"
return redis.call('hgetall', data)
"#;

/// Presence on one Redis server (see the module docs for the data layout).
#[derive(Debug)]
pub struct RedisPresenceManager {
    connection: RedisConnection,
    ttl: Duration,
    add: Script,
    refresh: Script,
    remove: Script,
    all: Script,
}

fn num(value: impl ToString) -> Value {
    Value::from(value.to_string())
}

fn unavailable(error: impl std::fmt::Display) -> PresenceStoreError {
    PresenceStoreError::Unavailable(error.to_string())
}

fn script(body: &str) -> Script {
    Script::from_lua(format!("{PROLOGUE}{body}"))
}

fn as_bytes(value: &Value) -> Bytes {
    match value {
        Value::Bytes(bytes) => bytes.clone(),
        Value::String(text) => Bytes::copy_from_slice(text.as_bytes()),
        _ => Bytes::new(),
    }
}

impl RedisPresenceManager {
    /// Entries live `ttl` after their last add or refresh.
    pub fn new(connection: RedisConnection, ttl: Duration) -> RedisPresenceManager {
        RedisPresenceManager {
            connection,
            ttl,
            add: script(ADD_LUA),
            refresh: script(REFRESH_LUA),
            remove: script(REMOVE_LUA),
            all: script(ALL_LUA),
        }
    }

    fn keys(&self, channel: &str) -> Vec<String> {
        vec![
            self.connection.key("presence.data", channel),
            self.connection.key("presence.expire", channel),
        ]
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn run(
        &self,
        script: &Script,
        channel: &str,
        args: Vec<Value>,
    ) -> Result<Value, PresenceStoreError> {
        script
            .evalsha_with_reload(
                &self.connection.shard(channel).client,
                self.keys(channel),
                args,
            )
            .await
            .map_err(unavailable)
    }
}

fn decode(value: &Value) -> Result<ClientInfo, PresenceStoreError> {
    ClientInfo::decode(as_bytes(value)).map_err(unavailable)
}

impl PresenceManager for RedisPresenceManager {
    async fn add_presence(
        &self,
        channel: &str,
        info: ClientInfo,
    ) -> Result<bool, PresenceStoreError> {
        let args = vec![
            info.client.as_str().into(),
            Value::Bytes(info.encode_to_vec().into()),
            num(self.ttl_ms()),
        ];
        let reply = self.run(&self.add, channel, args).await?;
        Ok(reply.as_u64() == Some(1))
    }

    async fn refresh_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<bool, PresenceStoreError> {
        let args = vec![client.into(), num(self.ttl_ms())];
        let reply = self.run(&self.refresh, channel, args).await?;
        Ok(reply.as_u64() == Some(1))
    }

    async fn remove_presence(
        &self,
        channel: &str,
        client: &str,
    ) -> Result<Option<ClientInfo>, PresenceStoreError> {
        let reply = self.run(&self.remove, channel, vec![client.into()]).await?;
        match reply {
            Value::Null | Value::Boolean(false) => Ok(None),
            info => decode(&info).map(Some),
        }
    }

    async fn presence(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, PresenceStoreError> {
        let reply = self.run(&self.all, channel, Vec::new()).await?;
        let items = match reply {
            Value::Array(items) => items,
            Value::Map(map) => map
                .inner()
                .into_iter()
                .flat_map(|(k, v)| [Value::from(k), v])
                .collect(),
            Value::Null => Vec::new(),
            _ => return Err(unavailable("unexpected presence reply")),
        };
        let mut result = BTreeMap::new();
        for pair in items.chunks_exact(2) {
            let client = String::from_utf8_lossy(&as_bytes(&pair[0])).into_owned();
            result.insert(client, decode(&pair[1])?);
        }
        Ok(result)
    }

    async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, PresenceStoreError> {
        let entries = self.presence(channel).await?;
        let users: BTreeSet<&str> = entries.values().map(|info| info.user.as_str()).collect();
        Ok(PresenceStats {
            num_clients: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            num_users: u32::try_from(users.len()).unwrap_or(u32::MAX),
        })
    }
}
