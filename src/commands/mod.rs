//! One function per subcommand.

mod core;
mod edge;
mod genconfig;
mod migrate;
mod serve;
mod tokens;

use crate::cli::{Cli, Command, MeshCommand};
use anyhow::Result;
use spindle_hub::config::Role;
use spindle_server::{output, settings};
use std::path::Path;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        None => serve::run(cli.serve),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Core(args)) => core::run(args),
        Some(Command::Edge(args)) => edge::run(args),
        Some(Command::Mesh(MeshCommand::Gencerts { out, nodes })) => {
            gencerts(&out, &nodes).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Genconfig { config }) => genconfig::run(&config).map(|()| ExitCode::SUCCESS),
        Some(Command::Checkconfig {
            config: path,
            strict,
            role,
        }) => {
            let config = settings::load(Some(&path), Vec::new(), strict, role)?.config;
            // The checks every role runs at start, the same code.
            let warnings = spindle_server::preflight::check(&config)?;
            for warning in &warnings {
                eprintln!("spindle: config warning: {warning}");
            }
            if strict && !warnings.is_empty() {
                anyhow::bail!("{} warning(s) in strict mode", warnings.len());
            }
            output::line(format_args!("spindle: {} is valid", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Gentoken(args)) => {
            let config =
                settings::load(existing(&args.config), Vec::new(), false, Role::Serve)?.config;
            tokens::connection(&config, &args).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Gensubtoken { token, channel }) => {
            let config =
                settings::load(existing(&token.config), Vec::new(), false, Role::Serve)?.config;
            tokens::subscription(&config, &token, &channel).map(|()| ExitCode::SUCCESS)
        }
        Some(Command::Checktoken { config, token }) => {
            let config = settings::load(existing(&config), Vec::new(), false, Role::Serve)?.config;
            tokens::check(&config, &token, false)
        }
        Some(Command::Checksubtoken { config, token }) => {
            let config = settings::load(existing(&config), Vec::new(), false, Role::Serve)?.config;
            tokens::check(&config, &token, true)
        }
        Some(Command::Migrate { config }) => {
            let config = settings::load(existing(&config), Vec::new(), false, Role::Serve)?.config;
            migrate::run(&config)
        }
        Some(Command::Version) => {
            output::line(format_args!("Spindle v{}", spindle_hub::VERSION))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The default `config.json` is optional: env variables alone may configure the tokens.
fn existing(path: &Path) -> Option<&Path> {
    (path != Path::new("config.json") || path.exists()).then_some(path)
}

/// `spindle mesh gencerts`: a development CA and a certificate per node, as PEM files.
fn gencerts(out: &Path, nodes: &[String]) -> Result<()> {
    use anyhow::Context;
    let certs = spindle_mesh::quic::generate_certs(nodes)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = |name: String, text: &str| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("ca.pem".into(), &certs.ca_pem)?;
    for (node, cert, key) in &certs.nodes {
        write(format!("{node}.pem"), cert)?;
        write(format!("{node}.key"), key)?;
    }
    output::line(format_args!(
        "spindle: wrote {}/ca.pem and a certificate and key per node ({}); development only",
        out.display(),
        nodes.join(", ")
    ))?;
    Ok(())
}
