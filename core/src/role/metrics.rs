//! The core's `/metrics` (Prometheus text): the `spindle_mesh_*` families of its links to edges
//! (the edge's own are in `spindle_edge::role`). The observability issue extends the endpoint.

use spindle_hub::metrics::{Kind, MetricsText};
use spindle_mesh::quic::{AcceptedEdge, LinkStats, QuicConnection};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// The QUIC links a core has accepted, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct CoreLinks(Arc<Mutex<Vec<CoreLinkEntry>>>);

#[derive(Debug)]
struct CoreLinkEntry {
    edge: String,
    region: String,
    connection: QuicConnection,
    stats: Arc<LinkStats>,
}

impl CoreLinks {
    pub fn add(&self, edge: &AcceptedEdge) {
        let mut links = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        links.retain(|link| link.connection.close_reason().is_none());
        links.push(CoreLinkEntry {
            edge: edge.node.clone(),
            region: edge.region.clone(),
            connection: edge.connection.clone(),
            stats: Arc::clone(&edge.stats),
        });
    }
}

/// A core's (or `spindle serve`'s) mesh metrics: per attached edge, events sent and interest
/// size from the node; per live QUIC link, its RTT and the bytes written on its lanes.
pub fn core(node: &crate::Node, links: &CoreLinks) -> String {
    let counts = node.edge_counts();
    let links = links.0.lock().unwrap_or_else(PoisonError::into_inner);
    let live: Vec<&CoreLinkEntry> = links
        .iter()
        .filter(|link| link.connection.close_reason().is_none())
        .collect();
    let mut text = MetricsText::new();
    text.family(
        "spindle_mesh_links",
        "Live mesh links to edges (QUIC), by peer and region.",
        Kind::Gauge,
    );
    for link in &live {
        text.sample(
            "spindle_mesh_links",
            &[("peer", &link.edge), ("region", &link.region)],
            1.0,
        );
    }
    text.family(
        "spindle_mesh_events_sent_total",
        "Events (publications, joins, leaves) handed to each edge: one per event, whatever the number of its subscribers.",
        Kind::Counter,
    );
    for edge in &counts {
        text.sample(
            "spindle_mesh_events_sent_total",
            &[("edge", edge.id.as_str())],
            edge.events_sent as f64,
        );
    }
    text.family(
        "spindle_mesh_interest_channels",
        "Channels each edge has local subscribers in.",
        Kind::Gauge,
    );
    for edge in &counts {
        text.sample(
            "spindle_mesh_interest_channels",
            &[("edge", edge.id.as_str())],
            edge.interest_channels as f64,
        );
    }
    text.family(
        "spindle_mesh_bytes_sent_total",
        "Bytes written on each QUIC link's event lanes.",
        Kind::Counter,
    );
    for link in &live {
        text.sample(
            "spindle_mesh_bytes_sent_total",
            &[("edge", &link.edge)],
            link.stats.lane_bytes.load(Ordering::Relaxed) as f64,
        );
    }
    text.family(
        "spindle_mesh_request_bytes",
        "Bytes of each edge's request budget held by its requests now.",
        Kind::Gauge,
    );
    for link in &live {
        text.sample(
            "spindle_mesh_request_bytes",
            &[("edge", &link.edge)],
            link.stats.request_bytes.load(Ordering::Relaxed) as f64,
        );
    }
    text.family(
        "spindle_mesh_rtt_seconds",
        "Round-trip time of each QUIC link, as QUIC measures it.",
        Kind::Gauge,
    );
    for link in &live {
        text.sample(
            "spindle_mesh_rtt_seconds",
            &[("peer", &link.edge)],
            link.connection.rtt().as_secs_f64(),
        );
    }
    shared_poll(node, &mut text);
    text.finish()
}

/// The shared-poll pollers: backend calls and keys asked (they follow unique keys, not
/// clients), failures, changes and removals sent, channels and keys polled now.
fn shared_poll(node: &crate::Node, text: &mut MetricsText) {
    let counters = node.shared_poll_counters();
    let (channels, keys) = node.shared_poll_sizes();
    for (name, help, kind, value) in [
        (
            "spindle_shared_poll_refresh_calls_total",
            "shared_poll_refresh calls made to the backend.",
            Kind::Counter,
            counters.calls.load(Ordering::Relaxed),
        ),
        (
            "spindle_shared_poll_refresh_failed_calls_total",
            "shared_poll_refresh calls that failed (network, timeout, backend error).",
            Kind::Counter,
            counters.failed_calls.load(Ordering::Relaxed),
        ),
        (
            "spindle_shared_poll_keys_polled_total",
            "Keys asked for in shared_poll_refresh calls.",
            Kind::Counter,
            counters.keys_polled.load(Ordering::Relaxed),
        ),
        (
            "spindle_shared_poll_changes_total",
            "Shared-poll key changes sent to edges.",
            Kind::Counter,
            counters.changes.load(Ordering::Relaxed),
        ),
        (
            "spindle_shared_poll_removals_total",
            "Shared-poll keys revoked by the backend.",
            Kind::Counter,
            counters.removals.load(Ordering::Relaxed),
        ),
        (
            "spindle_shared_poll_channels",
            "Shared-poll channels with a running poller.",
            Kind::Gauge,
            channels as u64,
        ),
        (
            "spindle_shared_poll_keys",
            "Shared-poll keys tracked by some edge.",
            Kind::Gauge,
            keys as u64,
        ),
        (
            "spindle_subscription_streams",
            "Subscription streams (subscribe_stream_proxy) open to the backend.",
            Kind::Gauge,
            node.open_stream_count() as u64,
        ),
    ] {
        text.family(name, help, kind);
        text.sample(name, &[], value as f64);
    }
}
