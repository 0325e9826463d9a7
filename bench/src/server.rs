//! The server under test: either one we start (`spindle serve`, or a core and edges:
//! [`crate::deployment`]) with a throw-away config, or one already running that we attach to
//! by URL.

use crate::http::ApiEndpoint;
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// The line `spindle serve` prints once bound.
pub const LISTENING_PREFIX: &str = "spindle: listening on ";
/// How long a started server may take to print that line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Server stderr kept for error messages (the tail).
const LOG_KEEP: usize = 16 * 1024;

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `ws://…/connection/websocket` of each process serving clients (one, or every edge of a
    /// split deployment: connection `k` goes to `ws_urls[k % len]`).
    pub ws_urls: Vec<String>,
    pub api: ApiEndpoint,
    pub api_addr: SocketAddr,
    pub api_key: String,
    pub hmac_secret: String,
    /// Known when we started them or were told (`--server-pid`): enables CPU and RSS figures.
    pub processes: Vec<ServerProcess>,
}

impl Endpoints {
    /// The WebSocket URL of connection `k`.
    pub fn ws_url(&self, k: usize) -> &str {
        &self.ws_urls[k % self.ws_urls.len()]
    }

    /// The URLs clients are dealt over, for messages.
    pub fn ws_urls_text(&self) -> String {
        self.ws_urls.join(", ")
    }

    /// Publishing through this server's API.
    pub fn publish_target(&self) -> crate::publisher::PublishTarget {
        crate::publisher::PublishTarget::Api {
            api: self.api.clone(),
            addr: self.api_addr,
            key: self.api_key.clone(),
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.pid).collect()
    }
}

/// One server process: `serve`, or `core1` / `edge1` … of a split deployment.
#[derive(Debug, Clone)]
pub struct ServerProcess {
    pub name: String,
    pub pid: u32,
}

/// Which process of a deployment to start, and what its config adds.
#[derive(Debug, Clone)]
pub struct Node {
    /// `serve`, `core1`, `edge1`, …: names its temp dir and its figures.
    pub name: String,
    /// The subcommand: `serve`, `core` or `edge`; `spindle-edge` runs the slim edge binary
    /// (next to `spindle`).
    pub role: &'static str,
    /// Merged over the run's config (mesh settings of a split node).
    pub patch: Option<serde_json::Value>,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub binary: PathBuf,
    pub api_key: String,
    pub hmac_secret: String,
    /// `log.level` of the started server.
    pub log_level: String,
    /// Merged into the config last (objects merge key by key, anything else replaces).
    pub config_patch: Option<serde_json::Value>,
    /// Pins the processes to these CPUs (`taskset -c`), threads included.
    pub cpus: Option<String>,
}

/// A server process we started; SIGTERM on [`ManagedServer::stop`], SIGKILL on drop.
#[derive(Debug)]
pub struct ManagedServer {
    name: String,
    child: Child,
    pid: u32,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl ManagedServer {
    /// Writes a config into a temp dir and runs `spindle <role> -c <cfg> -p 0`.
    pub async fn start(options: &StartOptions, node: &Node) -> Result<ManagedServer> {
        // Absolute, because the child runs in the temp dir.
        let binary = &std::path::absolute(&options.binary).unwrap_or(options.binary.clone());
        // The slim edge is a binary of its own, next to `spindle`, without a subcommand.
        let (binary, subcommand) = match node.role {
            "spindle-edge" => (&binary.with_file_name("spindle-edge"), None),
            role => (binary, Some(role)),
        };
        if !binary.is_file() {
            bail!(
                "no server binary at {}: build it with `cargo build --release -p spindle` \
                 or pass --server-bin",
                binary.display()
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "spindle-bench-{}-{}",
            std::process::id(),
            node.name
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let config_path = dir.join("config.json");
        let mut config = server_config(&options.hmac_secret, &options.api_key, &options.log_level);
        for patch in [&options.config_patch, &node.patch].into_iter().flatten() {
            merge(&mut config, patch);
        }
        std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)
            .with_context(|| format!("writing {}", config_path.display()))?;

        // taskset execs the server: the pid is the server's.
        let mut command = match &options.cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpus).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(subcommand)
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg("0")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (line_tx, line_rx) = oneshot::channel();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(drain(out, None, Some(line_tx)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(drain(err, Some(stderr.clone()), None));
        }
        let line = match tokio::time::timeout(START_TIMEOUT, line_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) | Err(_) => {
                let _ = child.start_kill();
                tokio::time::sleep(Duration::from_millis(200)).await;
                bail!(
                    "{} {} did not print `{LISTENING_PREFIX}<ip>:<port>`\n--- stderr ---\n{}",
                    binary.display(),
                    node.role,
                    tail(&stderr)
                );
            }
        };
        let addr = parse_listening(&line)
            .with_context(|| format!("cannot parse the listening line {line:?}"))?;
        Ok(ManagedServer {
            name: node.name.clone(),
            child,
            pid,
            addr,
            stderr,
            dir,
        })
    }

    /// Where it listens for HTTP (clients, the API, `/health`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    pub fn process(&self) -> ServerProcess {
        ServerProcess {
            name: self.name.clone(),
            pid: self.pid,
        }
    }

