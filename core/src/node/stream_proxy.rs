//! Subscription streams at the node (docs/stream-proxy.md): the streams open for the clients of
//! each attached edge, their publications to that edge only, and their end.
//!
//! Lifecycle of one stream, keyed by (edge attachment, client, channel):
//! 1. `StreamOpenRequest`: the backend's stream is opened and its first message (the subscribe
//!    answer) returned; an answer with `error` / `disconnect` closes it at once. Nothing more is
//!    read yet.
//! 2. `StreamRequest.start`: the edge's subscription is in place; publications flow, each a
//!    ChannelEvent carrying the client, on the channel's lane of that edge only.
//! 3. The end: `StreamRequest.close` (unsubscribe, disconnect, a refused subscribe), the edge's
//!    link gone, or the backend ending the stream — then the edge gets `stream_ended` for the
//!    client on the channel's lane, after the last publication (2000 when the backend closed it,
//!    2500 when it failed or a publication could not be queued: the SDK resubscribes).
//!
//! A second open for the same key replaces (closes) the first.

use super::Node;
use spindle_hub::codes::ClientError;
use spindle_mesh::SharedEvent;
use spindle_mesh::mesh::{self, channel_event, stream_request};
use spindle_proto::{client, proxy};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use tokio::sync::{mpsc, oneshot};

/// Unsubscribe code when the backend closed the stream (Centrifugo's "server unsubscribe").
const ENDED_BY_BACKEND: u32 = 2000;
/// Unsubscribe code when the stream failed or an event was lost (the SDK resubscribes).
const ENDED_BY_FAILURE: u32 = 2500;

type Key = (u64, String, String);

