//! `spindle edge`: the edge role (`spindle_edge::role`), with this binary's configuration and
//! logging.

use crate::cli::ServeArgs;
use anyhow::{Context, Result};
use spindle_server::{init_logging, settings, warn_insecure};
use std::process::ExitCode;
use std::sync::Arc;

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let config = settings::load(
        args.config.as_deref(),
        args.config_flags(),
        false,
        spindle_hub::config::Role::Edge,
    )?
    .config;
    init_logging(&config, args.log_json)?;
    warn_insecure(&config);
    for warning in spindle_server::preflight::check(&config)? {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(spindle_edge::role::run(Arc::new(config)))?;
    Ok(ExitCode::SUCCESS)
}
