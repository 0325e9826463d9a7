//! Scenario `reconnect-storm`: N clients subscribe with recovery (the channels force it), drop
//! their connections at once, the API publishes M publications to every channel while they are
//! away, then all reconnect at once and resubscribe with `recover: true` from their last
//! offset and epoch. Measured: the time from the first reconnect to the last recovering
//! subscribe reply; checked: every client got exactly what it missed
//! ([`crate::storm_check`]).

use crate::api_publish::{CheckedPublisher, PublishTally, connect, run_prefix};
use crate::api_replies;
use crate::http::ApiConnection;
use crate::ledger::LedgerCheck;
use crate::report::{self, Table};
use crate::resources::{Samples, progress, resource_rows};
use crate::server::Endpoints;
use crate::storm_check::{self, StormCheck};
use crate::storm_client::{self, ClientOutcome, Phase, Step, StormPlan};
use anyhow::{Context, Result, anyhow, bail};
use spindle_proto::Format;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// API connections publishing while the clients are away.
const PUBLISHERS: usize = 4;
/// Longest wait for the server to count the dropped connections as gone.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct StormOptions {
    pub clients: usize,
    pub channels: usize,
    /// Publications to each channel while the clients are away.
    pub missed: u64,
    pub format: Format,
    pub connect_concurrency: usize,
    /// Reconnecting at the same time; 0 = all.
    pub reconnect_concurrency: usize,
    /// Publish commands per batch request while the clients are away.
    pub batch_size: usize,
    /// How long the clients keep listening after the last recovery.
    pub linger: Duration,
    pub machine_busy_before: f64,
}

/// The config a started server needs: history and forced recovery on channels without a
/// namespace.
pub fn server_patch(history_size: u32, history_ttl: &str) -> serde_json::Value {
    serde_json::json!({"channel": {"without_namespace": {
        "history_size": history_size,
        "history_ttl": history_ttl,
        "force_recovery": true,
    }}})
}

/// The clients, running, and what they report.
struct Clients {
    tasks: Vec<JoinHandle<ClientOutcome>>,
    phase: watch::Sender<Phase>,
    steps: mpsc::UnboundedReceiver<Step>,
    /// Per channel, the stream offset its clients subscribed at (the highest reported).
    starts: Vec<u64>,
}

impl Clients {
    /// Waits for one step from each of the `n` clients; the errors reported, in order.
    async fn wait(&mut self, n: usize, counter: Option<&AtomicU64>) -> Result<Vec<String>> {
        let mut errors = Vec::new();
        for _ in 0..n {
            let step = self
                .steps
                .recv()
                .await
                .context("client tasks ended before reporting")?;
            match step {
                Step::Ready(Err(error)) | Step::Recovered(Err(error)) => errors.push(error),
                Step::Ready(Ok((channel, offset))) => {
                    if let Some(start) = self.starts.get_mut(channel) {
                        *start = (*start).max(offset);
                    }
                }
                Step::Dropped | Step::Recovered(Ok(())) => {}
            }
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(errors)
    }

    /// Tells every client to stop and collects what each saw, in client order.
    async fn stop(self) -> Vec<ClientOutcome> {
        let _ = self.phase.send(Phase::Stop);
        let mut outcomes = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            outcomes.push(task.await.unwrap_or_else(|e| ClientOutcome {
                setup_error: Some(format!("task failed: {e}")),
                ..ClientOutcome::default()
            }));
        }
        outcomes
    }
}

