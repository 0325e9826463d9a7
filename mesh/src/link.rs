//! The link interface and its in-process implementation: bounded Tokio channels carrying mesh
//! messages, with no encoding.

use spindle_proto::mesh;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Core → edge messages.
///
/// Ordering: events of one channel arrive in the order the core sent them (one lane per
/// channel); events of different channels, and events relative to control messages, may
/// arrive in any order. `Control` and `InterestAck` keep their order on the control stream.
#[derive(Debug)]
pub enum Down {
    /// A publication, join or leave in a channel this edge has interest in. Shared: one event
    /// goes to every interested edge without a copy.
    Event(Arc<mesh::ChannelEvent>),
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
}

/// The edge's end of a link to one core.
#[derive(Debug, Clone)]
pub struct EdgeLink {
    up: mpsc::Sender<Up>,
    /// Request ids are the link's: unique per link, never chosen by callers.
    next_request_id: Arc<AtomicU64>,
}

/// What the edge receives from its core.
#[derive(Debug)]
pub struct EdgeInbox {
    down: mpsc::Receiver<Down>,
}

/// The core's end of a link to one edge.
#[derive(Debug, Clone)]
pub struct CoreLink {
    down: mpsc::Sender<Down>,
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
    /// The next message from the core; `None` once the link is closed.
    pub async fn recv(&mut self) -> Option<Down> {
        self.down.recv().await
    }
}

impl CoreLink {
    /// Sends a one-way message to the edge; waits while the link is full.
    pub async fn send(&self, message: Down) -> Result<(), LinkError> {
        self.down.send(message).await.map_err(|_| LinkError)
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

/// A link inside one process, as `spindle serve` uses: `capacity` messages may wait in each
/// direction before the sender waits.
pub fn in_process(capacity: usize) -> ((EdgeLink, EdgeInbox), (CoreLink, CoreInbox)) {
    let (up_tx, up_rx) = mpsc::channel(capacity.max(1));
    let (down_tx, down_rx) = mpsc::channel(capacity.max(1));
    (
        (
            EdgeLink {
                up: up_tx,
                next_request_id: Arc::new(AtomicU64::new(0)),
            },
            EdgeInbox { down: down_rx },
        ),
        (CoreLink { down: down_tx }, CoreInbox { up: up_rx }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn surveys_are_answered_and_events_arrive_in_order() {
        let ((_edge, mut edge_inbox), (core, _core_inbox)) = in_process(8);
        let edge_task = tokio::spawn(async move {
            let mut channels = Vec::new();
            while let Some(message) = edge_inbox.recv().await {
                match message {
                    Down::Event(event) => channels.push(event.channel.clone()),
                    Down::Survey(pending) => {
                        let id = pending.question.id;
                        pending.responder.answer(mesh::SurveyReply {
                            id,
                            ..Default::default()
                        });
                    }
                    Down::Control(_) | Down::InterestAck(_) => {}
                }
            }
            channels
        });
        for channel in ["a", "b", "c"] {
            let event = mesh::ChannelEvent {
                channel: channel.into(),
                ..Default::default()
            };
            core.send(Down::Event(Arc::new(event))).await.unwrap();
        }
        let reply = core
            .survey(mesh::Survey { id: 3, kind: None })
            .await
            .unwrap();
        assert_eq!(reply.id, 3);
        drop(core);
        assert_eq!(edge_task.await.unwrap(), ["a", "b", "c"]);
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
