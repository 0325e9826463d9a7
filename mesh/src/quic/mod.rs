//! The link over QUIC (quinn + rustls, ring only), between processes.
//!
//! Each side keeps the link contract of `docs/architecture.md` §4 by relaying between an
//! in-process link (the edge or the node holds its usual end) and one QUIC connection:
//!
//! - **control**: one bidirectional stream the edge opens. `Hello` both ways first (node name,
//!   role, mesh protocol version, region); then edge → core `Interest`, `PresenceUpdate`,
//!   `Heartbeat`; core → edge `Control`, `InterestAck`, `Heartbeat`, `Goodbye`. In order.
//! - **requests**: one bidirectional stream per request, opened by the edge: `Request` →
//!   `Response`. An edge that gives up on a request stops the stream.
//! - **surveys**: one bidirectional stream per survey, opened by the core.
//! - **lanes**: `lanes` unidirectional streams the core opens, carrying `ChannelEvent`s; a
//!   channel's events always take the same lane.
//!
//! Liveness comes from frames received: each side sends a `Heartbeat` every
//! `heartbeat_interval` and drops the link after `link_timeout` without any frame on the control
//! stream. QUIC's own keep-alive and idle timeout are the backstop.
//!
//! Identity: mutual TLS with the cluster CA (`tls`); after `Hello` each side checks that the
//! peer's certificate names the node it announced, and refuses (a `Goodbye` saying why, then
//! closing) a peer with another name, role or protocol version.

mod core_side;
mod edge_side;
mod framed;
mod gencerts;
mod tls;

pub use core_side::{AcceptedEdge, LinkStats, MeshListener};
pub use edge_side::{CoreLinkInfo, DialError, dial};
pub use framed::{MAX_FRAME, ReadFrameError};
pub use gencerts::{CertsError, DevelopmentCerts, generate_certs};
/// A live QUIC connection of the mesh (its RTT, whether and why it closed).
pub use quinn::Connection as QuicConnection;
pub use tls::{ALPN, MeshIdentity, TlsError};

use bytes::Bytes;
use framed::FrameReader;
use spindle_proto::mesh::{self, Role, mesh_frame::Kind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// How one node takes part in the mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// This node's name: announced in `Hello`, and the DNS name its certificate must carry.
    pub node_name: String,
    /// Announced in `Hello`, for `info` and metrics. May be empty.
    pub region: String,
    /// Event lanes the core opens to each edge (`mesh.lanes`).
    pub lanes: usize,
    /// How often each side sends a `Heartbeat` (`mesh.heartbeat_interval`, default 500 ms).
    pub heartbeat_interval: Duration,
    /// The link is dropped after this long without a frame on the control stream
    /// (`mesh.link_timeout`, default 1.5 s).
    pub link_timeout: Duration,
    /// Messages that may wait in each direction and lane of the in-process side.
    pub capacity: usize,
    /// Bytes of events that may wait for one edge (`mesh.edge_queue_max_size`), QUIC's send
    /// window included ([`BoundSplit`]); beyond it the core cuts the link.
    pub backlog_bytes: usize,
    /// Bytes of request frames the core holds for one edge at once (read, being served, not yet
    /// answered). A request waits for its frame's share before its body is read, so an edge
    /// with 1,024 requests in flight cannot make the core buffer 1,024 × [`MAX_FRAME`].
    pub request_budget_bytes: usize,
}

/// The default [`MeshOptions::request_budget_bytes`]: four of the largest frames.
pub const DEFAULT_REQUEST_BUDGET_BYTES: usize = 4 * MAX_FRAME;

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            node_name: String::new(),
            region: String::new(),
            lanes: crate::DEFAULT_LANES,
            heartbeat_interval: Duration::from_millis(500),
            link_timeout: Duration::from_millis(1500),
            capacity: 4096,
            backlog_bytes: crate::DEFAULT_BACKLOG_BYTES,
            request_budget_bytes: DEFAULT_REQUEST_BUDGET_BYTES,
        }
    }
}