pub async fn run(endpoints: &Endpoints, options: &StormOptions) -> Result<Table> {
    if options.clients == 0 || options.channels == 0 || options.batch_size == 0 {
        bail!("reconnect-storm needs clients, channels and a batch size above zero");
    }
    let prefix = run_prefix("bench-rs");
    let channels: Arc<[String]> = (0..options.channels)
        .map(|c| format!("{prefix}-{c}"))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut api = connect(endpoints).await?;
    let baseline = connected_clients(&mut api).await?;

    eprintln!(
        "reconnect-storm: connecting {} {} clients to {} channels ({prefix}-*)",
        options.clients,
        options.format.as_str(),
        options.channels
    );
    let started = Instant::now();
    let mut clients = spawn(endpoints, options, &channels);
    let errors = clients.wait(options.clients, None).await?;
    if let Some(first) = errors.first() {
        let n = errors.len();
        clients.stop().await;
        bail!(
            "{n} of {} clients failed to subscribe; first: {first}",
            options.clients
        );
    }
    let setup_time = started.elapsed();
    eprintln!(
        "reconnect-storm: {} subscribed in {:.1} s; settling 1 s, then dropping all",
        options.clients,
        setup_time.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let subscribed = Samples::take(&endpoints.processes)?;

    let _ = clients.phase.send(Phase::Drop);
    let dropping = Instant::now();
    clients.wait(options.clients, None).await?;
    let dropped_in = dropping.elapsed();
    let noticed = wait_until_gone(&mut api, baseline).await?;
    eprintln!(
        "reconnect-storm: dropped in {:.0} ms; the server counted them gone after {}",
        dropped_in.as_secs_f64() * 1e3,
        noticed.map_or_else(|| "(timed out)".into(), report::ms)
    );

    let publishing = Instant::now();
    let tally = publish_missed(endpoints, options, &channels).await?;
    let published_in = publishing.elapsed();
    let starts = clients.starts.clone();
    let replies = tally
        .ledger
        .clone()
        .check(|c| starts.get(c).copied().unwrap_or(0));
    eprintln!(
        "reconnect-storm: {} publishes while away in {:.2} s; reconnecting all",
        tally.ok,
        published_in.as_secs_f64()
    );

    let recovered_count = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn(progress(
        "recovered",
        recovered_count.clone(),
        endpoints.pids(),
    ));
    let before = Samples::take(&endpoints.processes)?;
    let storm = Instant::now();
    let _ = clients.phase.send(Phase::Reconnect(storm));
    let reconnect_errors = clients
        .wait(options.clients, Some(&recovered_count))
        .await?;
    let storm_time = storm.elapsed();
    let after = Samples::take(&endpoints.processes)?;
    ticker.abort();
    eprintln!(
        "reconnect-storm: all replied {:.2} s after the first reconnect ({} failed); \
         listening {:?} more",
        storm_time.as_secs_f64(),
        reconnect_errors.len(),
        options.linger
    );
    tokio::time::sleep(options.linger).await;
    let outcomes = clients.stop().await;
    let check = storm_check::check(&outcomes, &tally.ledger);

    let mut table = Table::new(format!(
        "spindle-bench reconnect-storm: {} {} clients, {} channels, {} missed each",
        report::count(options.clients as u64),
        options.format.as_str(),
        report::count(options.channels as u64),
        options.missed
    ));
    table
        .section("setup")
        .row(
            "clients subscribed (recoverable)",
            report::count(options.clients as u64),
        )
        .row(
            "clients per channel",
            format!("{:.1}", options.clients as f64 / options.channels as f64),
        )
        .row("setup time", format!("{:.1} s", setup_time.as_secs_f64()))
        .row(
            "server RSS with all subscribed",
            rss(&subscribed).unwrap_or_else(|| "n/a".into()),
        );
    table
        .section("drop (all connections closed at once, no close frame)")
        .row("connections dropped", report::count(options.clients as u64))
        .row("time to drop them", report::ms(dropped_in))
        .row(
            "until the server counted them gone (/api/info)",
            noticed.map_or_else(|| format!("not within {NOTICE_TIMEOUT:?}"), report::ms),
        );
    publish_rows(&mut table, options, &tally, published_in, &replies);
    storm_rows(&mut table, &check, storm_time, options);
    resource_rows(&mut table, &before, &after, options.machine_busy_before);
    let verdict = if check.is_clean() && replies.is_clean() && tally.failed == 0 {
        "verified (each client got exactly what it missed)".to_owned()
    } else {
        "FAILED: see the check rows above".to_owned()
    };
    table.section("verdict").row("result", verdict);
    Ok(table)
}

fn spawn(endpoints: &Endpoints, options: &StormOptions, channels: &Arc<[String]>) -> Clients {
    let plan = StormPlan {
        ws_urls: endpoints.ws_urls.clone().into(),
        hmac_secret: endpoints.hmac_secret.clone(),
        format: options.format,
        channels: channels.clone(),
        setup_gate: Arc::new(Semaphore::new(options.connect_concurrency.max(1))),
        reconnect_gate: (options.reconnect_concurrency > 0)
            .then(|| Arc::new(Semaphore::new(options.reconnect_concurrency))),
    };
    let (phase, phase_rx) = watch::channel(Phase::Setup);
    let (steps_tx, steps) = mpsc::unbounded_channel();
    let tasks = (0..options.clients)
        .map(|k| {
            tokio::spawn(storm_client::run(
                k,
                plan.clone(),
                phase_rx.clone(),
                steps_tx.clone(),
            ))
        })
        .collect();
    Clients {
        tasks,
        phase,
        steps,
        starts: vec![0; channels.len()],
    }
}

/// Publishes `missed` publications to every channel through the batch API.
async fn publish_missed(
    endpoints: &Endpoints,
    options: &StormOptions,
    channels: &Arc<[String]>,
) -> Result<PublishTally> {
    let total = options.missed * options.channels as u64;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..PUBLISHERS {
        let mut publisher =
            CheckedPublisher::open(endpoints, channels.clone(), 64, Instant::now()).await?;
        let (next, batch) = (next.clone(), options.batch_size as u64);
        workers.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= total {
                    break;
                }
                publisher
                    .publish_batch(first..(first + batch).min(total), false)
                    .await;
            }
            publisher.tally
        }));
    }
    let mut tally = PublishTally::new(options.channels);
    for worker in workers {
        tally.merge(worker.await?);
    }
    Ok(tally)
}

