//! Where the edge is in each channel's stream, and the decisions of gap repair
//! (docs/architecture.md §9).
//!
//! For every channel with local subscribers the edge keeps the position `(epoch, offset)` of
//! the last publication it fanned out (from the interest acknowledgement, then from each
//! event). An event that continues the stream is fanned out; one already fanned out (a
//! duplicate) is dropped; one that jumps ahead shows a gap, and the channel is **repaired
//! once, for all its subscribers**: live events are held (merged by offset) while the missing
//! publications are read from core history, then both go out in order (`crate::repair` does
//! the reading). A top position from the core (an acknowledgement after a relink, or the
//! periodic check of idle channels) ahead of the edge starts a repair the same way.
//!
//! Only what cannot be repaired is signalled to the channel's subscribers (unsubscribe 2500,
//! disconnect 3010 for server-side ones): another epoch, history trimmed past the position, a
//! channel too far behind, a repair past its deadline, and any link loss in a channel without
//! history (nothing to repair from). Never a silent gap (DESIGN §6).
//!
//! Everything here decides under a shard lock and never waits; fan-out happens after the lock
//! is released. While a repair runs only the repair task fans the channel out, and its first
//! fan-out waits for a lane delivery admitted before the repair began ([`Fanning`]), so the
//! order of a channel's publications holds whichever task delivers them. A stream that moved
//! to another epoch remembers the one it left: a top read, or an event sent, before the move
//! is stale and cannot move it back.

use spindle_hub::history::StreamPosition;
use spindle_mesh::{Event, SharedEvent, mesh};
use spindle_proto::client;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Shards of the stream table.
const SHARDS: usize = 64;

/// What the edge knows of one channel's stream.
#[derive(Debug)]
enum Stream {
    /// Publications carry no offsets: a gap cannot be seen, nor repaired.
    NoHistory,
    Positioned {
        /// The last publication fanned out (or the top the core reported).
        position: StreamPosition,
        /// Some while a repair runs.
        repair: Option<Held>,
        /// Lane deliveries admitted and not yet fanned out ([`Fanning`]).
        fanning: Arc<AtomicUsize>,
        /// The epoch the stream left last: a top or an event still carrying it is stale (it
        /// was read or sent before the change) and must not move the stream back.
        retired: Option<String>,
    },
}

/// A lane's fan-out of one admitted event, in flight until dropped. A repair of the channel
/// waits for none to be left ([`Streams::settled`]) before it fans out, so a publication read
/// from history never overtakes an earlier one a lane task is still handing to subscribers
/// (a repair can start from another task: an acknowledgement, the idle check).
#[derive(Debug)]
#[must_use = "dropped once the event is fanned out"]
pub(crate) struct Fanning(Option<Arc<AtomicUsize>>);

impl Fanning {
    fn of(count: &Arc<AtomicUsize>) -> Fanning {
        count.fetch_add(1, Ordering::AcqRel);
        Fanning(Some(Arc::clone(count)))
    }

    /// An event outside any stream (no offset): nothing waits for it.
    fn untracked() -> Fanning {
        Fanning(None)
    }
}

impl Drop for Fanning {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Which repair of a channel a task runs: a task whose repair was replaced (the link was lost
/// and a new one started another) stops at its next step.
pub(crate) type RepairId = u64;

/// Live events held while a repair runs, by offset.
#[derive(Debug, Default)]
struct Held {
    id: RepairId,
    events: BTreeMap<u64, Event>,
    bytes: usize,
    /// The highest offset seen live (held or not): the repair is not done below it.
    highest: u64,
}

/// Bounds of what a repair may hold and fetch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RepairBounds {
    /// Most publications one repair may fetch (`mesh.repair.max_publications`); also the most
    /// live events it holds.
    pub publications: usize,
    /// Most bytes of live events held per channel; beyond it they are dropped and read back
    /// from history.
    pub held_bytes: usize,
    /// Most bytes of live events held by all repairs of the edge together (the same rule).
    pub total_bytes: usize,
}

/// What to do with one event from a lane.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Fan it out now; drop the [`Fanning`] once it is.
    Deliver(Event, Fanning),
    /// Nothing now: a duplicate, or held for a running repair.
    Hold,
    /// It opened a gap and is held: start this repair of the channel.
    Repair(String, RepairId),
    /// The stream moved to another epoch: signal the channel's subscribers, then fan it out
    /// (dropping the [`Fanning`] once it is).
    EpochChanged(Event, Fanning),
}

