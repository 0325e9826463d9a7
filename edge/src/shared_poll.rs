//! Shared-poll subscriptions at the edge (docs/shared-poll.md): which keys local clients
//! track, what the core has been told, the latest value of each key, and the fan-out of key
//! updates to the subscriptions tracking them.
//!
//! **Upstream.** The core hears of a key once per edge, however many local clients track it:
//! keys are reference-counted per channel ([`SharedPollKeys::acquire`] /
//! [`SharedPollKeys::release`]); a key nobody tracks any more is kept, value included, until the
//! core has applied its untrack. [`SharedPollKeys::sync`] sends the difference between the keys
//! wanted and the keys the core was told, one request at a time per channel (a per-channel
//! gate), numbered by a `seq` the core orders them by (the link does not keep an order between
//! requests). A sync that fails leaves "told" as it was, so the next one sends it again.
//!
//! **Values.** The answer to a sync carries the values the core already holds; events carry
//! changes. The newest version of each tracked key is kept here, so a client tracking a key
//! another client tracks gets its value in the track reply, without asking the core.
//!
//! **Fan-out.** A key event goes to the subscriptions tracking the key whose version is older
//! ([`Tracks`], one per shared-poll subscription, under its own lock: the track reply is queued
//! under that lock too, so an event is never queued before the reply that registered its key,
//! nor delivered twice). With fossil delta negotiated, a tracker holding exactly the event's
//! `prev_version` gets the delta, others the full value.
//!
//! **Loss.** A link loss forgets everything here (the next core knows nothing of this edge's
//! keys) and the channels' subscribers are unsubscribed (2500, as channels without history):
//! the SDKs subscribe and track again. A new epoch from the core (versioned mode) does the same
//! for its channel. Never a silent gap.

use crate::deadline;
use crate::local_hub::LocalHub;
use crate::subscription::{LocalSub, PubEvent, Variants};
use bytes::Bytes;
use spindle_hub::codes::Disconnect;
use spindle_hub::outcome::Failure;
use spindle_hub::shared_poll::TrackedItem;
use spindle_mesh::mesh::{self, request, response};
use spindle_mesh::{EdgeLink, RequestError};
use spindle_proto::{EncodeError, Format, client};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No invariant spans a panic point inside these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The edge's shared-poll state (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct SharedPollKeys {
    state: Mutex<State>,
    /// Request numbers over the link (the core keeps the last per channel).
    seq: AtomicU64,
    /// One sync at a time per channel.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped at each link loss: references taken before it are void.
    generation: u64,
    channels: HashMap<String, ChannelKeys>,
}

#[derive(Debug, Default)]
struct ChannelKeys {
    /// The channel's epoch as the core gave it; `None` until asked.
    epoch: Option<String>,
    keys: HashMap<String, KeyValue>,
    /// Keys the core tracks for this edge.
    told: HashSet<String>,
    /// Keys the core sent events for that nobody here tracks: untracked at the next sync.
    stray: HashSet<String>,
}

#[derive(Debug, Default)]
struct KeyValue {
    /// Local subscriptions tracking the key (registered, or registering).
    refs: usize,
    /// The newest value: (version, data).
    latest: Option<(u64, Bytes)>,
    /// The backend revoked it: a subscription still registering it gets the removal.
    removed: bool,
}

/// What the edge holds of a key, for a track reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Held {
    Value(u64, Bytes),
    Removed,
    Nothing,
}

/// A sync could not be completed: the client gets error 100 and may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyncFailed;

impl From<SyncFailed> for Failure {
    fn from(_: SyncFailed) -> Self {
        Failure::Internal
    }
}

impl SharedPollKeys {
    /// The current generation (to pass back to [`SharedPollKeys::release`]).
    pub fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    /// One more local tracker of each of `keys`.
    pub fn acquire(&self, channel: &str, keys: &[String]) -> u64 {
        let mut state = lock(&self.state);
        let keyed = state.channels.entry(channel.to_owned()).or_default();
        for key in keys {
            let value = keyed.keys.entry(key.clone()).or_default();
            if value.refs == 0 {
                // Tracked anew after a revocation: asked for again.
                value.removed = false;
            }
            value.refs += 1;
        }
        state.generation
    }