    /// What the server wrote to stderr lately.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr)
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(mut self) -> Result<()> {
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let result = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(anyhow::anyhow!(
                    "the server did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed)"
                ))
            }
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

/// The config of a started server: our secret and API key, subscriptions to namespace-less
/// channels allowed, everything else (e.g. `client.queue_max_size`) at its default.
pub fn server_config(hmac_secret: &str, api_key: &str, log_level: &str) -> serde_json::Value {
    serde_json::json!({
        "http_server": {"address": "127.0.0.1"},
        "log": {"level": log_level},
        "client": {"token": {"hmac_secret_key": hmac_secret}},
        "http_api": {"key": api_key},
        "channel": {"without_namespace": {"allow_subscribe_for_client": true}},
    })
}

/// Merges `patch` into `base`: objects key by key (recursively), anything else replaces.
pub fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
            for (key, value) in patch {
                merge(
                    base.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// The server binary: `<target dir>/release/spindle`, where the target dir is
/// `CARGO_TARGET_DIR` (relative to the workspace root) or `<workspace>/target`.
pub fn default_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        None => workspace.join("target"),
    };
    target.join("release").join("spindle")
}

/// `ws://host:port/…` → `http://host:port/api`.
pub fn api_url_for(ws_url: &str) -> Result<String> {
    let rest = ws_url
        .strip_prefix("ws://")
        .with_context(|| format!("WebSocket URL {ws_url:?} must start with ws://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    Ok(format!("http://{authority}/api"))
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let mut addr: SocketAddr = line
        .trim()
        .strip_prefix(LISTENING_PREFIX)?
        .trim()
        .parse()
        .ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Some(addr)
}

async fn drain(
    stream: impl AsyncRead + Unpin,
    log: Option<Arc<Mutex<String>>>,
    mut listening: Option<oneshot::Sender<String>>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with(LISTENING_PREFIX)
            && let Some(tx) = listening.take()
        {
            let _ = tx.send(line.clone());
        }
        if let Some(log) = &log
            && let Ok(mut log) = log.lock()
        {
            log.push_str(&line);
            log.push('\n');
            if log.len() > 2 * LOG_KEEP {
                let cut = log.len() - LOG_KEEP;
                let cut = (cut..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(0);
                log.drain(..cut);
            }
        }
    }
}

fn tail(log: &Arc<Mutex<String>>) -> String {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        assert_eq!(
            parse_listening("spindle: listening on 127.0.0.1:41000\n"),
            Some("127.0.0.1:41000".parse().unwrap())
        );
        assert_eq!(
            parse_listening("spindle: listening on 0.0.0.0:9"),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(parse_listening("listening on 127.0.0.1:1"), None);
    }

    #[test]
    fn api_url_from_ws_url() {
        assert_eq!(
            api_url_for("ws://127.0.0.1:8000/connection/websocket").unwrap(),
            "http://127.0.0.1:8000/api"
        );
        assert!(api_url_for("http://x").is_err());
    }

    #[test]
    fn config_allows_namespace_less_subscriptions() {
        let config = server_config("s", "k", "error");
        assert_eq!(
            config["channel"]["without_namespace"]["allow_subscribe_for_client"],
            true
        );
        assert_eq!(config["client"]["token"]["hmac_secret_key"], "s");
        assert!(config["client"].get("queue_max_size").is_none());
    }

    #[test]
    fn patches_merge_into_the_config() {
        let mut config = server_config("s", "k", "error");
        merge(
            &mut config,
            &serde_json::json!({"websocket": {"read_buffer_size": 4096}, "log": {"level": "info"}}),
        );
        assert_eq!(config["websocket"]["read_buffer_size"], 4096);
        assert_eq!(config["log"]["level"], "info");
        assert_eq!(config["http_api"]["key"], "k");
    }

    #[test]
    fn default_binary_is_a_release_build() {
        assert!(default_binary().ends_with("release/spindle"));
    }
}