/// What a top position reported by the core means for a channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TopCheck {
    /// Nothing to do.
    Current,
    /// The core is ahead: start this repair.
    Repair(RepairId),
    /// Another epoch: signal the channel's subscribers (the stream now starts at the top).
    Lost,
}

/// One step of a running repair, after a history read.
#[derive(Debug)]
pub(crate) enum Repaired {
    /// Fan these out in order, then [`Streams::drain`].
    Deliver(Vec<Event>),
    /// Cannot be repaired: signal the channel's subscribers. With the top the read reported.
    Lost(Unrepairable, Option<StreamPosition>),
}

/// Why a gap cannot be repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unrepairable {
    #[error("the stream moved to another epoch")]
    EpochChanged,
    #[error("history no longer holds the missing publications")]
    Trimmed,
    #[error("more publications missing than mesh.repair.max_publications")]
    TooFarBehind,
    #[error("the core refused the history read")]
    Refused,
    #[error("the repair missed its deadline")]
    Deadline,
    #[error("the link was lost and the channel keeps no history")]
    NoHistory,
    #[error("the core could not deliver the channel (its broker refused)")]
    NotDelivered,
}

/// What is left of a repair after the publications read were fanned out.
#[derive(Debug)]
pub(crate) enum Drain {
    /// Done: the channel is live again.
    Done,
    /// Held events that now continue the stream: fan them out, then drain again.
    Deliver(Vec<Event>),
    /// Still a gap (held events ahead, or some dropped): read history again.
    Gap,
}

/// The stream table of an edge.
#[derive(Debug)]
pub(crate) struct Streams {
    shards: Box<[Mutex<HashMap<String, Stream>>]>,
    bounds: RepairBounds,
    next_repair: AtomicU64,
    /// Bytes held by all repairs.
    held_total: AtomicUsize,
}

impl Streams {
    pub(crate) fn new(bounds: RepairBounds) -> Streams {
        Streams {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            bounds,
            next_repair: AtomicU64::new(1),
            held_total: AtomicUsize::new(0),
        }
    }

    /// A repair ends (or its channel goes): what it held no longer counts.
    fn release(&self, repair: &mut Option<Held>) {
        if let Some(held) = repair.take() {
            self.held_total.fetch_sub(held.bytes, Ordering::Relaxed);
        }
    }

    /// Holds a live event for a running repair, within the channel's and the edge's bounds;
    /// beyond them it is dropped (the repair reads it back from history: `highest`
    /// remembers it was there).
    fn hold(&self, held: &mut Held, event: Event, offset: u64) {
        held.highest = held.highest.max(offset);
        let size = weight(&event);
        let total = self.held_total.load(Ordering::Relaxed);
        if held.events.len() >= self.bounds.publications
            || held.bytes + size > self.bounds.held_bytes
            || total + size > self.bounds.total_bytes
            || held.events.contains_key(&offset)
        {
            return;
        }
        held.events.insert(offset, event);
        held.bytes += size;
        self.held_total.fetch_add(size, Ordering::Relaxed);
    }

