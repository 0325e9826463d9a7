//! The servers Spindle is measured against in the same run (`compare`): uWebSockets.js (the
//! fan-out server in `bench/peers/uws-fanout.mjs`, installed from npm into `bench/peers/`) and
//! nats-server with a `websocket` listener (Debian's `nats-server`). Each is started pinned
//! like Spindle (`taskset -c`), on ports of its own, and stopped at the end.

use crate::http::ApiEndpoint;
use crate::publisher::PublishTarget;
use crate::server::{Endpoints, ServerProcess};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a peer may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The line `uws-fanout.mjs` prints once bound.
const UWS_LISTENING: &str = "uws-fanout: listening on ";

/// A peer server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Uws,
    Nats,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Uws => "uWebSockets.js",
            Peer::Nats => "nats-server",
        }
    }
}

/// `bench/peers/` of this source tree.
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// A started peer server; killed on drop.
#[derive(Debug)]
pub struct PeerServer {
    peer: Peer,
    child: Child,
    pid: u32,
    ws_url: String,
    target: PublishTarget,
    /// nats-server's config, removed at the end.
    config: Option<PathBuf>,
}

impl PeerServer {
    /// Starts `peer` pinned to `cpus` (a `taskset -c` list).
    pub async fn start(peer: Peer, cpus: Option<&str>) -> Result<PeerServer> {
        match peer {
            Peer::Uws => start_uws(cpus).await,
            Peer::Nats => start_nats(cpus).await,
        }
    }

    /// Where subscribers connect and publications go; the process for CPU and RSS figures.
    pub fn endpoints(&self) -> Endpoints {
        let (api, api_addr) = match &self.target {
            PublishTarget::Api { api, addr, .. } | PublishTarget::PeerHttp { api, addr } => {
                (api.clone(), *addr)
            }
            PublishTarget::Nats { addr } => (
                ApiEndpoint {
                    authority: addr.to_string(),
                    prefix: String::new(),
                },
                *addr,
            ),
        };
        Endpoints {
            ws_urls: vec![self.ws_url.clone()],
            api,
            api_addr,
            api_key: String::new(),
            hmac_secret: String::new(),
            processes: vec![ServerProcess {
                name: self.peer.name().into(),
                pid: self.pid,
            }],
        }
    }

    pub fn publish_target(&self) -> PublishTarget {
        self.target.clone()
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s).
    pub async fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        if let Some(config) = &self.config {
            let _ = std::fs::remove_file(config);
        }
    }
}

fn pinned(program: &str, cpus: Option<&str>) -> Command {
    match cpus {
        // taskset execs the program: the pid is the server's.
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// `npm ci` in `bench/peers/` unless uWebSockets.js is there already.
async fn install_uws() -> Result<()> {
    let dir = peers_dir();
    if dir
        .join("node_modules/@trufflesuite/uws-js-unofficial")
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("compare: installing uWebSockets.js into {}", dir.display());
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .await
        .context("cannot run npm (Node.js 20 and npm are needed for the uWebSockets.js peer)")?;
    if !status.success() {
        bail!("npm ci in {} failed: {status}", dir.display());
    }
    Ok(())
}

async fn start_uws(cpus: Option<&str>) -> Result<PeerServer> {
    install_uws().await?;
    let mut child = pinned("node", cpus)
        .arg(peers_dir().join("uws-fanout.mjs"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run node")?;
    let pid = child.id().context("node exited at once")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .context("uws-fanout.mjs did not say where it listens")??
        .context("uws-fanout.mjs exited before listening")?;
    let addr: SocketAddr = line
        .strip_prefix(UWS_LISTENING)
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("cannot parse {line:?}"))?;
    // Keep reading so the pipe never fills.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(PeerServer {
        peer: Peer::Uws,
        child,
        pid,
        ws_url: format!("ws://{addr}"),
        target: PublishTarget::PeerHttp {
            api: ApiEndpoint {
                authority: addr.to_string(),
                prefix: "/publish".into(),
            },
            addr,
        },
        config: None,
    })
}

async fn start_nats(cpus: Option<&str>) -> Result<PeerServer> {
    let (client_port, ws_port) = (free_tcp_port()?, free_tcp_port()?);
    let config = std::env::temp_dir().join(format!(
        "spindle-bench-{}-nats-{client_port}.conf",
        std::process::id()
    ));
    // Defaults otherwise (max_pending 64 MiB per connection, write_deadline 10 s).
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:{client_port}\"\n\
             websocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n  compression: false\n}}\n"
        ),
    )
    .with_context(|| format!("writing {}", config.display()))?;
    let mut child = pinned("nats-server", cpus)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run nats-server (apt-get install nats-server)")?;
    let pid = child.id().context("nats-server exited at once")?;
    let client: SocketAddr = ([127, 0, 0, 1], client_port).into();
    let ws: SocketAddr = ([127, 0, 0, 1], ws_port).into();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(ws).await.is_err()
        || tokio::net::TcpStream::connect(client).await.is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("nats-server exited at start: {status}");
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("nats-server did not listen on {client} and {ws}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(PeerServer {
        peer: Peer::Nats,
        child,
        pid,
        ws_url: format!("ws://{ws}"),
        target: PublishTarget::Nats { addr: client },
        config: Some(config),
    })
}

fn free_tcp_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// What each peer reports as its version, for the record.
pub async fn version(peer: Peer) -> String {
    match peer {
        Peer::Uws => {
            let lock =
                peers_dir().join("node_modules/@trufflesuite/uws-js-unofficial/package.json");
            std::fs::read_to_string(lock)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|v| v["version"].as_str().map(str::to_owned))
                .map_or_else(|| "unknown".into(), |v| format!("uws-js-unofficial {v}"))
        }
        Peer::Nats => Command::new("nats-server")
            .arg("--version")
            .output()
            .await
            .ok()
            .map_or_else(
                || "unknown".into(),
                |out| String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            ),
    }
}
