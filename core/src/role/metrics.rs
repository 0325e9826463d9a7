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
    text.finish()
}
