//! `spindle core`: binds the HTTP listener and `mesh.listen`, then runs the core role
//! (`spindle_core::role`) until SIGINT / SIGTERM.

use crate::cli::ServeArgs;
use anyhow::{Context, Result};
use std::process::ExitCode;

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let (config, runtime) = spindle_server::prepare(
        args.config.as_deref(),
        args.config_flags(),
        args.log_json,
        spindle_hub::config::Role::Core,
    )?;
    runtime.block_on(async {
        let listener = spindle_server::bind_http(&config).await?;
        let mesh = std::net::UdpSocket::bind(&config.mesh.listen).with_context(|| {
            format!("cannot listen on UDP {} (mesh.listen)", config.mesh.listen)
        })?;
        spindle_core::role::run(config, listener, mesh, spindle_server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