    fn held(&self, highest: u64) -> Held {
        Held {
            id: self.next_repair.fetch_add(1, Ordering::Relaxed),
            highest,
            ..Held::default()
        }
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, HashMap<String, Stream>> {
        let mut hasher = DefaultHasher::new();
        channel.hash(&mut hasher);
        let index = (hasher.finish() as usize) % self.shards.len();
        // No invariant spans a panic point inside the lock.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides what to do with an event from a lane. `subscribed` says whether the channel
    /// has local subscribers (a channel without any keeps no state).
    pub(crate) fn admit(&self, event: Event, subscribed: impl FnOnce(&str) -> bool) -> Admit {
        let Some(offset) = stream_offset(&event) else {
            return Admit::Deliver(event, Fanning::untracked());
        };
        let mut shard = self.shard(&event.channel);
        let Some(stream) = shard.get_mut(&event.channel) else {
            if !subscribed(&event.channel) {
                return Admit::Deliver(event, Fanning::untracked());
            }
            let stream = positioned(position_of(&event, offset));
            let fanning = stream.fanning();
            shard.insert(event.channel.clone(), stream);
            return Admit::Deliver(event, fanning);
        };
        let Stream::Positioned {
            position,
            repair,
            fanning,
            retired,
        } = stream
        else {
            *stream = positioned(position_of(&event, offset));
            let fanning = stream.fanning();
            return Admit::Deliver(event, fanning);
        };
        if event.epoch != position.epoch {
            if retired.as_ref() == Some(&event.epoch) {
                // Sent before the stream moved on (its subscribers were signalled then).
                return Admit::Hold;
            }
            if let Some(held) = repair {
                // The repair's history read will find the epoch changed.
                held.highest = u64::MAX;
                return Admit::Hold;
            }
            let left = std::mem::replace(position, position_of(&event, offset));
            *retired = Some(left.epoch);
            return Admit::EpochChanged(event, Fanning::of(fanning));
        }
        if offset <= position.offset {
            return Admit::Hold;
        }
        if let Some(held) = repair {
            self.hold(held, event, offset);
            return Admit::Hold;
        }
        if offset == position.offset.saturating_add(1) {
            position.offset = offset;
            return Admit::Deliver(event, Fanning::of(fanning));
        }
        let mut held = self.held(0);
        let channel = event.channel.clone();
        self.hold(&mut held, event, offset);
        let id = held.id;
        *repair = Some(held);
        Admit::Repair(channel, id)
    }

    /// The core reported the channel's top: from an interest acknowledgement (`None`: the
    /// channel keeps no history) or a position check. A channel without local subscribers
    /// (per `subscribed`) gets no state.
    pub(crate) fn top(
        &self,
        channel: &str,
        top: Option<StreamPosition>,
        subscribed: impl FnOnce(&str) -> bool,
    ) -> TopCheck {
        let mut shard = self.shard(channel);
        if !shard.contains_key(channel) {
            if subscribed(channel) {
                let stream = top.map_or(Stream::NoHistory, positioned);
                shard.insert(channel.to_owned(), stream);
            }
            return TopCheck::Current;
        }
        let Some(top) = top else {
            return TopCheck::Current;
        };
        let Some(stream) = shard.get_mut(channel) else {
            return TopCheck::Current;
        };
        let Stream::Positioned {
            position,
            repair,
            retired,
            ..
        } = stream
        else {
            *stream = positioned(top);
            return TopCheck::Current;
        };
        if top.epoch != position.epoch {
            if retired.as_ref() == Some(&top.epoch) {
                // Read before the stream moved on: stale.
                return TopCheck::Current;
            }
            self.release(repair);
            let left = std::mem::replace(position, top);
            *retired = Some(left.epoch);
            return TopCheck::Lost;
        }
        match repair {
            Some(held) => {
                held.highest = held.highest.max(top.offset);
                TopCheck::Current
            }
            None if top.offset > position.offset => {
                let held = self.held(top.offset);
                let id = held.id;
                *repair = Some(held);
                TopCheck::Repair(id)
            }
            None => TopCheck::Current,
        }
    }

    /// Where repair `id` reads history from: the position fanned out last. `None` when the
    /// channel is gone or that repair is no longer the channel's.
    pub(crate) fn repair_since(&self, channel: &str, id: RepairId) -> Option<StreamPosition> {
        match self.shard(channel).get(channel) {
            Some(Stream::Positioned {
                position,
                repair: Some(held),
                ..
            }) if held.id == id => Some(position.clone()),
            _ => None,
        }
    }

    /// A history read since `since` answered: the publications continuing the stream (the
    /// position moves past them), or why the gap cannot be repaired (with the top the read
    /// reported).
    pub(crate) fn repaired(
        &self,
        channel: &str,
        id: RepairId,
        since: &StreamPosition,
        read: client::HistoryResult,
    ) -> Repaired {
        let top = StreamPosition {
            offset: read.offset,
            epoch: read.epoch.clone(),
        };
        let lost = |why| Repaired::Lost(why, Some(top.clone()));
        if read.epoch != since.epoch {
            return lost(Unrepairable::EpochChanged);
        }
        let missing = read.offset.saturating_sub(since.offset);
        if missing > self.bounds.publications as u64 {
            return lost(Unrepairable::TooFarBehind);
        }
        let mut expected = since.offset.saturating_add(1);
        let mut events = Vec::with_capacity(read.publications.len());
        for publication in read.publications {
            if publication.offset < expected {
                continue;
            }
            if publication.offset > expected {
                return lost(Unrepairable::Trimmed);
            }
            expected = expected.saturating_add(1);
            events.push(event_of(channel, &read.epoch, publication));
        }
        if expected <= read.offset {
            // The read stopped short of the top it reported.
            return lost(Unrepairable::Trimmed);
        }
        let mut shard = self.shard(channel);
        match shard.get_mut(channel) {
            Some(Stream::Positioned {
                position,
                repair: Some(held),
                ..
            }) if held.id == id && position == since => {
                position.offset = expected - 1;
                Repaired::Deliver(events)
            }
            // Forgotten (no subscribers left) or reset meanwhile: nothing to deliver.
            _ => Repaired::Deliver(Vec::new()),
        }
    }

    /// After a step of a repair was fanned out: the held events that continue the stream, a
    /// gap still open, or done (the channel goes live again: only then may a lane deliver).
    pub(crate) fn drain(&self, channel: &str, id: RepairId) -> Drain {
        let mut shard = self.shard(channel);
        let Some(Stream::Positioned {
            position, repair, ..
        }) = shard.get_mut(channel)
        else {
            return Drain::Done;
        };
        let Some(held) = repair.as_mut().filter(|held| held.id == id) else {
            return Drain::Done;
        };
        let mut out = Vec::new();
        let mut freed = 0;
        while let Some(entry) = held.events.first_entry() {
            let offset = *entry.key();
            if offset > position.offset.saturating_add(1) {
                break;
            }
            let event = entry.remove();
            freed += weight(&event);
            if offset <= position.offset {
                continue;
            }
            position.offset = offset;
            out.push(without_time(event));
        }
        held.bytes = held.bytes.saturating_sub(freed);
        self.held_total.fetch_sub(freed, Ordering::Relaxed);
        if !out.is_empty() {
            return Drain::Deliver(out);
        }
        if held.events.is_empty() && held.highest <= position.offset {
            self.release(repair);
            return Drain::Done;
        }
        Drain::Gap
    }

    /// The repair could not reach the core (the link is gone): held events are dropped and
    /// the position kept, so the next link's acknowledgement repairs from it.
    pub(crate) fn abandon(&self, channel: &str, id: RepairId) {
        if let Some(Stream::Positioned { repair, .. }) = self.shard(channel).get_mut(channel)
            && repair.as_ref().is_some_and(|held| held.id == id)
        {
            self.release(repair);
        }
    }

    /// Repair `id` failed and the channel's subscribers are being signalled: the stream goes
    /// on from the newest top known — the failed read's `top`, else the highest offset seen
    /// live — which no later subscriber can be behind (each reads its own top after this).
    /// Returns whether `id` was still the channel's repair (else nothing changes).
    pub(crate) fn give_up(&self, channel: &str, id: RepairId, top: Option<StreamPosition>) -> bool {
        let mut shard = self.shard(channel);
        let Some(Stream::Positioned {
            position,
            repair,
            retired,
            ..
        }) = shard.get_mut(channel)
        else {
            return false;
        };
        let Some(held) = repair.as_ref().filter(|held| held.id == id) else {
            return false;
        };
        match top {
            Some(top) if top.epoch != position.epoch => {
                let left = std::mem::replace(position, top);
                *retired = Some(left.epoch);
            }
            Some(top) => *position = top,
            // `u64::MAX`: another epoch was seen live; the next event sets it.
            None if held.highest == u64::MAX => {}
            None => position.offset = position.offset.max(held.highest),
        }
        self.release(repair);
        true
    }

    /// Resolves once no lane delivery admitted before now is still being fanned out in
    /// `channel` (a repair's first fan-out waits for it: [`Fanning`]). Lane deliveries stop
    /// being admitted while a repair runs, so this takes at most one fan-out.
    pub(crate) async fn settled(&self, channel: &str) {
        let fanning = match self.shard(channel).get(channel) {
            Some(Stream::Positioned { fanning, .. }) => Arc::clone(fanning),
            _ => return,
        };
        while fanning.load(Ordering::Acquire) > 0 {
            tokio::task::yield_now().await;
        }
    }

    /// Whether repair `id` is still the channel's.
    pub(crate) fn is_current(&self, channel: &str, id: RepairId) -> bool {
        matches!(
            self.shard(channel).get(channel),
            Some(Stream::Positioned { repair: Some(held), .. }) if held.id == id
        )
    }

    /// The channel has no local subscribers any more.
    pub(crate) fn forget(&self, channel: &str) {
        if let Some(Stream::Positioned { mut repair, .. }) = self.shard(channel).remove(channel) {
            self.release(&mut repair);
        }
    }

    /// Forgets every channel without local subscribers (per `subscribed`).
    pub(crate) fn forget_unsubscribed(&self, subscribed: impl Fn(&str) -> bool) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|channel, stream| {
                let keep = subscribed(channel);
                if !keep && let Stream::Positioned { repair, .. } = stream {
                    self.release(repair);
                }
                keep
            });
        }
    }

    /// The link is lost: channels without history cannot be repaired, and are returned (their
    /// subscribers must be signalled) and forgotten; running repairs are abandoned.
    pub(crate) fn link_lost(&self) -> Vec<String> {
        let mut unrepairable = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.retain(|channel, stream| match stream {
                Stream::NoHistory => {
                    unrepairable.push(channel.clone());
                    false
                }
                Stream::Positioned { repair, .. } => {
                    self.release(repair);
                    true
                }
            });
        }
        unrepairable
    }

    /// Positioned channels not being repaired, for the periodic check; channels without local
    /// subscribers (per `subscribed`) are forgotten on the way.
    pub(crate) fn idle(&self, subscribed: impl Fn(&str) -> bool) -> Vec<(String, StreamPosition)> {
        self.forget_unsubscribed(subscribed);
        let mut idle = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (channel, stream) in shard.iter() {
                if let Stream::Positioned {
                    position,
                    repair: None,
                    ..
                } = stream
                {
                    idle.push((channel.clone(), position.clone()));
                }
            }
        }
        idle
    }

    /// Bytes held by all repairs now.
    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.held_total.load(Ordering::Relaxed)
    }

    /// Channels with state.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

