//! Continuity across the mesh (issue 15, docs/architecture.md §9): real `spindle core` and
//! `spindle edge` processes over QUIC; a core is restarted or killed while clients stay
//! connected to their edges. What history can repair never reaches the clients; what it cannot
//! is signalled (2500 / 3010), never silent.

use std::time::{Duration, Instant};

use serde_json::json;
use spindle_tests::client::Event;
use spindle_tests::split::wait_linked;
use spindle_tests::{Client, Format, OrFail, Split, SplitOptions, fixture};

async fn client_on(edge: &spindle_tests::Server, user: &str) -> Client {
    Client::connect(&edge.ws_url(), Format::Protobuf, &fixture::token(user))
        .await
        .or_fail()
        .0
}

/// What one client saw of one channel.
#[derive(Debug, Default)]
struct Seen {
    offsets: Vec<u64>,
    /// The longest wait between two publications.
    longest_pause: Duration,
    last: Option<Instant>,
}

impl Seen {
    fn publication(&mut self, offset: u64) {
        let now = Instant::now();
        if let Some(last) = self.last {
            self.longest_pause = self.longest_pause.max(now - last);
        }
        self.last = Some(now);
        self.offsets.push(offset);
    }
}

/// Reads `client` until it has `count` publications of `channel`; any other push (an
/// unsubscribe, a disconnect) or a close fails the test: the client must not notice anything.
async fn read_all(mut client: Client, channel: String, count: usize) -> Seen {
    let mut seen = Seen::default();
    while seen.offsets.len() < count {
        let event = client.next_event(Duration::from_secs(15)).await;
        match event.or_fail() {
            Event::Ping => {}
            Event::Reply(reply) => match reply.push {
                Some(push) if push.channel == channel && push.r#pub.is_some() => {
                    seen.publication(push.r#pub.map(|p| p.offset).unwrap_or_default());
                }
                _ => panic!("the client noticed the fault: {reply:?} (after {seen:?})"),
            },
            Event::Closed(close) => panic!("the client was disconnected: {close:?} ({seen:?})"),
        }
    }
    seen
}

#[tokio::test]
async fn a_killed_core_is_invisible_to_the_clients_of_two_cores_on_redis() {
    let prefix = format!("spindle-failover-{}", fixture::unique("p"));
    let mut split = Split::start_with(SplitOptions {
        cores: 2,
        edges: 2,
        patch: json!({"engine": {"type": "redis", "redis": {
            "address": "redis://127.0.0.1:6379", "prefix": prefix}}}),
    })
    .await
    .or_fail();
    let channel = fixture::unique("rec:failover");
    let mut readers = Vec::new();
    for (i, edge) in split.edges.iter().enumerate() {
        let mut client = client_on(edge, &format!("reader{i}")).await;
        client.subscribe_ok(&channel).await.or_fail();
        readers.push(tokio::spawn(read_all(client, channel.clone(), 120)));
    }
    // Both edges dialled core1 first; the backend publishes through core2 all along.
    let started = Instant::now();
    for n in 1..=120u32 {
        if n == 40 {
            split.kill_core(0).await.or_fail();
        }
        let publisher = split
            .core_at(1)
            .unwrap_or_else(|| panic!("core2 is not running"));
        publisher.publish(&channel, json!({"n": n})).await.or_fail();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for reader in readers {
        let seen = reader.await.unwrap_or_else(|e| panic!("reader: {e}"));
        let expected: Vec<u64> = (1..=120).collect();
        assert_eq!(seen.offsets, expected, "every publication, once, in order");
        eprintln!(
            "failover: longest delivery pause {:?} (run took {:?})",
            seen.longest_pause,
            started.elapsed()
        );
        assert!(
            seen.longest_pause <= Duration::from_secs(3),
            "delivery paused {:?} (at most 3 s)",
            seen.longest_pause
        );
    }
    for edge in &split.edges {
        wait_linked(edge).await.or_fail();
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

    split
        .restart_core(Duration::from_millis(500))
        .await
        .or_fail();
    // `chat:` keeps no history: whatever was published meanwhile is gone, and the client is
    // told at once (2500, the SDK resubscribes). The memory broker's history went with the
    // core (another epoch): `rec:` is told too, once the edge is linked again. The connection
    // itself stays open.
    let mut unsubscribed = Vec::new();
    while unsubscribed.len() < 2 {
        let push = client.next_push(Duration::from_secs(10)).await.or_fail();
        let Some(unsubscribe) = push.unsubscribe.clone() else {
            panic!("expected an unsubscribe, got {push:?}");
        };
        assert_eq!(unsubscribe.code, 2500, "{unsubscribe:?}");
        unsubscribed.push(push.channel);
    }
    unsubscribed.sort();
    let mut expected = vec![kept.clone(), plain.clone()];
    expected.sort();
    assert_eq!(unsubscribed, expected);
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
