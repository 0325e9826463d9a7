//! The edge role (`spindle edge`, the slim `spindle-edge`): the client transports and local
//! fan-out, linked to a core over the QUIC mesh (`mesh.cores`). It holds no history, presence,
//! API key or broker credentials of its own.
//!
//! The link: dialled in the background (503 until the first core answers). When it is lost,
//! client connections stay open (the next link repairs their channels: docs/architecture.md
//! §9); new ones are refused and `/health` reports 503 until the edge has dialled a core again:
//! every address of `mesh.cores` (a DNS name may have several) is tried in turn, the lost one
//! last, each dial bounded by [`DIAL_TIMEOUT`], with backoff between rounds.

use anyhow::{Context, Result, bail};
use spindle_hub::config::Config;
use spindle_hub::metrics::{Kind, MetricsText};
use spindle_mesh::quic::{self, CoreLinkInfo, MeshIdentity, MeshOptions};
use spindle_mesh::{EdgeInbox, EdgeLink};
use spindle_server::mesh as mesh_roles;
use spindle_server::{health_router, scheme, serve_until, tls};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;

/// How long the edge waits between dial rounds at most.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one dial may take: a QUIC handshake to an address where nothing answers would
/// otherwise wait for the idle timeout (10 s) before the next core is tried.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs an edge with `config` on `listener` (already bound: the command binds
/// `http_server.port`, a test binds port 0) until `shutdown` resolves (the command passes
/// SIGINT / SIGTERM): the link to a core and its re-dialling, the client transports, `/health`,
/// `/metrics`. Then clients are closed with 3001 and drained within `shutdown.timeout`.
pub async fn run(
    config: Arc<Config>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if config.mesh.cores.is_empty() {
        bail!("mesh.cores is empty: an edge needs at least one core address (host:port)");
    }
    let name = mesh_roles::node_name(&config)?;
    let mesh_identity = Arc::new(mesh_roles::identity(&config)?);
    let options = mesh_roles::options(&config, name.clone());
    let rules = spindle_hub::session::SessionRules::new(&config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("invalid client configuration")?;
    let local = listener.local_addr()?;

    let identity = crate::NodeIdentity {
        uid: uuid::Uuid::new_v4().to_string(),
        name,
    };
    // Serving from the start: 503 (and `/health` saying why) until a core is linked.
    let edge = crate::Edge::unlinked(Arc::clone(&config), rules, identity);
    let link_state = EdgeLinkState::default();
    let linking = AbortOnDrop(tokio::spawn({
        let edge = edge.clone();
        let config = Arc::clone(&config);
        let link_state = link_state.clone();
        async move {
            let mut lost = None;
            loop {
                let (link, inbox, info) =
                    dial_until_linked(&config, &mesh_identity, &options, lost).await;
                lost = Some(info.connection.remote_address());
                link_state.linked(info);
                edge.run_link(link, inbox).await;
                tracing::warn!(
                    "mesh link to the core lost: client connections kept, dialling a core again"
                );
            }
        }
    }));

    let tls_identity = if config.http_server.tls.enabled {
        Some(tls::identity("http_server.tls", &config.http_server.tls)?)
    } else {
        None
    };
    let health_edge = edge.clone();
    let router = edge
        .router()
        .merge(health_router(&config, move || health_edge.health()))
        .merge(spindle_server::metrics_router(&config, {
            let edge = edge.clone();
            move || metrics(&link_state, &edge.stats())
        }));
    println!("spindle: listening on {local}");
    tracing::info!(%local, scheme = scheme(tls_identity.is_some()), "spindle edge serving");
    let limit = config.shutdown.timeout.as_std();
    let on_signal = {
        let edge = edge.clone();
        move || {
            tracing::info!("shutting down: closing client connections with 3001");
            edge.shutdown();
        }
    };
    // `shutdown.timeout` bounds everything after the signal.
    let deadline = serve_until(
        listener,
        tls_identity.as_ref(),
        router,
        shutdown,
        on_signal,
        limit,
    )
    .await?;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !edge.wait_drained(left).await {
        tracing::warn!("some connections did not close within shutdown.timeout ({limit:?})");
    }
    // The link goes with the role, also when it returns early with an error.
    drop(linking);
    tracing::info!("stopped");
    Ok(())
}

/// A task that ends when this handle goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Dials the addresses of `mesh.cores` in turn until one links, the `lost` one last, backing
/// off between rounds.
async fn dial_until_linked(
    config: &Config,
    identity: &MeshIdentity,
    options: &MeshOptions,
    lost: Option<SocketAddr>,
) -> (EdgeLink, EdgeInbox, CoreLinkInfo) {
    let mut backoff = Duration::from_millis(100);
    loop {
        for addr in candidates(&config.mesh.cores, lost).await {
            match tokio::time::timeout(DIAL_TIMEOUT, quic::dial(addr, identity, options.clone()))
                .await
            {
                Ok(Ok(((link, inbox), info))) => {
                    println!("spindle: linked to core {} at {addr}", info.node);
                    return (link, inbox, info);
                }
                Ok(Err(error)) => tracing::warn!(%addr, %error, "mesh: cannot link to the core"),
                Err(_) => tracing::warn!(%addr, ?DIAL_TIMEOUT, "mesh: the core did not answer"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Every address of `cores` in order (each name resolved to all its addresses), `lost` last.
async fn candidates(cores: &[String], lost: Option<SocketAddr>) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for core in cores {
        match tokio::net::lookup_host(core).await {
            Ok(found) => {
                for addr in found {
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
            }
            Err(error) => tracing::warn!(core, %error, "mesh: cannot resolve the core's address"),
        }
    }
    if let Some(lost) = lost
        && let Some(at) = addrs.iter().position(|addr| *addr == lost)
    {
        let lost = addrs.remove(at);
        addrs.push(lost);
    }
    addrs
}

/// An edge's link to its core, for `/metrics`.
#[derive(Debug, Clone, Default)]
struct EdgeLinkState(Arc<Mutex<EdgeLinkInner>>);

#[derive(Debug, Default)]
struct EdgeLinkInner {
    current: Option<CoreLinkInfo>,
    /// Links made per core; every one after the first is a reconnect.
    links: HashMap<String, u64>,
}

impl EdgeLinkState {
    fn linked(&self, info: CoreLinkInfo) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *state.links.entry(info.node.clone()).or_insert(0) += 1;
        state.current = Some(info);
    }
}

/// An edge's mesh metrics: its link to a core, the link's RTT, reconnects per core, and the
/// gap repairs of its channels (docs/architecture.md §9).
fn metrics(state: &EdgeLinkState, stats: &crate::EdgeStats) -> String {
    let state = state.0.lock().unwrap_or_else(PoisonError::into_inner);
    let live = state
        .current
        .as_ref()
        .filter(|info| info.connection.close_reason().is_none());
    let mut text = MetricsText::new();
    text.family(
        "spindle_mesh_links",
        "Live mesh links to cores (QUIC), by peer and region.",
        Kind::Gauge,
    );
    if let Some(info) = live {
        text.sample(
            "spindle_mesh_links",
            &[("peer", &info.node), ("region", &info.region)],
            1.0,
        );
    }
    text.family(
        "spindle_mesh_rtt_seconds",
        "Round-trip time of the link to the core, as QUIC measures it.",
        Kind::Gauge,
    );
    if let Some(info) = live {
        text.sample(
            "spindle_mesh_rtt_seconds",
            &[("peer", &info.node)],
            info.connection.rtt().as_secs_f64(),
        );
    }
    text.family(
        "spindle_mesh_reconnects_total",
        "Links made to each core after the first one.",
        Kind::Counter,
    );
    for (core, links) in &state.links {
        text.sample(
            "spindle_mesh_reconnects_total",
            &[("peer", core)],
            links.saturating_sub(1) as f64,
        );
    }
    let counters = [
        (
            "spindle_edge_repairs_total",
            "Gap repairs started (one per channel and gap, whatever its subscribers).",
            stats.repairs as f64,
        ),
        (
            "spindle_edge_repaired_publications_total",
            "Publications fanned out from core history by repairs.",
            stats.repaired_publications as f64,
        ),
        (
            "spindle_edge_signalled_channels_total",
            "Times a channel's subscribers were told of a gap nothing could repair (2500 / 3010).",
            stats.signalled_channels as f64,
        ),
        (
            "spindle_edge_repairs_completed_total",
            "Repairs that ended with their channel live again.",
            stats.repaired_channels as f64,
        ),
        (
            "spindle_edge_repair_seconds_total",
            "Time those repairs took in all, from the gap seen to the last publication fanned out.",
            stats.repair_time.as_secs_f64(),
        ),
    ];
    for (name, help, value) in counters {
        text.family(name, help, Kind::Counter);
        text.sample(name, &[], value);
    }
    text.family(
        "spindle_edge_repair_seconds_max",
        "The longest of those repairs.",
        Kind::Gauge,
    );
    text.sample(
        "spindle_edge_repair_seconds_max",
        &[],
        stats.longest_repair.as_secs_f64(),
    );
    text.finish()
}
