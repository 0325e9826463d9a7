//! The two tasks per attached edge: one reads what the edge sends, one forwards the edge's
//! outgoing queue into its link.

use super::{EdgeId, Node};
use crate::broker::PublishOptions;
use spindle_hub::codes::ClientError;
use spindle_mesh::mesh::{self, request, response};
use spindle_mesh::{CoreInbox, CoreLink, Down, Up};
use tokio::sync::mpsc;

/// Drains an edge's outgoing queue into its link, in order; ends when the edge is detached (the
/// queue closes) or the link is gone.
pub(super) async fn forward(mut queue: mpsc::Receiver<Down>, link: CoreLink) {
    while let Some(message) = queue.recv().await {
        if link.send(message).await.is_err() {
            break;
        }
    }
}

/// Reads an edge's messages until it closes its side of the link, then forgets the edge.
///
/// Requests are answered in arrival order, one at a time: a client's publications keep the
/// order its edge sent them in. With the memory broker a publish never waits on I/O; brokers
/// that do will answer from spawned tasks, keeping per-channel order.
pub(super) async fn serve_edge(node: Node, id: EdgeId, serial: u64, mut inbox: CoreInbox) {
    tracing::debug!(edge = %id, "edge attached");
    while let Some(message) = inbox.recv().await {
        match message {
            Up::Interest(interest) => node.apply_interest(serial, interest).await,
            Up::Presence(update) => {
                // Presence storage comes with the presence issue.
                tracing::debug!(edge = %id, channel = update.channel, "presence update ignored");
            }
            Up::Request(pending) => {
                let answer = answer(&node, pending.question).await;
                pending.responder.answer(answer);
            }
        }
    }
    node.detach(serial).await;
    tracing::debug!(edge = %id, "edge detached");
}

async fn answer(node: &Node, request: mesh::Request) -> mesh::Response {
    let id = request.id;
    let outcome = match request.kind {
        Some(request::Kind::Publish(publish)) => {
            let options = PublishOptions {
                tags: publish.tags,
                skip_history: publish.skip_history,
                idempotency_key: publish.idempotency_key,
                delta: publish.delta,
                version: publish.version,
                version_epoch: publish.version_epoch,
            };
            node.publish(&publish.channel, publish.data, publish.info, options)
                .await
                .map(|result| {
                    let position = result.position.unwrap_or_default();
                    response::Kind::Publish(mesh::PublishResult {
                        offset: position.offset,
                        epoch: position.epoch,
                    })
                })
                .map_err(|error| error.client_error())
        }
        // History and presence come with their issues; anything else is not served here.
        _ => Err(ClientError::NOT_AVAILABLE),
    };
    match outcome {
        Ok(kind) => mesh::Response {
            id,
            error: None,
            kind: Some(kind),
        },
        Err(error) => mesh::Response {
            id,
            error: Some((&error).into()),
            kind: None,
        },
    }
}
