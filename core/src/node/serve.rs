//! The two tasks per attached edge: one reads what the edge sends, one forwards the edge's
//! outgoing queue into its link.

use super::{EdgeId, MapPublishOptions, MapStateRead, Node};
use crate::broker::{HistoryItem, HistoryQuery, Publication, PublishOptions};
use crate::maps::KeyMode;
use spindle_hub::codes::ClientError;
use spindle_mesh::mesh::{self, request, response};
use spindle_mesh::{CoreInbox, CoreLink, Down, Up};
use spindle_proto::client;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Drains an edge's outgoing queue into its link, in order; ends when the edge is detached (the
/// queue closes) or the link is gone.
pub(super) async fn forward(mut queue: mpsc::Receiver<Down>, link: CoreLink) {
    while let Some(message) = queue.recv().await {
        if link.send(message).await.is_err() {
            break;
        }
    }
}

/// Requests of one edge being answered at once; the edge's next request waits for a slot
/// (backpressure on the link, never an unbounded pile of tasks).
pub const EDGE_REQUESTS_IN_FLIGHT: usize = 1024;

/// Reads an edge's messages until it closes its side of the link, then forgets the edge.
///
/// Interest changes and presence updates (the control stream) are applied in arrival order,
/// one at a time. Requests are answered concurrently, each from its own task: a slow broker
/// round trip or backend call holds up no other request of the edge. No order is kept between
/// requests — the link does not promise one (each is its own stream on QUIC); where the
/// protocol needs an order, the edge keeps it by waiting for an answer before it sends the
/// next request (a connection handles one command at a time, so one client's publications
/// reach the core in the order it sent them).
pub(super) async fn serve_edge(node: Node, id: EdgeId, serial: u64, mut inbox: CoreInbox) {
    tracing::debug!(edge = %id, "edge attached");
    let in_flight = Arc::new(Semaphore::new(EDGE_REQUESTS_IN_FLIGHT));
    while let Some(message) = inbox.recv().await {
        match message {
            Up::Interest(interest) => {
                let ack = node.apply_interest(serial, interest).await;
                node.send_to_edge(serial, Down::InterestAck(ack)).await;
            }
            Up::Presence(update) => {
                let channel = update.channel.clone();
                if let Err(error) = node.update_presence(update).await {
                    tracing::warn!(edge = %id, channel, %error, "presence update failed");
                }
            }
            Up::Request(pending) => {
                let Ok(slot) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let spindle_mesh::Pending {
                        question,
                        mut responder,
                    } = pending;
                    // An edge that gave up (its deadline passed) frees the slot at once.
                    tokio::select! {
                        answer = answer(&node, serial, question) => responder.answer(answer),
                        () = responder.closed() => {}
                    }
                    drop(slot);
                });
            }
        }
    }
    node.detach(serial).await;
    tracing::debug!(edge = %id, "edge detached");
}

