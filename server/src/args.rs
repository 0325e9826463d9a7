//! The options every role takes on the command line (Centrifugo's names where it has them,
//! docs/protocol.md §7.6): the configuration file and the keys commonly overridden by flags.

use clap::Args;
use std::path::PathBuf;

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
