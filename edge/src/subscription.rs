//! One local subscription as fan-out sees it: where the client is in the channel's stream, what
//! it holds for delta decoding, its tags filter, and whether publications go out yet.
//!
//! A subscription starts **buffering**: it is in the local hub (so nothing published from that
//! moment is missed) but publications are kept, not sent, while its connection asks the core for
//! the stream top or for the history to recover (docs/protocol.md §4.2, §4.3). The connection writes
//! the subscribe reply, then calls [`LocalSub::go_live`], which sends what was buffered after the
//! reply's position and switches to sending directly. The buffer is bounded (count and bytes);
//! overflowing it loses the subscription's position, as does a gap or an epoch change seen live.
//! A lost subscription sends nothing more and tells its connection (unsubscribe 2500, or
//! disconnect 3010 for a server-side one): never a silent gap (DESIGN §6).
//!
//! Fan-out never waits here: a subscription's lock is held only to decide and to queue bytes
//! (which never waits either), so a buffering or slow subscriber never stalls a channel.
//!
//! Encoding (DESIGN §5): [`Variants`] holds the forms one publication can take — plain, and for
//! delta-negotiated subscribers "full as a JSON string" and "fossil delta against the previous
//! publication" — each encoded at most once per format per event. Only a subscriber whose
//! delta base is not the event's previous publication (its tags filter skipped one) costs an
//! encode of its own.

use crate::handle::ConnectionHandle;
use crate::shared_poll::Tracks;
use bytes::Bytes;
use spindle_hub::codes::Disconnect;
use spindle_hub::session::tags_match;
use spindle_proto::{EncodeError, client};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// A publication event shared by every subscriber of its channel.
#[derive(Debug)]
pub struct PubEvent {
    pub channel: String,
    /// As clients receive it (broker-internal fields cleared).
    pub publication: client::Publication,
    /// The stream epoch the publication belongs to (empty for channels without history).
    pub epoch: String,
    /// The previous publication's data when the publisher asked for delta (empty otherwise).
    pub prev_data: Bytes,
    /// It reached this edge later than `client.channel_position_max_time_lag` after it was
    /// published: positioned subscribers lose their position (the stream moved on meanwhile
    /// as far as they can tell), others still get it.
    pub late: bool,
}

impl PubEvent {
    pub fn new(
        channel: String,
        mut publication: client::Publication,
        epoch: String,
        prev_data: Bytes,
    ) -> PubEvent {
        publication.prev_data = Bytes::new();
        publication.time = 0;
        PubEvent {
            channel,
            publication,
            epoch,
            prev_data,
            late: false,
        }
    }

    fn offset(&self) -> u64 {
        self.publication.offset
    }

    /// Bytes it holds while buffered, roughly.
    fn weight(&self) -> usize {
        self.publication.data.len() + self.prev_data.len() + 64
    }
}

/// How a subscription behaves in fan-out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubFlags {
    /// Lost position disconnects (3010) instead of unsubscribing (2500).
    pub server_side: bool,
    /// Offsets are tracked: gaps and epoch changes lose the position.
    pub positioned: bool,
    /// Fossil delta negotiated: data as a JSON string on JSON, deltas after the first.
    pub delta: bool,
    /// Join / leave pushes of the channel are delivered.
    pub push_join_leave: bool,
    /// The connection is in the channel's presence (refreshed periodically).
    pub presence: bool,
    /// A map subscription: deltas are per key, against the key's previous value the core sends
    /// with the change (the subscriber holds every key's value once live).
    pub keyed: bool,
    /// A shared-poll subscription: it gets the changes of the keys it tracks
    /// (`crate::shared_poll`), never the channel's plain fan-out.
    pub shared_poll: bool,
}

/// Bounds of the buffer a subscription keeps while it is being positioned or recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferLimits {
    pub publications: usize,
    pub bytes: usize,
}

/// The subscription's position is lost (a gap, another epoch, or its buffer overflowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionLost;

/// One local subscription (see the module doc).
#[derive(Debug)]
pub struct LocalSub {
    pub channel: String,
    pub connection: ConnectionHandle,
    pub flags: SubFlags,
    filter: Option<client::FilterNode>,
    limits: BufferLimits,
    state: Mutex<Track>,
    /// Set when the core feeds map presence channels from this subscription: the periodic
    /// refresh then carries the connection's info (map_users entries are keyed by user).
    presence_info: OnceLock<Box<client::ClientInfo>>,
    /// The keys a shared-poll subscription tracks (`None` for the other kinds).
    tracks: Option<Box<Mutex<Tracks>>>,
}

#[derive(Debug)]
struct Track {
    phase: Phase,
    /// Last offset the client has (or skipped by its filter); 0 = none yet.
    offset: u64,
    epoch: String,
    /// The full data the client decoded last, and its offset: the base of the next delta.
    base: Option<(u64, Bytes)>,
}

