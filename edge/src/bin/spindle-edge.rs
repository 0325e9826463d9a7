//! `spindle-edge`: the slim edge binary — `spindle edge` built from the edge, mesh, hub and
//! server crates only, with no broker, backend-proxy or server-API code in it (CI checks its
//! dependency tree). Same options and configuration as `spindle edge`.

use clap::Parser;
use spindle_server::args::ServeArgs;
use std::process::ExitCode;

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
    let (config, runtime) = spindle_server::prepare(
        args.config.as_deref(),
        args.config_flags(),
        args.log_json,
        spindle_hub::config::Role::Edge,
    )?;
    runtime.block_on(async {
        let listener = spindle_server::bind_http(&config).await?;
        spindle_edge::role::run(config, listener, spindle_server::shutdown_signal()).await
    })
}
