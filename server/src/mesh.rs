//! What the core and edge roles share about the mesh: the node's mesh name, its TLS files, and
//! the mesh options, from the configuration.

use anyhow::{Context, Result, bail};
use spindle_hub::config::Config;
use spindle_mesh::quic::{MeshIdentity, MeshOptions};
use std::path::Path;

/// The node's name in the mesh: `mesh.node_name`, else `node.name`. Required: it is the name
/// the node's certificate carries.
pub fn node_name(config: &Config) -> Result<String> {
    let name = match (config.mesh.node_name.as_str(), config.node.name.as_str()) {
        ("", "") => bail!(
            "mesh.node_name is required (the DNS name this node's mesh certificate carries, \
             e.g. \"edge-eu-1\")"
        ),
        ("", name) => name,
        (name, _) => name,
    };
    Ok(name.to_owned())
}

/// The node's certificate, key and cluster CA from `mesh.tls`.
pub fn identity(config: &Config) -> Result<MeshIdentity> {
    let tls = &config.mesh.tls;
    if tls.cert_file.is_empty() || tls.key_file.is_empty() || tls.ca_file.is_empty() {
        bail!(
            "mesh.tls (cert_file, key_file, ca_file) is required: edges and cores authenticate \
             each other with certificates of one cluster CA; `spindle mesh gencerts --out DIR \
             --nodes core1,edge1` writes development ones"
        );
    }
    MeshIdentity::from_files(
        Path::new(&tls.cert_file),
        Path::new(&tls.key_file),
        Path::new(&tls.ca_file),
    )
    .context("mesh.tls")
}

/// The mesh options of this node.
pub fn options(config: &Config, node_name: String) -> MeshOptions {
    let mesh = &config.mesh;
    MeshOptions {
        node_name,
        region: mesh.region.clone(),
        lanes: mesh.lanes as usize,
        heartbeat_interval: mesh.heartbeat_interval.as_std(),
        link_timeout: mesh.link_timeout.as_std(),
        backlog_bytes: usize::try_from(mesh.edge_queue_max_size).unwrap_or(usize::MAX),
        ..MeshOptions::default()
    }
}
