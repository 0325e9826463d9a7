//! The PostgreSQL broker: channel streams in tables, delivery through an outbox table read by
//! every node, woken by LISTEN/NOTIFY with polling as the fallback.
//!
//! Tables and functions (all named `<prefix>_…`, prefix `broker.postgres.table_prefix`,
//! default `cf`) come from the SQL migrations in `core/migrations/postgres/`, applied on start
//! or by `spindle migrate`:
//! - `_meta`: per channel epoch, top offset, version, and the two deadlines (`history_ttl`
//!   for the publications, `history_meta_ttl` for the position). A missing or expired row
//!   means a new epoch, and the stream's old rows are deleted in the same transaction, so no
//!   (epoch, offset) ever names two publications.
//! - `_stream`: retained publications, at most `history_size` per channel.
//! - `_idempotency`: results of keyed publishes for `idempotent_result_ttl` (5 min).
//! - `_outbox` + `_shard`: what every node delivers. Each write locks its channel's shard row
//!   (16 shards) and takes the shard's next `seq`, so within a shard `seq` order is commit
//!   order and offsets of one channel are delivered in order.
//!
//! One SQL function call per publish (`_publish`) does everything in one transaction, so the
//! broker needs no client-side transactions and each connection pipelines requests. The same
//! function behind `<prefix>_stream_publish(channel, data, …)` lets an application publish
//! inside its own transaction: the event commits with its business write, or not at all, and
//! is delivered after the commit.
//!
//! Map channels have their own tables and functions (`0002_maps.sql`, [`PostgresMapBroker`]),
//! with `<prefix>_map_publish` for applications as `_stream_publish` is for streams.
//!
//! Presence is not kept in PostgreSQL: the node puts it in Redis or memory, as with NATS.

mod connect;
mod delivery;
mod maps;
mod schema;

pub use connect::PostgresOptions;
pub use maps::PostgresMapBroker;
pub use schema::{MigrationReport, SCHEMA_VERSION, migrate};

use super::{
    Broker, BrokerError, EventHandler, HistoryItem, HistoryQuery, HistoryReadError, HistoryResult,
    JoinLeave, Publication, PublishOptions, PublishResult, ReadError, StreamOptions,
    StreamPosition, new_epoch,
};
use bytes::Bytes;
use connect::{Pool, pg_error, unavailable};
use delivery::{Reader, Subscriptions, current_seqs};
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A broker on one PostgreSQL database (see the module docs).
pub struct PostgresBroker {
    pool: Arc<Pool>,
    prefix: String,
    idempotency_ttl_ms: i64,
    subscriptions: Arc<Subscriptions>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The delivery reader's connection is up (see [`PostgresBroker::health`]).
    delivering: Arc<std::sync::atomic::AtomicBool>,
    target: String,
}

impl std::fmt::Debug for PostgresBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBroker")
            .field("pool", &self.pool)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Drop for PostgresBroker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

fn tags_json(publication: &Publication) -> Option<String> {
    (!publication.tags.is_empty())
        .then(|| serde_json::to_string(&publication.tags).unwrap_or_else(|_| "{}".to_owned()))
}

impl PostgresBroker {
    /// Connects, applies the migrations (unless `skip_schema_init`, then checks the schema
    /// version), and starts delivering to `handler`; control messages (kind `c` in the
    /// outbox) go to `control` when given. Fails with a clear message when PostgreSQL cannot
    /// be reached. Must be called inside a Tokio runtime.
    pub async fn connect(
        options: &PostgresOptions,
        handler: Arc<dyn EventHandler>,
        control: Option<mpsc::Sender<Bytes>>,
    ) -> Result<PostgresBroker, BrokerError> {
        let (config, target) = options.parse()?;
        let prefix = options.table_prefix.clone();
        if options.skip_schema_init {
            let client = connect::connect(&config, &target, None).await?;
            schema::check(&client, &prefix).await?;
        } else {
            migrate(options).await?;
        }
        let pool = Arc::new(
            Pool::new(
                config.clone(),
                target.clone(),
                prefix.clone(),
                options.pool_size,
            )
            .await?,
        );
        // Delivery starts from what is committed now: anything published after `connect`
        // returns is read.
        let last = current_seqs(&pool.get().await?.client, &prefix).await?;
        let subscriptions = Arc::new(Subscriptions::default());
        let delivering = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reader = Reader {
            config: config.clone(),
            target: target.clone(),
            options: options.clone(),
            handler,
            control,
            subscriptions: subscriptions.clone(),
            last,
            delivering: delivering.clone(),
        };
        let mut tasks = vec![tokio::spawn(reader.run())];
        tasks.push(tokio::spawn(cleanup(
            config,
            target.clone(),
            prefix.clone(),
            options.cleanup_interval,
            millis(options.outbox_retention),
        )));
        Ok(PostgresBroker {
            pool,
            prefix,
            idempotency_ttl_ms: millis(options.idempotent_result_ttl),
            subscriptions,
            tasks,
            delivering,
            target,
        })
    }

