//! The link interface and its in-process implementation: bounded Tokio channels carrying mesh
//! messages, with no encoding.

use bytes::Bytes;
use spindle_proto::mesh;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// The link is gone (the other side shut down, or the connection was lost).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("mesh link closed")]
pub struct LinkError;

/// Why a request got no answer. Either way the request is abandoned: an answer arriving later
/// is dropped (on QUIC its stream is reset), so the caller may report the failure at once.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The link is gone, before or while the request was in flight.
    #[error("mesh link closed")]
    Closed,
    /// No answer within the request's deadline.
    #[error("no answer from the core within {0:?}")]
    Timeout(Duration),
}

impl From<LinkError> for RequestError {
    fn from(_: LinkError) -> Self {
        RequestError::Closed
    }
}

/// Edge → core messages.
///
/// Ordering: `Interest` and `Presence` travel on the control stream and are applied in the
/// order sent; each `Request` is independent (its own stream on QUIC) and may be answered in
/// any order relative to the others and to the control stream.
#[derive(Debug)]
pub enum Up {
    /// A change to the edge's interest set (set semantics, numbered, acknowledged by
    /// [`Down::InterestAck`]).
    Interest(mesh::Interest),
    /// Presence joins, leaves and refreshes of local connections.
    Presence(mesh::PresenceUpdate),
    /// A request the core must answer.
    Request(Pending<mesh::Request, mesh::Response>),
}

/// A publication, join or leave in a channel an edge has interest in, core → edge on the
/// channel's event lane. Shared: one event goes to every interested edge without a copy.
pub type Event = Arc<SharedEvent>;

/// One event as every edge gets it, with its QUIC frame encoded at most once: the first lane
/// writer that needs the bytes encodes them, every other edge's writer copies the same bytes
/// (docs/architecture.md §6).
#[derive(Debug)]
pub struct SharedEvent {
    event: mesh::ChannelEvent,
    frame: OnceLock<Bytes>,
}

impl SharedEvent {
    /// The event as a shared [`Event`].
    pub fn new(event: mesh::ChannelEvent) -> Event {
        Arc::new(SharedEvent {
            event,
            frame: OnceLock::new(),
        })
    }

    /// The event's mesh frame (length prefix included), encoded on first use.
    pub fn frame(&self, encode: impl FnOnce(&mesh::ChannelEvent) -> Bytes) -> &Bytes {
        self.frame.get_or_init(|| encode(&self.event))
    }

    /// The event itself, for a side that needs its own copy.
    pub fn event(&self) -> &mesh::ChannelEvent {
        &self.event
    }

    /// The event, taken out when this is its last reference, else copied.
    pub fn into_event(shared: Event) -> mesh::ChannelEvent {
        match Arc::try_unwrap(shared) {
            Ok(only) => only.event,
            Err(shared) => shared.event.clone(),
        }
    }
}

impl std::ops::Deref for SharedEvent {
    type Target = mesh::ChannelEvent;

    fn deref(&self) -> &mesh::ChannelEvent {
        &self.event
    }
}

/// Messages on the core → edge control stream, applied in the order sent.
///
/// Events travel apart from them, on [`Event`] lanes: events of one channel arrive in the
/// order the core sent them (a channel always uses the same lane, [`lane_of`]); events of
/// different channels, and events relative to control messages, may arrive in any order.
#[derive(Debug)]
pub enum Down {
    /// An API command for local connections.
    Control(mesh::Control),
    /// Interest change `seq` is in effect, with the added channels' stream positions.
    InterestAck(mesh::InterestAck),
    /// A question about local state the edge must answer.
    Survey(Pending<mesh::Survey, mesh::SurveyReply>),
}

/// A message that wants an answer, and the way back for it.
#[derive(Debug)]
pub struct Pending<Q, A> {
    pub question: Q,
    pub responder: Responder<A>,
}

/// Where the answer to one [`Pending`] goes. Dropping it unanswered makes the asker see
/// [`LinkError`].
#[derive(Debug)]
pub struct Responder<A>(oneshot::Sender<A>);

impl<A> Responder<A> {
    /// Sends the answer; a gone asker is not an error worth reporting.
    pub fn answer(self, answer: A) {
        let _ = self.0.send(answer);
    }

    /// Resolves once the asker has given up (its deadline passed, or it was dropped): a relay
    /// then cancels the request on the wire.
    pub async fn closed(&mut self) {
        self.0.closed().await;
    }
}