    /// One tracker fewer of each of `keys` (taken in `generation`; nothing when the link was
    /// lost since). Returns whether the core must be told (call [`SharedPollKeys::sync`]).
    pub fn release(&self, generation: u64, channel: &str, keys: &[String]) -> bool {
        let mut state = lock(&self.state);
        if state.generation != generation {
            return false;
        }
        let Some(keyed) = state.channels.get_mut(channel) else {
            return false;
        };
        let mut changed = false;
        for key in keys {
            if let Some(value) = keyed.keys.get_mut(key) {
                value.refs = value.refs.saturating_sub(1);
                if value.refs > 0 {
                    continue;
                }
                // A key the core tracks stays (with its value) until the untrack is applied: a
                // tracker coming back meanwhile finds the value, and the core still has it.
                if keyed.told.contains(key) {
                    changed = true;
                } else {
                    keyed.keys.remove(key);
                }
            }
        }
        changed
    }

    /// What is held of `key`: its newest value, its revocation, or nothing yet.
    pub fn held(&self, channel: &str, key: &str) -> Held {
        let state = lock(&self.state);
        let value = state.channels.get(channel).and_then(|c| c.keys.get(key));
        match value {
            Some(value) if value.removed => Held::Removed,
            Some(KeyValue {
                latest: Some((version, data)),
                ..
            }) => Held::Value(*version, data.clone()),
            _ => Held::Nothing,
        }
    }

    /// Tells the core what changed in `channel` (keys wanted but not told, told but no longer
    /// wanted, stray) and returns the channel's epoch. One sync at a time per channel; a
    /// channel the core has nothing to hear about and whose epoch is known costs nothing.
    pub async fn sync(&self, link: &EdgeLink, channel: &str) -> Result<String, SyncFailed> {
        let gate = Arc::clone(lock(&self.gates).entry(channel.to_owned()).or_default());
        let outcome = {
            let _turn = gate.lock().await;
            self.sync_in_turn(link, channel).await
        };
        // The last one through takes the gate away: channels come and go.
        let mut gates = lock(&self.gates);
        if Arc::strong_count(&gate) == 2 {
            gates.remove(channel);
        }
        outcome
    }

    /// Forgets a channel nobody here subscribes to any more, once the core was told everything
    /// (nothing tracked, nothing told, nothing stray): its epoch is asked again next time.
    pub fn forget_idle(&self, channel: &str) {
        let mut state = lock(&self.state);
        let idle = state.channels.get(channel).is_some_and(|keyed| {
            keyed.keys.is_empty() && keyed.told.is_empty() && keyed.stray.is_empty()
        });
        if idle {
            state.channels.remove(channel);
        }
    }

    async fn sync_in_turn(&self, link: &EdgeLink, channel: &str) -> Result<String, SyncFailed> {
        let (generation, request) = {
            let mut state = lock(&self.state);
            let generation = state.generation;
            let keyed = state.channels.entry(channel.to_owned()).or_default();
            let track: Vec<String> = keyed
                .keys
                .iter()
                .filter(|(key, value)| {
                    value.refs > 0 && !value.removed && !keyed.told.contains(*key)
                })
                .map(|(key, _)| key.clone())
                .collect();
            let untrack: Vec<String> = keyed
                .told
                .iter()
                .filter(|key| keyed.keys.get(*key).is_none_or(|value| value.refs == 0))
                .chain(keyed.stray.iter())
                .cloned()
                .collect();
            if track.is_empty()
                && untrack.is_empty()
                && let Some(epoch) = &keyed.epoch
            {
                return Ok(epoch.clone());
            }
            let request = mesh::SharedPollRequest {
                channel: channel.to_owned(),
                track,
                untrack,
                seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            };
            (generation, request)
        };
        let answer = link
            .request(
                Some(request::Kind::SharedPoll(request.clone())),
                deadline::CORE,
            )
            .await;
        let result = match answer {
            Ok(mesh::Response {
                error: None,
                kind: Some(response::Kind::SharedPoll(result)),
                ..
            }) if !result.stale => result,
            Ok(response) => {
                tracing::warn!(channel, error = ?response.error, "shared-poll request refused");
                return Err(SyncFailed);
            }
            Err(RequestError::Closed | RequestError::Timeout(_)) => return Err(SyncFailed),
        };
        let mut state = lock(&self.state);
        if state.generation != generation {
            return Err(SyncFailed);
        }
        let keyed = state.channels.entry(channel.to_owned()).or_default();
        for key in &request.track {
            keyed.told.insert(key.clone());
        }
        for key in &request.untrack {
            keyed.told.remove(key);
            keyed.stray.remove(key);
            if keyed.keys.get(key).is_some_and(|value| value.refs == 0) {
                keyed.keys.remove(key);
            }
        }
        for item in result.items {
            if let Some(value) = keyed.keys.get_mut(&item.key) {
                newer(value, item.version, item.data);
            }
        }
        keyed.epoch = Some(result.epoch.clone());
        Ok(result.epoch)
    }

