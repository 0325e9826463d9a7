//! Command-line arguments (Centrifugo's names where it has them, docs/protocol.md §7.6).

use clap::{Args, Parser, Subcommand};
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

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Configuration file (JSON, YAML or TOML). Without one, `./config.json` is used if it
    /// exists, else built-in defaults with secrets generated for this run.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// Port of the main HTTP server (`http_server.port`, default 8000; 0 picks a free one).
    #[arg(short, long = "port", visible_alias = "http_server.port")]
    pub port: Option<u16>,
    /// Address to bind (`http_server.address`).
    #[arg(short = 'a', long = "address", visible_alias = "http_server.address")]
    pub address: Option<String>,
    /// `log.level`: none, trace, debug, info, warn, error.
    #[arg(long = "log.level")]
    pub log_level: Option<String>,
    /// `log.file`: write logs there instead of stderr.
    #[arg(long = "log.file")]
    pub log_file: Option<String>,
    /// `client.insecure`: no authentication (development only).
    #[arg(long = "client.insecure")]
    pub client_insecure: bool,
    /// `http_api.insecure`: API without key (development only).
    #[arg(long = "http_api.insecure")]
    pub http_api_insecure: bool,
    /// `health.enabled`.
    #[arg(long = "health.enabled")]
    pub health_enabled: bool,
    /// Log as JSON lines instead of text.
    #[arg(long = "log.json")]
    pub log_json: bool,
}

impl ServeArgs {
    /// The flags that override configuration keys, as `(dotted path, value)`.
    pub fn config_flags(&self) -> Vec<(String, String)> {
        let mut flags = Vec::new();
        let mut set = |path: &str, value: String| flags.push((path.to_owned(), value));
        if let Some(port) = self.port {
            set("http_server.port", port.to_string());
        }
        if let Some(address) = &self.address {
            set("http_server.address", address.clone());
        }
        if let Some(level) = &self.log_level {
            set("log.level", level.clone());
        }
        if let Some(file) = &self.log_file {
            set("log.file", file.clone());
        }
        for (on, path) in [
            (self.client_insecure, "client.insecure"),
            (self.http_api_insecure, "http_api.insecure"),
            (self.health_enabled, "health.enabled"),
        ] {
            if on {
                set(path, "true".to_owned());
            }
        }
        flags
    }
}
