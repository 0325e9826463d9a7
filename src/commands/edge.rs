//! `spindle edge`: the edge role (`spindle_edge::role`), with this binary's configuration and
//! logging.

use crate::cli::ServeArgs;
use anyhow::Result;
use spindle_hub::config::Role;
use std::process::ExitCode;

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let (config, runtime) = spindle_server::prepare(
        args.config.as_deref(),
        args.config_flags(),
        args.log_json,
        Role::Edge,
    )?;
    runtime.block_on(async {
        let listener = spindle_server::bind_http(&config).await?;
        spindle_edge::role::run(config, listener, spindle_server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
