//! The edges attached to this node: their outgoing queues, which channels each wants, and the
//! fan-out of events and control commands to them.
//!
//! Slow edges. Events go straight onto the edge's link, on their channel's lane, with
//! `try_send_event`: when the lane is full the event is dropped for that edge only, counted in
//! `dropped_events` and logged, and every other edge gets it as usual. A publisher never waits
//! for an edge, and one event is shared by all of them. In channels with history a drop is a
//! gap the edge sees (events carry their offset and epoch): it repairs it from history or
//! tells its clients to recover. In channels without history it is the at-most-once delivery
//! those channels promise. An edge whose link holds more than `mesh.edge_queue_max_size` bytes
//! of events it has not taken stopped reading: its link is cut (`EventRefused::Backlog`); it
//! links again and repairs from history. Control messages (API commands, interest acks) are rarer and must
//! not vanish: they go through the edge's bounded control queue ([`EDGE_QUEUE_CAPACITY`]
//! messages, drained into the link's control stream by a forwarder task), waiting for room up
//! to [`CONTROL_SEND_TIMEOUT`], then failing the API call.

use super::EdgeId;
use crate::broker::{EventHandler, JoinLeave, Publication, StreamPosition};
use spindle_mesh::mesh::{self, channel_event};
use spindle_mesh::{CoreLink, Down, EventRefused, SharedEvent};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;

/// Control messages that may wait in one edge's queue (in front of the link's own buffer).
pub const EDGE_QUEUE_CAPACITY: usize = 8192;

/// How long a control command waits for room in a slow edge's queue before the API call fails.
pub const CONTROL_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// A control command could not be handed to every edge.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("control command not accepted by {failed} edge(s) within the timeout")]
pub struct ControlError {
    pub failed: usize,
}

/// Counters of the fan-out, read with [`super::Node::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub publications: AtomicU64,
    pub suppressed: AtomicU64,
    pub deliveries: AtomicU64,
    pub dropped_events: AtomicU64,
    pub controls: AtomicU64,
    pub dropped_controls: AtomicU64,
}

#[derive(Debug)]
struct Attached {
    id: EdgeId,
    /// `Some` for an edge in another process (its `mesh.region`), listed by `info`.
    region: Option<String>,
    queue: mpsc::Sender<Down>,
    link: CoreLink,
    /// The edge's interest set (one entry per channel, never a count: the edge says "I have
    /// subscribers" or "I have none", and may say either twice).
    channels: HashSet<String>,
    /// Events handed to this edge's link.
    sent: Arc<AtomicU64>,
}

/// What one attached edge has been sent, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeCounts {
    pub id: EdgeId,
    /// Events handed to its link (one per publication, join or leave in a channel it wants).
    pub events_sent: u64,
    /// Channels in its interest set.
    pub interest_channels: usize,
}

/// One edge's interest in a channel.
#[derive(Debug)]
struct Interested {
    serial: u64,
    /// Where the channel's events go: the edge's lanes.
    link: CoreLink,
    sent: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct State {
    /// By attachment serial: an edge id attached again gets a new serial.
    edges: HashMap<u64, Attached>,
    serial_of: HashMap<EdgeId, u64>,
    /// Channel → the edges with interest (each edge at most once).
    interest: HashMap<String, Vec<Interested>>,
}

/// The edges of a node. The broker's [`EventHandler`].
#[derive(Debug, Default)]
pub(crate) struct Edges {
    state: RwLock<State>,
    next_serial: AtomicU64,
    pub counters: Counters,
}

/// What attaching an edge produced.
pub(crate) struct Attachment {
    pub serial: u64,
    pub queue: mpsc::Receiver<Down>,
    /// Channels no edge wants any more because an earlier edge with the same id was replaced.
    pub released: Vec<String>,
}

impl Edges {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // No invariant spans a panic point inside the lock, so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an edge; an edge already attached under the same id is replaced.
    pub fn attach(&self, id: EdgeId, region: Option<String>, link: CoreLink) -> Attachment {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(EDGE_QUEUE_CAPACITY);
        let mut state = self.write();
        let released = match state.serial_of.get(&id).copied() {
            Some(old) => state.remove_edge(old),
            None => Vec::new(),
        };
        state.serial_of.insert(id.clone(), serial);
        state.edges.insert(
            serial,
            Attached {
                id,
                region,
                queue: tx,
                link,
                channels: HashSet::new(),
                sent: Arc::new(AtomicU64::new(0)),
            },
        );
        Attachment {
            serial,
            queue: rx,
            released,
        }
    }

    /// Forgets an edge; returns the channels no edge wants any more.
    pub fn detach(&self, serial: u64) -> Vec<String> {
        self.write().remove_edge(serial)
    }

