//! The `spindle` command line: configuration in, components built and run. Wiring only: every
//! rule lives in the library crates.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("spindle: {error:#}");
            ExitCode::FAILURE
        }
    }
}