/// How one edge's byte bound (`mesh.edge_queue_max_size`) is shared between what QUIC holds
/// unacknowledged (its send window) and the lanes' backlog, so that the two together never
/// hold more than the bound for a stalled edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundSplit {
    pub send_window: usize,
    pub backlog: usize,
}

impl BoundSplit {
    /// Half each; the window at least 256 KiB (QUIC needs some to move at all) and at most
    /// 32 MiB (more does not speed up a link, the backlog can use it).
    pub fn of(bound: usize) -> BoundSplit {
        let send_window = (bound / 2).clamp(256 << 10, 32 << 20).min(bound);
        BoundSplit {
            send_window,
            backlog: bound - send_window,
        }
    }
}

/// Why a peer was refused after the TLS handshake.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HelloError {
    #[error("the peer sent no Hello")]
    Missing,
    #[error("the peer is a {got:?}, this side needs a {want:?}")]
    WrongRole { want: Role, got: Role },
    #[error("the peer speaks mesh protocol {got}, this node {want}")]
    Version { want: u32, got: u32 },
    #[error("the peer's certificate does not name {0:?} (the node it announced)")]
    NameMismatch(String),
    #[error("the peer said goodbye: {0}")]
    Goodbye(String),
}

/// Error codes a side closes the QUIC connection with.
pub(crate) mod close {
    use quinn::VarInt;
    /// A clean shutdown.
    pub const DONE: VarInt = VarInt::from_u32(0);
    /// The peer was refused after `Hello`.
    pub const REFUSED: VarInt = VarInt::from_u32(1);
    /// No frame within the link timeout.
    pub const SILENT: VarInt = VarInt::from_u32(2);
    /// The peer broke the mesh protocol.
    pub const PROTOCOL: VarInt = VarInt::from_u32(3);
    /// The edge did not read its events: its backlog went over `mesh.edge_queue_max_size`.
    pub const SLOW: VarInt = VarInt::from_u32(4);
    /// A request stream reset: its frame is larger than the whole request budget.
    pub const REQUEST_TOO_LARGE: VarInt = VarInt::from_u32(5);
}

fn hello(options: &MeshOptions, role: Role) -> Kind {
    Kind::Hello(mesh::Hello {
        node_id: options.node_name.clone(),
        role: role as i32,
        protocol_version: spindle_proto::mesh::PROTOCOL_VERSION,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
        region: options.region.clone(),
    })
}

/// Reads the peer's `Hello` and checks role, version and certificate name.
async fn check_hello(
    reader: &mut FrameReader,
    connection: &quinn::Connection,
    want: Role,
) -> Result<mesh::Hello, HelloError> {
    let hello = match reader.next().await {
        Ok(Some(Kind::Hello(hello))) => hello,
        Ok(Some(Kind::Goodbye(goodbye))) => return Err(HelloError::Goodbye(goodbye.reason)),
        _ => return Err(HelloError::Missing),
    };
    let got = Role::try_from(hello.role).unwrap_or(Role::Unspecified);
    if got != want {
        return Err(HelloError::WrongRole { want, got });
    }
    if hello.protocol_version != spindle_proto::mesh::PROTOCOL_VERSION {
        return Err(HelloError::Version {
            want: spindle_proto::mesh::PROTOCOL_VERSION,
            got: hello.protocol_version,
        });
    }
    if !tls::peer_is_named(connection, &hello.node_id) {
        return Err(HelloError::NameMismatch(hello.node_id));
    }
    Ok(hello)
}

/// Tells the peer why it is refused, then closes.
async fn refuse(send: &mut quinn::SendStream, connection: &quinn::Connection, error: &HelloError) {
    let goodbye = Kind::Goodbye(mesh::Goodbye {
        reason: error.to_string(),
    });
    let _ = framed::send_one(send, goodbye).await;
    // Give the goodbye a moment to leave before the close discards it.
    let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
    connection.close(close::REFUSED, error.to_string().as_bytes());
}