    /// Adds channels to this edge's interest set (a channel already in it is left as is);
    /// returns the channels that had no edge with interest before.
    pub fn add_interest(&self, serial: u64, channels: &[String]) -> Vec<String> {
        let mut state = self.write();
        let State {
            edges, interest, ..
        } = &mut *state;
        let Some(edge) = edges.get_mut(&serial) else {
            return Vec::new();
        };
        let mut gained = Vec::new();
        for channel in channels {
            if !edge.channels.insert(channel.clone()) {
                continue;
            }
            let interested = interest.entry(channel.clone()).or_default();
            if interested.is_empty() {
                gained.push(channel.clone());
            }
            interested.push(Interested {
                serial,
                link: edge.link.clone(),
                sent: Arc::clone(&edge.sent),
            });
        }
        gained
    }

    /// Removes channels from this edge's interest set (a channel not in it is ignored);
    /// returns the channels no edge wants any more.
    pub fn remove_interest(&self, serial: u64, channels: &[String]) -> Vec<String> {
        let mut state = self.write();
        let State {
            edges, interest, ..
        } = &mut *state;
        let Some(edge) = edges.get_mut(&serial) else {
            return Vec::new();
        };
        let mut lost = Vec::new();
        for channel in channels {
            if !edge.channels.remove(channel) {
                continue;
            }
            if release(interest, channel, serial) {
                lost.push(channel.clone());
            }
        }
        lost
    }

    /// Replaces this edge's interest set with `channels` (a snapshot after a reconnect);
    /// returns the channels gained by the node and those no edge wants any more.
    pub fn replace_interest(&self, serial: u64, channels: &[String]) -> (Vec<String>, Vec<String>) {
        let stale: Vec<String> = {
            let state = self.read();
            let Some(edge) = state.edges.get(&serial) else {
                return (Vec::new(), Vec::new());
            };
            let wanted: HashSet<&String> = channels.iter().collect();
            edge.channels
                .iter()
                .filter(|channel| !wanted.contains(channel))
                .cloned()
                .collect()
        };
        let lost = self.remove_interest(serial, &stale);
        (self.add_interest(serial, channels), lost)
    }

    /// The outgoing queue of an attached edge, for messages only it gets.
    pub fn queue_of(&self, serial: u64) -> Option<mpsc::Sender<Down>> {
        self.read()
            .edges
            .get(&serial)
            .map(|edge| edge.queue.clone())
    }

    /// Queues `event` once for every edge with interest in its channel (the same shared
    /// event for all); returns how many.
    pub fn deliver_event(&self, event: spindle_mesh::Event) -> usize {
        self.deliver_to_some(&event, |_| true).0
    }

    /// Queues `event` for the edges `serials` names (those tracking a shared-poll key, the one
    /// holding a subscription stream) that still have interest in its channel. Returns the
    /// serials whose lane was full: the event was dropped for them (as in
    /// [`Edges::deliver_event`]) and the caller owes it to them.
    pub fn deliver_event_to(&self, event: spindle_mesh::Event, serials: &[u64]) -> Vec<u64> {
        self.deliver_to_some(&event, |serial| serials.contains(&serial))
            .1
    }

