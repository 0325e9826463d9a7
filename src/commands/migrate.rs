//! `spindle migrate`: applies the PostgreSQL broker's schema migrations and exits.

use anyhow::{Context, Result, bail};
use spindle_core::broker::{PostgresOptions, migrate_postgres};
use spindle_hub::config::{BrokerType, Config};
use std::process::ExitCode;

pub fn run(config: &Config) -> Result<ExitCode> {
    let broker = &config.broker;
    if !(broker.enabled && broker.kind == BrokerType::Postgres) {
        bail!(
            "nothing to migrate: set broker.enabled = true and broker.type = \"postgres\" \
             (with broker.postgres.dsn)"
        );
    }
    let options = PostgresOptions::from_config(&broker.postgres);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(migrate_postgres(&options))?;
    if report.applied.is_empty() {
        println!(
            "spindle: postgresql schema {:?} is up to date (version {})",
            options.table_prefix, report.version
        );
    } else {
        println!(
            "spindle: postgresql schema {:?} migrated to version {} (applied {:?})",
            options.table_prefix, report.version, report.applied
        );
    }
    Ok(ExitCode::SUCCESS)
}
