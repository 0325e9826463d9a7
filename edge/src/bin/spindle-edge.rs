//! `spindle-edge`: the slim edge binary — `spindle edge` built from the edge, mesh, hub and
//! server crates only, with no broker, backend-proxy or server-API code in it (CI checks its
//! dependency tree). Same options and configuration as `spindle edge`.

use anyhow::Context;
use clap::Parser;
use spindle_server::args::ServeArgs;
use spindle_server::{init_logging, settings, warn_insecure};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "spindle-edge",
    version,
    about = "Spindle edge: client connections near users, linked to a core over QUIC"
)]
struct Cli {
    #[command(flatten)]
    args: ServeArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spindle-edge: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: ServeArgs) -> anyhow::Result<()> {
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
    runtime.block_on(spindle_edge::role::run(Arc::new(config)))
}
