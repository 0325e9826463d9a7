//! Scenario `fanout`: N subscribers on C channels, publications at a fixed rate through the
//! HTTP API, every delivery checked and timed at the subscribers.

use crate::client::{Shared, Tally};
use crate::histogram::{Histogram, Snapshot};
use crate::procfs::ProcessSample;
use crate::publisher::{PublishPlan, PublishStats, PublishTarget, publish};
use crate::report::{self, Table};
use crate::resources::{Samples, resource_rows};
use crate::server::Endpoints;
use crate::swarm::{Swarm, SwarmPlan};
use crate::wire::Wire;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub subscribers: usize,
    pub channels: usize,
    /// Publications per second (over all channels).
    pub rate: f64,
    pub duration: Duration,
    pub size: usize,
    /// The subscribers' protocol: Spindle's client protocol, or a peer's (side-by-side runs).
    pub wire: Wire,
    /// Where publications go; `None`: the server API of `endpoints`.
    pub target: Option<PublishTarget>,
    /// API connections publishing in parallel.
    pub publishers: usize,
    /// Longest wait for stragglers after the last publish.
    pub drain: Duration,
    pub connect_concurrency: usize,
    /// Machine CPU busy (% of one core) in the second before the run: other load on the box.
    pub machine_busy_before: f64,
}

/// The figures of one run, for the side-by-side comparison (`compare`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FanoutFigures {
    pub published: u64,
    pub expected: u64,
    pub distinct: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub lost_connections: u64,
    pub frames: u64,
    /// Deliveries per second from the first publish to the last delivery.
    pub deliveries_per_second: f64,
    pub p50_micros: u64,
    pub p99_micros: u64,
    pub max_micros: u64,
    /// Server CPU over the measured window, in seconds (all its processes).
    pub server_cpu_seconds: f64,
    /// Server CPU in percent of one core.
    pub server_cpu_percent: f64,
    /// The part of it in user mode (the rest is the kernel: socket writes, TCP).
    pub server_user_percent: f64,
    /// This generator's CPU in percent of one core.
    pub generator_cpu_percent: f64,
    /// Machine CPU that went to neither, in percent of one core.
    pub other_cpu_percent: f64,
    pub server_rss_kib: u64,
}

impl FanoutFigures {
    /// Server CPU per distinct delivery, in µs.
    pub fn cpu_micros_per_delivery(&self) -> f64 {
        self.server_cpu_seconds * 1e6 / self.distinct.max(1) as f64
    }
}

pub async fn run(endpoints: &Endpoints, options: &FanoutOptions) -> Result<Table> {
    Ok(measure(endpoints, options).await?.0)
}