/// The open streams of a node.
#[derive(Debug, Default)]
pub(crate) struct OpenStreams {
    slots: Mutex<HashMap<Key, Slot>>,
    next_id: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Slot {
    id: u64,
    start: Option<oneshot::Sender<()>>,
    up: Option<mpsc::Sender<proxy::StreamSubscribeRequest>>,
    task: tokio::task::AbortHandle,
}

impl OpenStreams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes every stream of an edge (its link is gone).
    pub fn edge_gone(&self, serial: u64) {
        self.lock().retain(|(s, ..), slot| {
            if *s == serial {
                slot.task.abort();
            }
            *s != serial
        });
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Node {
    /// Subscription streams open now (for `/metrics`).
    pub fn open_stream_count(&self) -> usize {
        self.inner.open_streams.len()
    }
}

impl Node {
    /// Opens a subscription stream for a client of edge `serial` (step 1 of the module doc).
    pub(super) async fn open_stream(
        &self,
        serial: u64,
        request: mesh::StreamOpenRequest,
    ) -> Result<mesh::ProxyResponse, ClientError> {
        let proxy_request = request.proxy.ok_or(ClientError::BAD_REQUEST)?;
        let Some(mesh::proxy_request::Kind::Subscribe(subscribe)) = &proxy_request.kind else {
            return Err(ClientError::BAD_REQUEST);
        };
        let channel = subscribe.channel.clone();
        // The control that unsubscribes the client names its user (edges match both).
        let user = subscribe.user.clone();
        let answer = |response| mesh::ProxyResponse {
            kind: Some(mesh::proxy_response::Kind::Subscribe(response)),
        };
        let opened = match self
            .inner
            .proxies
            .open_stream(&proxy_request, request.bidirectional)
            .await
        {
            Ok(opened) => opened,
            Err(refusal) => return Ok(answer(crate::proxy::refused_subscribe(refusal))),
        };
        if opened.response.error.is_some() || opened.response.disconnect.is_some() {
            return Ok(answer(opened.response));
        }
        let streams = &self.inner.open_streams;
        let id = streams
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (start, started) = oneshot::channel();
        let key = (serial, request.client.clone(), channel.clone());
        let node = self.clone();
        let pump_key = key.clone();
        let messages = opened.messages;
        let task = tokio::spawn(async move {
            if started.await.is_err() {
                return;
            }
            let code = node.pump(&pump_key, messages).await;
            node.stream_ended(&pump_key, &user, id, code).await;
        });
        let slot = Slot {
            id,
            start: Some(start),
            up: opened.up,
            task: task.abort_handle(),
        };
        if let Some(old) = streams.lock().insert(key, slot) {
            old.task.abort();
        }
        Ok(answer(opened.response))
    }

    /// Starts, feeds or closes an open stream (steps 2 and 3).
    pub(super) async fn stream_request(
        &self,
        serial: u64,
        request: mesh::StreamRequest,
    ) -> Result<(), ClientError> {
        let key = (serial, request.client, request.channel);
        match request.action {
            Some(stream_request::Action::Start(_)) => {
                let start = self
                    .inner
                    .open_streams
                    .lock()
                    .get_mut(&key)
                    .and_then(|slot| slot.start.take());
                match start {
                    Some(start) => start.send(()).map_err(|()| ClientError::INTERNAL),
                    None => Err(ClientError::INTERNAL),
                }
            }
            Some(stream_request::Action::Close(_)) => {
                if let Some(slot) = self.inner.open_streams.lock().remove(&key) {
                    slot.task.abort();
                }
                Ok(())
            }
            Some(stream_request::Action::Publish(data)) => {
                let up = self
                    .inner
                    .open_streams
                    .lock()
                    .get(&key)
                    .map(|slot| slot.up.clone());
                match up {
                    None => Err(ClientError::INTERNAL),
                    Some(None) => Err(ClientError::NOT_AVAILABLE),
                    Some(Some(up)) => up
                        .send(proxy::StreamSubscribeRequest {
                            subscribe_request: None,
                            publication: Some(proxy::Publication {
                                data,
                                tags: Default::default(),
                            }),
                        })
                        .await
                        .map_err(|_| ClientError::INTERNAL),
                }
            }
            None => Err(ClientError::BAD_REQUEST),
        }
    }

    /// Sends the stream's publications to its edge until it ends; returns the unsubscribe code.
    async fn pump(
        &self,
        (serial, client, channel): &Key,
        mut messages: tonic::Streaming<proxy::StreamSubscribeResponse>,
    ) -> u32 {
        loop {
            let publication = match messages.message().await {
                Ok(Some(message)) => match message.publication {
                    Some(publication) => publication,
                    None => continue,
                },
                Ok(None) => return ENDED_BY_BACKEND,
                Err(status) => {
                    tracing::debug!(channel, code = ?status.code(), "subscription stream failed");
                    return ENDED_BY_FAILURE;
                }
            };
            let event = mesh::ChannelEvent {
                channel: channel.clone(),
                kind: Some(channel_event::Kind::Publication(client::Publication {
                    data: publication.data,
                    tags: publication.tags,
                    ..Default::default()
                })),
                client: client.clone(),
                ..Default::default()
            };
            let dropped = self
                .inner
                .edges
                .deliver_event_to(SharedEvent::new(event), &[*serial]);
            if !dropped.is_empty() {
                // A lost publication: the subscriber must start over, never miss it silently.
                return ENDED_BY_FAILURE;
            }
        }
    }

    /// The stream `id` ended by itself: forgotten, and its subscriber unsubscribed — on the
    /// channel's lane, after the publications (the order holds there only); when the lane is
    /// full, through the control queue (which does not drop) with 2500, since publications
    /// were lost too.
    async fn stream_ended(&self, key: &Key, user: &str, id: u64, code: u32) {
        {
            let mut slots = self.inner.open_streams.lock();
            if slots.get(key).is_none_or(|slot| slot.id != id) {
                return;
            }
            slots.remove(key);
        }
        let (serial, client, channel) = key;
        let event = mesh::ChannelEvent {
            channel: channel.clone(),
            kind: Some(channel_event::Kind::StreamEnded(code)),
            client: client.clone(),
            ..Default::default()
        };
        let dropped = self
            .inner
            .edges
            .deliver_event_to(SharedEvent::new(event), &[*serial]);
        if dropped.is_empty() {
            return;
        }
        let control = mesh::Control {
            user: user.to_owned(),
            client: client.clone(),
            kind: Some(mesh::control::Kind::Unsubscribe(mesh::UnsubscribeCommand {
                channel: channel.clone(),
                code: ENDED_BY_FAILURE,
            })),
            ..Default::default()
        };
        self.send_to_edge(*serial, spindle_mesh::Down::Control(control))
            .await;
    }
}
