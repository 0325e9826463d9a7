//! `spindle core`: the broker, history, presence, server API and proxies; edges attach over the
//! QUIC mesh (`mesh.listen`). No client transports.

use crate::cli::ServeArgs;
use anyhow::{Context, Result};
use spindle_hub::config::Config;
use spindle_mesh::quic::MeshListener;
use spindle_server::mesh as mesh_roles;
use spindle_server::{
    bind_address, health_router, metrics_router, scheme, serve_until_signal, tls,
};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let (config, runtime) = spindle_server::prepare(
        args.config.as_deref(),
        args.config_flags(),
        args.log_json,
        spindle_hub::config::Role::Core,
    )?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Arc<Config>) -> Result<()> {
    let name = mesh_roles::node_name(&config)?;
    let mesh_identity = mesh_roles::identity(&config)?;
    let address = format!("{}:{}", bind_address(&config), config.http_server.port);
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr()?;
    let identity = spindle_core::NodeIdentity::named(name.clone());
    let node = spindle_core::Node::connect(Arc::clone(&config), identity)
        .await
        .context("cannot start the core")?;

    let socket = std::net::UdpSocket::bind(&config.mesh.listen)
        .with_context(|| format!("cannot listen on UDP {} (mesh.listen)", config.mesh.listen))?;
    let mut mesh = MeshListener::new(socket, &mesh_identity, mesh_roles::options(&config, name))
        .context("cannot start the mesh endpoint")?;
    let mesh_local = mesh.local_addr()?;
    println!("spindle: mesh listening on udp {mesh_local}");
    let attaching = node.clone();
    let links = super::metrics::CoreLinks::default();
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
            super::metrics::core(&metrics_node, &links)
        }));
    println!("spindle: listening on {local}");
    tracing::info!(%local, scheme = scheme(tls_identity.is_some()), mesh = %mesh_local, "spindle core serving");
    let limit = config.shutdown.timeout.as_std();
    serve_until_signal(listener, tls_identity.as_ref(), router, || {}, limit).await?;
    let _ = closing.send(());
    // Let the close frames leave before the process ends.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(())
}
