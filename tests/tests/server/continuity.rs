//! Continuity across the mesh (issue 15, docs/architecture.md §9): real `spindle core` and
//! `spindle edge` processes over QUIC; a core is restarted or killed while clients stay
//! connected to their edges. What history can repair never reaches the clients; what it cannot
//! is signalled (2500 / 3010), never silent.

use std::time::Duration;

use serde_json::json;
use spindle_tests::gaps::{Ledger, Recorder, Seen, Verdict, judge};
use spindle_tests::split::wait_linked;
use spindle_tests::{Client, Format, OrFail, Split, SplitOptions, fixture};

async fn client_on(edge: &spindle_tests::Server, user: &str) -> Client {
    Client::connect(&edge.ws_url(), Format::Protobuf, &fixture::token(user))
        .await
        .or_fail()
        .0
}

/// Two cores on one Redis (a prefix of their own) and two edges knowing both, core1 first.
async fn two_cores_on_redis() -> Split {
    let prefix = format!("spindle-continuity-{}", fixture::unique("p"));
    Split::start_with(SplitOptions {
        cores: 2,
        edges: 2,
        patch: json!({"engine": {"type": "redis", "redis": {
            "address": "redis://127.0.0.1:6379", "prefix": prefix}}}),
        ..SplitOptions::default()
    })
    .await
    .or_fail()
}

/// A fault for [`publish_through_a_fault`] to inject.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL core1.
    KillCore,
    /// SIGTERM core1, then SIGTERM core2 after core1 is back (a rolling restart).
    RollingRestart,
}

