//! One function per subcommand.

mod genconfig;
mod migrate;
mod serve;
mod tokens;

use crate::cli::{Cli, Command};
use crate::settings;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Genconfig { config }) => genconfig::run(&config).map(|()| ExitCode::SUCCESS),
        Some(Command::Checkconfig { config, strict }) => {
            settings::load(Some(&config), Vec::new(), strict)?;
            crate::output::line(format_args!("spindle: {} is valid", config.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Gentoken(args)) => {
            let config = settings::load(existing(&args.config), Vec::new(), false)?.config;
            tokens::connection(&config, &args).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Gensubtoken { token, channel }) => {
            let config = settings::load(existing(&token.config), Vec::new(), false)?.config;
            tokens::subscription(&config, &token, &channel).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Checktoken { config, token }) => {
            let config = settings::load(existing(&config), Vec::new(), false)?.config;
            tokens::check(&config, &token, false)
        }
        Some(Command::Checksubtoken { config, token }) => {
            let config = settings::load(existing(&config), Vec::new(), false)?.config;
            tokens::check(&config, &token, true)
        }
        Some(Command::Migrate { config }) => {
            let config = settings::load(existing(&config), Vec::new(), false)?.config;
            migrate::run(&config)
        }
        Some(Command::Version) => {
            crate::output::line(format_args!("Spindle v{}", spindle_hub::VERSION))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The default `config.json` is optional: env variables alone may configure the tokens.
fn existing(path: &Path) -> Option<&Path> {
    (path != Path::new("config.json") || path.exists()).then_some(path)
}
