//! Command-line arguments (Centrifugo's names where it has them, docs/protocol.md §7.6).

use clap::{Args, Parser, Subcommand};
pub use spindle_server::args::ServeArgs;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "spindle",
    version,
    about = "Real-time messaging server, Centrifugo v6 compatible"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, also accepted without the subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: an edge and a core in one process (the default).
    Serve(ServeArgs),
    /// Run a core: broker, history, presence, server API, proxies; edges attach over the QUIC
    /// mesh (`mesh.listen`, `mesh.tls`, `mesh.node_name`).
    Core(ServeArgs),
    /// Run an edge: client transports and fan-out, linked to a core over the QUIC mesh
    /// (`mesh.cores`, `mesh.tls`, `mesh.node_name`).
    Edge(ServeArgs),
    /// Mesh tools.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Write a minimal working configuration with random secrets.
    Genconfig {
        /// File to write; its extension (json, yaml, yml, toml) picks the format.
        #[arg(short, long, default_value = "config.json")]
        config: PathBuf,
    },
    /// Validate a configuration; exit 1 on any error.
    Checkconfig {
        #[arg(short, long, default_value = "config.json")]
        config: PathBuf,
        /// Unknown keys are errors, not warnings.
        #[arg(short, long)]
        strict: bool,
        /// Validate for one role: `serve` (default), `core` or `edge` (an edge needs no proxy
        /// endpoint but `mesh.cores`; edges and cores need `mesh.tls` and a mesh name).
        #[arg(short, long, value_parser = parse_role, default_value = "serve")]
        role: spindle_hub::config::Role,
    },
    /// Make an HS256 connection token.
    Gentoken(TokenArgs),
    /// Make an HS256 subscription token.
    Gensubtoken {
        #[command(flatten)]
        token: TokenArgs,
        /// Channel the token grants.
        #[arg(short = 's', long)]
        channel: String,
    },
    /// Verify a connection token and print its claims.
    Checktoken {
        #[arg(short, long, default_value = "config.json")]
        config: PathBuf,
        token: String,
    },
    /// Verify a subscription token and print its claims.
    Checksubtoken {
        #[arg(short, long, default_value = "config.json")]
        config: PathBuf,
        token: String,
    },
    /// Create or upgrade the PostgreSQL broker's tables and functions (`broker.postgres`),
    /// then exit. `spindle serve` does the same on start unless `skip_schema_init` is set.
    Migrate {
        #[arg(short, long, default_value = "config.json")]
        config: PathBuf,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Write a development CA (`DIR/ca.pem`) and, per node, `DIR/<node>.pem` and
    /// `DIR/<node>.key`. Production brings its own CA.
    Gencerts {
        /// Directory to write into (created if missing).
        #[arg(short, long)]
        out: PathBuf,
        /// Node names (each the DNS name its certificate carries), comma-separated.
        #[arg(short, long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(short, long, default_value = "config.json")]
    pub config: PathBuf,
    /// User id (`sub`); empty for an anonymous token.
    #[arg(short, long, default_value = "")]
    pub user: String,
    /// Lifetime in seconds; -1 for a token without expiry.
    #[arg(short, long, default_value_t = 604800, allow_hyphen_values = true)]
    pub ttl: i64,
    /// Print only the token.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_role(text: &str) -> Result<spindle_hub::config::Role, String> {
    use spindle_hub::config::Role;
    match text {
        "serve" => Ok(Role::Serve),
        "core" => Ok(Role::Core),
        "edge" => Ok(Role::Edge),
        other => Err(format!("{other:?}: want serve, core or edge")),
    }
}