async fn connected_clients(api: &mut ApiConnection) -> Result<u64> {
    let (status, body) = api.post_raw("info", b"{}").await?;
    api_replies::info_clients(status, body).map_err(|e| anyhow!("info: {e}"))
}

/// Polls `/api/info` until the server counts no more clients than `baseline`; how long that
/// took, or `None` after [`NOTICE_TIMEOUT`].
async fn wait_until_gone(api: &mut ApiConnection, baseline: u64) -> Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < NOTICE_TIMEOUT {
        if connected_clients(api).await? <= baseline {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(None)
}

fn rss(sample: &Samples) -> Option<String> {
    sample
        .server
        .map(|s| report::bytes(s.rss_kib as f64 * 1024.0))
}

fn publish_rows(
    table: &mut Table,
    options: &StormOptions,
    tally: &PublishTally,
    took: Duration,
    replies: &LedgerCheck,
) {
    table
        .section(format!(
            "publishing while away (POST /api/batch, {} per request)",
            options.batch_size
        ))
        .row(
            "publishes answered with an offset / planned",
            format!(
                "{} / {}",
                report::count(tally.ok),
                report::count(options.missed * options.channels as u64)
            ),
        )
        .row("time", report::ms(took))
        .row(
            "channels with contiguous offsets in the replies",
            format!(
                "{} / {}",
                report::count(replies.contiguous_channels),
                report::count(options.channels as u64)
            ),
        );
    for (kind, n) in &tally.errors {
        table.row(format!("  failed: {kind}"), report::count(*n));
    }
    if let Some(problem) = &replies.first_problem {
        table.row("first offset problem", problem);
    }
}

fn storm_rows(table: &mut Table, check: &StormCheck, storm_time: Duration, options: &StormOptions) {
    let connected = check.connected.snapshot();
    let recovered = check.recovered.snapshot();
    table
        .section(format!(
            "reconnect ({} at once)",
            if options.reconnect_concurrency == 0 {
                "all".to_owned()
            } else {
                options.reconnect_concurrency.to_string()
            }
        ))
        .row(
            "first reconnect → last recovering subscribe reply",
            report::ms(storm_time),
        )
        .row("connected again p50", report::quantile(&connected, 0.50))
        .row("connected again p99", report::quantile(&connected, 0.99))
        .row("subscribe reply p50", report::quantile(&recovered, 0.50))
        .row("subscribe reply p99", report::quantile(&recovered, 0.99))
        .row("subscribe reply max", report::ms(recovered.max()));
    for (reason, n) in &check.reconnect_errors {
        table.row(format!("  failed: {reason}"), report::count(*n));
    }
    table
        .section("recovery check")
        .row("recovered: true", report::count(check.recovered_true))
        .row("recovered: false", report::count(check.recovered_false))
        .row(
            "replies without was_recovering",
            report::count(check.not_recovering),
        )
        .row(
            "clients with exactly their missed publications (offsets, order, epoch)",
            format!(
                "{} / {}",
                report::count(check.exact),
                report::count(check.clients)
            ),
        )
        .row(
            "publications expected / received",
            format!(
                "{} / {}",
                report::count(check.expected),
                report::count(check.received)
            ),
        )
        .row(
            "  of them as pushes after the reply",
            report::count(check.after_reply),
        )
        .row("missing", report::count(check.missing))
        .row("duplicates or unexpected", report::count(check.extra))
        .row("clients out of order", report::count(check.out_of_order))
        .row(
            "clients whose epoch changed",
            report::count(check.epoch_changed),
        )
        .row(
            "publications received before the drop",
            report::count(check.before_drop),
        )
        .row(
            "connections lost (before the drop / after recovery)",
            format!("{} / {}", check.lost_before_drop, check.lost_after),
        );
    if let Some(problem) = &check.first_problem {
        table.row("first problem", problem);
    }
}
