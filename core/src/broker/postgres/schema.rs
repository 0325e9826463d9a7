//! Schema migrations: plain SQL files compiled into the binary, applied in order, each once,
//! recorded in `<prefix>_migrations`.
//!
//! The broker applies them on start (unless `skip_schema_init`); `spindle migrate` applies
//! them without starting a server. Concurrent starts are safe: the whole run holds a
//! transaction-level advisory lock, so a second node waits and then finds nothing to do.

use super::connect::{PostgresOptions, connect, unavailable};
use crate::broker::BrokerError;

/// (version, name, SQL with `{p}` for the table prefix), in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "streams",
        include_str!("../../../migrations/postgres/0001_streams.sql"),
    ),
    (
        2,
        "maps",
        include_str!("../../../migrations/postgres/0002_maps.sql"),
    ),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = 2;

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Versions applied by this run, in order.
    pub applied: Vec<i32>,
    /// The schema version now.
    pub version: i32,
}

/// Applies every migration the database lacks. Fails when the database holds a newer schema
/// than this build knows (an older Spindle must not write to it).
pub async fn migrate(options: &PostgresOptions) -> Result<MigrationReport, BrokerError> {
    let (config, target) = options.parse()?;
    let mut client = connect(&config, &target, None).await?;
    let p = &options.table_prefix;
    let failed = |e: tokio_postgres::Error| {
        unavailable(format!(
            "postgresql migration: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned())
        ))
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("{p}_migrations")],
    )
    .await
    .map_err(failed)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {p}_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await
    .map_err(failed)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {p}_migrations"),
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(unavailable(format!(
            "postgresql schema {p} is at version {current}, newer than this Spindle knows \
             ({SCHEMA_VERSION}): upgrade Spindle"
        )));
    }
    let mut report = MigrationReport {
        applied: Vec::new(),
        version: current,
    };
    for &(version, name, sql) in MIGRATIONS.iter().filter(|(v, ..)| *v > current) {
        tx.batch_execute(&sql.replace("{p}", p))
            .await
            .map_err(|e| {
                let reason = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |db| db.message().to_owned());
                unavailable(format!("postgresql migration {version} ({name}): {reason}"))
            })?;
        tx.execute(
            &format!("INSERT INTO {p}_migrations (version, name) VALUES ($1, $2)"),
            &[&version, &name],
        )
        .await
        .map_err(failed)?;
        report.applied.push(version);
        report.version = version;
    }
    tx.commit().await.map_err(failed)?;
    Ok(report)
}

/// Fails unless the schema is at [`SCHEMA_VERSION`] (used with `skip_schema_init`).
pub(super) async fn check(
    client: &tokio_postgres::Client,
    prefix: &str,
) -> Result<(), BrokerError> {
    let version: i32 = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {prefix}_migrations"),
            &[],
        )
        .await
        .map_err(|e| {
            let reason = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned());
            unavailable(format!(
                "postgresql schema {prefix} not found ({reason}): run `spindle migrate`"
            ))
        })?
        .get(0);
    if version != SCHEMA_VERSION {
        return Err(unavailable(format!(
            "postgresql schema {prefix} is at version {version}, this Spindle needs \
             {SCHEMA_VERSION}: run `spindle migrate`"
        )));
    }
    Ok(())
}
