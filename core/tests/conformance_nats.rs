//! The NATS broker (PUB/SUB only) passes the delivery subset of the conformance suite against
//! the NATS server at `SPINDLE_TEST_NATS` (default `nats://127.0.0.1:4222`), with the memory
//! presence manager beside it (history and presence come from another engine, as in
//! Centrifugo). Each case uses its own subject prefix. If NATS is not reachable the tests
//! fail: they never skip.

mod conformance;

use conformance::{Fixture, PRESENCE_TTL};
use spindle_core::broker::{EventHandler, NatsBroker, NatsOptions};
use spindle_core::clock::ManualClock;
use spindle_core::presence::MemoryPresenceManager;
use std::sync::Arc;
use std::time::Duration;

fn nats_options() -> NatsOptions {
    NatsOptions {
        url: std::env::var("SPINDLE_TEST_NATS")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
        prefix: format!("spindle-test-{}", uuid::Uuid::new_v4().simple()),
        connect_timeout: Duration::from_secs(2),
    }
}

async fn nats(handler: Arc<dyn EventHandler>) -> Fixture<NatsBroker, MemoryPresenceManager> {
    let options = nats_options();
    let broker = NatsBroker::connect(&options, handler, None)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "these tests need a NATS server at {} (set SPINDLE_TEST_NATS): {error}",
                options.url
            )
        });
    let clock = Arc::new(ManualClock::new());
    let advance_clock = clock.clone();
    Fixture {
        broker: Arc::new(broker),
        presence: MemoryPresenceManager::new(clock, PRESENCE_TTL),
        advance: Arc::new(move |by| {
            advance_clock.advance(by);
            Box::pin(async {})
        }),
    }
}

conformance_tests!(@delivery nats);

#[tokio::test]
async fn an_unreachable_nats_is_a_clear_error() {
    let options = NatsOptions {
        url: "nats://127.0.0.1:1".to_owned(),
        prefix: "x".to_owned(),
        connect_timeout: Duration::from_millis(300),
    };
    let recorder: Arc<dyn EventHandler> = Arc::new(conformance::Recorder::default());
    let error = NatsBroker::connect(&options, recorder, None)
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("cannot connect to nats at nats://127.0.0.1:1"),
        "{text}"
    );
}

/// Two brokers on one prefix: what one publishes reaches the other's handler, right after
/// the other's subscribe returned; an unsubscribed channel reaches it no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_between_two_connections() {
    let options = nats_options();
    let seen = Arc::new(conformance::Recorder::default());
    let a = NatsBroker::connect(&options, Arc::new(conformance::Recorder::default()), None)
        .await
        .expect("NATS at 127.0.0.1:4222");
    let b = NatsBroker::connect(&options, seen.clone(), None)
        .await
        .expect("NATS at 127.0.0.1:4222");
    use spindle_core::broker::{Broker, PublishOptions};
    b.subscribe("x y").await.expect("subscribe");
    b.subscribe("gone").await.expect("subscribe");
    b.unsubscribe("gone").await.expect("unsubscribe");
    a.publish(
        "gone",
        conformance::publication("never"),
        &PublishOptions::default(),
    )
    .await
    .expect("publish");
    for n in 0..5 {
        a.publish(
            "x y",
            conformance::publication(&n.to_string()),
            &PublishOptions::default(),
        )
        .await
        .expect("publish");
    }
    let delivered: Vec<String> = seen
        .wait("x y", 5)
        .await
        .iter()
        .map(conformance::data_of)
        .collect();
    assert_eq!(delivered, ["0", "1", "2", "3", "4"], "in order");
    // A duplicate would come late: give it the time to.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.of("x y").len(), 5, "each once");
    // Unsubscribed channels are not delivered (published before the others, on one connection).
    assert!(seen.of("gone").is_empty());
    assert!(seen.of("unsubscribed").is_empty());
}
