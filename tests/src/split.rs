//! A split deployment for one test: development certificates from `spindle mesh gencerts`, one
//! `spindle core` and some `spindle edge` processes on 127.0.0.1, joined by real QUIC.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, ServerOptions, TempDir};
use crate::{Error, Result, fixture};

/// How long an edge may take to link to its core.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(15);

/// A core and its edges.
#[derive(Debug)]
pub struct Split {
    core: Option<Server>,
    pub edges: Vec<Server>,
    certs: TempDir,
    mesh_port: u16,
}

impl Split {
    /// `spindle mesh gencerts` for core1 and edge1..edgeN, the core, then the edges, each
    /// linked (its `/health` 200). Even-numbered edges run the slim `spindle-edge` binary, the
    /// others `spindle edge`: both must behave the same.
    pub async fn start(edges: usize) -> Result<Split> {
        let certs = TempDir::new("spindle-certs").map_err(|e| Error::new(e.to_string()))?;
        let mut nodes = vec!["core1".to_owned()];
        nodes.extend((1..=edges).map(|i| format!("edge{i}")));
        gencerts(&certs, &nodes).await?;
        let mesh_port = free_udp_port()?;
        let core = Server::start_with(ServerOptions {
            role: "core",
            ..ServerOptions::patched(core_patch(&certs, mesh_port, "core1"))
        })
        .await?;
        let mut split = Split {
            core: Some(core),
            edges: Vec::new(),
            certs,
            mesh_port,
        };
        for i in 1..=edges {
            let binary = if i % 2 == 0 { "spindle-edge" } else { "edge" };
            let edge = split
                .start_edge_with(binary, &format!("edge{i}"), None)
                .await?;
            wait_linked(&edge).await?;
            split.edges.push(edge);
        }
        Ok(split)
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
        let mut patch = edge_patch(dir, self.mesh_port, cert_node);
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

    /// Stops the core (SIGTERM), waits `down`, and starts it again on the same ports.
    pub async fn restart_core(&mut self, down: Duration) -> Result<()> {
        let core = self
            .core
            .take()
            .ok_or_else(|| Error::new("no core running"))?;
        let port = core.addr().port();
        core.stop().await?;
        tokio::time::sleep(down).await;
        self.core = Some(
            Server::start_with(ServerOptions {
                role: "core",
                port,
                ..ServerOptions::patched(core_patch(&self.certs, self.mesh_port, "core1"))
            })
            .await?,
        );
        Ok(())
    }

    /// The running core.
    pub fn core(&self) -> &Server {
        self.core.as_ref().expect("the core is running")
    }

    /// The certificates directory.
    pub fn certs(&self) -> &TempDir {
        &self.certs
    }
}

fn core_patch(certs: &TempDir, mesh_port: u16, node: &str) -> Value {
    json!({"prometheus": {"enabled": true}, "mesh": {
        "listen": format!("127.0.0.1:{mesh_port}"),
        "node_name": node,
        "tls": tls(certs, node),
    }})
}

fn edge_patch(certs: &TempDir, mesh_port: u16, node: &str) -> Value {
    json!({"prometheus": {"enabled": true}, "mesh": {
        "cores": [format!("127.0.0.1:{mesh_port}")],
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
