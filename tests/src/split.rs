//! A split deployment for one test: development certificates from `spindle mesh gencerts`,
//! some `spindle core` and some `spindle edge` processes on 127.0.0.1, joined by real QUIC.
//! Every edge knows every core (`mesh.cores`, in order) and links to the first that answers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::impair::Proxy;
use crate::server::{Server, ServerOptions, TempDir};
use crate::{Error, Result, fixture};
use std::net::SocketAddr;

/// How long an edge may take to link to its core.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(15);

/// What to start.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub cores: usize,
    pub edges: usize,
    /// Merged into every node's configuration (cores and edges), e.g. a Redis engine.
    pub patch: Value,
    /// With a seed, every core is reached through an impairment proxy of its own
    /// ([`crate::impair::Proxy`], seeded with it): edges dial the proxies.
    pub impaired: Option<u64>,
}

impl Default for SplitOptions {
    fn default() -> Self {
        SplitOptions {
            cores: 1,
            edges: 1,
            patch: json!({}),
            impaired: None,
        }
    }
}

/// Cores and their edges.
#[derive(Debug)]
pub struct Split {
    /// `None` once stopped or killed.
    cores: Vec<Option<Server>>,
    pub edges: Vec<Server>,
    certs: TempDir,
    mesh_ports: Vec<u16>,
    patch: Value,
    /// One per core when impaired: what edges dial instead of the core.
    proxies: Vec<Proxy>,
}

impl Split {
    /// One core with the memory broker and `edges` edges (see [`Split::start_with`]).
    pub async fn start(edges: usize) -> Result<Split> {
        Split::start_with(SplitOptions {
            edges,
            ..SplitOptions::default()
        })
        .await
    }

    /// `spindle mesh gencerts` for core1..coreN and edge1..edgeM, the cores, then the edges,
    /// each linked (its `/health` 200). Even-numbered edges run the slim `spindle-edge`
    /// binary, the others `spindle edge`: both must behave the same.
    pub async fn start_with(options: SplitOptions) -> Result<Split> {
        let certs = TempDir::new("spindle-certs").map_err(|e| Error::new(e.to_string()))?;
        let mut nodes: Vec<String> = (1..=options.cores).map(|i| format!("core{i}")).collect();
        nodes.extend((1..=options.edges).map(|i| format!("edge{i}")));
        gencerts(&certs, &nodes).await?;
        let mut split = Split {
            cores: Vec::new(),
            edges: Vec::new(),
            certs,
            mesh_ports: Vec::new(),
            patch: options.patch,
            proxies: Vec::new(),
        };
        for i in 0..options.cores {
            let mesh_port = free_udp_port()?;
            split.mesh_ports.push(mesh_port);
            let core = split.start_core(i, 0).await?;
            split.cores.push(Some(core));
            if let Some(seed) = options.impaired {
                let core_addr = SocketAddr::from(([127, 0, 0, 1], mesh_port));
                let proxy = Proxy::start(core_addr, seed.wrapping_add(i as u64))
                    .await
                    .map_err(|e| Error::new(format!("impairment proxy: {e}")))?;
                split.proxies.push(proxy);
            }
        }
        for i in 1..=options.edges {
            let binary = if i % 2 == 0 { "spindle-edge" } else { "edge" };
            let edge = split
                .start_edge_with(binary, &format!("edge{i}"), None)
                .await?;
            wait_linked(&edge).await?;
            split.edges.push(edge);
        }
        Ok(split)
    }

    /// Core `index` (0-based) on its mesh port, on HTTP `port` (0: a free one).
    async fn start_core(&self, index: usize, port: u16) -> Result<Server> {
        let node = format!("core{}", index + 1);
        let mut patch = self.patch.clone();
        merge(
            &mut patch,
            core_patch(&self.certs, self.mesh_ports[index], &node),
        );
        Server::start_with(ServerOptions {
            role: "core",
            port,
            ..ServerOptions::patched(patch)
        })
        .await
    }

    /// An edge named `node` (certificate `certs/<node>`, or `certificate` from another
    /// directory), not waited for.
    pub async fn start_edge(
        &self,
        node: &str,
        certificate: Option<(&TempDir, &str)>,
    ) -> Result<Server> {
        self.start_edge_with("edge", node, certificate).await
    }