/// The edge's end of a link to one core.
#[derive(Debug, Clone)]
pub struct EdgeLink {
    up: mpsc::Sender<Up>,
    /// Request ids are the link's: unique per link, never chosen by callers.
    next_request_id: Arc<AtomicU64>,
}

/// What the edge receives from its core: the control stream, and the event lanes (taken out
/// with [`EdgeInbox::take_lanes`] to be drained concurrently).
#[derive(Debug)]
pub struct EdgeInbox {
    down: mpsc::Receiver<Down>,
    lanes: Vec<Lane>,
}

/// One event lane, as the edge drains it.
#[derive(Debug)]
pub struct Lane {
    events: mpsc::Receiver<Event>,
    backlog: Arc<Backlog>,
}

/// The core's end of a link to one edge.
#[derive(Debug, Clone)]
pub struct CoreLink {
    down: mpsc::Sender<Down>,
    lanes: Arc<[mpsc::Sender<Event>]>,
    backlog: Arc<Backlog>,
}

/// The bytes of events queued on a link's lanes and not yet taken by its reader: bounded, so
/// an edge that stops reading costs the core at most `limit` bytes (DESIGN §4: the core's
/// queue towards each edge is byte-bounded; an edge that cannot keep up is cut).
#[derive(Debug)]
struct Backlog {
    bytes: AtomicUsize,
    limit: usize,
    /// Set once the bound was hit: the link's carrier closes it ([`CoreLink::cut`]).
    cut: tokio::sync::Notify,
    is_cut: std::sync::atomic::AtomicBool,
}

impl Backlog {
    fn new(limit: usize) -> Arc<Backlog> {
        Arc::new(Backlog {
            bytes: AtomicUsize::new(0),
            limit: limit.max(1),
            cut: tokio::sync::Notify::new(),
            is_cut: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn taken(&self, event: &Event) {
        self.bytes.fetch_sub(weight(event), Ordering::Relaxed);
    }
}

/// Bytes an event holds in a backlog, roughly: its payloads, its channel, and overhead.
fn weight(event: &mesh::ChannelEvent) -> usize {
    let data = match &event.kind {
        Some(mesh::channel_event::Kind::Publication(p)) => p.data.len() + p.tags.len() * 32,
        _ => 0,
    };
    data + event.prev_data.len() + event.channel.len() + 64
}

/// Bytes of events that may wait for one edge unless configured (`mesh.edge_queue_max_size`).
pub const DEFAULT_BACKLOG_BYTES: usize = 64 << 20;

/// An event the link did not take.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum EventRefused {
    /// The event's lane is full: the edge is not keeping up. The event is dropped for this
    /// edge only (it sees the gap by the event's offset and repairs it).
    #[error("event lane full")]
    Full,
    /// The link's backlog is over its byte bound: the edge stopped reading. The link is cut
    /// ([`CoreLink::cut_requested`] resolves); the edge links again and repairs from history.
    #[error("the edge's backlog is over its byte bound")]
    Backlog,
    #[error("mesh link closed")]
    Closed,
}

/// Event lanes of a link unless configured (`mesh.lanes`).
pub const DEFAULT_LANES: usize = 4;

/// The lane of `channel` among `lanes`: a fixed hash, so a channel always takes the same lane
/// and its events keep their order.
pub fn lane_of(channel: &str, lanes: usize) -> usize {
    // FNV-1a: stable across processes and versions (the std hasher promises neither).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in channel.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % lanes.max(1) as u64).unwrap_or(0)
}

/// What the core receives from one edge.
#[derive(Debug)]
pub struct CoreInbox {
    up: mpsc::Receiver<Up>,
}

impl EdgeLink {
    /// Sends a one-way message; waits while the link is full (backpressure, never unbounded).
    pub async fn send(&self, message: Up) -> Result<(), LinkError> {
        self.up.send(message).await.map_err(|_| LinkError)
    }

    /// Asks the core and waits for its answer, at most `deadline` in all (the wait for room on
    /// a full link included). The link numbers the request; dropping the returned future
    /// cancels it. `None` as the kind is a request the core does not know (answered 108).
    pub async fn request(
        &self,
        kind: Option<mesh::request::Kind>,
        deadline: Duration,
    ) -> Result<mesh::Response, RequestError> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            question: mesh::Request { id, kind },
            responder: Responder(tx),
        };
        let exchange = async {
            self.send(Up::Request(pending)).await?;
            rx.await.map_err(|_| RequestError::Closed)
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(RequestError::Timeout(deadline)),
        }
    }
}

