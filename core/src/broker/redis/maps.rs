//! Map storage in Redis ([`crate::maps::MapBroker`]): one map channel's keys under its hash tag,
//! changes delivered over the channel's PUB/SUB channel like publications, so the Redis
//! broker's subscribers hand them to every node's handler in stream order.
//!
//! Keys per map channel `ch` (prefix `P`):
//! - `P.map.meta.{ch}`, `P.map.stream.{ch}`: position and change stream, as a channel's
//!   history (same continuity rules);
//! - `P.map.state.{ch}`: hash key → `<offset>,<encoded publication>`;
//! - `P.map.keys.{ch}`: the keys in a sorted set (all scores 0) for pages in byte order;
//! - `P.map.exp.{ch}`: key → deadline (ms, server clock); `P.map.tags.{ch}`: key → its tags
//!   (what a removal carries); `P.map.ver.{ch}`: key → `version,version_epoch`;
//! - `P.map.idem.{ch}.<len>.ch.key`: a write's result under its idempotency key, 5 minutes;
//! - `P.map.expiring` (one per shard): channel → its earliest key deadline, so the sweep finds
//!   due channels without scanning.
//!
//! Every key of a channel expires `meta_ttl` after its last write (never for `persistent`
//! maps), which is never before its entries' own deadlines.

use super::map_scripts::{MAP_EXPIRE_LUA, MAP_INDEX_LUA, MAP_STATE_LUA, MAP_WRITE_LUA};
use super::scripts::HISTORY_LUA;
use super::{
    IDEMPOTENCY_TTL_MS, RedisConnection, Shard, as_bytes, as_string, as_u64, decode_publication,
    encode_publication, num, read_stream, unavailable,
};
use crate::broker::{
    BrokerError, HistoryQuery, HistoryResult, Publication, ReadError, StreamPosition, new_epoch,
};
use crate::maps::{
    KeyMode, MapBroker, MapEntry, MapError, MapReadError, MapSettings, MapState, MapSuppression,
    MapUpdate, MapWrite, MapWriteError, StateQuery, read_in_chunks,
};
use bytes::Bytes;
use fred::prelude::{KeysInterface, SortedSetsInterface, Value};
use fred::types::scripts::Script;
use spindle_hub::map::MapLimits;
use std::sync::Arc;

/// Keys expired per channel per sweep at most (the rest in the next sweep).
const EXPIRE_BATCH: u64 = 1_000;
/// Due channels taken from a shard's index per sweep at most.
const SWEEP_CHANNELS: i64 = 256;
/// State entries read per script call when a read asks for all of them.
const STATE_CHUNK: usize = 1_000;

/// Map channels in Redis (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct RedisMapBroker {
    connection: RedisConnection,
    scripts: Arc<Scripts>,
    max_keys: usize,
}

struct Scripts {
    write: Script,
    state: Script,
    stream: Script,
    expire: Script,
    index: Script,
}

impl std::fmt::Debug for RedisMapBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMapBroker")
            .field("connection", &self.connection)
            .finish()
    }
}

/// `Publication{tags}` encoded: what a removal of the entry carries.
fn tags_only(publication: &Publication) -> Bytes {
    match publication.tags.is_empty() {
        true => Bytes::new(),
        false => encode_publication(&Publication {
            tags: publication.tags.clone(),
            ..Publication::default()
        }),
    }
}

impl RedisMapBroker {
    /// Map storage on `connection` (its shards and prefix).
    pub fn new(connection: RedisConnection) -> RedisMapBroker {
        RedisMapBroker {
            connection,
            scripts: Arc::new(Scripts {
                write: Script::from_lua(MAP_WRITE_LUA),
                state: Script::from_lua(MAP_STATE_LUA),
                stream: Script::from_lua(HISTORY_LUA),
                expire: Script::from_lua(MAP_EXPIRE_LUA),
                index: Script::from_lua(MAP_INDEX_LUA),
            }),
            max_keys: MapLimits::default().max_keys,
        }
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        self.connection.key(kind, channel)
    }

    fn shard(&self, channel: &str) -> &Shard {
        self.connection.shard(channel)
    }

    fn index_key(&self) -> String {
        format!("{}.map.expiring", self.connection.prefix)
    }

    /// meta, stream, state, keys, exp, tags, ver.
    fn channel_keys(&self, channel: &str) -> Vec<String> {
        ["meta", "stream", "state", "keys", "exp", "tags", "ver"]
            .iter()
            .map(|kind| self.key(&format!("map.{kind}"), channel))
            .collect()
    }

