//! A link that behaves like the network, for tests (feature `test-util`): every message is
//! encoded into its mesh frame and decoded again (as QUIC will carry it), delivered after a
//! seeded random delay, and the whole link can be cut at any moment.
//!
//! What it keeps is exactly the link contract (docs/architecture.md): order on the control
//! stream in each direction and per event lane — nothing else. Requests and surveys are
//! delayed independently of each other and of the control stream; lanes are delayed
//! independently of each other and of control, so events of different channels, and events
//! against control messages, arrive reordered. Code that passes its tests over this link does
//! not depend on one in-process queue happening to be FIFO.

use crate::link::{
    CoreInbox, CoreLink, Down, EdgeInbox, EdgeLink, Lane, Outgoing, Pending, SharedEvent, Up,
    in_process_with_lanes,
};
use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spindle_proto::mesh::{self, mesh_frame::Kind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How the simulated network behaves.
#[derive(Debug, Clone, Copy)]
pub struct NetworkOptions {
    /// Seeds every delay: the same seed gives the same delays in the same order.
    pub seed: u64,
    /// Each message waits a uniform random time in `[0, max_delay]`.
    pub max_delay: Duration,
    /// Event lanes (as `mesh.lanes`).
    pub lanes: usize,
    /// Messages that may wait in each direction and lane.
    pub capacity: usize,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        NetworkOptions {
            seed: 1,
            max_delay: Duration::from_millis(2),
            lanes: crate::DEFAULT_LANES,
            capacity: 1024,
        }
    }
}

/// Controls a network link after it is made.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    cut: watch::Sender<bool>,
}

