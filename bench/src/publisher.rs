//! Publishing at a fixed rate through `POST /api/publish` (or, for the peers of a side-by-side
//! run, their own way: [`PublishTarget`]).
//!
//! A pacer computes how many publications are due from the elapsed time (so timer jitter does
//! not change the rate) and hands sequence numbers round-robin to a few kept-alive API
//! connections; a slow response on one does not hold back the others. The payload's stamp is
//! taken just before the request is written, so end-to-end latency covers the API call, the
//! fan-out and the delivery, but not time spent queued in the benchmark itself — the achieved
//! publish rate and the API latency show whether that happened.

use crate::client::Shared;
use crate::histogram::{Histogram, Snapshot};
use crate::http::{ApiConnection, ApiEndpoint, ApiOutcome};
use crate::nats::NatsPublisher;
use crate::payload::write_payload;
use anyhow::Result;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where publications go.
#[derive(Debug, Clone)]
pub enum PublishTarget {
    /// Spindle's server API: `POST <prefix>/publish` with `{"channel":…,"data":<payload>}`.
    Api {
        api: ApiEndpoint,
        addr: SocketAddr,
        key: String,
    },
    /// A plain peer's HTTP endpoint: `POST <prefix>/<channel>` with the payload as the body
    /// (`bench/peers/uws-fanout.mjs`).
    PeerHttp { api: ApiEndpoint, addr: SocketAddr },
    /// NATS' client protocol over TCP: `PUB <channel> <n>` with the payload; nats-server does
    /// not answer a publish, so a `PING` after every publish times it to the `PONG`.
    Nats { addr: SocketAddr },
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishPlan {
    pub target: PublishTarget,
    /// Publication `seq` goes to `channels[seq % channels.len()]`.
    pub channels: Arc<[String]>,
    /// Publications per second.
    pub rate: f64,
    pub total: u64,
    /// Payload bytes.
    pub size: usize,
    /// API connections used in parallel.
    pub connections: usize,
}

/// How publishing went.
#[derive(Debug)]
pub struct PublishStats {
    pub ok: u64,
    /// Sequence numbers whose publish failed (not expected at subscribers).
    pub failed: Vec<u64>,
    /// First failure, for the report.
    pub first_error: Option<String>,
    /// From the first request written to the last response read.
    pub elapsed: Duration,
    /// Request → response time of each publish.
    pub api_latency: Snapshot,
}

/// Publishes `plan.total` publications at `plan.rate` per second.
pub async fn publish(plan: &PublishPlan, shared: Arc<Shared>) -> Result<PublishStats> {
    let api_latency = Arc::new(Histogram::new());
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..plan.connections.max(1) {
        let connection = Connection::open(&plan.target).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        workers.push(tokio::spawn(worker(
            connection,
            rx,
            plan.clone(),
            shared.clone(),
            api_latency.clone(),
        )));
    }
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / plan.rate.max(0.001)).max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0u64;
    while next < plan.total {
        ticker.tick().await;
        let due = due(started.elapsed(), plan.rate).min(plan.total);
        while next < due {
            let lane = usize::try_from(next).unwrap_or(0) % senders.len();
            let _ = senders[lane].send(next);
            next += 1;
        }
    }
    drop(senders);
    let mut stats = PublishStats {
        ok: 0,
        failed: Vec::new(),
        first_error: None,
        elapsed: Duration::ZERO,
        api_latency: api_latency.snapshot(),
    };
    for worker in workers {
        let (ok, failed, error) = worker.await?;
        stats.ok += ok;
        stats.failed.extend(failed);
        if stats.first_error.is_none() {
            stats.first_error = error;
        }
    }
    stats.elapsed = started.elapsed();
    stats.failed.sort_unstable();
    stats.api_latency = api_latency.snapshot();
    Ok(stats)
}

/// Publications due `elapsed` after the start at `rate` per second (the first at time zero).
fn due(elapsed: Duration, rate: f64) -> u64 {
    // A non-negative finite product far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let due = (elapsed.as_secs_f64() * rate).floor() as u64;
    due + 1
}

/// One publishing connection to the target.
#[derive(Debug)]
enum Connection {
    Http(ApiConnection),
    Nats(NatsPublisher),
}

impl Connection {
    async fn open(target: &PublishTarget) -> Result<Connection> {
        Ok(match target {
            PublishTarget::Api { api, addr, key } => {
                Connection::Http(ApiConnection::open(*addr, api.clone(), key.clone()).await?)
            }
            PublishTarget::PeerHttp { api, addr } => {
                Connection::Http(ApiConnection::open(*addr, api.clone(), String::new()).await?)
            }
            PublishTarget::Nats { addr } => Connection::Nats(NatsPublisher::open(*addr).await?),
        })
    }

    /// Publishes `payload` (built into `body` by the caller's `write`) to `channel`.
    async fn publish(
        &mut self,
        target: &PublishTarget,
        channel: &str,
        body: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<ApiOutcome> {
        body.clear();
        match (self, target) {
            (Connection::Http(connection), PublishTarget::Api { .. }) => {
                body.extend_from_slice(b"{\"channel\":\"");
                body.extend_from_slice(channel.as_bytes());
                body.extend_from_slice(b"\",\"data\":");
                write(body);
                body.push(b'}');
                connection.post("publish", body).await
            }
            (Connection::Http(connection), _) => {
                write(body);
                connection.post(channel, body).await
            }
            (Connection::Nats(connection), _) => {
                write(body);
                connection.publish(channel, body).await?;
                Ok(ApiOutcome::Ok)
            }
        }
    }
}

async fn worker(
    mut connection: Connection,
    mut rx: mpsc::UnboundedReceiver<u64>,
    plan: PublishPlan,
    shared: Arc<Shared>,
    api_latency: Arc<Histogram>,
) -> (u64, Vec<u64>, Option<String>) {
    let (mut ok, mut failed, mut first_error) = (0u64, Vec::new(), None);
    let mut body = Vec::with_capacity(plan.size + 128);
    while let Some(seq) = rx.recv().await {
        let channel = &plan.channels[usize::try_from(seq).unwrap_or(0) % plan.channels.len()];
        let sent = Instant::now();
        let outcome = connection
            .publish(&plan.target, channel, &mut body, |body| {
                write_payload(body, plan.size, shared.now_micros(), seq);
            })
            .await;
        api_latency.record(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
        let error = match outcome {
            Ok(ApiOutcome::Ok) => {
                ok += 1;
                continue;
            }
            Ok(ApiOutcome::ApiError) => "API error reply".to_owned(),
            Ok(ApiOutcome::Status(status)) => format!("HTTP {status}"),
            Err(error) => {
                // The connection is unusable now: open a new one for the rest.
                if let Ok(fresh) = Connection::open(&plan.target).await {
                    connection = fresh;
                }
                format!("{error:#}")
            }
        };
        failed.push(seq);
        first_error.get_or_insert(format!("publish {seq}: {error}"));
    }
    (ok, failed, first_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_counts_from_one_at_time_zero() {
        assert_eq!(due(Duration::ZERO, 200.0), 1);
        assert_eq!(due(Duration::from_millis(4), 200.0), 1);
        assert_eq!(due(Duration::from_millis(5), 200.0), 2);
        assert_eq!(due(Duration::from_secs(20), 200.0), 4001);
        assert_eq!(due(Duration::from_millis(999), 20.0), 20);
    }
}
