//! The link interface and its in-process implementation: bounded Tokio channels carrying mesh
//! messages, with no encoding.

use spindle_proto::mesh;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// The link is gone (the other side shut down, or the connection was lost).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("mesh link closed")]
pub struct LinkError;

/// Edge → core messages.
#[derive(Debug)]
pub enum Up {
    /// Channels gaining their first or losing their last local subscriber.
    Interest(mesh::Interest),
    /// Presence joins, leaves and refreshes of local connections.
    Presence(mesh::PresenceUpdate),
    /// A request the core must answer.
    Request(Pending<mesh::Request, mesh::Response>),
}

/// Core → edge messages.
#[derive(Debug)]
pub enum Down {
    /// A publication, join or leave in a channel this edge has interest in.
    Event(mesh::ChannelEvent),
    /// An API command for local connections.
    Control(mesh::Control),
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

    /// Asks the core and waits for its answer.
    pub async fn request(&self, request: mesh::Request) -> Result<mesh::Response, LinkError> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            question: request,
            responder: Responder(tx),
        };
        self.send(Up::Request(pending)).await?;
        rx.await.map_err(|_| LinkError)
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
        (EdgeLink { up: up_tx }, EdgeInbox { down: down_rx }),
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
        let response = edge
            .request(mesh::Request { id: 7, kind: None })
            .await
            .unwrap();
        assert_eq!(response.id, 7);
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
                    Down::Event(event) => channels.push(event.channel),
                    Down::Survey(pending) => {
                        let id = pending.question.id;
                        pending.responder.answer(mesh::SurveyReply {
                            id,
                            ..Default::default()
                        });
                    }
                    Down::Control(_) => {}
                }
            }
            channels
        });
        for channel in ["a", "b", "c"] {
            let event = mesh::ChannelEvent {
                channel: channel.into(),
                ..Default::default()
            };
            core.send(Down::Event(event)).await.unwrap();
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
            edge.request(mesh::Request::default()).await.unwrap_err(),
            LinkError
        );
    }
}