    /// Queues `event` for every edge with interest in its channel that `wanted` accepts;
    /// returns how many got it and which were dropped because their lane was full.
    fn deliver_to_some(
        &self,
        event: &spindle_mesh::Event,
        wanted: impl Fn(u64) -> bool,
    ) -> (usize, Vec<u64>) {
        let state = self.read();
        let Some(interested) = state.interest.get(&event.channel) else {
            return (0, Vec::new());
        };
        let mut delivered = 0;
        let mut full = Vec::new();
        for edge in interested.iter().filter(|e| wanted(e.serial)) {
            match edge.link.try_send_event(Arc::clone(event)) {
                Ok(()) => {
                    delivered += 1;
                    edge.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(EventRefused::Full) => {
                    full.push(edge.serial);
                    let dropped = self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
                    // The first drop and every 1024th after it, so a stuck edge cannot flood the log.
                    if dropped.is_multiple_of(1024) {
                        let id = state.edges.get(&edge.serial).map(|e| e.id.clone());
                        tracing::warn!(
                            edge = ?id,
                            channel = event.channel,
                            dropped_total = dropped + 1,
                            "edge lane full: event dropped for this edge"
                        );
                    }
                }
                // The edge stopped reading and its link is being cut (counted once per
                // event, logged by the link's carrier); the link is gone, or going: the edge
                // starts over on its next link.
                Err(EventRefused::Backlog) => {
                    self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
                }
                Err(EventRefused::Closed) => {}
            }
        }
        self.counters
            .deliveries
            .fetch_add(delivered as u64, Ordering::Relaxed);
        (delivered, full)
    }

    /// Queues `control` for every attached edge, waiting up to [`CONTROL_SEND_TIMEOUT`] for room.
    pub async fn send_control(&self, control: mesh::Control) -> Result<usize, ControlError> {
        let queues: Vec<(EdgeId, mpsc::Sender<Down>)> = {
            let state = self.read();
            state
                .edges
                .values()
                .map(|e| (e.id.clone(), e.queue.clone()))
                .collect()
        };
        let sends = queues.iter().map(|(id, queue)| {
            let message = Down::Control(control.clone());
            async move {
                match queue.send_timeout(message, CONTROL_SEND_TIMEOUT).await {
                    Ok(()) => Ok(true),
                    Err(SendTimeoutError::Closed(_)) => Ok(false),
                    Err(SendTimeoutError::Timeout(_)) => {
                        tracing::warn!(edge = %id, "edge queue full: control command not sent");
                        Err(())
                    }
                }
            }
        });
        let outcomes = futures_util::future::join_all(sends).await;
        let sent = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        self.counters
            .controls
            .fetch_add(sent as u64, Ordering::Relaxed);
        self.counters
            .dropped_controls
            .fetch_add(failed as u64, Ordering::Relaxed);
        if failed > 0 {
            Err(ControlError { failed })
        } else {
            Ok(sent)
        }
    }

    /// The links of every attached edge, for surveys.
    pub fn links(&self) -> Vec<(EdgeId, Option<String>, CoreLink)> {
        self.read()
            .edges
            .values()
            .map(|e| (e.id.clone(), e.region.clone(), e.link.clone()))
            .collect()
    }

    /// Per attached edge: events sent and interest size.
    pub fn counts(&self) -> Vec<EdgeCounts> {
        self.read()
            .edges
            .values()
            .map(|edge| EdgeCounts {
                id: edge.id.clone(),
                events_sent: edge.sent.load(Ordering::Relaxed),
                interest_channels: edge.channels.len(),
            })
            .collect()
    }

    /// Whether some edge has interest in `channel`.
    pub fn has_interest(&self, channel: &str) -> bool {
        self.read().interest.contains_key(channel)
    }

    /// Number of attached edges and of channels with at least one interested edge.
    pub fn sizes(&self) -> (usize, usize) {
        let state = self.read();
        (state.edges.len(), state.interest.len())
    }
}

impl State {
    fn remove_edge(&mut self, serial: u64) -> Vec<String> {
        let Some(edge) = self.edges.remove(&serial) else {
            return Vec::new();
        };
        if self.serial_of.get(&edge.id) == Some(&serial) {
            self.serial_of.remove(&edge.id);
        }
        edge.channels
            .iter()
            .filter(|channel| release(&mut self.interest, channel, serial))
            .cloned()
            .collect()
    }
}

/// Removes `serial` from the channel's interested edges; true when none is left.
fn release(interest: &mut HashMap<String, Vec<Interested>>, channel: &str, serial: u64) -> bool {
    let Some(interested) = interest.get_mut(channel) else {
        return false;
    };
    interested.retain(|edge| edge.serial != serial);
    if interested.is_empty() {
        interest.remove(channel);
        return true;
    }
    false
}

impl Edges {
    /// Turns a publication into one [`mesh::ChannelEvent`] and queues it for every edge with
    /// interest in `channel`; returns how many edges got it.
    ///
    /// The event carries the stream position twice, as the edge wants it: `epoch` on the
    /// event and `offset` in the publication (both empty / 0 without a position); the
    /// publication itself carries the epoch only at offset 1 (docs/protocol.md §9.8). `prev` (delta
    /// publishes) becomes `prev_data`.
    pub fn deliver(
        &self,
        channel: &str,
        position: Option<&StreamPosition>,
        publication: &Publication,
        prev: Option<&Publication>,
    ) -> usize {
        let offset = position.map_or(0, |p| p.offset);
        let epoch = position.map(|p| p.epoch.clone()).unwrap_or_default();
        let wire = spindle_proto::client::Publication {
            data: publication.data.clone(),
            info: publication.info.clone(),
            offset,
            tags: publication.tags.clone(),
            key: publication.key.clone(),
            removed: publication.removed,
            // The publish time travels to the edge (late-publication check); the edge clears
            // it before clients see the publication.
            time: publication.time,
            epoch: if offset == 1 {
                epoch.clone()
            } else {
                String::new()
            },
            ..Default::default()
        };
        let event = mesh::ChannelEvent {
            channel: channel.to_owned(),
            kind: Some(channel_event::Kind::Publication(wire)),
            epoch,
            prev_data: prev.map(|p| p.data.clone()).unwrap_or_default(),
            prev_version: 0,
            client: String::new(),
        };
        self.deliver_event(SharedEvent::new(event))
    }
}

impl EventHandler for Edges {
    fn on_publication(
        &self,
        channel: &str,
        position: Option<&StreamPosition>,
        publication: &Publication,
        prev: Option<&Publication>,
    ) {
        self.deliver(channel, position, publication, prev);
    }

    fn on_join_leave(&self, channel: &str, event: &JoinLeave) {
        let kind = match event {
            JoinLeave::Join(info) => channel_event::Kind::Join(info.clone()),
            JoinLeave::Leave(info) => channel_event::Kind::Leave(info.clone()),
        };
        let event = mesh::ChannelEvent {
            channel: channel.to_owned(),
            kind: Some(kind),
            ..Default::default()
        };
        self.deliver_event(SharedEvent::new(event));
    }
}