impl EdgeInbox {
    /// The next control message from the core; `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Down> {
        self.down.recv().await
    }

    /// The event lanes, for draining apart from the control stream (empty when taken before).
    pub fn take_lanes(&mut self) -> Vec<Lane> {
        std::mem::take(&mut self.lanes)
    }
}

impl Lane {
    /// The lane's next event; `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.events.recv().await?;
        self.backlog.taken(&event);
        Some(event)
    }

    /// The next event if one is queued now (a writer batching what is there).
    pub fn try_recv(&mut self) -> Option<Event> {
        let event = self.events.try_recv().ok()?;
        self.backlog.taken(&event);
        Some(event)
    }
}

impl CoreLink {
    /// Sends a control message to the edge; waits while the control stream is full.
    pub async fn send(&self, message: Down) -> Result<(), LinkError> {
        self.down.send(message).await.map_err(|_| LinkError)
    }

    /// Queues an event on its channel's lane without waiting: a full lane refuses it, so a
    /// slow edge never holds up a publisher or the other edges.
    ///
    /// The link's backlog is bounded in bytes: an event that would take it over the bound is
    /// refused with [`EventRefused::Backlog`], and the link is marked cut.
    pub fn try_send_event(&self, event: Event) -> Result<(), EventRefused> {
        let backlog = &self.backlog;
        if backlog.is_cut.load(Ordering::Relaxed) {
            return Err(EventRefused::Backlog);
        }
        let size = weight(&event);
        if backlog.bytes.load(Ordering::Relaxed).saturating_add(size) > backlog.limit {
            self.cut();
            return Err(EventRefused::Backlog);
        }
        let lane = &self.lanes[lane_of(&event.channel, self.lanes.len())];
        backlog.bytes.fetch_add(size, Ordering::Relaxed);
        lane.try_send(event).map_err(|error| {
            backlog.bytes.fetch_sub(size, Ordering::Relaxed);
            match error {
                mpsc::error::TrySendError::Full(_) => EventRefused::Full,
                mpsc::error::TrySendError::Closed(_) => EventRefused::Closed,
            }
        })
    }

    /// Marks the link cut: its carrier closes it (over QUIC, the connection), and no event is
    /// taken any more.
    pub fn cut(&self) {
        if !self.backlog.is_cut.swap(true, Ordering::AcqRel) {
            self.backlog.cut.notify_waiters();
            self.backlog.cut.notify_one();
        }
    }

    /// Resolves once the link was cut (its backlog went over the bound, or [`CoreLink::cut`]).
    pub async fn cut_requested(&self) {
        loop {
            let notified = self.backlog.cut.notified();
            if self.backlog.is_cut.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Bytes of events queued and not yet taken by the link's reader.
    pub fn backlog_bytes(&self) -> usize {
        self.backlog.bytes.load(Ordering::Relaxed)
    }

    /// Queues an event on its channel's lane, waiting while the lane is full (for tests and
    /// tools that want every event through).
    pub async fn send_event(&self, event: Event) -> Result<(), LinkError> {
        let lane = &self.lanes[lane_of(&event.channel, self.lanes.len())];
        let size = weight(&event);
        self.backlog.bytes.fetch_add(size, Ordering::Relaxed);
        lane.send(event).await.map_err(|_| {
            self.backlog.bytes.fetch_sub(size, Ordering::Relaxed);
            LinkError
        })
    }

    /// Asks the edge a survey question and waits for its answer.
    pub async fn survey(&self, survey: mesh::Survey) -> Result<mesh::SurveyReply, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.send(Down::Survey(Pending {
            question: survey,
            responder: Responder(tx),
        }))
        .await?;
        rx.await.map_err(|_| LinkError)
    }
}

impl CoreInbox {
    /// The next message from the edge; `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Up> {
        self.up.recv().await
    }
}

/// One end's outgoing messages (what the edge sends up, what the core sends down), as a relay
/// takes them: the QUIC relays and the network-like test link.
pub(crate) trait Outgoing: Send {
    type Message: Send;
    fn next(&mut self) -> impl Future<Output = Option<Self::Message>> + Send;
}

impl Outgoing for CoreInbox {
    type Message = Up;
    fn next(&mut self) -> impl Future<Output = Option<Up>> + Send {
        self.recv()
    }
}