/// Reads the peer's control stream until it ends. Every frame marks the peer alive; heartbeats
/// stop there; a goodbye closes the link; `accept` turns any other frame into this side's
/// message (`None`: a frame this side never takes, which closes the link as a protocol error)
/// and `forward` hands it on (`false`: the local end is gone, stop).
async fn read_control<M, Fut>(
    mut reader: FrameReader,
    heard: LastHeard,
    connection: quinn::Connection,
    peer: &'static str,
    accept: impl Fn(Kind) -> Option<M>,
    mut forward: impl FnMut(M) -> Fut,
) where
    Fut: Future<Output = bool>,
{
    loop {
        let kind = match reader.next().await {
            Ok(Some(kind)) => kind,
            Ok(None) | Err(_) => {
                connection.close(close::PROTOCOL, b"control stream ended");
                return;
            }
        };
        heard.heard();
        let message = match kind {
            Kind::Heartbeat(_) => continue,
            Kind::Goodbye(goodbye) => {
                tracing::info!(peer, reason = goodbye.reason, "mesh: the peer said goodbye");
                connection.close(close::DONE, b"goodbye");
                return;
            }
            other => match accept(other) {
                Some(message) => message,
                None => {
                    tracing::warn!(peer, "mesh: unexpected frame on the control stream");
                    connection.close(close::PROTOCOL, b"unexpected frame");
                    return;
                }
            },
        };
        // While this side is slow to take the message, the peer is not silent: its frames wait
        // unread behind this one. Keep it counted as heard, so a local stall does not cut a
        // healthy link.
        let forwarding = forward(message);
        let mut forwarding = std::pin::pin!(forwarding);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                taken = &mut forwarding => {
                    if !taken {
                        return;
                    }
                    break;
                }
                _ = tick.tick() => heard.heard(),
            }
        }
    }
}

/// Asks the peer on a bidirectional stream of its own: `question` out, one frame back, which
/// `pick` turns into the answer (`None`: not the frame this question wants, so no answer: the
/// asker sees the link fail). Abandoned once the asker gives up: dropping the streams resets
/// them, and the peer stops working on it.
async fn ask<A>(
    connection: &quinn::Connection,
    question: Kind,
    mut responder: crate::Responder<A>,
    pick: impl FnOnce(Kind) -> Option<A>,
) {
    let exchange = async {
        let (mut send, recv) = connection.open_bi().await.ok()?;
        framed::send_one(&mut send, question).await.ok()?;
        FrameReader::new(recv).next().await.ok().flatten()
    };
    let reply = tokio::select! {
        reply = exchange => reply,
        () = responder.closed() => return,
    };
    if let Some(answer) = reply.and_then(pick) {
        responder.answer(answer);
    }
}

/// Relays what the in-process side sends, for either side: `route` turns a control message
/// into its frame, which goes onto the control stream in order; anything else (a request, a
/// survey) it starts as an exchange on a stream of its own and returns `None`. Ends when the
/// connection closes, or closes it with `goodbye` when the in-process side stops.
async fn relay_out<O: crate::link::Outgoing>(
    mut from: O,
    control: mpsc::Sender<Bytes>,
    connection: quinn::Connection,
    goodbye: &'static [u8],
    route: impl Fn(O::Message, &quinn::Connection) -> Option<Bytes>,
) {
    loop {
        let message = tokio::select! {
            message = from.next() => message,
            _ = connection.closed() => return,
        };
        let Some(message) = message else {
            connection.close(close::DONE, goodbye);
            return;
        };
        let Some(frame) = route(message, &connection) else {
            continue;
        };
        if control.send(frame).await.is_err() {
            return;
        }
    }
}