    /// `dropped` registered trackers let a revoked key go.
    fn forget_revoked(&self, channel: &str, key: &str, dropped: usize) {
        let mut state = lock(&self.state);
        let Some(keyed) = state.channels.get_mut(channel) else {
            return;
        };
        if let Some(value) = keyed.keys.get_mut(key) {
            value.refs = value.refs.saturating_sub(dropped);
            if value.refs == 0 {
                keyed.keys.remove(key);
            }
        }
    }

    /// Forgets everything: the link to the core is gone (see the module doc).
    pub fn link_lost(&self) {
        let mut state = lock(&self.state);
        state.generation += 1;
        state.channels.clear();
    }

    /// Takes a core event of a shared-poll channel: applies it here and fans it out to the
    /// trackers. `None` when the event was one (consumed); the event back otherwise. With the
    /// channel when it needs a sync (stray keys to untrack).
    pub fn fan_out(
        &self,
        hub: &LocalHub,
        event: mesh::ChannelEvent,
    ) -> (Option<mesh::ChannelEvent>, Option<String>) {
        use mesh::channel_event::Kind;
        // Every event of every channel passes here: only what can be a shared-poll event takes
        // the lock (a key update carries a key and a version, or is a removal).
        let candidate = match &event.kind {
            Some(Kind::SharedPollEpoch(_)) => true,
            Some(Kind::Publication(p)) => !p.key.is_empty() && (p.version > 0 || p.removed),
            _ => false,
        };
        if !candidate {
            return (Some(event), None);
        }
        let mut state = lock(&self.state);
        let Some(keyed) = state.channels.get_mut(&event.channel) else {
            return (Some(event), None);
        };
        match event.kind {
            Some(Kind::SharedPollEpoch(epoch)) => {
                keyed.epoch = Some(epoch);
                for value in keyed.keys.values_mut() {
                    value.latest = None;
                }
                drop(state);
                let lost = hub.lose_channel(&event.channel);
                tracing::debug!(channel = event.channel, lost, "shared-poll epoch changed");
                (None, None)
            }
            Some(Kind::Publication(publication)) => {
                let key = publication.key.clone();
                let tracked = match keyed.keys.get_mut(&key) {
                    Some(value) if publication.removed => {
                        // The core forgot it. Registered trackers drop it (below) and their
                        // references go with it; one still registering finds it removed.
                        value.latest = None;
                        value.removed = true;
                        keyed.told.remove(&key);
                        true
                    }
                    Some(value) => {
                        newer(value, publication.version, publication.data.clone());
                        true
                    }
                    None => false,
                };
                if !tracked {
                    let stray = !publication.removed && keyed.stray.insert(key);
                    return (None, stray.then_some(event.channel));
                }
                drop(state);
                let channel = event.channel;
                let prev_version = event.prev_version;
                let event = PubEvent::new(channel, publication, String::new(), event.prev_data);
                let mut variants = Variants::new(&event);
                let mut dropped = 0;
                if let Some(subscribers) = hub.subscribers(&event.channel) {
                    for sub in subscribers.iter() {
                        dropped += usize::from(offer(sub, &event, prev_version, &mut variants));
                    }
                }
                if dropped > 0 {
                    self.forget_revoked(&event.channel, &event.publication.key, dropped);
                }
                (None, None)
            }
            kind => (Some(mesh::ChannelEvent { kind, ..event }), None),
        }
    }
}

/// Keeps `(version, data)` when newer than what `value` holds.
fn newer(value: &mut KeyValue, version: u64, data: Bytes) {
    if value
        .latest
        .as_ref()
        .is_none_or(|(held, _)| version > *held)
    {
        value.latest = Some((version, data));
    }
}

/// The keys one shared-poll subscription tracks.
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    keys: HashMap<String, KeyState>,
}

#[derive(Debug, Clone, Copy)]
struct KeyState {
    /// The version the client holds (0 = none).
    version: u64,
    /// The client holds a full value of the key: deltas may follow (delta subscriptions).
    delta_ready: bool,
    /// When its signature expires (unix seconds); `None` = never.
    expires_at: Option<i64>,
}