/// Recorders on every edge in two channels; `count` publications per channel through the API
/// of a core that stays up at the time, `fault` injected a third of the way; the checker's
/// verdict, and the recorders.
async fn publish_through_a_fault(
    split: &mut Split,
    fault: Fault,
    count: u32,
) -> (Verdict, Vec<Recorder>) {
    let channels = vec![
        fixture::unique("rec:continuity-a"),
        fixture::unique("rec:continuity-b"),
    ];
    let listen = Duration::from_millis(40) * count + Duration::from_secs(8);
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
    for n in 1..=count {
        if n == count / 3 {
            match fault {
                Fault::KillCore => split.kill_core(0).await.or_fail(),
                Fault::RollingRestart => {
                    split.restart_core_at(0, Duration::ZERO).await.or_fail();
                }
            }
        }
        if fault_is_rolling(fault) && n == 2 * count / 3 {
            split.restart_core_at(1, Duration::ZERO).await.or_fail();
        }
        // Through whichever core is up (core2 unless it is the one restarting).
        let publisher = split
            .core_at(1)
            .or(split.core_at(0))
            .unwrap_or_else(|| panic!("no core is running"));
        for channel in &channels {
            let data = json!({"n": n});
            let answer = publisher.publish(channel, data.clone()).await.or_fail();
            ledger.published_by_api(channel, &answer, data.to_string().as_bytes());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
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
    (judge(&ledger, logs), recorders)
}

fn fault_is_rolling(fault: Fault) -> bool {
    matches!(fault, Fault::RollingRestart)
}

/// Core-kill runs: `SPINDLE_CONTINUITY_RUNS` (the 20-run figure of docs/benchmarks.md), one by
/// default.
fn kill_runs() -> usize {
    std::env::var("SPINDLE_CONTINUITY_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(1)
}

#[tokio::test]
async fn a_killed_core_is_invisible_to_the_clients_of_two_cores_on_redis() {
    let mut pauses = Vec::new();
    for run in 1..=kill_runs() {
        let mut split = two_cores_on_redis().await;
        let (verdict, recorders) = publish_through_a_fault(&mut split, Fault::KillCore, 120).await;
        eprintln!("core kill, run {run}: {verdict}");
        assert!(verdict.is_clean(), "run {run}: {verdict}");
        assert_eq!(
            verdict.deliveries,
            2 * 2 * 120,
            "every publication at every client"
        );
        for recorder in &recorders {
            assert_eq!(
                recorder.signals(),
                0,
                "run {run}: the clients noticed nothing"
            );
            pauses.push(recorder.longest_pause);
        }
        for edge in &split.edges {
            wait_linked(edge).await.or_fail();
        }
    }
    pauses.sort();
    let at = |q: f64| pauses[((pauses.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "core kill: longest delivery pause per client over {} runs: min {:?}, p50 {:?}, p99 {:?}, max {:?}",
        kill_runs(),
        pauses[0],
        at(0.5),
        at(0.99),
        pauses[pauses.len() - 1]
    );
    assert!(
        at(0.99) <= Duration::from_secs(3),
        "delivery pause p99 {:?} (at most 3 s)",
        at(0.99)
    );
}

#[tokio::test]
async fn a_rolling_restart_of_the_cores_is_invisible_to_clients() {
    let mut split = two_cores_on_redis().await;
    let (verdict, recorders) =
        publish_through_a_fault(&mut split, Fault::RollingRestart, 150).await;
    eprintln!("rolling restart: {verdict}");
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.deliveries, 2 * 2 * 150);
    for recorder in &recorders {
        assert_eq!(recorder.signals(), 0, "the clients noticed nothing");
    }
}

#[tokio::test]
async fn a_core_restart_keeps_clients_and_signals_only_what_history_lost() {
    let mut split = Split::start(1).await.or_fail();
    let kept = fixture::unique("rec:restart");
    let plain = fixture::unique("chat:restart");
    let mut client = client_on(&split.edges[0], "carol").await;
    client.subscribe_ok(&kept).await.or_fail();
    client.subscribe_ok(&plain).await.or_fail();

    // When the edge is linked again (its `/health` 200 after the restart).
    let health_url = split.edges[0].addr();
    split
        .restart_core(Duration::from_millis(500))
        .await
        .or_fail();
    let linked = tokio::spawn(async move {
        loop {
            if let Ok(response) = spindle_tests::http::get(health_url, "/health").await
                && response.status == 200
            {
                return std::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // `chat:` keeps no history: whatever was published meanwhile is gone, and the client is
    // told at once (2500, the SDK resubscribes). The memory broker's history went with the
    // core (another epoch): `rec:` is told too, within a second of the edge's new link. The
    // connection itself stays open.
    let mut unsubscribed = Vec::new();
    while unsubscribed.len() < 2 {
        let push = client.next_push(Duration::from_secs(10)).await.or_fail();
        let Some(unsubscribe) = push.unsubscribe.clone() else {
            panic!("expected an unsubscribe, got {push:?}");
        };
        assert_eq!(unsubscribe.code, 2500, "{unsubscribe:?}");
        unsubscribed.push((push.channel, std::time::Instant::now()));
    }
    let linked = linked
        .await
        .unwrap_or_else(|e| panic!("health poller: {e}"));
    let at = |channel: &str| {
        unsubscribed
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("{channel} was not signalled: {unsubscribed:?}"))
    };
    let after_link = at(&kept).saturating_duration_since(linked);
    eprintln!("another epoch signalled {after_link:?} after the new link");
    assert!(after_link <= Duration::from_secs(1), "{after_link:?}");
    assert!(
        at(&plain) <= linked,
        "a channel without history is signalled at the loss, before any new link"
    );
    wait_linked(&split.edges[0]).await.or_fail();
    for channel in [&kept, &plain] {
        client.subscribe_ok(channel).await.or_fail();
        split
            .core()
            .publish(channel, json!({"after": true}))
            .await
            .or_fail();
        let publication = client.next_publication(channel).await.or_fail();
        assert_eq!(&publication.data[..], br#"{"after":true}"#);
    }
}

#[tokio::test]
async fn a_stalled_edge_is_cut_at_its_byte_bound_and_repairs_when_it_comes_back() {
    // Liveness would cut the stalled edge after `link_timeout`: long here, so that only the
    // byte bound of its backlog can.
    let split = Split::start_with(SplitOptions {
        cores: 1,
        edges: 2,
        patch: json!({
            "mesh": {"link_timeout": "30s", "edge_queue_max_size": 1 << 20},
            "client": {"queue_max_size": 32 << 20},
        }),
        ..SplitOptions::default()
    })
    .await
    .or_fail();
    let channels = vec![fixture::unique("rec:stall")];
    let mut readers = Vec::new();
    for (i, edge) in split.edges.iter().enumerate() {
        let mut recorder = Recorder::start(&edge.ws_url(), &format!("reader{i}"), &channels)
            .await
            .or_fail();
        readers.push(tokio::spawn(async move {
            recorder
                .run_for(Duration::from_secs(15))
                .await
                .map(|()| recorder)
        }));
    }
    let channel = &channels[0];
    let mut ledger = Ledger::default();
    let core = split.core();
    let mut publish = async |data: serde_json::Value| {
        let answer = core.publish(channel, data.clone()).await.or_fail();
        ledger.published_by_api(channel, &answer, data.to_string().as_bytes());
    };
    publish(json!({"n": 0})).await;
    publish(json!({"n": 1})).await;
    // edge2 stops reading; ~10 MB more than QUIC's 8 MB stream window will hold for it.
    split.edges[1].pause().await.or_fail();
    let filler = "x".repeat(110_000);
    for n in 2..97 {
        publish(json!({"n": n, "filler": filler})).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !split.core().stderr().contains("edge cut") {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled edge was not cut; core log:\n{}",
            split.core().stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    split.edges[1].resume().await.or_fail();
    wait_linked(&split.edges[1]).await.or_fail();
    publish(json!({"n": 97})).await;
    publish(json!({"n": 98})).await;
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
    eprintln!("stalled edge: {verdict}");
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.deliveries, 2 * 99, "both edges, every publication");
    for recorder in &recorders {
        assert_eq!(
            recorder.signals(),
            0,
            "{} noticed the stall",
            recorder.user()
        );
    }
    eprintln!(
        "stalled edge: longest pause at the other edge {:?}",
        recorders[0].longest_pause
    );
    // Cut once, linked again once: no flapping.
    let metrics = split.edges[1].get("/metrics").await.or_fail();
    let reconnects = String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|line| {
            line.strip_prefix("spindle_mesh_reconnects_total{peer=\"core1\"} ")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no reconnect count"));
    assert_eq!(reconnects.trim(), "1", "edge2 linked again once");
}

/// The core's `spindle_mesh_interest_channels` for `edge` (0 when the edge is not listed).
async fn interest_at(core: &spindle_tests::Server, edge: &str) -> usize {
    let Ok(response) = core.get("/metrics").await else {
        return 0;
    };
    let wanted = format!("spindle_mesh_interest_channels{{edge=\"{edge}\"}} ");
    String::from_utf8_lossy(&response.body)
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as usize)
}

/// Waits until `core` holds `count` channels of interest for `edge`; how long it took.
async fn interest_reaches(
    core: &spindle_tests::Server,
    edge: &str,
    count: usize,
    limit: Duration,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let now = interest_at(core, edge).await;
        if now == count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{edge}'s interest at the core is {now}, not {count}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_edge_failing_over_with_10000_channels_restores_its_interest_within_a_second() {
    let prefix = format!("spindle-interest-{}", fixture::unique("p"));
    let mut split = Split::start_with(SplitOptions {
        cores: 2,
        edges: 1,
        patch: json!({"engine": {"type": "redis", "redis": {
            "address": "redis://127.0.0.1:6379", "prefix": prefix}}}),
        ..SplitOptions::default()
    })
    .await
    .or_fail();
    // 100 connections × 100 channels (`client.channel_limit` is 128).
    let base = fixture::unique("rec:many");
    let mut subscribing = Vec::new();
    for c in 0..100 {
        let mut client = client_on(&split.edges[0], &format!("u{c}")).await;
        let base = base.clone();
        subscribing.push(tokio::spawn(async move {
            for k in 0..100 {
                client
                    .subscribe_ok(&format!("{base}-{c}-{k}"))
                    .await
                    .or_fail();
            }
            client
        }));
    }
    let mut clients = Vec::new();
    for task in subscribing {
        clients.push(task.await.unwrap_or_else(|e| panic!("subscriber: {e}")));
    }
    let core1 = split.core_at(0).unwrap_or_else(|| panic!("core1 runs"));
    interest_reaches(core1, "edge1", 10_000, Duration::from_secs(10)).await;

    split.kill_core(0).await.or_fail();
    // The edge sees the silence, dials core2 and sends its whole set as one snapshot.
    let edge = &split.edges[0];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let health = edge.get("/health").await.map(|r| r.status).unwrap_or(0);
        if health == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edge never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_linked(edge).await.or_fail();
    let core2 = split.core_at(1).unwrap_or_else(|| panic!("core2 runs"));
    let took = interest_reaches(core2, "edge1", 10_000, Duration::from_secs(10)).await;
    eprintln!("10,000 channels: interest at the new core {took:?} after the link");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    for client in &mut clients {
        client
            .expect_silence(Duration::from_millis(10))
            .await
            .or_fail();
    }

    // Every client leaves: nothing of the edge's interest stays behind.
    for client in clients {
        client.close().await;
    }
    interest_reaches(core2, "edge1", 0, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn interest_withdrawn_and_added_again_under_publications_loses_nothing_silently() {
    // Clients on two edges unsubscribe and at once resubscribe (recovering) every few tens of
    // milliseconds, or reconnect with server-side subscriptions, while the backend publishes: each churn withdraws and re-adds the channel's
    // interest at the core when the client is its edge's only subscriber, and races the
    // recovery read against live publications.
    let split = Split::start(2).await.or_fail();
    let channels = vec![
        fixture::unique("rec:churn-a"),
        fixture::unique("rec:churn-b"),
    ];
    let duration = Duration::from_secs(8);
    let mut readers = Vec::new();
    for (i, edge) in split.edges.iter().enumerate() {
        // Client-side subscriptions churned by unsubscribe + subscribe, server-side ones
        // (the token's `channels`) by reconnecting with recovery through connect.
        let kinds = [
            (false, Some(37)),
            (false, Some(53)),
            (false, None),
            (true, Some(97)),
            (true, None),
        ];
        for (k, (server_side, churn)) in kinds.into_iter().enumerate() {
            let user = format!("churner{i}-{k}");
            let url = edge.ws_url();
            let mut recorder = if server_side {
                Recorder::start_server_side(&url, &user, &channels).await
            } else {
                Recorder::start(&url, &user, &channels).await
            }
            .or_fail();
            readers.push(tokio::spawn(async move {
                recorder
                    .run_churning(duration, churn.map(Duration::from_millis))
                    .await
                    .map(|()| recorder)
            }));
        }
    }
    let mut ledger = Ledger::default();
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < duration - Duration::from_secs(2) {
        n += 1;
        for channel in &channels {
            let data = json!({"n": n});
            let answer = split.core().publish(channel, data.clone()).await.or_fail();
            ledger.published_by_api(channel, &answer, data.to_string().as_bytes());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
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
    eprintln!("interest churn: {verdict}");
    assert!(verdict.is_clean(), "{verdict}");
    assert!(
        ledger.len() > 200,
        "enough publications raced: {}",
        ledger.len()
    );
}