/// Answers one edge request. Errors go in `Response.error` with the client protocol's code and
/// message; `kind` is then unset.
async fn answer(node: &Node, serial: u64, request: mesh::Request) -> mesh::Response {
    let id = request.id;
    let outcome = match request.kind {
        Some(request::Kind::Publish(publish)) => answer_publish(node, publish).await,
        Some(request::Kind::History(history)) => {
            let query = HistoryQuery {
                since: history.since.map(Into::into),
                // The edge has capped client limits already; negative means all.
                limit: HistoryQuery::limit_from_wire(history.limit, None),
                reverse: history.reverse,
            };
            node.history(&history.channel, &query)
                .await
                .map(|result| response::Kind::History(result.into()))
                .map_err(|error| error.client_error())
        }
        Some(request::Kind::Presence(presence)) => node
            .presence(&presence.channel)
            .await
            .map(|clients| {
                response::Kind::Presence(client::PresenceResult {
                    presence: clients.into_iter().map(Into::into).collect(),
                })
            })
            .map_err(|error| error.client_error()),
        Some(request::Kind::PresenceStats(stats)) => node
            .presence_stats(&stats.channel)
            .await
            .map(|stats| {
                response::Kind::PresenceStats(client::PresenceStatsResult {
                    num_clients: stats.num_clients,
                    num_users: stats.num_users,
                })
            })
            .map_err(|error| error.client_error()),
        Some(request::Kind::PresenceUpdate(update)) => node
            .update_presence(update)
            .await
            .map(|()| response::Kind::Empty(mesh::Empty {}))
            .map_err(|error| error.client_error()),
        Some(request::Kind::Proxy(proxy)) => node
            .inner
            .proxies
            .call(proxy)
            .await
            .map(response::Kind::Proxy)
            .ok_or(ClientError::BAD_REQUEST),
        Some(request::Kind::Emulation(emulation)) => node
            .emulate(emulation)
            .await
            .map(|delivered| response::Kind::Emulation(mesh::EmulationResult { delivered }))
            .map_err(|_| ClientError::INTERNAL),
        Some(request::Kind::Jwks(jwks)) => node
            .inner
            .jwks
            .key(&jwks.endpoint, &jwks.kid)
            .await
            .map(|jwk| {
                response::Kind::Jwks(mesh::JwksResult {
                    jwk: jwk.unwrap_or_default(),
                })
            })
            .map_err(|_| ClientError::INTERNAL),
        Some(request::Kind::Control(control)) => node
            .control(control)
            .await
            .map(|_| response::Kind::Empty(mesh::Empty {}))
            .map_err(|_| ClientError::INTERNAL),
        Some(request::Kind::MapState(read)) => answer_map_state(node, read).await,
        Some(request::Kind::MapPublish(publish)) => answer_map_publish(node, publish).await,
        Some(request::Kind::StreamOpen(open)) => node
            .open_stream(serial, *open)
            .await
            .map(response::Kind::Proxy),
        Some(request::Kind::Stream(stream)) => node
            .stream_request(serial, stream)
            .await
            .map(|()| response::Kind::Empty(mesh::Empty {})),
        Some(request::Kind::SharedPoll(poll)) => node
            .shared_poll_request(serial, &poll)
            .map(response::Kind::SharedPoll)
            .map_err(|error| error.client_error()),
        None => Err(ClientError::NOT_AVAILABLE),
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

async fn answer_publish(
    node: &Node,
    publish: mesh::PublishRequest,
) -> Result<response::Kind, ClientError> {
    let options = PublishOptions {
        tags: publish.tags,
        skip_history: publish.skip_history,
        idempotency_key: publish.idempotency_key,
        delta: publish.delta,
        version: publish.version,
        version_epoch: publish.version_epoch,
        history: None,
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

async fn answer_map_state(
    node: &Node,
    read: mesh::MapStateRequest,
) -> Result<response::Kind, ClientError> {
    let query = MapStateRead {
        cursor: read.cursor,
        limit: HistoryQuery::limit_from_wire(read.limit, None),
        key: None,
        revision: read.revision.map(Into::into),
    };
    let state = node
        .map_state(&read.channel, &query)
        .await
        .map_err(|error| error.client_error())?;
    Ok(response::Kind::MapState(mesh::MapStateResult {
        state: state
            .entries
            .iter()
            .map(|entry| {
                HistoryItem {
                    offset: entry.offset,
                    publication: entry.publication.clone(),
                }
                .to_client()
            })
            .collect(),
        offset: state.position.offset,
        epoch: state.position.epoch,
        cursor: state.cursor.unwrap_or_default(),
    }))
}

/// A client's map publish or removal: the edge has decided it (permissions, key, and the map
/// proxy's options when one was asked).
async fn answer_map_publish(
    node: &Node,
    publish: mesh::MapPublishRequest,
) -> Result<response::Kind, ClientError> {
    let update = if publish.removed {
        node.map_remove(&publish.channel, &publish.key, &publish.idempotency_key)
            .await
    } else {
        let key_mode = match publish.key_mode.as_str() {
            "" => KeyMode::Replace,
            "if_new" => KeyMode::IfNew,
            "if_exists" => KeyMode::IfExists,
            _ => return Err(ClientError::BAD_REQUEST),
        };
        let publication = Publication {
            data: publish.data,
            info: publish.info,
            tags: publish.tags,
            ..Publication::default()
        };
        let options = MapPublishOptions {
            key_mode,
            idempotency_key: publish.idempotency_key,
            version: publish.version,
            version_epoch: publish.version_epoch,
            delta: publish.delta,
        };
        node.map_publish(&publish.channel, &publish.key, publication, &options)
            .await
    };
    let update = update.map_err(|error| error.client_error())?;
    Ok(response::Kind::Publish(mesh::PublishResult {
        offset: update.position.offset,
        epoch: update.position.epoch,
    }))
}
