//! The core role (`spindle core`): the broker, history, presence, server API and proxies;
//! edges attach over the QUIC mesh (`mesh.listen`). No client transports.

pub mod metrics;

use crate::{Node, NodeIdentity};
use anyhow::{Context, Result};
use spindle_hub::config::Config;
use spindle_mesh::quic::MeshListener;
use spindle_server::mesh as mesh_roles;
use spindle_server::{health_router, metrics_router, scheme, serve_until, tls};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Runs a core with `config` on `listener` (HTTP: the server API, `/health`, `/metrics`) and
/// `mesh_socket` (UDP: edges), both already bound (the command binds `http_server.port` and
/// `mesh.listen`, a test binds port 0), until `shutdown` resolves (the command passes SIGINT /
/// SIGTERM). Then the HTTP server stops within `shutdown.timeout` and every edge is told, so it
/// fails over at once.
pub async fn run(
    config: Arc<Config>,
    listener: TcpListener,
    mesh_socket: std::net::UdpSocket,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let name = mesh_roles::node_name(&config)?;
    let mesh_identity = mesh_roles::identity(&config)?;
    let local = listener.local_addr()?;
    let identity = NodeIdentity::named(name.clone());
    let node = Node::connect(Arc::clone(&config), identity)
        .await
        .context("cannot start the core")?;

    let mut mesh = MeshListener::new(
        mesh_socket,
        &mesh_identity,
        mesh_roles::options(&config, name),
    )
    .context("cannot start the mesh endpoint")?;
    let mesh_local = mesh.local_addr()?;
    println!("spindle: mesh listening on udp {mesh_local}");
    let attaching = node.clone();
    let links = metrics::CoreLinks::default();
    let registering = links.clone();
    let (closing, mut close_mesh) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let edge = tokio::select! {
                edge = mesh.accept() => edge,
                _ = &mut close_mesh => {
                    // Edges fail over at once instead of after their link timeout.
                    mesh.close();
                    return;
                }
            };
            let Some(edge) = edge else { return };
            tracing::info!(edge = edge.node, region = edge.region, addr = %edge.addr, "edge attached");
            registering.add(&edge);
            attaching.attach_remote_edge(edge.node, edge.region, edge.link, edge.inbox);
        }
    });

    let tls_identity = if config.http_server.tls.enabled {
        Some(tls::identity("http_server.tls", &config.http_server.tls)?)
    } else {
        None
    };
    let health_node = node.clone();
    let metrics_node = node.clone();
    let router = node
        .api_router()
        .merge(health_router(&config, move || health_node.health()))
        .merge(metrics_router(&config, move || {
            metrics::core(&metrics_node, &links)
        }));
    println!("spindle: listening on {local}");
    tracing::info!(%local, scheme = scheme(tls_identity.is_some()), mesh = %mesh_local, "spindle core serving");
    let limit = config.shutdown.timeout.as_std();
    let served = serve_until(
        listener,
        tls_identity.as_ref(),
        router,
        shutdown,
        || {},
        limit,
    )
    .await;
    // Closes the mesh endpoint whatever happened above (the accept task ends with it).
    let _ = closing.send(());
    served?;
    // Let the close frames leave before the process ends.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(())
}
