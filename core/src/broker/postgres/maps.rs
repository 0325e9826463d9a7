//! Map storage in PostgreSQL ([`crate::maps::MapBroker`]): the tables and functions of
//! `core/migrations/postgres/0002_maps.sql`, changes delivered through the outbox like
//! publications (so the broker's reader hands them to every node in offset order), and
//! `<prefix>_map_publish` / `<prefix>_map_remove` for applications writing inside their own
//! transactions.

use super::connect::{Pool, pg_error, unavailable};
use super::{delivery, tags_json};
use crate::broker::{
    BrokerError, HistoryItem, HistoryQuery, HistoryResult, ReadError, StreamPosition, new_epoch,
};
use crate::maps::{
    KeyMode, MapBroker, MapEntry, MapError, MapReadError, MapSettings, MapState, MapSuppression,
    MapUpdate, MapWrite, MapWriteError, StateQuery, read_in_chunks,
};
use prost::Message as _;
use spindle_hub::map::MapLimits;
use std::sync::Arc;

/// Due keys removed per shard per sweep at most (the rest in the next sweep).
const EXPIRE_BATCH: i32 = 1_000;
/// The outbox shards (`0001_streams.sql`).
const SHARDS: i32 = 16;
/// State entries read per call when a read asks for all of them.
const STATE_CHUNK: usize = 1_000;

/// Map channels in PostgreSQL, on the broker's connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PostgresMapBroker {
    pool: Arc<Pool>,
    idempotency_ttl_ms: i64,
}

/// The settings as the SQL functions take them (see [`MapSettings::storage_args`]): stream
/// size, stream ttl, meta ttl, key ttl.
fn settings_args(settings: &MapSettings) -> (i32, i64, i64, i64) {
    let a = settings.storage_args();
    let big = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
    (
        i32::try_from(a.stream_size).unwrap_or(i32::MAX),
        big(a.stream_ttl_ms),
        big(a.meta_ttl_ms),
        big(a.key_ttl_ms),
    )
}

fn position(top: i64, epoch: String) -> StreamPosition {
    StreamPosition::new(u64::try_from(top).unwrap_or(0), epoch)
}

impl PostgresMapBroker {
    pub(super) fn new(pool: Arc<Pool>, idempotency_ttl_ms: i64) -> PostgresMapBroker {
        PostgresMapBroker {
            pool,
            idempotency_ttl_ms,
        }
    }

    /// Removes every due key (each delivered as a removal), shard by shard; returns how many.
    /// Several nodes may sweep at once: a key is removed once.
    pub async fn sweep(&self) -> usize {
        let mut removed = 0;
        for shard in 0..SHARDS {
            let conn = match self.pool.get().await {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "map keys not expired");
                    return removed;
                }
            };
            match conn
                .client
                .query_one(&conn.map.expire, &[&shard, &EXPIRE_BATCH])
                .await
            {
                Ok(row) => removed += usize::try_from(row.get::<_, i32>(0)).unwrap_or(0),
                Err(error) => tracing::warn!(%error, shard, "map keys not expired"),
            }
        }
        removed
    }

    /// One state page after `after` (`None`: the first) of at most `limit` entries, or the
    /// one `key`: entries, position, whether more follow.
    async fn page(
        &self,
        channel: &str,
        settings: &MapSettings,
        after: Option<&str>,
        limit: usize,
        key: Option<&str>,
    ) -> Result<(Vec<MapEntry>, StreamPosition, bool), BrokerError> {
        let (size, ttl, meta_ttl, key_ttl) = settings_args(settings);
        let epoch = new_epoch();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &conn.map.state,
                &[
                    &channel, &size, &ttl, &meta_ttl, &key_ttl, &epoch, &after, &limit, &key,
                ],
            )
            .await
            .map_err(pg_error)?;
        let first = rows
            .first()
            .ok_or_else(|| unavailable("postgresql map state returned no rows"))?;
        let at = position(first.get(0), first.get(1));
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(key) = row.get::<_, Option<String>>(2) else {
                continue;
            };
            let mut publication = delivery::publication(row.get(4), row.get(5), row.get(6))
                .ok_or_else(|| unavailable("undecodable map entry in postgresql"))?;
            publication.key = key;
            entries.push(MapEntry {
                offset: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                publication: Arc::new(publication),
            });
        }
        let more = key.is_none() && entries.len() as i64 > limit;
        if more {
            entries.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok((entries, at, more))
    }
}

