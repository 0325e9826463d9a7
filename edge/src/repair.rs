//! Gap repair, as the edge runs it (the decisions are `crate::streams`'): lane events go
//! through the stream table on their way to fan-out, a gap or a core ahead of the edge starts
//! one repair task for the channel, and what cannot be repaired is signalled to the channel's
//! subscribers (unsubscribe 2500, or disconnect 3010 for server-side ones).
//!
//! A repair reads history since the channel's position (at most `mesh.repair.max_publications`
//! per read), fans out what it read, then the live events held meanwhile, and reads again
//! while a gap remains — all within `mesh.repair.timeout`, at most `mesh.repair.concurrency`
//! at once. A link lost mid-repair leaves the position as it is: the next link's
//! acknowledgement repairs from there.

use crate::Shared;
use crate::streams::{Admit, Drain, RepairId, Repaired, TopCheck, Unrepairable};
use spindle_hub::history::StreamPosition;
use spindle_mesh::mesh::{self, request, response};
use spindle_mesh::{Event, RequestError, SharedEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// Core error code of a history read whose `since` epoch is not the stream's (docs/protocol.md
/// §8.1, "unrecoverable position").
const UNRECOVERABLE_POSITION: u32 = 112;

/// One event from a lane: fanned out, held for a repair, dropped as a duplicate, or the start
/// of a repair.
pub(crate) fn admit(shared: &Arc<Shared>, event: Event) {
    let admitted = shared
        .streams
        .admit(event, |channel| shared.hub.has_subscribers(channel));
    match admitted {
        Admit::Deliver(event, fanning) => {
            deliver(shared, event);
            drop(fanning);
        }
        Admit::Hold => {}
        Admit::Repair(channel, id) => start(shared, channel, id),
        Admit::EpochChanged(event, fanning) => {
            lose_subscribers(shared, &event.channel, Unrepairable::EpochChanged);
            deliver(shared, event);
            drop(fanning);
        }
    }
}

/// The core reported the channel's top (an acknowledgement, `None` without history, or a
/// position check): a repair starts if the core is ahead.
pub(crate) fn top(shared: &Arc<Shared>, channel: &str, top: Option<StreamPosition>) {
    let subscribed = |channel: &str| shared.hub.has_subscribers(channel);
    match shared.streams.top(channel, top, subscribed) {
        TopCheck::Current => {}
        TopCheck::Repair(id) => start(shared, channel.to_owned(), id),
        TopCheck::Lost => lose_subscribers(shared, channel, Unrepairable::EpochChanged),
    }
}

/// The link is lost: the subscribers of channels without history are signalled now (nothing
/// can repair them); the others wait for the next link's acknowledgement.
pub(crate) fn link_lost(shared: &Arc<Shared>) {
    // The next core knows nothing of this edge's shared-poll keys; their channels keep no
    // history, so their subscribers are signalled below with the others.
    shared.shared_poll.link_lost();
    for channel in shared.streams.link_lost() {
        lose_subscribers(shared, &channel, Unrepairable::NoHistory);
    }
}

/// Every `client.channel_position_check_delay`, each idle positioned channel is compared
/// with its top at the core, which catches a lost last publication. Returns when the link is
/// gone.
pub(crate) async fn check_idle(shared: Arc<Shared>) {
    let every = shared.limits.position_check_delay;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let idle = shared
            .streams
            .idle(|channel| shared.hub.has_subscribers(channel));
        for (channel, _) in idle {
            let read = read_history(&shared, &channel, None, 0, crate::deadline::CORE).await;
            match read {
                Ok(Ok(history)) => {
                    let position = StreamPosition {
                        offset: history.offset,
                        epoch: history.epoch,
                    };
                    top(&shared, &channel, Some(position));
                }
                Err(RequestError::Closed) => return,
                // Not answerable now: checked again next time.
                Ok(Err(_)) | Err(RequestError::Timeout(_)) => {}
            }
        }
    }
}

fn start(shared: &Arc<Shared>, channel: String, id: RepairId) {
    tokio::spawn(run(Arc::clone(shared), channel, id));
}

