//! Shared-poll channels at the core (docs/shared-poll.md): which edge tracks which key, one
//! poller per channel asking the backend (`shared_poll_refresh` proxy) for the union of the
//! tracked keys, and each change sent to the edges tracking its key.
//!
//! Backend load follows unique keys, not clients: an edge tells its core a key once however many
//! of its clients track it, and the core polls a key once per interval however many edges track
//! it. Each core polls for its own edges (as each Centrifugo node does).
//!
//! The core keeps each key's latest value, so an edge tracking a key someone already tracks gets
//! it in the answer to its request (no backend call); a key nobody held yet ("cold") is polled
//! at once. Versions: in `versioned` mode the backend's; in `versionless` mode the core finds
//! changes by comparing data and numbers them from one counter per core, under one epoch per
//! core process — so a channel stopped and started again never reuses a version, and an edge
//! that moves to another core sees another epoch.
//!
//! Contract with edges (mesh.proto `SharedPollRequest`): requests of one (edge, channel) are
//! applied in `seq` order; an older one arriving late is ignored (`stale`). Events for a key go
//! only to the edges tracking it (that have interest in the channel), on the channel's lane. The
//! link going drops all of an edge's keys; otherwise they go only with its untracks: its
//! interest in a channel may go and come back while its keys stay, as the edge told them.
//!
//! Layout: this file (the manager and requests), `poller.rs` (the per-channel task and what a
//! backend answer changes). Tests: `core/tests/shared_poll.rs` (a real HTTP backend).

mod poller;

use crate::node::Edges;
use crate::proxy::Proxies;
use bytes::Bytes;
use spindle_hub::shared_poll::SharedPollSettings;
use spindle_mesh::mesh;
use spindle_proto::client;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::{Notify, Semaphore};

/// Backend calls in flight at once per core when `shared_poll.concurrency_limit` is 0 (as
/// Centrifugo).
pub const DEFAULT_CONCURRENCY: usize = 64;

/// The shared-poll channels of one core.
#[derive(Debug, Clone)]
pub(crate) struct SharedPolls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channels: Mutex<HashMap<String, Arc<PollChannel>>>,
    /// The versionless epoch of this core process.
    epoch: String,
    /// Versionless versions, one counter for every channel of this core.
    versions: AtomicU64,
    edges: Arc<Edges>,
    proxies: Proxies,
    /// `shared_poll.concurrency_limit`: backend calls in flight.
    calls: Semaphore,
    pub counters: Counters,
}

/// What the pollers did, for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct Counters {
    /// Backend `shared_poll_refresh` calls made.
    pub calls: AtomicU64,
    /// Keys asked for in them.
    pub keys_polled: AtomicU64,
    /// Calls that failed (network, timeout, backend error).
    pub failed_calls: AtomicU64,
    /// Key changes sent to edges.
    pub changes: AtomicU64,
    /// Keys the backend revoked.
    pub removals: AtomicU64,
}

/// One shared-poll channel at this core.
#[derive(Debug)]
struct PollChannel {
    name: String,
    settings: SharedPollSettings,
    state: Mutex<State>,
    /// Cold keys to poll now, or the channel became empty (its idle timer starts).
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The backend's epoch (versioned mode); `""` until it gives one.
    epoch: String,
    entries: HashMap<String, Entry>,
    /// The last request `seq` applied per edge (attachment serial).
    seqs: HashMap<u64, u64>,
    /// Keys nobody holds a value of yet: polled at once.
    cold: BTreeSet<String>,
    /// Since when the channel has no key (its poller stops after `shutdown_delay`).
    idle_since: Option<Instant>,
    /// The poller stopped: the channel is out of the map; a request starts a new one.
    closed: bool,
    /// Events an edge's full lane dropped, sent again after the next poll: per edge, whether
    /// it missed an epoch change, and the keys whose change (or removal) it missed.
    owed: HashMap<u64, Owed>,
    /// Values of keys nobody tracks any more, kept `shutdown_delay` (not polled): a key tracked
    /// again meanwhile — a reconnect wave — is answered with the same version, without a
    /// backend call, and clients holding it get nothing twice.
    parked: HashMap<String, Parked>,
}

#[derive(Debug)]
struct Parked {
    version: u64,
    data: Bytes,
    since: Instant,
}

