//! Scenario `history-publish`: publishing into channels that keep history, as fast as a few
//! kept-alive API connections can, round-robin over C channels, either one publication per
//! `POST /api/publish` or N publish commands per `POST /api/batch`. Every reply is checked (a
//! result with an offset), the offsets per channel must come out contiguous, and at the end the
//! channels' history is read back ([`crate::history_check`]).
//!
//! Closed loop: each connection has one request in flight and sends the next as soon as the
//! reply is in, until the duration is over; the figure is what the server sustains.

use crate::api_publish::{CheckedPublisher, PublishTally, run_prefix};
use crate::histogram::Histogram;
use crate::history_check::{self, HistoryCheck};
use crate::ledger::LedgerCheck;
use crate::report::{self, Table};
use crate::resources::{Samples, progress, resource_rows};
use crate::server::Endpoints;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One publication per request, or a batch of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /api/publish`.
    Single,
    /// `POST /api/batch` with this many publish commands.
    Batch { size: usize, parallel: bool },
}

#[derive(Debug, Clone)]
pub struct HistoryPublishOptions {
    pub channels: usize,
    pub mode: Mode,
    /// API connections, one request in flight on each.
    pub concurrency: usize,
    pub duration: Duration,
    /// Payload bytes.
    pub size: usize,
    /// `history_size` of the channels (what a full history read must return at most).
    pub history_size: u32,
    /// Channels whose history is read in full at the end.
    pub verify_channels: usize,
    pub machine_busy_before: f64,
}

/// The config a started server needs: history on channels without a namespace.
pub fn server_patch(history_size: u32, history_ttl: &str) -> serde_json::Value {
    serde_json::json!({"channel": {"without_namespace": {
        "history_size": history_size,
        "history_ttl": history_ttl,
    }}})
}

pub async fn run(endpoints: &Endpoints, options: &HistoryPublishOptions) -> Result<Table> {
    let per_request = match options.mode {
        Mode::Single => 1,
        Mode::Batch { size, .. } => size,
    };
    if options.channels == 0 || options.concurrency == 0 || per_request == 0 {
        bail!("history-publish needs channels, connections and a batch size above zero");
    }
    let prefix = run_prefix("bench-hp");
    let channels: Arc<[String]> = (0..options.channels)
        .map(|c| format!("{prefix}-{c}"))
        .collect();
    // Let a freshly started server finish starting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let base = Instant::now();
    let mut publishers = Vec::with_capacity(options.concurrency);
    for _ in 0..options.concurrency {
        publishers
            .push(CheckedPublisher::open(endpoints, channels.clone(), options.size, base).await?);
    }
    eprintln!(
        "history-publish: {} to {} channels ({prefix}-*) over {} API connections for {:?}",
        describe(options.mode),
        options.channels,
        options.concurrency,
        options.duration
    );
    let latency = Arc::new(Histogram::new());
    let next = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let before = Samples::take(&endpoints.processes)?;
    let started = Instant::now();
    let deadline = started + options.duration;
    let ticker = tokio::spawn(progress(
        "publishes answered",
        answered.clone(),
        endpoints.pids(),
    ));
    let workers: Vec<_> = publishers
        .into_iter()
        .map(|mut publisher| {
            let (latency, next, answered) = (latency.clone(), next.clone(), answered.clone());
            let mode = options.mode;
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let took = match mode {
                        Mode::Single => {
                            publisher
                                .publish(next.fetch_add(1, Ordering::Relaxed))
                                .await
                        }
                        Mode::Batch { size, parallel } => {
                            let n = size as u64;
                            let first = next.fetch_add(n, Ordering::Relaxed);
                            publisher.publish_batch(first..first + n, parallel).await
                        }
                    };
                    latency.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                    answered.fetch_add(per_request as u64, Ordering::Relaxed);
                }
                publisher.tally
            })
        })
        .collect();
    let mut tally = PublishTally::new(options.channels);
    for worker in workers {
        tally.merge(worker.await?);
    }
    let elapsed = started.elapsed();
    let after = Samples::take(&endpoints.processes)?;
    ticker.abort();
    let issued = next.load(Ordering::Relaxed);

    eprintln!("history-publish: checking replies and reading history back");
    let replies = tally.ledger.check(|_| 0);
    let history = history_check::check(
        endpoints,
        &channels,
        &tally.ledger,
        options.verify_channels,
        options.history_size,
    )
    .await?;

    let mut table = Table::new(format!(
        "spindle-bench history-publish: {}, {} connections, {} channels, {} B, {} s",
        describe(options.mode),
        options.concurrency,
        report::count(options.channels as u64),
        options.size,
        options.duration.as_secs_f64()
    ));
    let route = match options.mode {
        Mode::Single => "POST /api/publish".to_owned(),
        Mode::Batch { size, .. } => format!("POST /api/batch, {size} publishes per request"),
    };
    let snapshot = latency.snapshot();
    table
        .section(format!("publishing ({route})"))
        .row(
            "publishes answered with an offset / sent",
            format!("{} / {}", report::count(tally.ok), report::count(issued)),
        )
        .row("publishes failed", report::count(tally.failed))
        .row("HTTP requests", report::count(tally.requests))
        .row("time (first request → last reply)", report::ms(elapsed))
        .row(
            "achieved publishes/s",
            report::rate(tally.ok as f64 / elapsed.as_secs_f64()),
        )
        .row("API request latency p50", report::quantile(&snapshot, 0.50))
        .row("API request latency p99", report::quantile(&snapshot, 0.99))
        .row("API request latency max", report::ms(snapshot.max()));
    for (kind, n) in &tally.errors {
        table.row(format!("  failed: {kind}"), report::count(*n));
    }
    check_rows(&mut table, &replies, &history, options.history_size);
    resource_rows(&mut table, &before, &after, options.machine_busy_before);
    let verdict = if replies.is_clean() && history.is_clean() && tally.failed == 0 {
        "verified (offsets contiguous, history agrees)".to_owned()
    } else {
        "FAILED: see the check rows above".to_owned()
    };
    table.section("verdict").row("result", verdict);
    Ok(table)
}

fn describe(mode: Mode) -> String {
    match mode {
        Mode::Single => "single publishes".into(),
        Mode::Batch { size, parallel } => {
            format!(
                "batches of {size}{}",
                if parallel { " (parallel)" } else { "" }
            )
        }
    }
}

fn check_rows(table: &mut Table, replies: &LedgerCheck, history: &HistoryCheck, size: u32) {
    table
        .section("check: offsets in the publish replies")
        .row("positions recorded", report::count(replies.recorded))
        .row(
            "channels with offsets exactly 1..n",
            report::count(replies.contiguous_channels),
        )
        .row(
            "channels with a gap or duplicate",
            report::count(replies.broken_channels),
        )
        .row(
            "replies with another epoch than the channel's first",
            report::count(replies.epoch_mismatches),
        );
    if let Some(problem) = &replies.first_problem {
        table.row("first problem", problem);
    }
    table
        .section("check: POST /api/history read back")
        .row(
            "channels whose top offset and epoch match the replies",
            format!(
                "{} / {}",
                report::count(history.matching),
                report::count(history.channels)
            ),
        )
        .row(
            format!("channels read in full (limit {size}) holding exactly the last offsets"),
            format!("{} / {}", history.full_ok, history.read_in_full),
        )
        .row(
            "publications returned by the full reads",
            report::count(history.retained),
        );
    if let Some(problem) = &history.first_mismatch {
        table.row("first top mismatch", problem);
    }
    if let Some(problem) = &history.first_full_problem {
        table.row("first full-read problem", problem);
    }
}