#[derive(Debug)]
enum Phase {
    Buffering(Vec<Arc<PubEvent>>, usize),
    Live,
    Lost,
    Closed,
}

/// What happened to a publication offered to a subscription.
enum Decision {
    Skip,
    Lost,
    Send(Form),
}

/// Which form of a publication a subscriber gets.
enum Form {
    Plain,
    /// Delta negotiated, full data (a JSON string on JSON).
    Full,
    /// Delta negotiated, the shared delta against the event's previous data.
    SharedDelta,
    /// Delta negotiated, a delta against this subscriber's own base.
    OwnDelta(Bytes),
}

impl LocalSub {
    pub fn new(
        channel: String,
        connection: ConnectionHandle,
        flags: SubFlags,
        filter: Option<client::FilterNode>,
        limits: BufferLimits,
    ) -> Arc<LocalSub> {
        Arc::new(LocalSub {
            channel,
            connection,
            flags,
            filter,
            limits,
            state: Mutex::new(Track {
                phase: Phase::Buffering(Vec::new(), 0),
                offset: 0,
                epoch: String::new(),
                base: None,
            }),
            presence_info: OnceLock::new(),
            tracks: flags
                .shared_poll
                .then(|| Box::new(Mutex::new(Tracks::default()))),
        })
    }

    /// The keys a shared-poll subscription tracks.
    pub(crate) fn tracks(&self) -> Option<&Mutex<Tracks>> {
        self.tracks.as_deref()
    }

    /// Makes the periodic presence refresh carry `info` (see `presence_info`); the first call
    /// wins.
    pub fn set_presence_info(&self, info: client::ClientInfo) {
        let _ = self.presence_info.set(Box::new(info));
    }

    /// The info the presence refresh carries, when map presence is fed from this subscription.
    pub fn presence_info(&self) -> Option<&client::ClientInfo> {
        self.presence_info.get().map(|info| &**info)
    }

    fn lock(&self) -> MutexGuard<'_, Track> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A publication from fan-out: buffered, sent, skipped, or the position is lost (then the
    /// connection is told).
    pub fn offer(self: &Arc<Self>, event: &Arc<PubEvent>, variants: &mut Variants<'_>) {
        if self.flags.shared_poll {
            return;
        }
        let mut track = self.lock();
        match &mut track.phase {
            Phase::Live => {}
            Phase::Buffering(events, bytes) => {
                *bytes += event.weight();
                events.push(Arc::clone(event));
                if events.len() > self.limits.publications || *bytes > self.limits.bytes {
                    track.phase = Phase::Lost;
                    drop(track);
                    self.connection.position_lost(Arc::clone(self));
                }
                return;
            }
            Phase::Lost | Phase::Closed => return,
        }
        if self.deliver(&mut track, event, variants).is_err() {
            drop(track);
            self.connection.position_lost(Arc::clone(self));
        }
    }

