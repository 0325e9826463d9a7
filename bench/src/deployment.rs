//! The servers a run starts: one `spindle serve`, or (`--split N`) a `spindle core` and N
//! `spindle edge`s joined by QUIC on 127.0.0.1 — the clients dealt over the edges, the API on
//! the core, every process's CPU and memory counted (docs/benchmarks.md, "the split").

use crate::http::ApiEndpoint;
use crate::server::{Endpoints, ManagedServer, Node, StartOptions};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long an edge may take to link to the core (its `/health` 200).
const LINK_TIMEOUT: Duration = Duration::from_secs(15);

/// Started server processes: `[serve]` or `[core1, edge1, …]`.
#[derive(Debug)]
pub struct Deployment {
    nodes: Vec<ManagedServer>,
    /// The split's certificates (`spindle mesh gencerts`), removed at the end.
    certs: Option<PathBuf>,
}

impl Deployment {
    /// `spindle serve` when `edges` is 0, else a core and `edges` edges (`spindle edge`, or
    /// the slim `spindle-edge` binary when `slim`).
    pub async fn start(options: &StartOptions, edges: usize, slim: bool) -> Result<Deployment> {
        if edges == 0 {
            let serve = Node {
                name: "serve".into(),
                role: "serve",
                patch: None,
            };
            let node = ManagedServer::start(options, &serve).await?;
            return Ok(Deployment {
                nodes: vec![node],
                certs: None,
            });
        }
        let certs =
            std::env::temp_dir().join(format!("spindle-bench-{}-certs", std::process::id()));
        let edge_names: Vec<String> = (1..=edges).map(|i| format!("edge{i}")).collect();
        gencerts(&options.binary, &certs, &edge_names).await?;
        let mut deployment = Deployment {
            nodes: Vec::new(),
            certs: Some(certs.clone()),
        };
        let mesh_port = free_udp_port()?;
        let core = Node {
            name: "core1".into(),
            role: "core",
            patch: Some(json!({"mesh": {
                "listen": format!("127.0.0.1:{mesh_port}"),
                "node_name": "core1",
                "tls": tls(&certs, "core1"),
            }})),
        };
        deployment
            .nodes
            .push(ManagedServer::start(options, &core).await?);
        for name in edge_names {
            let edge = Node {
                name: name.clone(),
                role: if slim { "spindle-edge" } else { "edge" },
                // `/health` tells when the edge is linked (it is off by default).
                patch: Some(json!({
                    "mesh": {
                        "cores": [format!("127.0.0.1:{mesh_port}")],
                        "node_name": name,
                        "tls": tls(&certs, &name),
                    },
                    "health": {"enabled": true},
                })),
            };
            let node = ManagedServer::start(options, &edge).await?;
            wait_linked(&node).await?;
            deployment.nodes.push(node);
        }
        Ok(deployment)
    }

    /// Clients go to `serve` or to the edges; the API is `serve`'s or the core's.
    pub fn endpoints(&self, options: &StartOptions) -> Endpoints {
        let api_node = &self.nodes[0];
        let clients = if self.nodes.len() == 1 {
            &self.nodes[..]
        } else {
            &self.nodes[1..]
        };
        Endpoints {
            ws_urls: clients.iter().map(ManagedServer::ws_url).collect(),
            api: ApiEndpoint {
                authority: api_node.addr().to_string(),
                prefix: "/api".into(),
            },
            api_addr: api_node.addr(),
            api_key: options.api_key.clone(),
            hmac_secret: options.hmac_secret.clone(),
            processes: self.nodes.iter().map(ManagedServer::process).collect(),
        }
    }

    /// What each process wrote to stderr lately.
    pub fn stderr_tail(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {} ---\n{}", node.process().name, node.stderr_tail()))
            .collect()
    }

    /// Stops the edges, then the core (SIGTERM each); the first error, after stopping all.
    pub async fn stop(self) -> Result<()> {
        let mut result = Ok(());
        for node in self.nodes.into_iter().rev() {
            let name = node.process().name;
            if let Err(error) = node.stop().await
                && result.is_ok()
            {
                result = Err(error.context(format!("stopping {name}")));
            }
        }
        if let Some(certs) = self.certs {
            let _ = std::fs::remove_dir_all(certs);
        }
        result
    }
}

/// `spindle mesh gencerts` for `core1` and the edges.
async fn gencerts(binary: &Path, dir: &Path, edges: &[String]) -> Result<()> {
    let nodes = std::iter::once("core1".to_owned())
        .chain(edges.iter().cloned())
        .collect::<Vec<_>>()
        .join(",");
    let output = tokio::process::Command::new(binary)
        .args(["mesh", "gencerts", "--out"])
        .arg(dir)
        .args(["--nodes", &nodes])
        .output()
        .await
        .with_context(|| format!("cannot run {} mesh gencerts", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} mesh gencerts failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn tls(certs: &Path, node: &str) -> serde_json::Value {
    let file = |name: String| certs.join(name).to_string_lossy().into_owned();
    json!({
        "cert_file": file(format!("{node}.pem")),
        "key_file": file(format!("{node}.key")),
        "ca_file": file("ca.pem".into()),
    })
}

/// A UDP port that was free a moment ago on 127.0.0.1 (the core's mesh listener).
fn free_udp_port() -> Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").context("binding a UDP port")?;
    Ok(socket.local_addr()?.port())
}

/// Waits until the edge's `/health` is 200: linked to the core.
async fn wait_linked(edge: &ManagedServer) -> Result<()> {
    let started = Instant::now();
    loop {
        if health_status(edge).await.ok() == Some(200) {
            return Ok(());
        }
        if started.elapsed() > LINK_TIMEOUT {
            bail!(
                "{} did not link to the core within {LINK_TIMEOUT:?}\n{}",
                edge.process().name,
                edge.stderr_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of `GET /health`.
async fn health_status(node: &ManagedServer) -> Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(node.addr()).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: spindle\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12])?
        .parse()
        .context("no status in the /health answer")
}
