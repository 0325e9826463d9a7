//! What a stalled edge costs the others (issue 15, docs/architecture.md §9): edge2 is stopped
//! (SIGSTOP) while far more than its byte bound (`mesh.edge_queue_max_size`) is published to a
//! channel it holds interest in. The core may hold at most that bound for it, and edge1's
//! clients must not wait for it. Prints the figures of docs/benchmarks.md; asserts what a
//! regression would break (every probe delivered, the core's memory bounded), not timings.

use std::time::{Duration, Instant};

use serde_json::json;
use spindle_tests::{Client, Format, OrFail, Split, SplitOptions, fixture};
use tokio::sync::mpsc;

/// The stalled edge's bound.
const BOUND: u64 = 4 << 20;
/// Filler per publication, and publications per phase: the stall phase publishes ten times the
/// bound, which a core without one would hold for edge2.
const FILLER: usize = 100_000;
const BASELINE_ROUNDS: usize = 100;
const STALL_ROUNDS: usize = 420;

/// The core's resident memory (`VmRSS`), in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Latency quantile of sorted samples.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One phase: `rounds` times a filler publication then a probe, each probe awaited at edge1
/// before the next round. The probes' latencies (API call to arrival at edge1's client), and
/// the core's highest RSS seen after a round.
async fn phase(
    split: &Split,
    flood: &str,
    probe: &str,
    arrivals: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    rounds: usize,
) -> (Vec<Duration>, u64) {
    let core = split.core();
    let filler = "x".repeat(FILLER);
    let mut latencies = Vec::with_capacity(rounds);
    let mut highest = 0;
    for i in 0..rounds as u64 {
        core.publish(flood, json!({"filler": filler}))
            .await
            .or_fail();
        let sent = Instant::now();
        core.publish(probe, json!({"i": i})).await.or_fail();
        let (n, arrived) = tokio::time::timeout(Duration::from_secs(5), arrivals.recv())
            .await
            .unwrap_or_else(|_| panic!("probe {i} never reached edge1"))
            .unwrap_or_else(|| panic!("edge1's reader stopped"));
        // One probe at a time, each once: the next arrival is this one.
        assert_eq!(n, i, "probes arrive in order, once each");
        latencies.push(arrived.saturating_duration_since(sent));
        highest = highest.max(rss(core.pid()));
    }
    latencies.sort();
    (latencies, highest)
}

#[tokio::test]
async fn a_stalled_edge_costs_the_core_at_most_its_bound_and_the_other_edge_nothing() {
    let split = Split::start_with(SplitOptions {
        cores: 1,
        edges: 2,
        patch: json!({
            // Only the byte bound may cut edge2, not liveness.
            "mesh": {"link_timeout": "60s", "edge_queue_max_size": BOUND},
            "client": {"queue_max_size": 64 << 20},
            "channel": {"namespaces": [{"name": "flood", "allow_subscribe_for_client": true}]},
        }),
        ..SplitOptions::default()
    })
    .await
    .or_fail();
    let flood = fixture::unique("flood:stall");
    let probe = fixture::unique("flood:probe");

    // edge2's client holds interest in the flood channel; it reads nothing once edge2 stops.
    let (mut stalled, _) = Client::connect(
        &split.edges[1].ws_url(),
        Format::Protobuf,
        &fixture::token("stalled"),
    )
    .await
    .or_fail();
    stalled.subscribe_ok(&flood).await.or_fail();

    // edge1's client reads both channels and reports each probe's arrival.
    let (mut reader, _) = Client::connect(
        &split.edges[0].ws_url(),
        Format::Protobuf,
        &fixture::token("reader"),
    )
    .await
    .or_fail();
    reader.subscribe_ok(&flood).await.or_fail();
    reader.subscribe_ok(&probe).await.or_fail();
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let probe_channel = probe.clone();
    let reading = tokio::spawn(async move {
        while let Ok(push) = reader.next_push(Duration::from_secs(30)).await {
            let Some(publication) = push.r#pub.filter(|_| push.channel == probe_channel) else {
                continue;
            };
            let at = Instant::now();
            let data: serde_json::Value = serde_json::from_slice(&publication.data)
                .unwrap_or_else(|e| panic!("probe payload: {e}"));
            let n = data["i"].as_u64().unwrap_or_else(|| panic!("probe {data}"));
            if arrived.send((n, at)).is_err() {
                return;
            }
        }
    });

    // The same load with edge2 reading: the baseline, and the allocator's high-water mark of it.
    let (baseline, baseline_rss) =
        phase(&split, &flood, &probe, &mut arrivals, BASELINE_ROUNDS).await;
    split.edges[1].pause().await.or_fail();
    let (stalled_latencies, stalled_rss) =
        phase(&split, &flood, &probe, &mut arrivals, STALL_ROUNDS).await;
    split.edges[1].resume().await.or_fail();
    reading.abort();
    drop(stalled);

    let growth = stalled_rss.saturating_sub(baseline_rss);
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    eprintln!(
        "stalled edge: edge1 probe latency p50 {:?} → {:?}, p99 {:?} → {:?}, max {:?} → {:?} \
         (edge2 reading → edge2 stopped); the core's RSS {:.1} MiB → {:.1} MiB (+{:.1} MiB, \
         bound {:.0} MiB, {:.0} MiB published while edge2 was stopped)",
        quantile(&baseline, 0.5),
        quantile(&stalled_latencies, 0.5),
        quantile(&baseline, 0.99),
        quantile(&stalled_latencies, 0.99),
        baseline[baseline.len() - 1],
        stalled_latencies[stalled_latencies.len() - 1],
        mib(baseline_rss),
        mib(stalled_rss),
        mib(growth),
        mib(BOUND),
        mib((STALL_ROUNDS * FILLER) as u64),
    );
    assert!(
        split.core().stderr().contains("edge cut"),
        "edge2 was not cut at its bound; core log:\n{}",
        split.core().stderr()
    );
    // Unbounded, the core would hold all ~40 MiB for edge2. The margin is the allocator's
    // slack over a heavier phase than the baseline, not a second bound.
    assert!(
        growth <= BOUND + (8 << 20),
        "the core grew by {:.1} MiB for a stalled edge bounded at {:.0} MiB",
        mib(growth),
        mib(BOUND)
    );
}