    /// Whether publications go to this subscription now (live: not buffering, lost or closed).
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.lock().phase, Phase::Live)
    }

    /// Whether a join / leave push goes to this subscription now.
    pub fn accepts_join_leave(&self) -> bool {
        self.flags.push_join_leave && matches!(self.lock().phase, Phase::Live)
    }

    /// Whether the connection is in the channel's presence (or feeds its map presence) and the
    /// subscription is live.
    pub fn in_presence(&self) -> bool {
        (self.flags.presence || self.presence_info.get().is_some())
            && matches!(self.lock().phase, Phase::Live)
    }

    /// The publications buffered so far (the subscription keeps buffering). `Err` when the
    /// position was lost meanwhile.
    pub fn take_buffered(&self) -> Result<Vec<Arc<PubEvent>>, PositionLost> {
        match &mut self.lock().phase {
            Phase::Buffering(events, bytes) => {
                *bytes = 0;
                Ok(std::mem::take(events))
            }
            _ => Err(PositionLost),
        }
    }

    /// Sets the position the client has (from the reply: the stream top or the last recovered
    /// publication).
    pub fn set_position(&self, offset: u64, epoch: &str) {
        let mut track = self.lock();
        track.offset = offset;
        epoch.clone_into(&mut track.epoch);
    }

    /// Sets the data the client decoded last (the last recovered publication), the base of the
    /// next delta.
    pub fn set_delta_base(&self, offset: u64, data: Bytes) {
        self.lock().base = Some((offset, data));
    }

    /// The tracked position, `None` until live.
    pub fn position(&self) -> Option<(u64, String)> {
        let track = self.lock();
        matches!(track.phase, Phase::Live).then(|| (track.offset, track.epoch.clone()))
    }

    /// Sends what was buffered after the position set, then goes live. `Err` when the position
    /// is lost (a gap in the buffer, another epoch, or an overflow meanwhile): nothing more is
    /// sent, and the caller unsubscribes (2500) or disconnects (3010).
    pub fn go_live(&self) -> Result<(), PositionLost> {
        let mut track = self.lock();
        let events = match std::mem::replace(&mut track.phase, Phase::Live) {
            Phase::Buffering(events, _) => events,
            Phase::Live => return Ok(()),
            other @ (Phase::Lost | Phase::Closed) => {
                track.phase = other;
                return Err(PositionLost);
            }
        };
        for event in &events {
            let mut variants = Variants::new(event);
            if self.deliver(&mut track, event, &mut variants).is_err() {
                return Err(PositionLost);
            }
        }
        Ok(())
    }

    /// The position is lost (found while merging a recovery): nothing more is sent, and
    /// [`LocalSub::go_live`] fails.
    pub fn mark_lost(&self) {
        let mut track = self.lock();
        if !matches!(track.phase, Phase::Closed) {
            track.phase = Phase::Lost;
        }
    }

    pub fn filter(&self) -> Option<&client::FilterNode> {
        self.filter.as_ref()
    }

    pub fn has_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// The channel's stream has a gap nothing could repair (`crate::repair`): nothing more is
    /// sent, and the connection is told (unsubscribe 2500, or disconnect 3010). Returns
    /// whether it was live or still being set up (not already lost or closed).
    pub fn lose(self: &Arc<Self>) -> bool {
        let mut track = self.lock();
        if matches!(track.phase, Phase::Lost | Phase::Closed) {
            return false;
        }
        track.phase = Phase::Lost;
        drop(track);
        self.connection.position_lost(Arc::clone(self));
        true
    }

    /// No more deliveries (unsubscribed, or the connection is closing).
    pub fn close(&self) {
        self.lock().phase = Phase::Closed;
    }

    /// Decides and queues one publication for a live subscription.
    fn deliver(
        &self,
        track: &mut Track,
        event: &PubEvent,
        variants: &mut Variants<'_>,
    ) -> Result<(), PositionLost> {
        match self.decide(track, event) {
            Decision::Skip => Ok(()),
            Decision::Lost => {
                track.phase = Phase::Lost;
                Err(PositionLost)
            }
            Decision::Send(form) => {
                let format = self.connection.format();
                let encoded = match form {
                    Form::Plain => variants.plain(format),
                    Form::Full => variants.full(format),
                    Form::SharedDelta => variants.shared_delta(format),
                    Form::OwnDelta(base) => variants.own_delta(&base, format),
                };
                match encoded {
                    Ok(bytes) => {
                        self.connection.push(bytes);
                    }
                    Err(EncodeError::PayloadNotJson) => {
                        self.connection.close(Disconnect::INAPPROPRIATE_PROTOCOL);
                    }
                }
                Ok(())
            }
        }
    }

    fn decide(&self, track: &mut Track, event: &PubEvent) -> Decision {
        let offset = event.offset();
        if self.flags.positioned && offset > 0 {
            if track.epoch.is_empty() {
                track.epoch.clone_from(&event.epoch);
            } else if !event.epoch.is_empty() && event.epoch != track.epoch {
                return Decision::Lost;
            }
            if offset <= track.offset {
                return Decision::Skip;
            }
            if offset > track.offset + 1 {
                return Decision::Lost;
            }
            track.offset = offset;
        }
        // Checked after the duplicate skip: a late copy of what the client already has (in the
        // buffer of a recovery) costs nothing.
        if self.flags.positioned && event.late {
            return Decision::Lost;
        }
        if let Some(filter) = &self.filter
            && !tags_match(filter, &event.publication.tags)
        {
            return Decision::Skip;
        }
        if !self.flags.delta {
            return Decision::Send(Form::Plain);
        }
        if self.flags.keyed {
            // A removal carries no data and is never a delta. Maps without a stream give no
            // delta: a change may be missed between their state and live (there is no stream to
            // catch up from), so the subscriber's base for the key is not known.
            let form = match &event.publication {
                p if p.removed => Form::Plain,
                _ if offset > 0 && !event.prev_data.is_empty() => Form::SharedDelta,
                _ => Form::Full,
            };
            return Decision::Send(form);
        }
        let data = &event.publication.data;
        let form = match track.base.take() {
            Some((base_offset, base)) if !event.prev_data.is_empty() => {
                let follows = if base_offset > 0 && offset > 0 {
                    base_offset + 1 == offset
                } else {
                    base == event.prev_data
                };
                if follows {
                    Form::SharedDelta
                } else {
                    Form::OwnDelta(base)
                }
            }
            _ => Form::Full,
        };
        track.base = Some((offset, data.clone()));
        Decision::Send(form)
    }
}

mod encode;

pub use encode::{Variants, smaller_patch, wire_data};

#[cfg(test)]
mod tests;
