//! The core's end of QUIC links: accept edges, exchange `Hello`, then relay between each edge's
//! QUIC streams and the in-process link the node serves (see the module above).

use super::framed::{self, FrameReader};
use super::{LastHeard, MeshOptions, close, tls};
use crate::link::{CoreInbox, CoreLink, Down, EdgeInbox, EdgeLink, Lane, Up, in_process_bounded};
use crate::{Pending, mesh};
use bytes::BytesMut;
use spindle_proto::mesh::{Role, mesh_frame::Kind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// How long an edge may take from its QUIC handshake to its `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the core's relay waits for the node to answer a request. The edge's own deadline
/// is shorter and governs; this only ends a relay whose node never answers.
const RELAY_DEADLINE: Duration = Duration::from_secs(600);

/// An edge that connected and said who it is.
#[derive(Debug)]
pub struct AcceptedEdge {
    /// The edge's node name (its certificate names it).
    pub node: String,
    pub region: String,
    pub addr: SocketAddr,
    /// The node's end of the link, as with the in-process link.
    pub link: CoreLink,
    pub inbox: CoreInbox,
    /// Closes once the link is down.
    pub connection: quinn::Connection,
    /// What was sent to the edge on this link.
    pub stats: Arc<LinkStats>,
}

/// Counters of one link, read for `/metrics`.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Bytes written on the event lanes.
    pub lane_bytes: std::sync::atomic::AtomicU64,
    /// Events written on the event lanes.
    pub lane_events: std::sync::atomic::AtomicU64,
    /// Bytes of the edge's request budget held now ([`MeshOptions::request_budget_bytes`]).
    pub request_bytes: std::sync::atomic::AtomicU64,
}

/// Bytes counted in a gauge for as long as this lives.
struct HeldBytes<'a> {
    gauge: &'a std::sync::atomic::AtomicU64,
    bytes: u64,
}

impl<'a> HeldBytes<'a> {
    fn count(gauge: &'a std::sync::atomic::AtomicU64, bytes: usize) -> HeldBytes<'a> {
        let bytes = bytes as u64;
        gauge.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        HeldBytes { gauge, bytes }
    }
}

impl Drop for HeldBytes<'_> {
    fn drop(&mut self) {
        self.gauge
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The core's UDP endpoint for edges (`mesh.listen`).
#[derive(Debug)]
pub struct MeshListener {
    endpoint: quinn::Endpoint,
    accepted: mpsc::Receiver<AcceptedEdge>,
}

impl MeshListener {
    /// Listens on `socket` (already bound, so tests can use port 0) for edges presenting a
    /// certificate of the cluster CA.
    pub fn new(
        socket: std::net::UdpSocket,
        identity: &tls::MeshIdentity,
        options: MeshOptions,
    ) -> Result<MeshListener, super::DialError> {
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(identity)?)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(super::transport(&options)));
        let runtime = quinn::default_runtime().ok_or_else(|| {
            super::DialError::Socket(std::io::Error::other("no async runtime for QUIC"))
        })?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(super::DialError::Socket)?;
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(accept_loop(endpoint.clone(), tx, options));
        Ok(MeshListener { endpoint, accepted })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The next edge that completed its `Hello`; `None` once the endpoint is closed.
    pub async fn accept(&mut self) -> Option<AcceptedEdge> {
        self.accepted.recv().await
    }

    /// Tells every edge goodbye and closes the endpoint.
    pub fn close(&self) {
        self.endpoint.close(close::DONE, b"core shutting down");
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    accepted: mpsc::Sender<AcceptedEdge>,
    options: MeshOptions,
) {
    while let Some(incoming) = endpoint.accept().await {
        let accepted = accepted.clone();
        let options = options.clone();
        // Each handshake in its own task: a slow or hostile peer holds up no one.
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%addr, %error, "mesh: handshake failed (not a node of this cluster?)");
                    return;
                }
            };
            match tokio::time::timeout(HELLO_TIMEOUT, start(connection.clone(), addr, options))
                .await
            {
                Ok(Some(edge)) => {
                    let _ = accepted.send(edge).await;
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::warn!(%addr, "mesh: no Hello in time");
                    connection.close(close::REFUSED, b"no hello");
                }
            }
        });
    }
}

/// `Hello` both ways, then the relay tasks.
async fn start(
    connection: quinn::Connection,
    addr: SocketAddr,
    options: MeshOptions,
) -> Option<AcceptedEdge> {
    let (mut send, recv) = connection.accept_bi().await.ok()?;
    let mut reader = FrameReader::new(recv);
    let hello = match super::check_hello(&mut reader, &connection, Role::Edge).await {
        Ok(hello) => hello,
        Err(error) => {
            tracing::warn!(%addr, %error, "mesh: edge refused");
            super::refuse(&mut send, &connection, &error).await;
            return None;
        }
    };
    send.write_all(&framed::frame(super::hello(&options, Role::Core)))
        .await
        .ok()?;
    tracing::info!(%addr, edge = hello.node_id, region = hello.region, "mesh link up");

    let ((to_core, mut from_core), (link, inbox)) = in_process_bounded(
        options.capacity,
        options.lanes,
        super::BoundSplit::of(options.backlog_bytes).backlog,
    );
    tokio::spawn(cut_when_too_slow(link.clone(), connection.clone(), addr));
    let (control, control_queue) = mpsc::channel(1024);
    let heard = LastHeard::new();
    tokio::spawn(framed::write_frames(send, control_queue));
    tokio::spawn(super::keep_alive(
        control.clone(),
        connection.clone(),
        heard.clone(),
        options.clone(),
        hello.node_id.clone(),
    ));
    tokio::spawn(control_up(
        reader,
        to_core.clone(),
        heard,
        connection.clone(),
    ));
    let stats = Arc::new(LinkStats::default());
    tokio::spawn(requests(
        connection.clone(),
        to_core,
        options.request_budget_bytes,
        Arc::clone(&stats),
    ));
    for lane in from_core.take_lanes() {
        tokio::spawn(lane_writer(connection.clone(), lane, Arc::clone(&stats)));
    }
    tokio::spawn(down(from_core, control, connection.clone()));
    Some(AcceptedEdge {
        node: hello.node_id,
        region: hello.region,
        addr,
        link,
        inbox,
        connection,
        stats,
    })
}

