//! Delivery: one task per node reads the outbox, shard by shard in `seq` order, and hands the
//! rows of subscribed channels to the node's handler.
//!
//! Wake-ups come from LISTEN (the NOTIFY payload is only the shard number, so the 8000-byte
//! NOTIFY limit never matters and a publication of any size travels the same way), and from a
//! poll every `poll_interval` comparing each shard's committed `seq` with the last one read.
//! A lost notification or a dropped connection therefore costs latency, never a publication:
//! rows stay in the outbox for `outbox_retention` and the reader resumes from its last `seq`.

use super::connect::{PostgresOptions, connect, pg_error, unavailable};
use crate::broker::{BrokerError, EventHandler, JoinLeave, Publication, StreamPosition};
use bytes::Bytes;
use prost::Message as _;
use spindle_proto::client;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Config as PgConfig, Row};

/// Shards in the schema (`{p}_shard` rows; see the migration).
pub(super) const SHARDS: usize = 16;

/// Channels this node subscribed to.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(Mutex<HashSet<String>>);

impl Subscriptions {
    pub fn add(&self, channel: &str) {
        self.lock().insert(channel.to_owned());
    }

    pub fn remove(&self, channel: &str) {
        self.lock().remove(channel);
    }

    fn contains(&self, channel: &str) -> bool {
        self.lock().contains(channel)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reader's state, owned by its task.
pub(super) struct Reader {
    pub config: PgConfig,
    pub target: String,
    pub options: PostgresOptions,
    pub handler: Arc<dyn EventHandler>,
    pub control: Option<mpsc::Sender<Bytes>>,
    pub subscriptions: Arc<Subscriptions>,
    /// Last `seq` read per shard.
    pub last: [i64; SHARDS],
    /// True while a delivery connection is set up and reading (for `/health`).
    pub delivering: Arc<AtomicBool>,
}

/// The committed `seq` of every shard now: where a new reader starts.
pub(super) async fn current_seqs(
    client: &Client,
    prefix: &str,
) -> Result<[i64; SHARDS], BrokerError> {
    let rows = client
        .query(&format!("SELECT shard, seq FROM {prefix}_shard"), &[])
        .await
        .map_err(pg_error)?;
    let mut seqs = [0; SHARDS];
    for row in rows {
        let shard: i32 = row.get(0);
        if let Some(slot) = usize::try_from(shard).ok().and_then(|s| seqs.get_mut(s)) {
            *slot = row.get(1);
        }
    }
    Ok(seqs)
}

impl Reader {
    /// Runs until the task is aborted, reconnecting after errors.
    pub async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session().await {
                Ok(()) => return,
                Err(error) => {
                    self.delivering.store(false, Ordering::Relaxed);
                    tracing::error!(%error, "postgresql broker delivery interrupted; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// One connection's life: LISTEN, then read on every wake-up and every poll tick.
    async fn session(&mut self) -> Result<(), BrokerError> {
        // `tx` lives as long as the session, so `wakeups` only ends with it; a dead connection
        // shows as a failing poll query.
        let (tx, mut wakeups) = mpsc::unbounded_channel();
        let notify = self.options.use_notify.then(|| tx.clone());
        let client = connect(&self.config, &self.target, notify).await?;
        let prefix = self.options.table_prefix.clone();
        if self.options.use_notify {
            client
                .batch_execute(&format!("LISTEN {prefix}_outbox"))
                .await
                .map_err(pg_error)?;
        }
        let fetch = client
            .prepare(&format!(
                "SELECT seq, kind, channel, \"offset\", epoch, data, info, tags::text, \
                 prev_data, prev_info, prev_tags::text, \
                 (extract(epoch FROM created_at) * 1000)::bigint, map_key, removed \
                 FROM {prefix}_outbox \
                 WHERE shard = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ))
            .await
            .map_err(pg_error)?;
        self.delivering.store(true, Ordering::Relaxed);
        let mut ticker = tokio::time::interval(self.options.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut dirty = BTreeSet::new();
            tokio::select! {
                wakeup = wakeups.recv() => {
                    let Some(shard) = wakeup else {
                        return Err(unavailable("postgresql listen connection closed"));
                    };
                    dirty.extend(shard.parse::<usize>().ok().filter(|s| *s < SHARDS));
                    while let Ok(shard) = wakeups.try_recv() {
                        dirty.extend(shard.parse::<usize>().ok().filter(|s| *s < SHARDS));
                    }
                }
                _ = ticker.tick() => {
                    let seqs = current_seqs(&client, &prefix).await?;
                    dirty.extend((0..SHARDS).filter(|&s| seqs[s] > self.last[s]));
                }
            }
            for shard in dirty {
                self.read_shard(&client, &fetch, shard).await?;
            }
        }
    }

    async fn read_shard(
        &mut self,
        client: &Client,
        fetch: &tokio_postgres::Statement,
        shard: usize,
    ) -> Result<(), BrokerError> {
        let batch = i64::try_from(self.options.batch_size.max(1)).unwrap_or(1000);
        loop {
            let shard_id = shard as i32;
            let rows = client
                .query(fetch, &[&shard_id, &self.last[shard], &batch])
                .await
                .map_err(pg_error)?;
            for row in &rows {
                let seq: i64 = row.get(0);
                if seq != self.last[shard] + 1 {
                    // Rows were removed by outbox retention before this node read them.
                    tracing::error!(
                        shard,
                        from = self.last[shard] + 1,
                        to = seq - 1,
                        "postgresql broker: outbox rows expired before delivery"
                    );
                }
                self.last[shard] = seq;
                if self.dispatch(row).is_none() {
                    tracing::warn!(shard, seq, "undecodable postgresql outbox row");
                }
            }
            if (rows.len() as i64) < batch {
                return Ok(());
            }
        }
    }

    fn dispatch(&self, row: &Row) -> Option<()> {
        let kind: &str = row.try_get(1).ok()?;
        let channel: &str = row.try_get(2).ok()?;
        let data: Vec<u8> = row.try_get(5).ok()?;
        if kind == "c" {
            if let Some(control) = &self.control
                && control.try_send(Bytes::from(data)).is_err()
            {
                tracing::warn!("control queue full or closed: control message dropped");
            }
            return Some(());
        }
        if !self.subscriptions.contains(channel) {
            return Some(());
        }
        match kind {
            "p" => {
                let offset: i64 = row.try_get(3).ok()?;
                let epoch: String = row.try_get(4).ok()?;
                let mut current = publication(data, row.try_get(6).ok()?, row.try_get(7).ok()?)?;
                // The publish time is when the row entered the outbox (PostgreSQL's clock; also
                // right for `cf_stream_publish` inside application transactions).
                current.time = row.try_get::<_, i64>(11).unwrap_or(0);
                // Map changes: the entry's key, and whether it is removed.
                current.key = row
                    .try_get::<_, Option<String>>(12)
                    .ok()?
                    .unwrap_or_default();
                current.removed = row.try_get(13).ok()?;
                let prev_data: Option<Vec<u8>> = row.try_get(8).ok()?;
                let prev = match prev_data {
                    Some(prev) => Some(publication(
                        prev,
                        row.try_get(9).ok()?,
                        row.try_get(10).ok()?,
                    )?),
                    None => None,
                };
                let position = (offset > 0)
                    .then(|| StreamPosition::new(u64::try_from(offset).unwrap_or(0), epoch));
                self.handler
                    .on_publication(channel, position.as_ref(), &current, prev.as_ref());
            }
            "j" | "l" => {
                let info = client::ClientInfo::decode(data.as_slice()).ok()?;
                let event = match kind {
                    "j" => JoinLeave::Join(info),
                    _ => JoinLeave::Leave(info),
                };
                self.handler.on_join_leave(channel, &event);
            }
            _ => return None,
        }
        Some(())
    }
}

/// A publication from its stored columns: data, encoded `ClientInfo`, tags as a JSON object.
pub(super) fn publication(
    data: Vec<u8>,
    info: Option<Vec<u8>>,
    tags: Option<String>,
) -> Option<Publication> {
    let info = match info {
        Some(bytes) => Some(client::ClientInfo::decode(bytes.as_slice()).ok()?),
        None => None,
    };
    let tags: BTreeMap<String, String> = match tags {
        Some(text) => serde_json::from_str(&text).ok()?,
        None => BTreeMap::new(),
    };
    Some(Publication {
        data: Bytes::from(data),
        info,
        tags,
        ..Publication::default()
    })
}