impl NetworkHandle {
    /// Cuts the link: both sides see it closed, and nothing in flight arrives.
    pub fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// The seeded delays, shared by every relay task of one link.
#[derive(Debug, Clone)]
struct Delays {
    rng: Arc<Mutex<StdRng>>,
    max: Duration,
}

impl Delays {
    fn next(&self) -> Duration {
        if self.max.is_zero() {
            return Duration::ZERO;
        }
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        let nanos = u64::try_from(self.max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }

    async fn wait(&self) {
        let delay = self.next();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A link whose two ends are joined by relays that encode, delay and may cut (see the module
/// documentation). Must be called inside a Tokio runtime.
pub fn network(
    options: NetworkOptions,
) -> ((EdgeLink, EdgeInbox), (CoreLink, CoreInbox), NetworkHandle) {
    // The edge talks to `to_edge`/`from_edge`; the core to `to_core`/`from_core`.
    let (edge_end, (to_edge, from_edge)) = in_process_with_lanes(options.capacity, options.lanes);
    let ((to_core, mut from_core), core_end) =
        in_process_with_lanes(options.capacity, options.lanes);
    let delays = Delays {
        rng: Arc::new(Mutex::new(StdRng::seed_from_u64(options.seed))),
        max: options.max_delay,
    };
    let (cut, stopped) = watch::channel(false);
    let lanes = from_core.take_lanes();
    let capacity = options.capacity;
    spawn_until_cut(&stopped, up(from_edge, to_core, delays.clone(), capacity));
    spawn_until_cut(
        &stopped,
        control_down(from_core, to_edge.clone(), delays.clone(), capacity),
    );
    for lane in lanes {
        spawn_until_cut(&stopped, lane_down(lane, to_edge.clone(), delays.clone()));
    }
    (edge_end, core_end, NetworkHandle { cut })
}

fn spawn_until_cut(
    stopped: &watch::Receiver<bool>,
    relay: impl Future<Output = ()> + Send + 'static,
) {
    let mut stopped = stopped.clone();
    let cut = async move {
        // A dropped handle cuts nothing: the link then lives as long as its ends.
        if stopped.wait_for(|cut| *cut).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            () = relay => {}
            () = cut => {}
        }
    });
}

/// The link the edge and core test suites run over: the network link when the environment
/// says `SPINDLE_TEST_LINK=network` (seeded by `SPINDLE_TEST_LINK_SEED`, default 1), the
/// in-process one otherwise. `scripts/test.sh` runs those suites both ways.
pub fn from_env(capacity: usize, lanes: usize) -> ((EdgeLink, EdgeInbox), (CoreLink, CoreInbox)) {
    match std::env::var("SPINDLE_TEST_LINK").as_deref() {
        Ok("network") => {
            let seed = std::env::var("SPINDLE_TEST_LINK_SEED")
                .ok()
                .and_then(|seed| seed.parse().ok())
                .unwrap_or(1);
            let options = NetworkOptions {
                seed,
                lanes,
                capacity,
                ..NetworkOptions::default()
            };
            let (edge, core, _handle) = network(options);
            (edge, core)
        }
        Ok("in-process") | Err(_) => in_process_with_lanes(capacity, lanes),
        Ok(other) => panic!("SPINDLE_TEST_LINK={other}: want network or in-process"),
    }
}

/// One direction of the link: what `route` passes on goes down the control stream in order,
/// each message delayed in turn, handed over by `deliver` (false: the far end is gone); what it
/// takes (a request, a survey) it relays on its own at once. The reader goes on as soon as a
/// control message is queued, so a request sent after a control message may overtake it, as a
/// QUIC stream of its own can.
async fn direction<O, F>(
    mut from: O,
    delays: Delays,
    capacity: usize,
    route: impl Fn(O::Message) -> Option<O::Message>,
    mut deliver: impl FnMut(O::Message) -> F,
) where
    O: Outgoing,
    F: Future<Output = bool>,
{
    let (control, mut stream) = mpsc::channel(capacity);
    let reader = async {
        while let Some(message) = from.next().await {
            let Some(message) = route(message) else {
                continue;
            };
            if control.send(message).await.is_err() {
                return;
            }
        }
    };
    let writer = async {
        while let Some(message) = stream.recv().await {
            delays.wait().await;
            if !deliver(message).await {
                return;
            }
        }
    };
    // Either side ending ends this direction.
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}

/// Edge → core: interest and presence on the control stream, each request on its own.
async fn up(from_edge: CoreInbox, to_core: EdgeLink, delays: Delays, capacity: usize) {
    let route = |message| match message {
        Up::Interest(interest) => match carried(Kind::Interest(interest)) {
            Kind::Interest(interest) => Some(Up::Interest(interest)),
            _ => unreachable!("a frame decodes to its own kind"),
        },
        Up::Presence(update) => match carried(Kind::Presence(update)) {
            Kind::Presence(update) => Some(Up::Presence(update)),
            _ => unreachable!("a frame decodes to its own kind"),
        },
        Up::Request(pending) => {
            tokio::spawn(relay_request(pending, to_core.clone(), delays.clone()));
            None
        }
    };
    let deliver = |message| {
        let to_core = to_core.clone();
        async move { to_core.send(message).await.is_ok() }
    };
    direction(from_edge, delays.clone(), capacity, route, deliver).await;
}

async fn relay_request(
    pending: Pending<mesh::Request, mesh::Response>,
    to_core: EdgeLink,
    delays: Delays,
) {
    let Kind::Request(request) = carried(Kind::Request(pending.question)) else {
        unreachable!("a frame decodes to its own kind")
    };
    delays.wait().await;
    // The relay's own request to the core; the edge's deadline governs, this one only ends a
    // relay whose core never answers.
    let Ok(mut response) = to_core
        .request(request.kind, Duration::from_secs(600))
        .await
    else {
        return; // the edge sees its request fail: the responder is dropped
    };
    response.id = request.id;
    let Kind::Response(response) = carried(Kind::Response(response)) else {
        unreachable!("a frame decodes to its own kind")
    };
    delays.wait().await;
    pending.responder.answer(response);
}

/// Core → edge: API commands and interest acks on the control stream, each survey on its own.
async fn control_down(from_core: EdgeInbox, to_edge: CoreLink, delays: Delays, capacity: usize) {
    let route = |message| match message {
        Down::Control(control) => match carried(Kind::Control(control)) {
            Kind::Control(control) => Some(Down::Control(control)),
            _ => unreachable!("a frame decodes to its own kind"),
        },
        Down::InterestAck(ack) => match carried(Kind::InterestAck(ack)) {
            Kind::InterestAck(ack) => Some(Down::InterestAck(ack)),
            _ => unreachable!("a frame decodes to its own kind"),
        },
        Down::Survey(pending) => {
            tokio::spawn(relay_survey(pending, to_edge.clone(), delays.clone()));
            None
        }
    };
    let deliver = |message| {
        let to_edge = to_edge.clone();
        async move { to_edge.send(message).await.is_ok() }
    };
    direction(from_core, delays.clone(), capacity, route, deliver).await;
}

async fn relay_survey(
    pending: Pending<mesh::Survey, mesh::SurveyReply>,
    to_edge: CoreLink,
    delays: Delays,
) {
    let Kind::Survey(survey) = carried(Kind::Survey(pending.question)) else {
        unreachable!("a frame decodes to its own kind")
    };
    delays.wait().await;
    let Ok(reply) = to_edge.survey(survey).await else {
        return;
    };
    let Kind::SurveyReply(reply) = carried(Kind::SurveyReply(reply)) else {
        unreachable!("a frame decodes to its own kind")
    };
    delays.wait().await;
    pending.responder.answer(reply);
}

/// One event lane, core → edge, in order.
async fn lane_down(mut lane: Lane, to_edge: CoreLink, delays: Delays) {
    while let Some(event) = lane.recv().await {
        let Kind::Event(event) = carried(Kind::Event(event.event().clone())) else {
            unreachable!("a frame decodes to its own kind")
        };
        delays.wait().await;
        if to_edge.send_event(SharedEvent::new(event)).await.is_err() {
            return;
        }
    }
}

/// A message as the far side gets it: encoded into its frame with the length prefix, and
/// decoded from those bytes.
fn carried(kind: Kind) -> Kind {
    let frame = mesh::MeshFrame { kind: Some(kind) };
    let bytes = spindle_proto::mesh::encode_frame(&frame);
    let mut buffer = BytesMut::from(&bytes[..]);
    match spindle_proto::mesh::decode_frame(&mut buffer, usize::MAX) {
        Ok(Some(mesh::MeshFrame { kind: Some(kind) })) if buffer.is_empty() => kind,
        other => panic!("a mesh frame did not survive its own encoding: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_answers_and_events_cross_encoded() {
        let ((edge, mut edge_inbox), (core, mut core_inbox), _handle) =
            network(NetworkOptions::default());
        tokio::spawn(async move {
            while let Some(Up::Request(pending)) = core_inbox.recv().await {
                let id = pending.question.id;
                pending.responder.answer(mesh::Response {
                    id,
                    ..Default::default()
                });
            }
        });
        let response = edge.request(None, Duration::from_secs(5)).await.unwrap();
        assert_eq!(response.id, 1, "the edge sees its own request id");

        let mut lanes = edge_inbox.take_lanes();
        let event = mesh::ChannelEvent {
            channel: "news".into(),
            epoch: "e".into(),
            ..Default::default()
        };
        core.send_event(SharedEvent::new(event.clone()))
            .await
            .unwrap();
        let lane = &mut lanes[crate::lane_of("news", crate::DEFAULT_LANES)];
        assert_eq!(lane.recv().await.unwrap().event(), &event);
    }

    #[tokio::test]
    async fn events_of_different_lanes_are_reordered_but_each_lane_keeps_order() {
        let options = NetworkOptions {
            seed: 7,
            max_delay: Duration::from_millis(3),
            lanes: 2,
            capacity: 1024,
        };
        let ((_edge, mut edge_inbox), (core, _core_inbox), _handle) = network(options);
        let a = "a";
        let b = (0..100)
            .map(|i| format!("b{i}"))
            .find(|c| crate::lane_of(c, 2) != crate::lane_of(a, 2))
            .unwrap();
        for n in 0..40u64 {
            for channel in [a, b.as_str()] {
                let event = mesh::ChannelEvent {
                    channel: channel.into(),
                    epoch: n.to_string(),
                    ..Default::default()
                };
                core.send_event(SharedEvent::new(event)).await.unwrap();
            }
        }
        // Merge both lanes in arrival order.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for mut lane in edge_inbox.take_lanes() {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(event) = lane.recv().await {
                    let _ = tx.send(event);
                }
            });
        }
        let mut arrival = Vec::new();
        while arrival.len() < 80 {
            arrival.push(rx.recv().await.unwrap());
        }
        for channel in [a, b.as_str()] {
            let order: Vec<u64> = arrival
                .iter()
                .filter(|e| e.channel == channel)
                .map(|e| e.epoch.parse().unwrap())
                .collect();
            assert_eq!(order, (0..40).collect::<Vec<_>>(), "{channel} in order");
        }
        let interleaved: Vec<bool> = arrival.iter().map(|e| e.channel == a).collect();
        let sent: Vec<bool> = (0..80).map(|i| i % 2 == 0).collect();
        assert_ne!(interleaved, sent, "the lanes were delayed independently");
    }

    #[tokio::test]
    async fn a_cut_link_is_closed_on_both_sides() {
        let ((edge, mut edge_inbox), (_core, mut core_inbox), handle) =
            network(NetworkOptions::default());
        handle.cut();
        assert_eq!(core_inbox.recv().await.map(|_| ()), None);
        assert_eq!(edge_inbox.recv().await.map(|_| ()), None);
        assert!(edge.request(None, Duration::from_secs(5)).await.is_err());
    }
}