/// Closes the connection once the node cut the link: the edge's backlog went over its bound
/// (it stopped reading). The edge links again and repairs its channels from history.
async fn cut_when_too_slow(link: CoreLink, connection: quinn::Connection, addr: SocketAddr) {
    tokio::select! {
        () = link.cut_requested() => {
            tracing::warn!(%addr, "mesh: edge cut, its backlog went over mesh.edge_queue_max_size");
            connection.close(close::SLOW, b"backlog over mesh.edge_queue_max_size");
        }
        _ = connection.closed() => {}
    }
}

/// The edge's control stream: interest and presence to the node.
async fn control_up(
    reader: FrameReader,
    to_core: EdgeLink,
    heard: LastHeard,
    connection: quinn::Connection,
) {
    let accept = |kind| match kind {
        Kind::Interest(interest) => Some(Up::Interest(interest)),
        Kind::Presence(update) => Some(Up::Presence(update)),
        _ => None,
    };
    let forward = |message| {
        let to_core = to_core.clone();
        async move { to_core.send(message).await.is_ok() }
    };
    super::read_control(reader, heard, connection, "edge", accept, forward).await;
}

/// Requests, each on the stream the edge opened for it; one stopped by the edge is cancelled.
/// Each holds its frame's size of the edge's request budget from before its body is read until
/// it is answered; a frame larger than the whole budget is refused.
async fn requests(
    connection: quinn::Connection,
    to_core: EdgeLink,
    budget_bytes: usize,
    stats: Arc<LinkStats>,
) {
    let budget_bytes = budget_bytes.clamp(1, u32::MAX as usize);
    let budget = Arc::new(Semaphore::new(budget_bytes));
    while let Ok((mut send, recv)) = connection.accept_bi().await {
        let to_core = to_core.clone();
        let budget = Arc::clone(&budget);
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv);
            let Ok(Some(size)) = reader.next_frame_size().await else {
                return;
            };
            if size > budget_bytes {
                tracing::warn!(
                    size,
                    budget_bytes,
                    "a request frame over the edge's request budget: refused"
                );
                let _ = send.reset(close::REQUEST_TOO_LARGE);
                return;
            }
            // Fits in u32: at most the budget, which was clamped to it.
            let Ok(_held) = budget.acquire_many_owned(size as u32).await else {
                return;
            };
            let _counted = HeldBytes::count(&stats.request_bytes, size);
            let Ok(Some(Kind::Request(request))) = reader.next().await else {
                return;
            };
            let id = request.id;
            let answer = tokio::select! {
                answer = to_core.request(request.kind, RELAY_DEADLINE) => answer,
                _ = send.stopped() => return,
            };
            if let Ok(mut response) = answer {
                response.id = id;
                let _ = framed::send_one(&mut send, Kind::Response(response)).await;
            }
        });
    }
}

/// What the node sends besides events: control messages in order on the control stream,
/// surveys each on a stream of their own.
async fn down(
    from_core: EdgeInbox,
    control: mpsc::Sender<bytes::Bytes>,
    connection: quinn::Connection,
) {
    let route = |message, connection: &quinn::Connection| match message {
        Down::Control(command) => Some(framed::frame(Kind::Control(command))),
        Down::InterestAck(ack) => Some(framed::frame(Kind::InterestAck(ack))),
        Down::Survey(pending) => {
            tokio::spawn(survey(connection.clone(), pending));
            None
        }
    };
    let goodbye = b"core stopped serving this edge";
    super::relay_out(from_core, control, connection, goodbye, route).await;
}

/// One survey on its own stream; abandoned when the node gives up on it.
async fn survey(connection: quinn::Connection, pending: Pending<mesh::Survey, mesh::SurveyReply>) {
    let pick = |kind| match kind {
        Kind::SurveyReply(reply) => Some(reply),
        _ => None,
    };
    super::ask(
        &connection,
        Kind::Survey(pending.question),
        pending.responder,
        pick,
    )
    .await;
}

/// One event lane: a stream of its own, written in batches of whatever is queued.
async fn lane_writer(connection: quinn::Connection, mut lane: Lane, stats: Arc<LinkStats>) {
    use std::sync::atomic::Ordering::Relaxed;
    let Ok(mut stream) = connection.open_uni().await else {
        return;
    };
    let mut buffer = BytesMut::new();
    while let Some(event) = lane.recv().await {
        // The same bytes for every edge: the first writer to need them encodes them.
        buffer.extend_from_slice(event.frame(framed::event_frame));
        let mut events = 1;
        while buffer.len() < 64 << 10 {
            match lane.try_recv() {
                Some(event) => {
                    buffer.extend_from_slice(event.frame(framed::event_frame));
                    events += 1;
                }
                None => break,
            }
        }
        if stream.write_all(&buffer).await.is_err() {
            return;
        }
        stats.lane_bytes.fetch_add(buffer.len() as u64, Relaxed);
        stats.lane_events.fetch_add(events, Relaxed);
        buffer.clear();
    }
    let _ = stream.finish();
}