#[derive(Debug, Default)]
struct Owed {
    epoch: bool,
    keys: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Entry {
    /// 0 = no value yet.
    version: u64,
    data: Option<Bytes>,
    /// The edges tracking the key.
    edges: HashSet<u64>,
    /// Written by `shared_poll_publish` since the last timed poll: that poll skips it.
    fresh: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No invariant spans a panic point inside these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedPolls {
    pub fn new(edges: Arc<Edges>, proxies: Proxies, concurrency_limit: u32) -> SharedPolls {
        let calls = match concurrency_limit {
            0 => DEFAULT_CONCURRENCY,
            n => n as usize,
        };
        SharedPolls {
            inner: Arc::new(Inner {
                channels: Mutex::new(HashMap::new()),
                epoch: random_epoch(),
                versions: AtomicU64::new(0),
                edges,
                proxies,
                calls: Semaphore::new(calls),
                counters: Counters::default(),
            }),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Channels with a running poller, and the keys they hold.
    pub fn sizes(&self) -> (usize, usize) {
        let channels = lock(&self.inner.channels);
        let keys = channels
            .values()
            .map(|c| lock(&c.state).entries.len())
            .sum();
        (channels.len(), keys)
    }

    /// Applies an edge's request (see the module doc). Must run inside a Tokio runtime (a new
    /// channel starts its poller).
    pub fn apply(
        &self,
        serial: u64,
        request: &mesh::SharedPollRequest,
        settings: &SharedPollSettings,
    ) -> mesh::SharedPollResult {
        loop {
            let channel = self.channel(&request.channel, settings);
            let mut state = lock(&channel.state);
            if state.closed {
                // Its poller stopped between the lookup and the lock: take a new one.
                continue;
            }
            let epoch = self.epoch_of(&channel, &state);
            let last = state.seqs.get(&serial).copied().unwrap_or(0);
            if request.seq <= last {
                return mesh::SharedPollResult {
                    epoch,
                    items: Vec::new(),
                    stale: true,
                };
            }
            state.seqs.insert(serial, request.seq);
            let mut items = Vec::new();
            let mut woke = false;
            for key in &request.track {
                let parked = state.parked.remove(key);
                let entry = state
                    .entries
                    .entry(key.clone())
                    .or_insert_with(|| match parked {
                        Some(parked) => Entry {
                            version: parked.version,
                            data: Some(parked.data),
                            ..Entry::default()
                        },
                        None => Entry::default(),
                    });
                entry.edges.insert(serial);
                match &entry.data {
                    Some(data) => items.push(client::Publication {
                        key: key.clone(),
                        data: data.clone(),
                        version: entry.version,
                        ..Default::default()
                    }),
                    None => woke |= state.cold.insert(key.clone()),
                }
            }
            for key in &request.untrack {
                forget(&mut state, key, serial);
            }
            woke |= self.note_idle(&mut state);
            drop(state);
            if woke {
                channel.wake.notify_one();
            }
            return mesh::SharedPollResult {
                epoch,
                items,
                stale: false,
            };
        }
    }

    /// An edge's link is gone: its keys go everywhere.
    pub fn edge_gone(&self, serial: u64) {
        let all: Vec<Arc<PollChannel>> = lock(&self.inner.channels).values().cloned().collect();
        for channel in all {
            self.drop_edge(&channel, serial);
        }
    }

    fn drop_edge(&self, channel: &PollChannel, serial: u64) {
        let mut state = lock(&channel.state);
        state.seqs.remove(&serial);
        state.owed.remove(&serial);
        let keys: Vec<String> = state
            .entries
            .iter()
            .filter(|(_, e)| e.edges.contains(&serial))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            forget(&mut state, &key, serial);
        }
        let woke = self.note_idle(&mut state);
        drop(state);
        if woke {
            channel.wake.notify_one();
        }
    }

    /// `shared_poll_publish` on this core: a versioned change of `key`, delivered if newer
    /// than what the core holds (a new `epoch` restarts every tracker first). Keys nobody
    /// tracks here are ignored.
    pub fn publish(&self, channel: &str, key: &str, version: u64, epoch: &str, data: Bytes) {
        let Some(polled) = lock(&self.inner.channels).get(channel).cloned() else {
            return;
        };
        let mut state = lock(&polled.state);
        let mut out = poller::Outgoing::default();
        poller::flip_epoch(&mut state, epoch, &mut out);
        if let Some(entry) = state.entries.get_mut(key)
            && version > entry.version
        {
            entry.fresh = true;
            out.change(key, entry, version, data, None);
        }
        drop(state);
        self.send(&polled, out);
    }

    /// The channel's poller, started if there is none.
    fn channel(&self, name: &str, settings: &SharedPollSettings) -> Arc<PollChannel> {
        let mut channels = lock(&self.inner.channels);
        if let Some(channel) = channels.get(name) {
            return Arc::clone(channel);
        }
        let channel = Arc::new(PollChannel {
            name: name.to_owned(),
            settings: settings.clone(),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        channels.insert(name.to_owned(), Arc::clone(&channel));
        tokio::spawn(poller::run(self.clone(), Arc::clone(&channel)));
        channel
    }

    fn epoch_of(&self, channel: &PollChannel, state: &State) -> String {
        if channel.settings.versioned {
            state.epoch.clone()
        } else {
            self.inner.epoch.clone()
        }
    }

    /// Starts the idle clock when the channel has no key left; `true` when the poller must
    /// look (to arm its timer).
    fn note_idle(&self, state: &mut State) -> bool {
        match (state.entries.is_empty(), state.idle_since) {
            (true, None) => {
                state.idle_since = Some(Instant::now());
                true
            }
            (false, Some(_)) => {
                state.idle_since = None;
                false
            }
            _ => false,
        }
    }

    fn next_version(&self) -> u64 {
        self.inner.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends what a change of state produced to the edges concerned; what a full lane
    /// dropped is owed to that edge (see [`State::owed`]).
    fn send(&self, channel: &PollChannel, out: poller::Outgoing) {
        use mesh::channel_event::Kind;
        let counters = &self.inner.counters;
        let mut missed: Vec<(u64, Option<String>)> = Vec::new();
        for (edges, kind, prev_data, prev_version) in out.events {
            let key = match &kind {
                Kind::Publication(p) if p.removed => {
                    counters.removals.fetch_add(1, Ordering::Relaxed);
                    Some(p.key.clone())
                }
                Kind::Publication(p) => {
                    counters.changes.fetch_add(1, Ordering::Relaxed);
                    Some(p.key.clone())
                }
                _ => None,
            };
            let event = mesh::ChannelEvent {
                channel: channel.name.clone(),
                kind: Some(kind),
                prev_data,
                prev_version,
                ..Default::default()
            };
            let dropped = self
                .inner
                .edges
                .deliver_event_to(spindle_mesh::SharedEvent::new(event), &edges);
            missed.extend(dropped.into_iter().map(|serial| (serial, key.clone())));
        }
        if missed.is_empty() {
            return;
        }
        let mut state = lock(&channel.state);
        for (serial, key) in missed {
            let owed = state.owed.entry(serial).or_default();
            match key {
                Some(key) => {
                    owed.keys.insert(key);
                }
                None => owed.epoch = true,
            }
        }
    }

    /// Sends again what full lanes dropped: the epoch, then each owed key's current value (or
    /// its removal, when the key is gone or no longer tracked by that edge... then nothing).
    fn repay(&self, channel: &PollChannel) {
        use mesh::channel_event::Kind;
        let mut out = poller::Outgoing::default();
        {
            let mut state = lock(&channel.state);
            let owed = std::mem::take(&mut state.owed);
            for (serial, owed) in owed {
                if owed.epoch {
                    out.events.push((
                        vec![serial],
                        Kind::SharedPollEpoch(state.epoch.clone()),
                        Bytes::new(),
                        0,
                    ));
                }
                for key in owed.keys {
                    let publication = match state.entries.get(&key) {
                        Some(entry) if !entry.edges.contains(&serial) => continue,
                        Some(Entry { data: None, .. }) => continue,
                        Some(entry) => client::Publication {
                            key,
                            data: entry.data.clone().unwrap_or_default(),
                            version: entry.version,
                            ..Default::default()
                        },
                        None => client::Publication {
                            key,
                            removed: true,
                            ..Default::default()
                        },
                    };
                    out.events.push((
                        vec![serial],
                        Kind::Publication(publication),
                        Bytes::new(),
                        0,
                    ));
                }
            }
        }
        self.send(channel, out);
    }
}

/// `serial` stops tracking `key`; the entry goes (its value parked) when no edge tracks it.
fn forget(state: &mut State, key: &str, serial: u64) {
    let Some(entry) = state.entries.get_mut(key) else {
        return;
    };
    entry.edges.remove(&serial);
    if !entry.edges.is_empty() {
        return;
    }
    if let Some(entry) = state.entries.remove(key)
        && let Some(data) = entry.data
    {
        let parked = Parked {
            version: entry.version,
            data,
            since: Instant::now(),
        };
        state.parked.insert(key.to_owned(), parked);
    }
    state.cold.remove(key);
}

fn random_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}