impl Outgoing for EdgeInbox {
    type Message = Down;
    fn next(&mut self) -> impl Future<Output = Option<Down>> + Send {
        self.recv()
    }
}

/// A link inside one process, as `spindle serve` uses, with [`DEFAULT_LANES`] event lanes:
/// `capacity` messages may wait in each direction and on each lane.
pub fn in_process(capacity: usize) -> ((EdgeLink, EdgeInbox), (CoreLink, CoreInbox)) {
    in_process_with_lanes(capacity, DEFAULT_LANES)
}

/// [`in_process`] with `lanes` event lanes (at least one).
pub fn in_process_with_lanes(
    capacity: usize,
    lanes: usize,
) -> ((EdgeLink, EdgeInbox), (CoreLink, CoreInbox)) {
    // In one process the edge reads as fast as the core writes, or the whole process is
    // stuck: the lanes' message bound is enough, and a cut would have no one to act on it.
    in_process_bounded(capacity, lanes, usize::MAX)
}

/// [`in_process_with_lanes`] whose events may hold at most `backlog_bytes` while queued.
pub fn in_process_bounded(
    capacity: usize,
    lanes: usize,
    backlog_bytes: usize,
) -> ((EdgeLink, EdgeInbox), (CoreLink, CoreInbox)) {
    let capacity = capacity.max(1);
    let (up_tx, up_rx) = mpsc::channel(capacity);
    let (down_tx, down_rx) = mpsc::channel(capacity);
    let backlog = Backlog::new(backlog_bytes);
    let (lane_tx, lane_rx): (Vec<_>, Vec<_>) = (0..lanes.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::channel(capacity);
            let lane = Lane {
                events: rx,
                backlog: Arc::clone(&backlog),
            };
            (tx, lane)
        })
        .unzip();
    (
        (
            EdgeLink {
                up: up_tx,
                next_request_id: Arc::new(AtomicU64::new(0)),
            },
            EdgeInbox {
                down: down_rx,
                lanes: lane_rx,
            },
        ),
        (
            CoreLink {
                down: down_tx,
                lanes: lane_tx.into(),
                backlog,
            },
            CoreInbox { up: up_rx },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_encoded_once_whatever_the_number_of_edges() {
        let event = SharedEvent::new(mesh::ChannelEvent {
            channel: "news".into(),
            ..Default::default()
        });
        let encodes = AtomicUsize::new(0);
        let encode = |event: &mesh::ChannelEvent| {
            encodes.fetch_add(1, Ordering::Relaxed);
            Bytes::from(event.channel.clone().into_bytes())
        };
        // Three edges' lane writers ask for the frame: one encode, the same bytes each time.
        let frames: Vec<Bytes> = (0..3)
            .map(|_| Arc::clone(&event).frame(encode).clone())
            .collect();
        assert_eq!(encodes.load(Ordering::Relaxed), 1);
        assert!(frames.iter().all(|f| f.as_ptr() == frames[0].as_ptr()));
        assert_eq!(&frames[0][..], b"news");
    }

    #[tokio::test]
    async fn requests_are_answered_across_the_link() {
        let ((edge, _edge_inbox), (_core, mut core_inbox)) = in_process(8);
        let core_task = tokio::spawn(async move {
            while let Some(Up::Request(pending)) = core_inbox.recv().await {
                let id = pending.question.id;
                pending.responder.answer(mesh::Response {
                    id,
                    ..Default::default()
                });
            }
        });
        let first = edge.request(None, Duration::from_secs(1)).await.unwrap();
        let second = edge.request(None, Duration::from_secs(1)).await.unwrap();
        assert_eq!((first.id, second.id), (1, 2), "the link numbers requests");
        drop(edge);
        core_task.await.unwrap();
    }

    #[tokio::test]
    async fn surveys_are_answered_on_the_control_stream() {
        let ((_edge, mut edge_inbox), (core, _core_inbox)) = in_process(8);
        let edge_task = tokio::spawn(async move {
            while let Some(message) = edge_inbox.recv().await {
                if let Down::Survey(pending) = message {
                    let id = pending.question.id;
                    pending.responder.answer(mesh::SurveyReply {
                        id,
                        ..Default::default()
                    });
                }
            }
        });
        let reply = core
            .survey(mesh::Survey { id: 3, kind: None })
            .await
            .unwrap();
        assert_eq!(reply.id, 3);
        drop(core);
        edge_task.await.unwrap();
    }

    fn event(channel: &str, n: u64) -> Event {
        SharedEvent::new(mesh::ChannelEvent {
            channel: channel.into(),
            epoch: n.to_string(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_channel_keeps_its_lane_and_its_order() {
        let ((_edge, mut inbox), (core, _core_inbox)) = in_process_with_lanes(64, 4);
        let channels = ["a", "b", "c", "d", "e", "f"];
        for n in 0..5 {
            for channel in channels {
                core.try_send_event(event(channel, n)).unwrap();
            }
        }
        let mut seen: std::collections::HashMap<String, Vec<u64>> = Default::default();
        let mut lanes_used = 0;
        for (index, mut lane) in inbox.take_lanes().into_iter().enumerate() {
            let mut used = false;
            while let Ok(event) = lane.events.try_recv() {
                assert_eq!(lane_of(&event.channel, 4), index);
                used = true;
                let n = event.epoch.parse().unwrap();
                seen.entry(event.channel.clone()).or_default().push(n);
            }
            lanes_used += usize::from(used);
        }
        assert!(lanes_used > 1, "channels spread over lanes");
        for channel in channels {
            assert_eq!(seen[channel], [0, 1, 2, 3, 4], "{channel} in order");
        }
    }

    #[tokio::test]
    async fn a_full_lane_refuses_without_waiting_and_other_lanes_still_take() {
        let ((_edge, _inbox), (core, _core_inbox)) = in_process_with_lanes(2, 2);
        let one = "a";
        let other = (0..100)
            .map(|i| format!("c{i}"))
            .find(|c| lane_of(c, 2) != lane_of(one, 2))
            .unwrap();
        core.try_send_event(event(one, 1)).unwrap();
        core.try_send_event(event(one, 2)).unwrap();
        assert_eq!(core.try_send_event(event(one, 3)), Err(EventRefused::Full));
        core.try_send_event(event(&other, 1)).unwrap();
    }

    #[tokio::test]
    async fn a_backlog_over_its_byte_bound_cuts_the_link() {
        let ((_edge, mut inbox), (core, _core_inbox)) = in_process_bounded(1024, 1, 1000);
        let big = |n: u64| {
            SharedEvent::new(mesh::ChannelEvent {
                channel: "a".into(),
                kind: Some(mesh::channel_event::Kind::Publication(
                    spindle_proto::client::Publication {
                        data: vec![0u8; 300].into(),
                        offset: n,
                        ..Default::default()
                    },
                )),
                ..Default::default()
            })
        };
        core.try_send_event(big(1)).unwrap();
        core.try_send_event(big(2)).unwrap();
        assert!(core.backlog_bytes() > 600);
        // Taken events leave the backlog.
        let mut lane = inbox.take_lanes().remove(0);
        lane.recv().await.unwrap();
        core.try_send_event(big(3)).unwrap();
        assert_eq!(core.try_send_event(big(4)), Err(EventRefused::Backlog));
        tokio::time::timeout(Duration::from_secs(1), core.cut_requested())
            .await
            .expect("the link is cut");
        lane.recv().await.unwrap();
        lane.recv().await.unwrap();
        assert_eq!(core.backlog_bytes(), 0);
        assert_eq!(
            core.try_send_event(big(5)),
            Err(EventRefused::Backlog),
            "a cut link takes nothing more"
        );
    }

    #[test]
    fn lanes_are_a_fixed_function_of_the_channel() {
        assert_eq!(lane_of("news", 1), 0);
        assert_eq!(lane_of("news", 0), 0, "no lanes means one");
        assert_eq!(lane_of("news", 8), lane_of("news", 8));
        // FNV-1a of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(
            lane_of("a", 1 << 20),
            (0xaf63_dc4c_8601_ec8c_u64 % (1 << 20)) as usize
        );
    }

    #[tokio::test]
    async fn a_closed_link_is_an_error_not_a_hang() {
        let ((edge, _edge_inbox), (_core, core_inbox)) = in_process(1);
        drop(core_inbox);
        assert_eq!(
            edge.request(None, Duration::from_secs(1))
                .await
                .unwrap_err(),
            RequestError::Closed
        );
    }

    #[tokio::test]
    async fn an_unanswered_request_times_out_with_its_deadline() {
        let ((edge, _edge_inbox), (_core, _core_inbox)) = in_process(4);
        let deadline = Duration::from_millis(50);
        assert_eq!(
            edge.request(None, deadline).await.unwrap_err(),
            RequestError::Timeout(deadline)
        );
    }
}
