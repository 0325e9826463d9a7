//! Options and connections for the PostgreSQL broker.

use super::super::BrokerError;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_postgres::{Client, Config as PgConfig, NoTls, Statement};

/// Where PostgreSQL is and how the broker uses it (`broker.postgres`).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// libpq connection string: `postgres://user[:pass]@host:port/db` or `host=… user=…`.
    pub dsn: String,
    /// Prefix of every table and function name (`table_prefix`, default `cf`): lower-case
    /// letters, digits and `_`, starting with a letter, at most 32 characters.
    pub table_prefix: String,
    /// Command connections (publishes, reads); each pipelines many requests.
    pub pool_size: usize,
    /// Delivery polls this often even without a NOTIFY (the fallback that makes a dropped
    /// notification cost latency, never a publication).
    pub poll_interval: Duration,
    /// Outbox rows read per query.
    pub batch_size: usize,
    /// LISTEN for wake-ups (else delivery relies on polling alone).
    pub use_notify: bool,
    /// Expired rows are removed this often.
    pub cleanup_interval: Duration,
    /// How long an idempotency key's result is remembered.
    pub idempotent_result_ttl: Duration,
    /// How long delivery rows are kept (a node that lost its connection catches up from them).
    pub outbox_retention: Duration,
    /// Leave the schema alone on start (`skip_schema_init`; run `spindle migrate` instead).
    pub skip_schema_init: bool,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("dsn", &"***")
            .field("table_prefix", &self.table_prefix)
            .field("pool_size", &self.pool_size)
            .field("use_notify", &self.use_notify)
            .finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// The options of a `broker.postgres` section.
    pub fn from_config(pg: &spindle_hub::config::Postgres) -> PostgresOptions {
        let or = |value: u32, default: usize| match value {
            0 => default,
            n => n as usize,
        };
        PostgresOptions {
            dsn: pg.dsn.expose().to_owned(),
            table_prefix: pg.table_prefix.clone(),
            pool_size: or(pg.pool_size, 16),
            poll_interval: pg
                .outbox
                .poll_interval
                .as_std()
                .max(Duration::from_millis(1)),
            batch_size: or(pg.outbox.batch_size, 1000),
            use_notify: pg.use_notify,
            cleanup_interval: pg.cleanup_interval.as_std().max(Duration::from_secs(1)),
            idempotent_result_ttl: pg.idempotent_result_ttl.as_std(),
            outbox_retention: pg.stream_retention.as_std().max(Duration::from_secs(60)),
            skip_schema_init: pg.skip_schema_init,
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// Checks the DSN and the prefix, and where the DSN points (`host:port`, for messages; never
    /// the password).
    pub(super) fn parse(&self) -> Result<(PgConfig, String), BrokerError> {
        check_prefix(&self.table_prefix)?;
        let mut config = PgConfig::from_str(&self.dsn)
            .map_err(|e| unavailable(format!("broker.postgres.dsn: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("spindle");
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(host, port)| match host {
                tokio_postgres::config::Host::Tcp(host) => format!("{host}:{port}"),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        Ok((config, hosts.join(",")))
    }
}

fn check_prefix(prefix: &str) -> Result<(), BrokerError> {
    let mut chars = prefix.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if starts_with_letter && rest_ok && prefix.len() <= 32 {
        Ok(())
    } else {
        Err(unavailable(format!(
            "broker.postgres.table_prefix {prefix:?}: use lower-case letters, digits and _, \
             starting with a letter, at most 32 characters"
        )))
    }
}

pub(super) fn unavailable(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// A driver error with the server's message ("db error" alone says nothing).
pub(super) fn pg_error(error: tokio_postgres::Error) -> BrokerError {
    match error.as_db_error() {
        Some(db) => unavailable(format!(
            "postgresql: {}: {}",
            db.code().code(),
            db.message()
        )),
        None => unavailable(format!("postgresql: {error}")),
    }
}

/// Opens one connection and spawns the task that drives it. Notifications, when
/// `notifications` is given, are forwarded to it.
pub(super) async fn connect(
    config: &PgConfig,
    target: &str,
    notifications: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) -> Result<Client, BrokerError> {
    let wait = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(5))
        + Duration::from_millis(500);
    let (client, mut connection) = match tokio::time::timeout(wait, config.connect(NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            let cause =
                std::error::Error::source(&e).map_or_else(String::new, |c| format!(": {c}"));
            return Err(unavailable(format!(
                "cannot connect to postgresql at {target}: {e}{cause}"
            )));
        }
        Err(_) => {
            return Err(unavailable(format!(
                "cannot connect to postgresql at {target}: no answer within {wait:?}"
            )));
        }
    };
    tokio::spawn(async move {
        let mut messages = std::pin::pin!(futures_util::stream::poll_fn(move |cx| {
            connection.poll_message(cx)
        }));
        use futures_util::StreamExt;
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if let Some(tx) = &notifications {
                        let _ = tx.send(n.payload().to_owned());
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "postgresql connection closed");
                    return;
                }
            }
        }
    });
    Ok(client)
}

/// A command connection with its prepared statements.
pub(super) struct Conn {
    pub client: Client,
    pub publish: Statement,
    pub publish_event: Statement,
    pub history: Statement,
    pub remove_history: Statement,
    pub map: MapStatements,
}

/// The map storage's prepared statements (`super::maps`).
pub(super) struct MapStatements {
    pub write: Statement,
    pub state: Statement,
    pub history: Statement,
    pub expire: Statement,
    pub clear: Statement,
    pub stats: Statement,
}

impl Conn {
    async fn open(config: &PgConfig, target: &str, prefix: &str) -> Result<Conn, BrokerError> {
        let client = connect(config, target, None).await?;
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await.map_err(pg_error) }
        };
        let publish = prepare(format!(
            "SELECT out_status, out_offset, out_epoch FROM {prefix}_publish($1, $2, $3, \
             $4::text::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .await?;
        let publish_event = prepare(format!("SELECT {prefix}_publish_event($1, $2, $3)")).await?;
        let history = prepare(format!(
            "SELECT out_top, out_epoch, out_offset, out_data, out_info, out_tags::text \
             FROM {prefix}_history($1, $2, $3, $4, $5, $6)"
        ))
        .await?;
        let remove_history = prepare(format!("SELECT {prefix}_remove_history($1)")).await?;
        let map = MapStatements {
            write: prepare(format!(
                "SELECT out_status, out_offset, out_epoch FROM {prefix}_map_write($1, $2, $3, \
                 $4, $5, $6::text::jsonb, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18, $19)"
            ))
            .await?,
            state: prepare(format!(
                "SELECT out_top, out_epoch, out_key, out_offset, out_data, out_info, \
                 out_tags::text FROM {prefix}_map_state_page($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ))
            .await?,
            history: prepare(format!(
                "SELECT out_top, out_epoch, out_offset, out_key, out_removed, out_data, \
                 out_info, out_tags::text FROM {prefix}_map_history($1, $2, $3, $4, $5, $6, $7, \
                 $8, $9)"
            ))
            .await?,
            expire: prepare(format!("SELECT {prefix}_map_expire($1, $2)")).await?,
            clear: prepare(format!("SELECT {prefix}_map_clear($1)")).await?,
            stats: prepare(format!(
                "SELECT coalesce((SELECT num_keys FROM {prefix}_map_meta WHERE channel = $1), 0)"
            ))
            .await?,
        };
        Ok(Conn {
            client,
            publish,
            publish_event,
            history,
            remove_history,
            map,
        })
    }
}

/// A fixed set of command connections used in turn; a broken one is reopened on next use.
pub(super) struct Pool {
    config: PgConfig,
    target: String,
    prefix: String,
    slots: Box<[tokio::sync::Mutex<Option<Arc<Conn>>>]>,
    next: AtomicUsize,
}

impl Pool {
    pub async fn new(
        config: PgConfig,
        target: String,
        prefix: String,
        size: usize,
    ) -> Result<Pool, BrokerError> {
        let first = Conn::open(&config, &target, &prefix).await?;
        let slots: Box<[_]> = (0..size.max(1))
            .map(|_| tokio::sync::Mutex::new(None))
            .collect();
        *slots[0].lock().await = Some(Arc::new(first));
        Ok(Pool {
            config,
            target,
            prefix,
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection in turn, opened (or reopened) if needed.
    pub async fn get(&self) -> Result<Arc<Conn>, BrokerError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(conn) = slot.as_ref()
            && !conn.client.is_closed()
        {
            return Ok(conn.clone());
        }
        let conn = Arc::new(Conn::open(&self.config, &self.target, &self.prefix).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("size", &self.slots.len())
            .finish()
    }
}