impl Tracks {
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The earliest signature expiry (unix seconds).
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.keys.values().filter_map(|k| k.expires_at).min()
    }

    /// Removes the keys whose signature expired before `cutoff` (unix seconds); returns them.
    pub fn expire(&mut self, cutoff: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, k)| k.expires_at.is_some_and(|at| at < cutoff))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.keys.remove(key);
        }
        expired
    }

    /// Stops tracking `keys`; returns those that were tracked.
    pub fn untrack(&mut self, keys: &[String]) -> Vec<String> {
        keys.iter()
            .filter(|key| self.keys.remove(*key).is_some())
            .cloned()
            .collect()
    }

    /// Stops tracking everything (the subscription ends); returns what was tracked.
    pub fn close(&mut self) -> Vec<String> {
        self.keys.drain().map(|(key, _)| key).collect()
    }
}

/// Registers a track's items (a re-tracked key starts over with the client's version) and
/// returns the values the client lacks — newer than its version, from `latest` — as the track
/// reply's `items`, data encoded for `format` when delta is negotiated. Call under the
/// subscription's lock, and queue the reply before releasing it.
pub(crate) fn register(
    tracks: &mut Tracks,
    items: &[TrackedItem],
    held: impl Fn(&str) -> Held,
    delta: bool,
    format: Format,
) -> Result<Registered, EncodeError> {
    let mut registered = Registered::default();
    for item in items {
        let mut state = KeyState {
            version: item.version,
            delta_ready: false,
            expires_at: item.expires_at,
        };
        let (version, data) = match held(&item.key) {
            Held::Removed => {
                // Revoked while this track was on its way: not tracked, the removal follows
                // the reply.
                tracks.keys.remove(&item.key);
                registered.removed.push(item.key.clone());
                continue;
            }
            Held::Value(version, data) => (version, data),
            Held::Nothing => (0, Bytes::new()),
        };
        if version > item.version {
            let data = if delta {
                crate::subscription::wire_data(format, &data)?
            } else {
                data
            };
            registered.items.push(client::Publication {
                key: item.key.clone(),
                data,
                version,
                ..Default::default()
            });
            state.version = version;
            state.delta_ready = true;
        }
        tracks.keys.insert(item.key.clone(), state);
    }
    Ok(registered)
}

/// What registering a track produced.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    /// The values the client lacks: the reply's `items`.
    pub items: Vec<client::Publication>,
    /// Keys revoked meanwhile: removals to push after the reply, references to give back.
    pub removed: Vec<String>,
}

/// The keys of `items` this subscription does not track yet.
pub(crate) fn new_keys(tracks: &Tracks, items: &[TrackedItem]) -> Vec<String> {
    items
        .iter()
        .filter(|i| !tracks.contains(&i.key))
        .map(|i| i.key.clone())
        .collect()
}

/// A key event for one subscription: sent when it tracks the key and holds an older version
/// (a removal always), as a delta when it holds exactly `prev_version` and negotiated delta.
/// Returns whether the subscription dropped the key (a removal).
fn offer(sub: &LocalSub, event: &PubEvent, prev_version: u64, variants: &mut Variants<'_>) -> bool {
    let Some(tracks) = sub.tracks() else {
        return false;
    };
    // A lost subscription is being unsubscribed (2500): nothing more goes to it.
    if !sub.is_live() {
        return false;
    }
    let mut tracks = lock(tracks);
    let publication = &event.publication;
    let Some(state) = tracks.keys.get_mut(&publication.key) else {
        return false;
    };
    let format = sub.connection.format();
    let removed = publication.removed;
    let encoded = if removed {
        tracks.keys.remove(&publication.key);
        variants.plain(format)
    } else {
        if publication.version <= state.version {
            return false;
        }
        let encoded = if !sub.flags.delta {
            variants.plain(format)
        } else if state.delta_ready
            && prev_version > 0
            && state.version == prev_version
            && !event.prev_data.is_empty()
        {
            variants.shared_delta(format)
        } else {
            variants.full(format)
        };
        state.version = publication.version;
        state.delta_ready = sub.flags.delta;
        encoded
    };
    // Queued under the subscription's lock: ordered after the track reply that registered
    // the key (see the module doc).
    match encoded {
        Ok(bytes) => {
            sub.connection.push(bytes);
        }
        Err(EncodeError::PayloadNotJson) => {
            sub.connection.close(Disconnect::INAPPROPRIATE_PROTOCOL);
        }
    }
    removed
}

#[cfg(test)]
mod tests;
