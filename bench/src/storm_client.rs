//! One client of the reconnect storm, as a centrifuge SDK behaves: subscribe (the channel
//! forces recovery, so the reply carries the stream position), keep the last offset and epoch,
//! lose the connection, reconnect and resubscribe with `recover: true` from that position. It
//! records everything it receives (fully decoded: the volume is small) for the final check.

use crate::client::{Subscriber, token};
use anyhow::{Result, bail};
use spindle_proto::Format;
use spindle_proto::client::{Reply, SubscribeRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

/// Where the storm is; every client follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connect and subscribe, then wait.
    Setup,
    /// Drop the connection (no close frame, like a lost network).
    Drop,
    /// Reconnect and recover; the instant the storm started.
    Reconnect(Instant),
    /// Stop listening and report.
    Stop,
}

impl Phase {
    fn rank(self) -> u8 {
        match self {
            Phase::Setup => 0,
            Phase::Drop => 1,
            Phase::Reconnect(_) => 2,
            Phase::Stop => 3,
        }
    }
}

/// What the clients share.
#[derive(Debug, Clone)]
pub struct StormPlan {
    /// Client `k` connects to `ws_urls[k % ws_urls.len()]`.
    pub ws_urls: Arc<[String]>,
    pub hmac_secret: String,
    pub format: Format,
    /// Client `k` subscribes to `channels[k % channels.len()]`.
    pub channels: Arc<[String]>,
    /// Setup connections at a time.
    pub setup_gate: Arc<Semaphore>,
    /// Reconnecting connections at a time (`None`: all at once).
    pub reconnect_gate: Option<Arc<Semaphore>>,
}

/// Progress reports to the coordinator, one per step and client.
#[derive(Debug)]
pub enum Step {
    /// Subscribed to channel `.0` at stream offset `.1` (or failed to).
    Ready(Result<(usize, u64), String>),
    Dropped,
    /// Resubscribed with recovery (or failed to).
    Recovered(Result<(), String>),
}

/// What one client saw.
#[derive(Debug, Clone, Default)]
pub struct ClientOutcome {
    pub channel: usize,
    /// Offset and epoch of the first subscribe reply (the position to recover from).
    pub position: Option<(u64, String)>,
    pub setup_error: Option<String>,
    /// Publication offsets received before the drop (none are published then).
    pub before_drop: Vec<u64>,
    /// How the first connection ended before the drop, if it did.
    pub lost_before_drop: Option<String>,
    pub reconnect_error: Option<String>,
    /// From the storm's start to the WebSocket connected again.
    pub connected_after: Option<Duration>,
    /// From the storm's start to the recovering subscribe reply.
    pub recovered_after: Option<Duration>,
    pub was_recovering: bool,
    pub recovered: bool,
    /// Epoch in the recovering subscribe reply.
    pub epoch_after: String,
    /// Offsets of the publications in the recovering subscribe reply, in order.
    pub recovered_offsets: Vec<u64>,
    /// Publication offsets received after that reply.
    pub live_after: Vec<u64>,
    /// How the second connection ended before the stop, if it did.
    pub lost_after: Option<String>,
}