    /// Removes the due keys of every channel in each shard's index (`settings` of a channel
    /// from its namespace; a channel no longer a map leaves the index). Returns the keys
    /// removed. Several nodes may sweep at once: a key is removed once.
    pub async fn sweep(&self, settings: impl Fn(&str) -> Option<MapSettings>) -> usize {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut removed = 0;
        for shard in self.connection.shards() {
            let due: Vec<Value> = match shard
                .client
                .zrangebyscore(
                    self.index_key(),
                    f64::NEG_INFINITY,
                    now as f64,
                    true,
                    Some((0, SWEEP_CHANNELS)),
                )
                .await
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "map expiry index");
                    continue;
                }
            };
            let due: Vec<(String, i64)> = due
                .chunks_exact(2)
                .map(|pair| {
                    let score = match &pair[1] {
                        Value::Double(d) => *d as i64,
                        other => as_string(other).parse::<f64>().unwrap_or(0.0) as i64,
                    };
                    (as_string(&pair[0]), score)
                })
                .collect();
            for (channel, score) in due {
                let next = match settings(&channel) {
                    Some(settings) => match self.expire(&channel, &settings).await {
                        Ok((count, next)) => {
                            removed += count;
                            next
                        }
                        Err(error) => {
                            tracing::warn!(channel, %error, "map keys not expired");
                            continue;
                        }
                    },
                    None => -1,
                };
                let args: Vec<Value> = vec![channel.as_str().into(), num(score), num(next)];
                let applied: Result<Value, _> = self
                    .scripts
                    .index
                    .evalsha_with_reload(&shard.client, vec![self.index_key()], args)
                    .await;
                if let Err(error) = applied {
                    tracing::warn!(channel, %error, "map expiry index not updated");
                }
            }
        }
        removed
    }

    /// Expires one channel's due keys; (removed, next deadline or -1).
    async fn expire(
        &self,
        channel: &str,
        settings: &MapSettings,
    ) -> Result<(usize, i64), BrokerError> {
        let a = settings.storage_args();
        let (size, stream_ttl, meta_ttl) = (a.stream_size, a.stream_ttl_ms, a.meta_ttl_ms);
        let shard = self.shard(channel);
        let args: Vec<Value> = vec![
            self.key("client", channel).into(),
            num(size),
            num(stream_ttl),
            num(meta_ttl),
            new_epoch().into(),
            shard.publish_command().into(),
            num(EXPIRE_BATCH),
        ];
        let reply: Vec<Value> = self
            .scripts
            .expire
            .evalsha_with_reload(&shard.client, self.channel_keys(channel), args)
            .await
            .map_err(unavailable)?;
        let [count, next] = reply.as_slice() else {
            return Err(unavailable("unexpected map expire script reply"));
        };
        let next = match next {
            Value::Integer(i) => *i,
            other => other.as_i64().unwrap_or(-1),
        };
        Ok((as_u64(count) as usize, next))
    }

    /// One state page (`limit` > 0) from after `after`: entries, position, whether more follow.
    async fn state_page(
        &self,
        channel: &str,
        settings: &MapSettings,
        after: &str,
        limit: usize,
        key: &str,
        revision_epoch: &str,
    ) -> Result<(Vec<MapEntry>, StreamPosition, bool), MapReadError> {
        let meta_ttl = settings.storage_args().meta_ttl_ms;
        let mut keys = self.channel_keys(channel);
        keys.truncate(4);
        let args: Vec<Value> = vec![
            num(meta_ttl),
            new_epoch().into(),
            after.into(),
            num(limit),
            key.into(),
            revision_epoch.into(),
        ];
        let reply: Vec<Value> = self
            .scripts
            .state
            .evalsha_with_reload(&self.shard(channel).client, keys, args)
            .await
            .map_err(unavailable)
            .map_err(MapReadError::Broker)?;
        let [top, epoch, more, items @ ..] = reply.as_slice() else {
            return Err(unavailable("unexpected map state script reply").into());
        };
        let more = match more {
            Value::Integer(i) => *i,
            other => other.as_i64().unwrap_or(0),
        };
        if more < 0 {
            return Err(ReadError::Unrecoverable.into());
        }
        let mut entries = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks_exact(2) {
            let value = as_bytes(&pair[1]);
            let entry =
                parse_entry(&value).ok_or_else(|| unavailable("undecodable map entry in redis"))?;
            entries.push(entry);
        }
        Ok((
            entries,
            StreamPosition::new(as_u64(top), as_string(epoch)),
            more > 0,
        ))
    }
}

/// `<offset>,<encoded publication>`.
fn parse_entry(value: &[u8]) -> Option<MapEntry> {
    let comma = value.iter().position(|&b| b == b',')?;
    let offset = std::str::from_utf8(&value[..comma]).ok()?.parse().ok()?;
    let publication = decode_publication(&value[comma + 1..])?;
    Some(MapEntry {
        offset,
        publication: Arc::new(publication),
    })
}

