//! The Spindle-only `mesh` section: the QUIC link between edges and cores
//! (docs/architecture.md §4).
//!
//! Which role this process plays (edge, core, or both in `spindle serve`) is chosen on the
//! command line, not here; an edge reads `cores`, a core reads `listen` and `lanes`, both read
//! the rest. `spindle serve` uses the in-process link and ignores this section.

use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// `mesh`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct Mesh {
    /// UDP address a core listens on for edges (`host:port`). Default `"127.0.0.1:7100"`
    /// (loopback; set `0.0.0.0:7100` when edges run on other hosts).
    pub listen: String,
    /// Core addresses (`host:port`) an edge connects to, in order of preference. Default `[]`
    /// (an edge needs at least one).
    pub cores: Vec<String>,
    /// This node's name in the mesh: announced to the peer and the DNS name its certificate
    /// must carry. Default `""`: `node.name`, else the host name.
    pub node_name: String,
    /// Region of this node, reported to the peer and in `info`. Default `""`.
    pub region: String,
    /// Event lanes a core opens to each edge; a channel's events always take the same lane, so
    /// a busy channel holds up only its lane. Default `4`; between 1 and 64.
    pub lanes: u32,
    /// Mutual TLS of the mesh: required by `spindle edge` and `spindle core` (`spindle mesh
    /// gencerts` writes development files).
    pub tls: MeshTls,
    /// Interval of heartbeats on the control stream. Default `500ms`; between `100ms` and `60s`.
    pub heartbeat_interval: Duration,
    /// The link is dropped after this long without any frame from the peer. Default `1.5s`;
    /// at least twice `heartbeat_interval`, at most `5m`.
    pub link_timeout: Duration,
    /// Bytes of events a core lets wait for one edge (queued for its lanes or unacknowledged
    /// by QUIC). An edge that stops reading and reaches it is cut; it links again and repairs
    /// from history.
    /// Default `67108864` (64 MiB); between 1 MiB and 4 GiB.
    pub edge_queue_max_size: u64,
    /// How an edge repairs a gap in a channel's stream from core history.
    pub repair: MeshRepair,
    /// How long an edge keeps its client connections open while it has no link to any core
    /// (they see nothing meanwhile; on relink every channel is repaired or signalled). After
    /// it, they are closed with 3010 so that their SDKs try another edge. Default `30s`;
    /// between `1s` and `1h`.
    pub unlinked_grace: Duration,
}

/// `mesh.repair` (edge): one repair per channel, bounded (docs/architecture.md §9).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct MeshRepair {
    /// Most publications one repair may fetch; a channel further behind is signalled to its
    /// subscribers instead (2500 / 3010). Default `1000`; between 1 and 100000.
    pub max_publications: u32,
    /// Repairs running at once on an edge; others wait their turn. Default `16`; between 1
    /// and 1024.
    pub concurrency: u32,
    /// Deadline of one repair, history reads included; missing it signals the channel's
    /// subscribers. Default `5s`; between `100ms` and `1m`.
    pub timeout: Duration,
}

impl Default for MeshRepair {
    fn default() -> Self {
        MeshRepair {
            max_publications: 1000,
            concurrency: 16,
            timeout: Duration::from_secs(5),
        }
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            listen: "127.0.0.1:7100".to_owned(),
            cores: Vec::new(),
            node_name: String::new(),
            region: String::new(),
            lanes: 4,
            tls: MeshTls::default(),
            heartbeat_interval: Duration::from_millis(500),
            link_timeout: Duration::from_millis(1500),
            edge_queue_max_size: 64 << 20,
            repair: MeshRepair::default(),
            unlinked_grace: Duration::from_secs(30),
        }
    }
}

/// `mesh.tls`: file paths of the node's certificate, key, and the cluster CA. Set all three or
/// none (then only `spindle serve`, which has no mesh, can run).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(default)]
pub struct MeshTls {
    /// PEM certificate chain of this node. Default `""`.
    pub cert_file: String,
    /// PEM private key of this node. Default `""`.
    pub key_file: String,
    /// PEM CA that signs every mesh node. Default `""`.
    pub ca_file: String,
}

/// Checks a `host:port` address (`[v6]:port` accepted); `allow_zero_port` for listeners.
pub(crate) fn check_host_port(address: &str, allow_zero_port: bool) -> Result<(), String> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?}: expected host:port"));
    };
    if host.is_empty() {
        return Err(format!("{address:?}: empty host"));
    }
    match port.parse::<u16>() {
        Ok(0) if !allow_zero_port => Err(format!("{address:?}: port 0")),
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{address:?}: bad port {port:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mesh_section() {
        let json = r#"{"cores": ["core-1.eu:7100", "core-2.eu:7100"], "region": "eu",
                       "tls": {"cert_file": "c.pem", "key_file": "k.pem", "ca_file": "ca.pem"},
                       "heartbeat_interval": "2s"}"#;
        let mesh: Mesh = serde_json::from_str(json).unwrap();
        assert_eq!(mesh.cores.len(), 2);
        assert_eq!(mesh.tls.ca_file, "ca.pem");
        assert_eq!(mesh.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(mesh.listen, "127.0.0.1:7100");
    }

    #[test]
    fn host_port_check() {
        assert_eq!(check_host_port("core:7100", false), Ok(()));
        assert_eq!(check_host_port("[::1]:7100", false), Ok(()));
        assert_eq!(check_host_port("0.0.0.0:0", true), Ok(()));
        assert!(check_host_port("0.0.0.0:0", false).is_err());
        assert!(check_host_port("core", false).is_err());
        assert!(check_host_port(":7100", false).is_err());
        assert!(check_host_port("core:x", false).is_err());
    }
}