/// Runs the scenario: its report, and its figures.
pub async fn measure(
    endpoints: &Endpoints,
    options: &FanoutOptions,
) -> Result<(Table, FanoutFigures)> {
    if options.subscribers == 0 || options.channels == 0 || options.rate <= 0.0 {
        bail!("fanout needs at least one subscriber, one channel and a positive rate");
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (options.rate * options.duration.as_secs_f64()).round() as u64;
    let channels: Arc<[String]> = (0..options.channels)
        .map(|c| format!("bench-fanout-{c}"))
        .collect();
    let shared = Arc::new(Shared::new(Instant::now(), total));
    eprintln!(
        "fanout: connecting {} {} subscribers to {}",
        options.subscribers,
        options.wire.as_str(),
        endpoints.ws_urls_text()
    );
    let swarm = Swarm::connect(
        &SwarmPlan {
            ws_urls: endpoints.ws_urls.clone().into(),
            hmac_secret: endpoints.hmac_secret.clone(),
            wire: options.wire,
            connections: options.subscribers,
            channels: channels.clone(),
            expected: total,
            concurrency: options.connect_concurrency,
        },
        shared.clone(),
    )
    .await?;
    eprintln!(
        "fanout: {} subscribed in {:.1} s; settling 1 s",
        options.subscribers,
        swarm.setup_time.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let before = Samples::take(&endpoints.processes)?;
    let start_micros = shared.now_micros();
    eprintln!(
        "fanout: publishing {total} × {} B at {}/s for {:?}",
        options.size, options.rate, options.duration
    );
    let progress = tokio::spawn(progress(shared.clone(), endpoints.pids()));
    let plan = PublishPlan {
        target: options
            .target
            .clone()
            .unwrap_or_else(|| endpoints.publish_target()),
        channels: channels.clone(),
        rate: options.rate,
        total,
        size: options.size,
        connections: options.publishers,
    };
    let published = publish(&plan, shared.clone()).await;
    let published = match published {
        Ok(stats) => stats,
        Err(error) => {
            progress.abort();
            swarm.stop().await;
            return Err(error);
        }
    };
    let expected = expected_deliveries(options.subscribers, options.channels, total, &published);
    let drain_started = Instant::now();
    while shared.delivered.load(Ordering::Relaxed) < expected
        && drain_started.elapsed() < options.drain
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = Samples::take(&endpoints.processes)?;
    progress.abort();
    let setup_time = swarm.setup_time;
    let tallies = swarm.stop().await;
    let last_delivery = shared.last_delivery_micros.load(Ordering::Relaxed);
    let delivery_window = Duration::from_micros(last_delivery.saturating_sub(start_micros));

    let check = check_deliveries(&tallies, options.channels, total, &published.failed);
    let latency = shared.latency.snapshot();
    let mut table = Table::new(format!(
        "spindle-bench fanout: {} {} subscribers, {} channel(s), {}/s × {} B for {} s",
        report::count(options.subscribers as u64),
        options.wire.as_str(),
        options.channels,
        options.rate,
        options.size,
        options.duration.as_secs_f64()
    ));
    table
        .section("setup")
        .row(
            "subscribers connected + subscribed",
            report::count(options.subscribers as u64),
        )
        .row("setup time", format!("{:.1} s", setup_time.as_secs_f64()));
    publish_rows(&mut table, &published, total, options.rate);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let frames: u64 = tallies.iter().map(|t| t.publication_frames).sum();
    table
        .section("delivery")
        .row("deliveries expected", report::count(expected))
        .row(
            "deliveries received (distinct)",
            report::count(check.distinct),
        )
        .row(
            "target deliveries/s",
            report::rate(options.rate * options.subscribers as f64 / options.channels as f64),
        )
        .row(
            "achieved deliveries/s (first publish → last delivery)",
            report::rate(delivered as f64 / (delivery_window.as_secs_f64() + 1.0 / options.rate)),
        )
        .row("missing (all subscribers)", report::count(check.missing))
        .row(
            "subscribers missing any",
            report::count(check.subscribers_missing),
        )
        .row(
            "max missing for one subscriber",
            report::count(check.max_missing),
        )
        .row("duplicates", report::count(check.duplicates))
        .row(
            "WebSocket frames carrying them (publications per frame)",
            format!(
                "{} ({:.2})",
                report::count(frames),
                delivered as f64 / frames.max(1) as f64
            ),
        )
        .row(
            "connections lost",
            report::count(check.ended.values().sum()),
        );
    for (reason, n) in &check.ended {
        table.row(format!("  lost: {reason}"), report::count(*n));
    }
    table
        .section("end-to-end latency (publish sent → subscriber received)")
        .row("samples", report::count(latency.count()))
        .row("p50", report::quantile(&latency, 0.50))
        .row("p90", report::quantile(&latency, 0.90))
        .row("p99", report::quantile(&latency, 0.99))
        .row("max", report::ms(latency.max()));
    let (fastest, slowest) = extremes(&shared);
    table
        .section("per publication: fastest vs slowest subscriber (pipeline vs fan-out)")
        .row("fastest subscriber p50", report::quantile(&fastest, 0.50))
        .row("fastest subscriber p99", report::quantile(&fastest, 0.99))
        .row("slowest subscriber p50", report::quantile(&slowest, 0.50))
        .row("slowest subscriber p99", report::quantile(&slowest, 0.99));
    resource_rows(&mut table, &before, &after, options.machine_busy_before);
    let figures = FanoutFigures {
        published: published.ok,
        expected,
        distinct: check.distinct,
        missing: check.missing,
        duplicates: check.duplicates,
        lost_connections: check.ended.values().sum(),
        frames,
        deliveries_per_second: delivered as f64
            / (delivery_window.as_secs_f64() + 1.0 / options.rate),
        p50_micros: micros(latency.quantile(0.50)),
        p99_micros: micros(latency.quantile(0.99)),
        max_micros: micros(Some(latency.max())),
        server_cpu_seconds: match (&before.server, &after.server) {
            (Some(b), Some(a)) => b.cpu_seconds_until(a),
            _ => 0.0,
        },
        server_cpu_percent: match (&before.server, &after.server) {
            (Some(b), Some(a)) => b.cpu_percent_until(a),
            _ => 0.0,
        },
        server_user_percent: match (&before.server, &after.server) {
            (Some(b), Some(a)) => b.cpu_split_until(a).0,
            _ => 0.0,
        },
        generator_cpu_percent: before.bench.cpu_percent_until(&after.bench),
        other_cpu_percent: before.others_percent_until(&after),
        server_rss_kib: after.server.map_or(0, |a| a.rss_kib),
    };
    Ok((table, figures))
}

fn micros(duration: Option<Duration>) -> u64 {
    duration.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Distributions over publications of their fastest and slowest subscriber latency.
fn extremes(shared: &Shared) -> (Snapshot, Snapshot) {
    let (fastest, slowest) = (Histogram::new(), Histogram::new());
    for publication in shared.per_publication.iter() {
        let low = publication.fastest.load(Ordering::Relaxed);
        if low != u64::MAX {
            fastest.record(low);
            slowest.record(publication.slowest.load(Ordering::Relaxed));
        }
    }
    (fastest.snapshot(), slowest.snapshot())
}

fn publish_rows(table: &mut Table, published: &PublishStats, total: u64, rate: f64) {
    table
        .section("publishing (POST /api/publish)")
        .row(
            "publishes ok / planned",
            format!("{} / {}", report::count(published.ok), report::count(total)),
        )
        .row(
            "achieved publishes/s",
            // The first publication goes at time zero: count one period for it.
            report::rate(published.ok as f64 / (published.elapsed.as_secs_f64() + 1.0 / rate)),
        )
        .row(
            "API latency p50",
            report::quantile(&published.api_latency, 0.5),
        )
        .row(
            "API latency p99",
            report::quantile(&published.api_latency, 0.99),
        )
        .row("API latency max", report::ms(published.api_latency.max()));
    if let Some(error) = &published.first_error {
        table.row("first publish error", error);
    }
}

/// Deliveries the subscribers should see: every successful publish, once per subscriber of
/// its channel.
fn expected_deliveries(
    subscribers: usize,
    channels: usize,
    total: u64,
    published: &PublishStats,
) -> u64 {
    let mut expected = 0;
    for seq in 0..total {
        if published.failed.binary_search(&seq).is_err() {
            expected += subscribers_of(seq_channel(seq, channels), subscribers, channels);
        }
    }
    expected
}

fn seq_channel(seq: u64, channels: usize) -> usize {
    usize::try_from(seq).unwrap_or(0) % channels
}

/// How many of `subscribers` (dealt round-robin) are on `channel`.
fn subscribers_of(channel: usize, subscribers: usize, channels: usize) -> u64 {
    (subscribers / channels + usize::from(channel < subscribers % channels)) as u64
}

/// What the subscribers saw against what was published.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeliveryCheck {
    pub distinct: u64,
    pub missing: u64,
    pub subscribers_missing: u64,
    pub max_missing: u64,
    pub duplicates: u64,
    /// Early ends by reason.
    pub ended: BTreeMap<String, u64>,
}

/// Compares each subscriber's tally with the successful publishes of its channel.
pub fn check_deliveries(
    tallies: &[Tally],
    channels: usize,
    total: u64,
    failed: &[u64],
) -> DeliveryCheck {
    let mut check = DeliveryCheck::default();
    for (k, tally) in tallies.iter().enumerate() {
        let channel = k % channels;
        let mut missing = 0;
        let mut seq = channel as u64;
        while seq < total {
            if !tally.has(seq) && failed.binary_search(&seq).is_err() {
                missing += 1;
            }
            seq += channels as u64;
        }
        check.distinct += tally
            .seen
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        check.missing += missing;
        check.subscribers_missing += u64::from(missing > 0);
        check.max_missing = check.max_missing.max(missing);
        check.duplicates += tally.duplicates;
        if let Some(reason) = &tally.ended {
            *check.ended.entry(reason.clone()).or_default() += 1;
        }
    }
    check
}

/// Prints deliveries/s and server CPU (its processes `pids` summed) once a second while
/// publishing.
async fn progress(shared: Arc<Shared>, pids: Vec<u32>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = (
        shared.delivered.load(Ordering::Relaxed),
        ProcessSample::take_all(&pids).ok().flatten(),
    );
    let mut second = 0;
    loop {
        ticker.tick().await;
        second += 1;
        let delivered = shared.delivered.load(Ordering::Relaxed);
        let server = ProcessSample::take_all(&pids).ok().flatten();
        let cpu = match (&last.1, &server) {
            (Some(b), Some(a)) => format!(", server CPU {:.0} %", b.cpu_percent_until(a)),
            _ => String::new(),
        };
        eprintln!(
            "  t={second:>3} s: {} deliveries/s{cpu}, lost connections {}",
            report::count(delivered - last.0),
            shared.lost.load(Ordering::Relaxed)
        );
        last = (delivered, server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(seqs: &[u64], total: u64) -> Tally {
        let mut t = Tally {
            seen: vec![0; usize::try_from(total.div_ceil(64)).unwrap()],
            ..Tally::default()
        };
        for &s in seqs {
            t.seen[usize::try_from(s / 64).unwrap()] |= 1 << (s % 64);
            t.received += 1;
        }
        t
    }

    #[test]
    fn counts_missing_per_subscriber_and_ignores_failed_publishes() {
        // Two channels: subscriber 0 on channel 0 (even seqs), 1 on channel 1 (odd seqs).
        let tallies = vec![
            tally(&[0, 2, 4, 6], 8),
            tally(&[1, 5], 8), // missing 3 and 7; 7 failed to publish
        ];
        let check = check_deliveries(&tallies, 2, 8, &[7]);
        assert_eq!(check.missing, 1);
        assert_eq!(check.subscribers_missing, 1);
        assert_eq!(check.max_missing, 1);
        assert_eq!(check.distinct, 6);
    }

    #[test]
    fn subscribers_are_dealt_round_robin() {
        assert_eq!(subscribers_of(0, 10, 3), 4);
        assert_eq!(subscribers_of(1, 10, 3), 3);
        assert_eq!(subscribers_of(2, 10, 3), 3);
        assert_eq!(subscribers_of(0, 1000, 1), 1000);
    }
}