    /// `Err` while the delivery connection (LISTEN and outbox reads) is down and reconnecting.
    pub fn health(&self) -> Result<(), String> {
        if self.delivering.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err(format!(
                "postgresql {}: delivery connection down",
                self.target
            ))
        }
    }

    /// Map storage on this broker's connections and tables.
    pub fn maps(&self) -> PostgresMapBroker {
        PostgresMapBroker::new(self.pool.clone(), self.idempotency_ttl_ms)
    }

    /// The table and function prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Publishes a cluster control message to every node on this database (this one
    /// included), through the outbox like a publication.
    pub async fn publish_control(&self, payload: Bytes) -> Result<(), BrokerError> {
        self.event("c", "", &payload).await
    }

    async fn event(&self, kind: &str, channel: &str, data: &[u8]) -> Result<(), BrokerError> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(&conn.publish_event, &[&kind, &channel, &data])
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

/// Removes expired rows every `interval` (on its own connection, reopened after errors).
async fn cleanup(
    config: tokio_postgres::Config,
    target: String,
    prefix: String,
    interval: Duration,
    outbox_retention_ms: i64,
) {
    let mut client = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if client
            .as_ref()
            .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
        {
            client = connect::connect(&config, &target, None).await.ok();
        }
        let Some(c) = &client else { continue };
        let sql = format!("SELECT {prefix}_cleanup($1)");
        if let Err(error) = c.execute(&sql, &[&outbox_retention_ms]).await {
            tracing::warn!(%error, "postgresql broker cleanup failed");
        }
    }
}

impl Broker for PostgresBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> Result<PublishResult, BrokerError> {
        let history = options.history.filter(|_| !options.skip_history);
        let (size, ttl, meta_ttl) = match history {
            Some(stream) => (
                i32::try_from(stream.size.max(1)).unwrap_or(i32::MAX),
                millis(stream.ttl),
                millis(stream.meta_ttl.max(stream.ttl)),
            ),
            None => (0, 1, 1),
        };
        let info = publication.info.as_ref().map(|info| info.encode_to_vec());
        let tags = tags_json(&publication);
        let data: &[u8] = &publication.data;
        let epoch = new_epoch();
        let version = i64::try_from(options.version).unwrap_or(i64::MAX);
        let conn = self.pool.get().await?;
        let row = conn
            .client
            .query_one(
                &conn.publish,
                &[
                    &channel,
                    &data,
                    &info,
                    &tags,
                    &size,
                    &ttl,
                    &meta_ttl,
                    &epoch,
                    &version,
                    &options.version_epoch,
                    &options.delta,
                    &options.idempotency_key,
                    &self.idempotency_ttl_ms,
                ],
            )
            .await
            .map_err(pg_error)?;
        let status: i32 = row.get(0);
        let offset: i64 = row.get(1);
        let epoch: String = row.get(2);
        Ok(PublishResult::from_storage(
            u64::try_from(status).unwrap_or(2),
            u64::try_from(offset).unwrap_or(0),
            epoch,
        ))
    }

    async fn publish_join_leave(&self, channel: &str, event: JoinLeave) -> Result<(), BrokerError> {
        let (kind, info) = match &event {
            JoinLeave::Join(info) => ("j", info),
            JoinLeave::Leave(info) => ("l", info),
        };
        self.event(kind, channel, &info.encode_to_vec()).await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        // The reader filters by this set when it hands rows over; every row committed after
        // this returns has a higher `seq` than any row already read, so it is delivered.
        self.subscriptions.add(channel);
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        self.subscriptions.remove(channel);
        Ok(())
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        stream: &StreamOptions,
    ) -> Result<HistoryResult, HistoryReadError> {
        let (since, limit) = query.signed_bounds()?;
        let meta_ttl = millis(stream.meta_ttl.max(stream.ttl));
        let epoch = new_epoch();
        let conn = self.pool.get().await?;
        let rows = conn
            .client
            .query(
                &conn.history,
                &[&channel, &meta_ttl, &epoch, &since, &limit, &query.reverse],
            )
            .await
            .map_err(pg_error)?;
        let first = rows
            .first()
            .ok_or_else(|| unavailable("postgresql history returned no rows"))?;
        let top: i64 = first.get(0);
        let top = StreamPosition::new(u64::try_from(top).unwrap_or(0), first.get::<_, String>(1));
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
            let publication = delivery::publication(row.get(3), row.get(4), row.get(5))
                .ok_or_else(|| unavailable("undecodable publication in postgresql history"))?;
            publications.push(HistoryItem {
                offset: u64::try_from(offset).unwrap_or(0),
                publication: Arc::new(publication),
            });
        }
        Ok(HistoryResult { top, publications })
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let conn = self.pool.get().await?;
        conn.client
            .execute(&conn.remove_history, &[&channel])
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}