/// Runs client `k` through every phase; reports each step on `steps`.
pub async fn run(
    k: usize,
    plan: StormPlan,
    mut phase: watch::Receiver<Phase>,
    steps: mpsc::UnboundedSender<Step>,
) -> ClientOutcome {
    let channel_index = k % plan.channels.len();
    let channel = plan.channels[channel_index].clone();
    let mut outcome = ClientOutcome {
        channel: channel_index,
        ..ClientOutcome::default()
    };
    let user = format!("bench-{k}");
    let ws_url = plan.ws_urls[k % plan.ws_urls.len()].clone();
    let first = async {
        let _permit = plan.setup_gate.acquire().await?;
        let token = token(&user, &plan.hmac_secret)?;
        let mut subscriber = Subscriber::connect(&ws_url, plan.format, &token).await?;
        let result = subscriber
            .subscribe(SubscribeRequest {
                channel: channel.clone(),
                ..Default::default()
            })
            .await?;
        if !result.recoverable || result.epoch.is_empty() {
            bail!("{channel} is not recoverable (needs history and force_recovery)");
        }
        Ok((subscriber, result.offset, result.epoch))
    };
    let mut subscriber = match first.await {
        Ok((subscriber, offset, epoch)) => {
            outcome.position = Some((offset, epoch));
            let _ = steps.send(Step::Ready(Ok((channel_index, offset))));
            subscriber
        }
        Err(error) => {
            let error = format!("{error:#}");
            let _ = steps.send(Step::Ready(Err(format!("client {k}: {error}"))));
            outcome.setup_error = Some(error);
            return outcome;
        }
    };
    outcome.lost_before_drop = listen(
        &mut subscriber,
        &channel,
        &mut phase,
        Phase::Drop,
        &mut outcome.before_drop,
    )
    .await;
    drop(subscriber);
    let _ = steps.send(Step::Dropped);

    let reached = phase
        .wait_for(|p| matches!(p, Phase::Reconnect(_) | Phase::Stop))
        .await
        .map(|p| *p);
    let Ok(Phase::Reconnect(storm)) = reached else {
        return outcome;
    };
    let (offset, epoch) = outcome.position.clone().unwrap_or_default();
    let again = async {
        let _permit = match &plan.reconnect_gate {
            Some(gate) => Some(gate.acquire().await?),
            None => None,
        };
        let token = token(&user, &plan.hmac_secret)?;
        let mut subscriber = Subscriber::connect(&ws_url, plan.format, &token).await?;
        let connected = storm.elapsed();
        let result = subscriber
            .subscribe(SubscribeRequest {
                channel: channel.clone(),
                recover: true,
                offset,
                epoch,
                ..Default::default()
            })
            .await?;
        anyhow::Ok((subscriber, connected, storm.elapsed(), result))
    };
    let mut subscriber = match again.await {
        Ok((mut subscriber, connected, recovered, result)) => {
            outcome.connected_after = Some(connected);
            outcome.recovered_after = Some(recovered);
            outcome.was_recovering = result.was_recovering;
            outcome.recovered = result.recovered;
            outcome.epoch_after = result.epoch;
            outcome.recovered_offsets = result.publications.iter().map(|p| p.offset).collect();
            for reply in subscriber.take_early() {
                collect(&reply, &channel, &mut outcome.live_after);
            }
            let _ = steps.send(Step::Recovered(Ok(())));
            subscriber
        }
        Err(error) => {
            let error = format!("{error:#}");
            let _ = steps.send(Step::Recovered(Err(format!("client {k}: {error}"))));
            outcome.reconnect_error = Some(error);
            return outcome;
        }
    };
    outcome.lost_after = listen(
        &mut subscriber,
        &channel,
        &mut phase,
        Phase::Stop,
        &mut outcome.live_after,
    )
    .await;
    outcome
}

/// Reads (answering pings, noting publication offsets of `channel`) until the phase reaches
/// `until`; how the connection ended if it ended first.
async fn listen(
    subscriber: &mut Subscriber,
    channel: &str,
    phase: &mut watch::Receiver<Phase>,
    until: Phase,
    offsets: &mut Vec<u64>,
) -> Option<String> {
    loop {
        if phase.borrow_and_update().rank() >= until.rank() {
            return None;
        }
        tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            replies = subscriber.next_replies() => match replies {
                Ok(Some(replies)) => {
                    for reply in &replies {
                        collect(reply, channel, offsets);
                    }
                }
                Ok(None) => return Some("ended without a close frame".into()),
                Err(error) => return Some(format!("{error:#}")),
            },
        }
    }
}

/// Notes the offset of a publication push on `channel`.
fn collect(reply: &Reply, channel: &str, offsets: &mut Vec<u64>) {
    if let Some(push) = &reply.push
        && push.channel == channel
        && let Some(publication) = &push.r#pub
    {
        offsets.push(publication.offset);
    }
}