/// When a frame last came in on the control stream.
#[derive(Debug, Clone)]
struct LastHeard(Arc<std::sync::Mutex<Instant>>);

impl LastHeard {
    fn new() -> LastHeard {
        LastHeard(Arc::new(std::sync::Mutex::new(Instant::now())))
    }

    fn heard(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn silence(&self) -> Duration {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }
}

/// Sends heartbeats on the control queue and closes the connection once the peer has been
/// silent for the link timeout. Ends when the control queue closes.
///
/// Silence is watched to its deadline (the last frame heard + the timeout), not at heartbeat
/// ticks: a check per tick would see a dead link up to one heartbeat interval late, and a
/// blackholed link must be down within `link_timeout` of its last frame.
async fn keep_alive(
    control: tokio::sync::mpsc::Sender<bytes::Bytes>,
    connection: quinn::Connection,
    heard: LastHeard,
    options: MeshOptions,
    peer: String,
) {
    let heartbeats = async {
        let mut seq = 0;
        let mut tick = tokio::time::interval(options.heartbeat_interval);
        loop {
            tick.tick().await;
            seq += 1;
            let heartbeat = Kind::Heartbeat(mesh::Heartbeat {
                seq,
                sent_at_ms: unix_ms(),
            });
            if control.send(framed::frame(heartbeat)).await.is_err() {
                return;
            }
        }
    };
    let watchdog = async {
        loop {
            let silence = heard.silence();
            if silence >= options.link_timeout {
                tracing::warn!(
                    peer,
                    timeout = ?options.link_timeout,
                    "mesh link down: no frame from the peer within the link timeout"
                );
                connection.close(close::SILENT, b"link timeout");
                return;
            }
            tokio::time::sleep(options.link_timeout - silence).await;
        }
    };
    tokio::select! {
        () = heartbeats => {}
        () = watchdog => {}
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The transport settings both sides use, overriding quinn's defaults where they do not fit.
fn transport(options: &MeshOptions) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    // One stream per request: an edge with many connections asks many things at once (the
    // core answers up to 1,024 at a time per edge; quinn's default is 100).
    transport.max_concurrent_bidi_streams(quinn::VarInt::from_u32(1024));
    // The peer's lanes: as many as the largest `mesh.lanes` allows (64) and room for lanes
    // being replaced, whatever this side's own setting (a core with more lanes than its edge
    // must not find lanes that never open).
    transport.max_concurrent_uni_streams(quinn::VarInt::from_u32(128));
    // A lane carries a busy channel's whole stream: a larger window than quinn's 1.25 MB per
    // stream keeps a loaded lane from stalling on flow control over a long RTT.
    transport.stream_receive_window(quinn::VarInt::from_u32(8 << 20));
    transport.receive_window(quinn::VarInt::from_u32(64 << 20));
    // What QUIC itself holds unacknowledged for a peer is part of the peer's byte bound
    // (`mesh.edge_queue_max_size`): a stalled edge costs the core at most that bound.
    transport.send_window(BoundSplit::of(options.backlog_bytes).send_window as u64);
    // Backstops behind the heartbeats: keep NAT bindings warm, give up after 10 s of nothing.
    transport.keep_alive_interval(Some(
        options.heartbeat_interval.max(Duration::from_millis(100)),
    ));
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(10)).ok());
    transport
}

#[cfg(test)]
mod tests {
    use super::BoundSplit;

    #[test]
    fn the_window_and_the_backlog_together_never_exceed_the_bound() {
        for bound in [1 << 20, 3 << 20, 64 << 20, 1 << 30, 4 << 30] {
            let split = BoundSplit::of(bound);
            assert_eq!(split.send_window + split.backlog, bound, "{bound}");
            assert!(split.send_window >= 256 << 10 && split.send_window <= 32 << 20);
        }
        assert_eq!(BoundSplit::of(1 << 20).backlog, 512 << 10);
    }
}