/// Runs repair `id` of `channel` to its end: repaired, signalled, or abandoned with the link.
///
/// The wait for one of the `mesh.repair.concurrency` slots is not part of the deadline: it is
/// bounded by the repairs ahead (each within its own deadline), and history still holds what
/// a waiting channel misses — counting it would signal channels a little later in the queue
/// that could be repaired.
async fn run(shared: Arc<Shared>, channel: String, id: RepairId) {
    let seen = Instant::now();
    let bounds = shared.limits.repair;
    shared
        .repair_counters
        .started
        .fetch_add(1, Ordering::Relaxed);
    let Ok(_slot) = shared.repair_slots.acquire().await else {
        // Never closed; if it were, nothing could repair.
        lose(&shared, &channel, id, Unrepairable::Deadline, None);
        return;
    };
    let deadline = Instant::now() + bounds.timeout;
    loop {
        let Some(since) = shared.streams.repair_since(&channel, id) else {
            return;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = bounds.max_publications;
        let read = read_history(&shared, &channel, Some(&since), limit, left).await;
        let step = match read {
            Ok(Ok(history)) => shared.streams.repaired(&channel, id, &since, history),
            Ok(Err(error)) if error.code == UNRECOVERABLE_POSITION => {
                Repaired::Lost(Unrepairable::EpochChanged, None)
            }
            Ok(Err(_)) => Repaired::Lost(Unrepairable::Refused, None),
            Err(RequestError::Timeout(_)) => Repaired::Lost(Unrepairable::Deadline, None),
            Err(RequestError::Closed) => {
                shared.streams.abandon(&channel, id);
                return;
            }
        };
        let events = match step {
            Repaired::Deliver(events) => events,
            Repaired::Lost(why, top) => {
                lose(&shared, &channel, id, why, top);
                return;
            }
        };
        shared
            .repair_counters
            .publications
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        // A lane may still be fanning out the publication just before these.
        shared.streams.settled(&channel).await;
        events.into_iter().for_each(|event| deliver(&shared, event));
        loop {
            match shared.streams.drain(&channel, id) {
                Drain::Done => {
                    let took = seen.elapsed();
                    shared.repair_counters.completed(took);
                    tracing::debug!(channel, ?took, "channel repaired");
                    return;
                }
                Drain::Deliver(events) => events.into_iter().for_each(|e| deliver(&shared, e)),
                Drain::Gap => break,
            }
        }
        if Instant::now() >= deadline {
            lose(&shared, &channel, id, Unrepairable::Deadline, None);
            return;
        }
    }
}

/// A repair failed: the channel's subscribers are signalled, and its stream goes on from the
/// newest top known (`top`, from the failed read, if any: [`Streams::give_up`]).
///
/// [`Streams::give_up`]: crate::streams::Streams::give_up
fn lose(
    shared: &Arc<Shared>,
    channel: &str,
    id: RepairId,
    why: Unrepairable,
    top: Option<StreamPosition>,
) {
    if !shared.streams.is_current(channel, id) {
        // Replaced or forgotten meanwhile: not this task's to signal.
        return;
    }
    lose_subscribers(shared, channel, why);
    shared.streams.give_up(channel, id, top);
}

/// Signals every subscriber of `channel` that its stream has a gap nothing can repair.
pub(crate) fn lose_subscribers(shared: &Shared, channel: &str, why: Unrepairable) {
    let signalled = shared.hub.lose_channel(channel);
    shared
        .repair_counters
        .signalled
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(channel, %why, signalled, "gap not repairable: subscribers signalled");
}

/// One history read at the core: `Ok(Err(..))` is the core's refusal.
async fn read_history(
    shared: &Shared,
    channel: &str,
    since: Option<&StreamPosition>,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Result<spindle_proto::client::HistoryResult, spindle_proto::client::Error>, RequestError>
{
    let request = mesh::HistoryRequest {
        channel: channel.to_owned(),
        limit: i32::try_from(limit).unwrap_or(i32::MAX),
        since: since.cloned().map(Into::into),
        reverse: false,
    };
    let response = shared
        .link()
        .request(Some(request::Kind::History(request)), deadline)
        .await?;
    Ok(match (response.error, response.kind) {
        (Some(error), _) => Err(error),
        (None, Some(response::Kind::History(history))) => Ok(history),
        (None, _) => Err(spindle_proto::client::Error {
            code: 100,
            message: "unexpected answer to a history read".into(),
            temporary: true,
        }),
    })
}

/// Fans one event out to the channel's local subscribers.
fn deliver(shared: &Shared, event: Event) {
    // Usually the only holder by now (the core let go once it was queued); a copy of the
    // event otherwise (its payloads are shared bytes).
    let event = SharedEvent::into_event(event);
    let (event, needs_sync) = shared.shared_poll.fan_out(&shared.hub, event);
    if let Some(event) = event {
        shared.hub.broadcast(event);
    } else if let Some(channel) = needs_sync {
        // Keys the core sends that nobody here tracks (a late track applied after its
        // untrack): told to stop.
        let keys = Arc::clone(&shared.shared_poll);
        let link = shared.link();
        tokio::spawn(async move {
            let _ = keys.sync(&link, &channel).await;
        });
    }
}

/// Bounds of one repair, from `mesh.repair`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RepairLimits {
    /// Most publications one history read fetches (and one repair may be behind).
    pub max_publications: usize,
    /// Deadline of one repair, from the gap to its end.
    pub timeout: std::time::Duration,
}

/// What repairs did, for stats and metrics.
#[derive(Debug, Default)]
pub(crate) struct RepairCounters {
    /// Repairs started.
    pub started: std::sync::atomic::AtomicU64,
    /// Publications fanned out from history by repairs.
    pub publications: std::sync::atomic::AtomicU64,
    /// Channels whose subscribers were signalled (a gap nothing could repair).
    pub signalled: std::sync::atomic::AtomicU64,
    /// Repairs that ended with the channel live again, and their total and longest time
    /// (microseconds, from the gap seen to the last publication fanned out).
    pub repaired: std::sync::atomic::AtomicU64,
    pub repair_micros: std::sync::atomic::AtomicU64,
    pub longest_micros: std::sync::atomic::AtomicU64,
}

impl RepairCounters {
    fn completed(&self, took: std::time::Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.repaired.fetch_add(1, Ordering::Relaxed);
        self.repair_micros.fetch_add(micros, Ordering::Relaxed);
        self.longest_micros.fetch_max(micros, Ordering::Relaxed);
    }
}