impl MapBroker for RedisMapBroker {
    async fn write(
        &self,
        channel: &str,
        settings: MapSettings,
        write: MapWrite<'_>,
    ) -> Result<MapUpdate, MapError> {
        if write.version > 0 && settings.stream.is_none() {
            return Err(MapWriteError::VersionWithoutStream.into());
        }
        let a = settings.storage_args();
        let (size, stream_ttl, meta_ttl, key_ttl) =
            (a.stream_size, a.stream_ttl_ms, a.meta_ttl_ms, a.key_ttl_ms);
        let with_key = !write.idempotency_key.is_empty();
        let idem = match with_key {
            true => format!(
                "{}.{}.{channel}.{}",
                self.key("map.idem", channel),
                channel.len(),
                write.idempotency_key
            ),
            false => self.key("map.idem", channel),
        };
        let (payload, tags, removing) = match &write.publication {
            Some(publication) => {
                let entry = Publication {
                    key: write.key.to_owned(),
                    removed: false,
                    ..publication.clone()
                };
                (encode_publication(&entry), tags_only(publication), false)
            }
            None => (Bytes::new(), Bytes::new(), true),
        };
        let key_mode = match write.key_mode {
            KeyMode::Replace => "",
            KeyMode::IfNew => "if_new",
            KeyMode::IfExists => "if_exists",
        };
        let shard = self.shard(channel);
        let mut keys = self.channel_keys(channel);
        keys.push(idem);
        let args: Vec<Value> = vec![
            self.key("client", channel).into(),
            write.key.into(),
            Value::Bytes(payload),
            Value::Bytes(tags),
            num(u64::from(removing)),
            num(size),
            num(stream_ttl),
            num(meta_ttl),
            num(key_ttl),
            new_epoch().into(),
            key_mode.into(),
            num(u64::from(write.refresh_ttl_on_suppress)),
            num(write.version),
            write.version_epoch.into(),
            num(u64::from(write.want_prev)),
            num(u64::from(with_key)),
            num(IDEMPOTENCY_TTL_MS),
            shard.publish_command().into(),
            num(self.max_keys),
        ];
        let reply: Vec<Value> = self
            .scripts
            .write
            .evalsha_with_reload(&shard.client, keys, args)
            .await
            .map_err(unavailable)?;
        let [status, offset, epoch, deadline] = reply.as_slice() else {
            return Err(unavailable("unexpected map write script reply").into());
        };
        let deadline = as_u64(deadline);
        if deadline > 0 {
            // `LT`: an earlier deadline moves the channel up, a later one leaves it (the sweep
            // moves it on after its due keys are gone).
            let indexed: Result<Value, _> = shard
                .client
                .zadd(
                    self.index_key(),
                    None,
                    Some(fred::types::sorted_sets::Ordering::LessThan),
                    false,
                    false,
                    (deadline as f64, channel),
                )
                .await;
            if let Err(error) = indexed {
                tracing::warn!(channel, %error, "map expiry index not updated");
            }
        }
        let position = StreamPosition::new(as_u64(offset), as_string(epoch));
        let suppressed = match as_u64(status) {
            0 => None,
            1 => Some(MapSuppression::Idempotent),
            2 => Some(MapSuppression::StaleVersion),
            3 => Some(MapSuppression::KeyExists),
            4 => Some(MapSuppression::KeyNotFound),
            _ => return Err(MapWriteError::TooManyKeys.into()),
        };
        Ok(MapUpdate {
            position,
            suppressed,
        })
    }

    async fn state(
        &self,
        channel: &str,
        settings: MapSettings,
        query: StateQuery<'_>,
    ) -> Result<MapState, MapReadError> {
        let revision_epoch = query.revision.map_or("", |r| r.epoch.as_str());
        if let Some(key) = query.key {
            let (entries, position, _) = self
                .state_page(channel, &settings, "", 1, key, revision_epoch)
                .await?;
            return Ok(MapState {
                position,
                entries,
                cursor: None,
            });
        }
        if query.limit == Some(0) {
            // Position only: a page of one, its entries dropped.
            let (_, position, _) = self
                .state_page(channel, &settings, "", 1, "", revision_epoch)
                .await?;
            return Ok(MapState {
                position,
                ..MapState::default()
            });
        }
        let settings = &settings;
        read_in_chunks(channel, &query, STATE_CHUNK, |after, limit| async move {
            let after = after.unwrap_or_default();
            self.state_page(channel, settings, &after, limit, "", revision_epoch)
                .await
        })
        .await
    }

    async fn stream(
        &self,
        channel: &str,
        settings: MapSettings,
        query: &HistoryQuery,
    ) -> Result<HistoryResult, MapReadError> {
        let (since, limit) = query.signed_bounds()?;
        let meta_ttl = settings.storage_args().meta_ttl_ms;
        let keys = vec![
            self.key("map.meta", channel),
            self.key("map.stream", channel),
        ];
        let args: Vec<Value> = vec![
            num(meta_ttl),
            new_epoch().into(),
            num(since),
            num(limit),
            num(u64::from(query.reverse)),
        ];
        let result = read_stream(
            &self.scripts.stream,
            &self.shard(channel).client,
            keys,
            args,
            query,
        )
        .await?;
        let first = result.publications.first().map(|p| p.offset);
        query.check_continues(result.top.offset, first)?;
        Ok(result)
    }

    async fn stats(&self, channel: &str) -> Result<usize, BrokerError> {
        use fred::interfaces::HashesInterface;
        let count: u64 = self
            .shard(channel)
            .client
            .hlen(self.key("map.state", channel))
            .await
            .map_err(unavailable)?;
        Ok(count as usize)
    }

    async fn clear(&self, channel: &str) -> Result<(), BrokerError> {
        self.shard(channel)
            .client
            .del::<(), _>(self.channel_keys(channel))
            .await
            .map_err(unavailable)
    }
}
