//! The impairment matrix (issue 15): edges reach their core through the seeded UDP impairment
//! proxy (`spindle_tests::impair`), which goes through latency with loss, heavy loss,
//! reordering, duplication, a short and a long blackhole, a one-way stall and a source-port
//! rebinding while the backend publishes. Every client is judged by the no-silent-gap checker
//! (`spindle_tests::gaps`): nothing missing without a signal, nothing twice, nothing out of
//! order; in channels with history, not even a signal. During the long blackhole each edge's
//! `/health` must turn 503 within 2 s (the dead link seen within `mesh.link_timeout`, 1.5 s).
//!
//! Seeds: `SPINDLE_IMPAIR_SEEDS` — a count (`100`: seeds 1..=100, the long mode in
//! tests/README.md) or a comma-separated list; three seeds by default.

use std::time::{Duration, Instant};

use serde_json::json;
use spindle_tests::gaps::{Ledger, Recorder, Seen, judge};
use spindle_tests::impair::{Control, Direction, Impairments, Link};
use spindle_tests::{OrFail, Split, SplitOptions, fixture};

/// Publications per channel in each scenario, one every [`PACE`].
const PER_SCENARIO: u32 = 60;
const PACE: Duration = Duration::from_millis(25);
/// How long clients keep listening after the last publication.
const SETTLE: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, Copy)]
enum Scenario {
    LossAt40msRtt,
    HeavyLoss,
    Reorder,
    Duplicates,
    ShortBlackhole,
    LongBlackhole,
    OneWayStall,
    Rebind,
}

const SCENARIOS: [Scenario; 8] = [
    Scenario::LossAt40msRtt,
    Scenario::HeavyLoss,
    Scenario::Reorder,
    Scenario::Duplicates,
    Scenario::ShortBlackhole,
    Scenario::LongBlackhole,
    Scenario::OneWayStall,
    Scenario::Rebind,
];

impl Scenario {
    /// Starts the impairment; returns how long it lasts at most, beyond the publications.
    async fn apply(self, net: &Control) -> Duration {
        match self {
            Scenario::LossAt40msRtt => {
                net.set(Impairments::rtt_loss(Duration::from_millis(40), 0.01));
            }
            Scenario::HeavyLoss => {
                net.set(Impairments::symmetric(Link::CLEAN.with_loss(0.10)));
            }
            Scenario::Reorder => net.set(Impairments::symmetric(
                Link::CLEAN.with_reorder(0.2, Duration::from_millis(20)),
            )),
            Scenario::Duplicates => {
                net.set(Impairments::symmetric(Link::CLEAN.with_duplicate(0.1)));
            }
            Scenario::ShortBlackhole => {
                net.blackhole(Duration::from_millis(800));
                return Duration::from_millis(800);
            }
            Scenario::LongBlackhole => {
                net.blackhole(Duration::from_secs(3));
                return Duration::from_secs(3);
            }
            Scenario::OneWayStall => {
                net.stall_for(Direction::Down, Duration::from_secs(2));
                return Duration::from_secs(2);
            }
            Scenario::Rebind => {
                net.rebind().await.or_fail_io();
            }
        }
        Duration::ZERO
    }
}

trait OrFailIo<T> {
    fn or_fail_io(self) -> T;
}

impl<T> OrFailIo<T> for std::io::Result<T> {
    #[track_caller]
    fn or_fail_io(self) -> T {
        self.unwrap_or_else(|e| panic!("impairment proxy: {e}"))
    }
}

fn seeds() -> Vec<u64> {
    match std::env::var("SPINDLE_IMPAIR_SEEDS") {
        Ok(text) if text.contains(',') => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap_or_else(|_| panic!("bad seed {s:?}")))
            .collect(),
        Ok(text) if !text.trim().is_empty() => {
            let count: u64 = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("SPINDLE_IMPAIR_SEEDS={text:?}"));
            (1..=count).collect()
        }
        _ => vec![1, 2, 3],
    }
}

