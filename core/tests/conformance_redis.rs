//! The Redis broker and presence manager pass the conformance suite against the Redis server
//! at `SPINDLE_TEST_REDIS` (default `redis://127.0.0.1:6379`). Each case uses its own key
//! prefix. If Redis is not reachable the tests fail: they never skip.

mod conformance;

use bytes::Bytes;
use conformance::Fixture;
use spindle_core::broker::{EventHandler, RedisBroker, RedisConnection, RedisOptions, RedisServer};
use spindle_core::presence::RedisPresenceManager;
use std::sync::Arc;
use std::time::Duration;

fn redis_address() -> String {
    std::env::var("SPINDLE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn redis_options() -> RedisOptions {
    conformance::redis::options(vec![RedisServer::Single(redis_address())])
}

async fn redis(handler: Arc<dyn EventHandler>) -> Fixture<RedisBroker, RedisPresenceManager> {
    redis_with(redis_options(), handler).await
}

async fn redis_with(
    options: RedisOptions,
    handler: Arc<dyn EventHandler>,
) -> Fixture<RedisBroker, RedisPresenceManager> {
    let what = format!(
        "the Redis server at {} (set SPINDLE_TEST_REDIS)",
        redis_address()
    );
    conformance::redis::fixture(&options, handler, &what).await
}

conformance_tests!(redis);

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let options = RedisOptions {
        connect_timeout: Duration::from_millis(300),
        ..RedisOptions::single("redis://127.0.0.1:1", "x")
    };
    let error = RedisConnection::connect(&options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot connect to redis at redis://127.0.0.1:1"),
        "{error}"
    );
}

/// What a Redis restart without persistence (or an eviction) does to a stream: its meta key is
/// gone, so the next publication starts a new epoch and the old position is unrecoverable —
/// even if the list of publications survived.
#[tokio::test]
async fn a_lost_meta_key_starts_a_new_epoch() {
    use fred::interfaces::{ClientLike, KeysInterface};
    use spindle_core::broker::{Broker, HistoryQuery, HistoryReadError, ReadError, StreamPosition};

    let options = redis_options();
    let prefix = options.prefix.clone();
    let fixture = redis_with(options.clone(), Arc::new(conformance::Recorder::default())).await;
    let broker = fixture.broker;
    let publish = conformance::with_history(10);
    for n in ["1", "2"] {
        broker
            .publish("lost", conformance::publication(n), &publish)
            .await
            .unwrap();
    }
    let before = broker
        .history("lost", &HistoryQuery::default(), &conformance::stream(10))
        .await
        .unwrap();
    assert_eq!(before.top.offset, 2);

    let raw = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&redis_address()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    let meta_key = format!("{prefix}.meta.{{lost}}");
    let deleted: i64 = raw.del(&meta_key).await.unwrap();
    assert_eq!(deleted, 1, "{meta_key} is the stream's meta key");
    let _: () = raw.quit().await.unwrap();

    let after = broker
        .publish("lost", conformance::publication("3"), &publish)
        .await
        .unwrap()
        .position
        .unwrap();
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, before.top.epoch);
    let read = broker
        .history("lost", &HistoryQuery::default(), &conformance::stream(10))
        .await
        .unwrap();
    let data: Vec<_> = read
        .publications
        .iter()
        .map(|p| p.publication.data.clone())
        .collect();
    assert_eq!(
        data,
        ["3"],
        "publications of the old epoch are not renumbered"
    );
    let old = HistoryQuery {
        since: Some(StreamPosition::new(2, before.top.epoch)),
        ..Default::default()
    };
    assert_eq!(
        broker.history("lost", &old, &conformance::stream(10)).await,
        Err(HistoryReadError::Read(ReadError::Unrecoverable))
    );
}

/// Every key the broker and presence manager write expires by itself: nothing is left behind
/// by a channel nobody uses any more.
#[tokio::test]
async fn every_key_has_a_ttl() {
    use fred::interfaces::{ClientLike, KeysInterface};
    use spindle_core::broker::{Broker, HistoryQuery, PublishOptions};
    use spindle_core::presence::PresenceManager;

    let options = redis_options();
    let prefix = options.prefix.clone();
    let fixture = redis_with(options.clone(), Arc::new(conformance::Recorder::default())).await;
    let keyed = PublishOptions {
        idempotency_key: "k".into(),
        ..conformance::with_history(10)
    };
    fixture
        .broker
        .publish("ch", conformance::publication("1"), &keyed)
        .await
        .unwrap();
    fixture
        .broker
        .history(
            "read-only",
            &HistoryQuery::default(),
            &conformance::stream(10),
        )
        .await
        .unwrap();
    fixture
        .presence
        .add_presence("ch", Default::default())
        .await
        .unwrap();

    let raw = fred::prelude::Builder::from_config(
        fred::prelude::Config::from_url(&redis_address()).unwrap(),
    )
    .build()
    .unwrap();
    raw.init().await.unwrap();
    for key in [
        format!("{prefix}.meta.{{ch}}"),
        format!("{prefix}.stream.{{ch}}"),
        format!("{prefix}.idem.{{ch}}.2.ch.k"),
        format!("{prefix}.meta.{{read-only}}"),
        format!("{prefix}.presence.data.{{ch}}"),
        format!("{prefix}.presence.expire.{{ch}}"),
    ] {
        let ttl: i64 = raw.pttl(&key).await.unwrap();
        assert!(ttl > 0, "{key}: pttl {ttl}");
    }
    let _: () = raw.quit().await.unwrap();
}

/// A handler that is slow once (the node's event queue waiting for a core) must not lose the
/// publications that arrive meanwhile: the subscriber buffers a burst of 2,000 for its reader
/// (fred's default buffer held 32 and silently dropped the rest). Every one arrives, once, in
/// the order published, with its own payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_loses_no_burst() {
    use spindle_core::broker::{Broker, JoinLeave, Publication, PublishOptions, StreamPosition};
    use std::sync::Mutex;

    #[derive(Default)]
    struct SlowOnce {
        received: Mutex<Vec<Bytes>>,
    }
    impl EventHandler for SlowOnce {
        fn on_publication(
            &self,
            _channel: &str,
            _position: Option<&StreamPosition>,
            publication: &Publication,
            _prev: Option<&Publication>,
        ) {
            let first = {
                let mut received = self.received.lock().unwrap();
                received.push(publication.data.clone());
                received.len() == 1
            };
            if first {
                std::thread::sleep(Duration::from_millis(1_500));
            }
        }
        fn on_join_leave(&self, _channel: &str, _event: &JoinLeave) {}
    }

    let options = redis_options();
    let handler = Arc::new(SlowOnce::default());
    let subscriber = redis_with(options.clone(), handler.clone()).await;
    subscriber.broker.subscribe("burst").await.unwrap();
    let publisher = redis_with(options, Arc::new(conformance::Recorder::default())).await;
    let total = 2_000;
    for n in 0..total {
        publisher
            .broker
            .publish(
                "burst",
                conformance::publication(&n.to_string()),
                &PublishOptions::default(),
            )
            .await
            .unwrap();
    }
    let count = || handler.received.lock().unwrap().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivered {} of {total}",
            count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A duplicate would arrive late: give it the time to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<Bytes> = (0..total).map(|n| Bytes::from(n.to_string())).collect();
    assert!(
        *handler.received.lock().unwrap() == expected,
        "the burst arrived in order, each publication once"
    );
}