fn positioned(position: StreamPosition) -> Stream {
    Stream::Positioned {
        position,
        repair: None,
        fanning: Arc::default(),
        retired: None,
    }
}

impl Stream {
    /// A lane delivery of this (positioned) stream begins.
    fn fanning(&self) -> Fanning {
        match self {
            Stream::Positioned { fanning, .. } => Fanning::of(fanning),
            Stream::NoHistory => Fanning::untracked(),
        }
    }
}

/// The offset of a publication that is part of a stream (`None`: a join, a leave, or a
/// publication without history or with `skip_history`).
fn stream_offset(event: &mesh::ChannelEvent) -> Option<u64> {
    match &event.kind {
        Some(mesh::channel_event::Kind::Publication(p))
            if p.offset > 0 && !event.epoch.is_empty() =>
        {
            Some(p.offset)
        }
        _ => None,
    }
}

fn position_of(event: &mesh::ChannelEvent, offset: u64) -> StreamPosition {
    StreamPosition {
        offset,
        epoch: event.epoch.clone(),
    }
}

/// Bytes an event holds, roughly.
fn weight(event: &mesh::ChannelEvent) -> usize {
    let data = match &event.kind {
        Some(mesh::channel_event::Kind::Publication(p)) => p.data.len(),
        _ => 0,
    };
    data + event.prev_data.len() + 64
}

/// A held live event as it goes out after a repair: without its publish time, which would
/// make it late by now (and cost positioned subscribers their position).
fn without_time(event: Event) -> Event {
    let mut event = SharedEvent::into_event(event);
    if let Some(mesh::channel_event::Kind::Publication(p)) = &mut event.kind {
        p.time = 0;
    }
    SharedEvent::new(event)
}

/// A publication read from history as a lane would have carried it, without previous data
/// (delta subscribers get it in full) and without publish time (it is late by nature, and
/// that must not cost anyone their position).
fn event_of(channel: &str, epoch: &str, mut publication: client::Publication) -> Event {
    publication.time = 0;
    publication.prev_data = Default::default();
    SharedEvent::new(mesh::ChannelEvent {
        channel: channel.to_owned(),
        kind: Some(mesh::channel_event::Kind::Publication(publication)),
        epoch: epoch.to_owned(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