    /// [`Split::start_edge`] with `role` `edge` (`spindle edge`) or `spindle-edge` (the slim
    /// binary).
    pub async fn start_edge_with(
        &self,
        role: &'static str,
        node: &str,
        certificate: Option<(&TempDir, &str)>,
    ) -> Result<Server> {
        let (dir, cert_node) = certificate.unwrap_or((&self.certs, node));
        let mut patch = self.patch.clone();
        let cores: Vec<SocketAddr> = if self.proxies.is_empty() {
            self.mesh_ports
                .iter()
                .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
                .collect()
        } else {
            self.proxies.iter().map(Proxy::addr).collect()
        };
        merge(&mut patch, edge_patch(dir, &cores, cert_node));
        patch["mesh"]["node_name"] = json!(node);
        if certificate.is_some() {
            // The edge's own certificate and CA, not the cluster's.
            patch["mesh"]["tls"]["ca_file"] = json!(dir.path().join("ca.pem"));
        }
        Server::start_with(ServerOptions {
            role,
            ..ServerOptions::patched(patch)
        })
        .await
    }

    /// Stops the first core (SIGTERM), waits `down`, and starts it again on the same ports.
    pub async fn restart_core(&mut self, down: Duration) -> Result<()> {
        self.restart_core_at(0, down).await
    }

    /// Stops core `index` (SIGTERM, it closes its links), waits `down`, and starts it again on
    /// the same ports.
    pub async fn restart_core_at(&mut self, index: usize, down: Duration) -> Result<()> {
        let core = self
            .cores
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Error::new(format!("core {index} is not running")))?;
        let port = core.addr().port();
        core.stop().await?;
        tokio::time::sleep(down).await;
        let core = self.start_core(index, port).await?;
        self.cores[index] = Some(core);
        Ok(())
    }

    /// Kills core `index` (SIGKILL): no goodbye, its edges notice by the silence.
    pub async fn kill_core(&mut self, index: usize) -> Result<()> {
        let core = self
            .cores
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| Error::new(format!("core {index} is not running")))?;
        core.kill().await
    }

    /// The first running core.
    pub fn core(&self) -> &Server {
        self.cores
            .iter()
            .flatten()
            .next()
            .expect("a core is running")
    }

    /// Core `index`, if running.
    pub fn core_at(&self, index: usize) -> Option<&Server> {
        self.cores.get(index).and_then(Option::as_ref)
    }

    /// The certificates directory.
    pub fn certs(&self) -> &TempDir {
        &self.certs
    }

    /// The impairment proxy in front of core `index` (when started impaired).
    pub fn proxy(&self, index: usize) -> Option<&Proxy> {
        self.proxies.get(index)
    }
}

/// Merges `patch` into `base`, objects key by key.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}

fn core_patch(certs: &TempDir, mesh_port: u16, node: &str) -> Value {
    json!({"prometheus": {"enabled": true}, "mesh": {
        "listen": format!("127.0.0.1:{mesh_port}"),
        "node_name": node,
        "tls": tls(certs, node),
    }})
}

fn edge_patch(certs: &TempDir, cores: &[SocketAddr], node: &str) -> Value {
    let cores: Vec<String> = cores.iter().map(SocketAddr::to_string).collect();
    json!({"prometheus": {"enabled": true}, "mesh": {
        "cores": cores,
        "node_name": node,
        "tls": tls(certs, node),
    }})
}

fn tls(certs: &TempDir, node: &str) -> Value {
    let path = |name: String| certs.path().join(name).display().to_string();
    json!({
        "cert_file": path(format!("{node}.pem")),
        "key_file": path(format!("{node}.key")),
        "ca_file": path("ca.pem".into()),
    })
}

/// `spindle mesh gencerts --out <dir> --nodes <nodes>` with the binary under test.
pub async fn gencerts(dir: &TempDir, nodes: &[String]) -> Result<()> {
    let output = tokio::process::Command::new(fixture::binary_path())
        .args(["mesh", "gencerts", "--out"])
        .arg(dir.path())
        .arg("--nodes")
        .arg(nodes.join(","))
        .output()
        .await
        .map_err(|e| Error::new(format!("spindle mesh gencerts: {e}")))?;
    if !output.status.success() {
        return Err(Error::new(format!(
            "spindle mesh gencerts failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// Waits until `edge`'s `/health` is 200 (linked to a core).
pub async fn wait_linked(edge: &Server) -> Result<()> {
    let deadline = Instant::now() + LINK_TIMEOUT;
    loop {
        if let Ok(response) = edge.get("/health").await
            && response.status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::new(format!(
                "edge not linked within {LINK_TIMEOUT:?}; its log:\n{}",
                edge.stderr()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_udp_port() -> Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::new(e.to_string()))?;
    Ok(socket
        .local_addr()
        .map_err(|e| Error::new(e.to_string()))?
        .port())
}