impl MapBroker for PostgresMapBroker {
    async fn write(
        &self,
        channel: &str,
        settings: MapSettings,
        write: MapWrite<'_>,
    ) -> Result<MapUpdate, MapError> {
        if write.version > 0 && settings.stream.is_none() {
            return Err(MapWriteError::VersionWithoutStream.into());
        }
        let (size, ttl, meta_ttl, key_ttl) = settings_args(&settings);
        let removing = write.publication.is_none();
        let publication = write.publication.unwrap_or_default();
        let data: &[u8] = &publication.data;
        let info = publication.info.as_ref().map(|info| info.encode_to_vec());
        let tags = tags_json(&publication);
        let key_mode = match write.key_mode {
            KeyMode::Replace => "",
            KeyMode::IfNew => "if_new",
            KeyMode::IfExists => "if_exists",
        };
        let epoch = new_epoch();
        let version = i64::try_from(write.version).unwrap_or(i64::MAX);
        let max_keys = i64::try_from(MapLimits::default().max_keys).unwrap_or(i64::MAX);
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_one(
                &conn.map.write,
                &[
                    &channel,
                    &write.key,
                    &removing,
                    &data,
                    &info,
                    &tags,
                    &size,
                    &ttl,
                    &meta_ttl,
                    &key_ttl,
                    &epoch,
                    &key_mode,
                    &write.refresh_ttl_on_suppress,
                    &version,
                    &write.version_epoch,
                    &write.want_prev,
                    &write.idempotency_key,
                    &self.idempotency_ttl_ms,
                    &max_keys,
                ],
            )
            .await
            .map_err(pg_error)?;
        let suppressed = match row.get::<_, i32>(0) {
            0 => None,
            1 => Some(MapSuppression::Idempotent),
            2 => Some(MapSuppression::StaleVersion),
            3 => Some(MapSuppression::KeyExists),
            4 => Some(MapSuppression::KeyNotFound),
            _ => return Err(MapWriteError::TooManyKeys.into()),
        };
        Ok(MapUpdate {
            position: position(row.get(1), row.get(2)),
            suppressed,
        })
    }

    async fn state(
        &self,
        channel: &str,
        settings: MapSettings,
        query: StateQuery<'_>,
    ) -> Result<MapState, MapReadError> {
        let check = |at: &StreamPosition| match query.revision {
            Some(revision) if !revision.epoch.is_empty() && revision.epoch != at.epoch => {
                Err(MapReadError::Read(ReadError::Unrecoverable))
            }
            _ => Ok(()),
        };
        if query.key.is_some() || query.limit == Some(0) {
            let (entries, at, _) = self.page(channel, &settings, None, 0, query.key).await?;
            check(&at)?;
            return Ok(MapState {
                position: at,
                entries,
                cursor: None,
            });
        }
        let settings = &settings;
        let check = &check;
        read_in_chunks(channel, &query, STATE_CHUNK, |after, limit| async move {
            let (entries, at, more) = self
                .page(channel, settings, after.as_deref(), limit, None)
                .await?;
            check(&at)?;
            Ok((entries, at, more))
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
        let (size, ttl, meta_ttl, key_ttl) = settings_args(&settings);
        let epoch = new_epoch();
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &conn.map.history,
                &[
                    &channel,
                    &size,
                    &ttl,
                    &meta_ttl,
                    &key_ttl,
                    &epoch,
                    &since,
                    &limit,
                    &query.reverse,
                ],
            )
            .await
            .map_err(pg_error)?;
        let first = rows
            .first()
            .ok_or_else(|| unavailable("postgresql map history returned no rows"))?;
        let top = position(first.get(0), first.get(1));
        if let Some(since) = &query.since
            && !since.epoch.is_empty()
            && since.epoch != top.epoch
        {
            return Err(ReadError::Unrecoverable.into());
        }
        let mut publications = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(offset) = row.get::<_, Option<i64>>(2) else {
                continue;
            };
            let mut publication = delivery::publication(row.get(5), row.get(6), row.get(7))
                .ok_or_else(|| unavailable("undecodable map change in postgresql"))?;
            publication.key = row.get(3);
            publication.removed = row.get(4);
            publications.push(HistoryItem {
                offset: u64::try_from(offset).unwrap_or(0),
                publication: Arc::new(publication),
            });
        }
        query.check_continues(top.offset, publications.first().map(|p| p.offset))?;
        Ok(HistoryResult { top, publications })
    }

    async fn stats(&self, channel: &str) -> Result<usize, BrokerError> {
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_one(&conn.map.stats, &[&channel])
            .await
            .map_err(pg_error)?;
        Ok(usize::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    async fn clear(&self, channel: &str) -> Result<(), BrokerError> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(&conn.map.clear, &[&channel])
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}