/// Polls `/health` of every edge until each has said 503, or `limit` passes; the time each
/// took (`None`: never).
async fn time_to_unhealthy(split: &Split, limit: Duration) -> Vec<Option<Duration>> {
    let started = Instant::now();
    let mut seen = vec![None; split.edges.len()];
    while started.elapsed() < limit && seen.iter().any(Option::is_none) {
        for (i, edge) in split.edges.iter().enumerate() {
            if seen[i].is_none()
                && let Ok(response) = edge.get("/health").await
                && response.status == 503
            {
                seen[i] = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

async fn run(seed: u64) {
    let split = Split::start_with(SplitOptions {
        cores: 1,
        edges: 2,
        impaired: Some(seed),
        ..SplitOptions::default()
    })
    .await
    .or_fail();
    let net = split
        .proxy(0)
        .unwrap_or_else(|| panic!("started impaired"))
        .control();
    let channels = vec![
        fixture::unique("rec:impair-a"),
        fixture::unique("rec:impair-b"),
    ];
    let listen = (PACE + Duration::from_millis(10)) * PER_SCENARIO * SCENARIOS.len() as u32
        + Duration::from_secs(8)
        + SETTLE;
    let mut readers = Vec::new();
    for (i, edge) in split.edges.iter().enumerate() {
        let mut recorder = Recorder::start(&edge.ws_url(), &format!("reader{i}"), &channels)
            .await
            .or_fail();
        readers.push(tokio::spawn(async move {
            recorder.run_for(listen).await.map(|()| recorder)
        }));
    }
    let mut ledger = Ledger::default();
    let mut n = 0u32;
    for scenario in SCENARIOS {
        let lasts = scenario.apply(&net).await;
        let health = matches!(scenario, Scenario::LongBlackhole)
            .then(|| time_to_unhealthy(&split, Duration::from_secs(3)));
        let publish = async {
            for _ in 0..PER_SCENARIO {
                n += 1;
                for channel in &channels {
                    let data = json!({"n": n, "seed": seed});
                    let answer = split.core().publish(channel, data.clone()).await.or_fail();
                    ledger.published_by_api(channel, &answer, data.to_string().as_bytes());
                }
                tokio::time::sleep(PACE).await;
            }
        };
        match health {
            Some(health) => {
                let (times, ()) = tokio::join!(health, publish);
                eprintln!("impairment seed {seed}: /health 503 after {times:?} of a blackhole");
                for (edge, time) in times.iter().enumerate() {
                    let time = time.unwrap_or_else(|| {
                        panic!(
                            "seed {seed}: edge{} kept /health 200 in a 3 s blackhole",
                            edge + 1
                        )
                    });
                    assert!(
                        time <= Duration::from_secs(2),
                        "seed {seed}: edge{} took {time:?} to report the dead link",
                        edge + 1
                    );
                }
            }
            None => publish.await,
        }
        tokio::time::sleep(lasts).await;
        net.set(Impairments::default());
        net.heal();
    }
    let mut recorders = Vec::new();
    for reader in readers {
        recorders.push(
            reader
                .await
                .unwrap_or_else(|e| panic!("reader: {e}"))
                .or_fail(),
        );
    }
    let logs: Vec<(&str, &str, &[Seen])> = recorders
        .iter()
        .flat_map(|r| r.logs().map(move |(channel, log)| (r.user(), channel, log)))
        .collect();
    let verdict = judge(&ledger, logs);
    eprintln!(
        "impairment seed {seed}: {verdict}; proxy up {:?}, down {:?}",
        net.counters(Direction::Up),
        net.counters(Direction::Down)
    );
    assert!(verdict.is_clean(), "seed {seed}: {verdict}");
    assert_eq!(
        verdict.deliveries,
        2 * ledger.len(),
        "seed {seed}: every publication at every client"
    );
    assert_eq!(
        verdict.signals, 0,
        "seed {seed}: history repaired every gap"
    );
}

#[tokio::test]
async fn the_impairment_matrix_leaves_no_silent_gap() {
    for seed in seeds() {
        run(seed).await;
    }
}

/// Publication counts of the repair figure: `SPINDLE_REPAIR_COUNTS` (comma-separated, the
/// figure in docs/benchmarks.md uses 1,10,100,1000,5000), else 10 and 100.
fn repair_counts() -> Vec<u32> {
    std::env::var("SPINDLE_REPAIR_COUNTS")
        .ok()
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap_or_else(|_| panic!("bad count {s:?}")))
                .collect()
        })
        .unwrap_or_else(|| vec![10, 100])
}

/// Polls the edge's `/health` until it is `status`; when it was.
async fn health_becomes(edge: &spindle_tests::Server, status: u16, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if let Ok(response) = edge.get("/health").await
            && response.status == status
        {
            return Instant::now();
        }
        assert!(started.elapsed() < limit, "/health never became {status}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_link_lost_under_publications_is_repaired_after_it_comes_back() {
    for count in repair_counts() {
        // History deep enough for the largest count of the figure.
        let split = Split::start_with(SplitOptions {
            cores: 1,
            edges: 1,
            impaired: Some(u64::from(count)),
            patch: json!({
                "channel": {"namespaces": [{"name": "rec", "allow_subscribe_for_client": true,
                    "history_size": 5000, "history_ttl": "300s", "force_recovery": true}]},
                "mesh": {"repair": {"max_publications": 5000}},
                "client": {"queue_max_size": 64 << 20},
            }),
        })
        .await
        .or_fail();
        let net = split
            .proxy(0)
            .unwrap_or_else(|| panic!("started impaired"))
            .control();
        let channels = vec![fixture::unique("rec:repair")];
        let mut recorder = Recorder::start(&split.edges[0].ws_url(), "reader", &channels)
            .await
            .or_fail();
        let reader = tokio::spawn(async move {
            recorder
                .run_for(Duration::from_secs(12))
                .await
                .map(|()| recorder)
        });
        let mut ledger = Ledger::default();
        let channel = &channels[0];
        // Nothing reaches the edge any more; the backend goes on publishing.
        net.stall(Direction::Down);
        for n in 1..=count {
            let data = json!({"n": n});
            let answer = split.core().publish(channel, data.clone()).await.or_fail();
            ledger.published_by_api(channel, &answer, data.to_string().as_bytes());
        }
        health_becomes(&split.edges[0], 503, Duration::from_secs(5)).await;
        net.lift(Direction::Down);
        let linked = health_becomes(&split.edges[0], 200, Duration::from_secs(10)).await;
        let recorder = reader
            .await
            .unwrap_or_else(|e| panic!("reader: {e}"))
            .or_fail();
        let verdict = judge(
            &ledger,
            recorder
                .logs()
                .map(|(channel, log)| (recorder.user(), channel, log)),
        );
        assert!(verdict.is_clean(), "{count} missed: {verdict}");
        assert_eq!(verdict.deliveries, count as usize);
        assert_eq!(
            verdict.signals, 0,
            "{count} missed: repaired, not signalled"
        );
        let last = recorder
            .last_arrival()
            .unwrap_or_else(|| panic!("nothing arrived"));
        let at_client = last.saturating_duration_since(linked);
        // The edge's own measure: from the gap seen (the new link's acknowledgement) to the
        // last publication fanned out.
        let metrics = split.edges[0].get("/metrics").await.or_fail();
        let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{name} not in the edge's metrics:\n{metrics}"))
        };
        assert_eq!(value("spindle_edge_repairs_completed_total"), 1.0);
        assert_eq!(
            value("spindle_edge_repaired_publications_total"),
            f64::from(count)
        );
        let took = Duration::from_secs_f64(value("spindle_edge_repair_seconds_total"));
        eprintln!(
            "repair of {count} missed publications: {took:?} at the edge; the last one reached \
             the client {at_client:?} after /health said linked"
        );
    }
}

#[tokio::test]
async fn a_link_lost_longer_than_history_keeps_is_signalled_within_a_second_of_the_new_link() {
    let split = Split::start_with(SplitOptions {
        cores: 1,
        edges: 1,
        impaired: Some(11),
        patch: json!({"channel": {"namespaces": [
            {"name": "rec", "allow_subscribe_for_client": true, "history_size": 100,
             "history_ttl": "300s", "force_recovery": true},
            {"name": "brief", "allow_subscribe_for_client": true, "history_size": 100,
             "history_ttl": "1s", "force_recovery": true},
        ]}}),
    })
    .await
    .or_fail();
    let net = split
        .proxy(0)
        .unwrap_or_else(|| panic!("started impaired"))
        .control();
    let kept = fixture::unique("rec:retention");
    let brief = fixture::unique("brief:retention");
    let edge = &split.edges[0];
    let (mut client, _) = spindle_tests::Client::connect(
        &edge.ws_url(),
        spindle_tests::Format::Json,
        &fixture::token("dora"),
    )
    .await
    .or_fail();
    client.subscribe_ok(&kept).await.or_fail();
    client.subscribe_ok(&brief).await.or_fail();
    // The edge is cut off for 3 s; what is published meanwhile outlives it in `rec:` (300 s
    // of history) but not in `brief:` (1 s).
    net.blackhole(Duration::from_secs(3));
    for channel in [&kept, &brief] {
        split
            .core()
            .publish(channel, json!({"n": 1}))
            .await
            .or_fail();
    }
    health_becomes(edge, 503, Duration::from_secs(3)).await;
    let linked = health_becomes(edge, 200, Duration::from_secs(15)).await;
    let mut repaired = false;
    let mut signalled = None;
    while !(repaired && signalled.is_some()) {
        let push = client.next_push(Duration::from_secs(5)).await.or_fail();
        if push.channel == kept && push.r#pub.is_some() {
            repaired = true;
        } else if push.channel == brief
            && let Some(unsubscribe) = &push.unsubscribe
        {
            assert_eq!(unsubscribe.code, 2500, "{unsubscribe:?}");
            signalled = Some(Instant::now());
        } else {
            panic!("unexpected push {push:?}");
        }
    }
    let after = signalled
        .unwrap_or_else(|| panic!("not signalled"))
        .saturating_duration_since(linked);
    eprintln!("history outlived: signalled {after:?} after the new link");
    assert!(after <= Duration::from_secs(1), "{after:?}");
}
