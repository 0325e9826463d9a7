//! Applying what the core sends: events (one task per lane) are fanned out, control commands handed to the
//! connections they concern, surveys answered from the local hub, emulation frames handed to
//! their session.
//!
//! Nothing here waits on the link or on a connection: fan-out queues bytes, control commands go
//! through bounded mailboxes with `try_send`, survey answers through a oneshot (an emulation
//! frame's from a task of its own, after the frame's mailbox took it). So the core can
//! never deadlock against an edge that is itself waiting for room on the link.

use crate::Shared;
use crate::local_hub::saturate;
use spindle_mesh::{Down, EdgeInbox, Lane, mesh};
use std::sync::Arc;

/// Applies the control stream until the link closes.
pub(crate) async fn run(shared: &Arc<Shared>, mut inbox: EdgeInbox) {
    while let Some(message) = inbox.recv().await {
        apply(shared, message);
    }
    tracing::info!("edge inbox closed: the link to the core is gone");
}

/// Fans out one event lane until the link closes, through the stream table (duplicates
/// dropped, gaps repaired: `crate::repair`). Each lane is drained by its own task, so a busy
/// channel delays only the channels sharing its lane.
pub(crate) async fn drain_lane(shared: Arc<Shared>, mut lane: Lane) {
    let mut batch = Vec::with_capacity(CORK_EVENTS);
    while let Some(first) = lane.recv().await {
        // The tasks ready now (API requests, other lanes) run first: what they publish joins
        // this pass. Alone, an event is written to each connection at once; with others
        // waiting, the pass is corked (`crate::writer::cork`): each connection is written
        // once, for all of them. The pass holds no `.await`.
        tokio::task::yield_now().await;
        let _pass = crate::writer::cork::pass(DIRECT_WRITES_PER_PASS);
        batch.push(first);
        while batch.len() < CORK_EVENTS {
            let Some(event) = lane.try_recv() else { break };
            batch.push(event);
        }
        if batch.len() == 1 {
            for event in batch.drain(..) {
                crate::repair::admit(&shared, event);
            }
            continue;
        }
        let cork = crate::writer::cork::begin();
        for event in batch.drain(..) {
            crate::repair::admit(&shared, event);
        }
        cork.flush();
    }
}

/// Most events handled in one corked pass (bounds the bytes queued before a flush).
const CORK_EVENTS: usize = 64;

/// Direct writes in one pass; past them, connections are written by their writer tasks
/// (`crate::writer::cork::pass`). A small fan-out goes direct; 10,000 subscribers do not
/// hold the thread for 10,000 writes (docs/benchmarks.md, "Side by side").
const DIRECT_WRITES_PER_PASS: usize = 1_024;

pub(crate) fn apply(shared: &Arc<Shared>, message: Down) {
    match message {
        Down::InterestAck(ack) => {
            let acked = shared.interest.acknowledged(ack);
            for (channel, top) in acked.ready {
                crate::repair::top(shared, &channel, top);
            }
            // Subscribers already live there would wait for publications that never come:
            // told (2500 / 3010), their SDKs subscribe again, and the core is asked again.
            for channel in acked.failed {
                crate::repair::lose_subscribers(
                    shared,
                    &channel,
                    crate::streams::Unrepairable::NotDelivered,
                );
            }
        }
        Down::Control(control) => {
            for target in shared.hub.control_targets(&control) {
                target.deliver(control.clone());
            }
        }
        Down::Survey(pending) => {
            if let Some(mesh::survey::Kind::Emulation(request)) = &pending.question.kind {
                // Answered once the connection's mailbox took the frame, from a task: the
                // mailbox may be full for a while. An unknown session is answered at once.
                let reply = mesh::SurveyReply {
                    id: pending.question.id,
                    ..Default::default()
                };
                match shared.emulation_target(&request.session) {
                    Some(handle) => {
                        let data = request.data.clone();
                        tokio::spawn(async move {
                            handle.emulate(data).await;
                            pending.responder.answer(reply);
                        });
                    }
                    None => pending.responder.answer(reply),
                }
                return;
            }
            let reply = answer(shared, &pending.question);
            pending.responder.answer(reply);
        }
    }
}

fn answer(shared: &Shared, survey: &mesh::Survey) -> mesh::SurveyReply {
    let mut reply = mesh::SurveyReply {
        id: survey.id,
        ..Default::default()
    };
    match &survey.kind {
        Some(mesh::survey::Kind::Channels(question)) => {
            reply.channels = shared.hub.channel_counts(&question.pattern);
        }
        Some(mesh::survey::Kind::Node(_)) => {
            let counts = shared.hub.counts();
            reply.node = Some(mesh::NodeStats {
                node_id: shared.node.uid.clone(),
                name: shared.node.name.clone(),
                num_clients: saturate(counts.clients),
                num_users: saturate(counts.users),
                num_channels: saturate(counts.channels),
                num_subs: saturate(counts.subscriptions),
                uptime_seconds: u32::try_from(shared.started.elapsed().as_secs())
                    .unwrap_or(u32::MAX),
            });
        }
        // Answered in `apply`.
        Some(mesh::survey::Kind::Emulation(_)) | None => {}
    }
    reply
}
