//! The PostgreSQL broker (and its map storage, with `<prefix>_map_publish` inside an
//! application's transaction) passes the conformance suites against the server at
//! `SPINDLE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`), with the memory
//! presence manager (presence is not kept in PostgreSQL). Each case uses its own table prefix.
//! If PostgreSQL is not reachable the tests fail: they never skip.
#![allow(clippy::unwrap_used)]

mod conformance;
mod map_conformance;

use conformance::{Fixture, PRESENCE_TTL, Recorder, Seen, publication, stream, with_history};
use spindle_core::broker::{
    Broker, EventHandler, HistoryQuery, HistoryReadError, PostgresBroker, PostgresMapBroker,
    PostgresOptions, ReadError, StreamPosition,
};
use spindle_core::clock::SystemClock;
use spindle_core::presence::MemoryPresenceManager;
use std::sync::Arc;
use std::time::Duration;

pub fn dsn() -> String {
    std::env::var("SPINDLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Options under a fresh table prefix. Polling every 50 ms; LISTEN on unless `notify` is off.
pub fn options(notify: bool) -> PostgresOptions {
    PostgresOptions {
        dsn: dsn(),
        table_prefix: format!("spt_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        pool_size: 2,
        poll_interval: Duration::from_millis(50),
        batch_size: 100,
        use_notify: notify,
        cleanup_interval: Duration::from_secs(60),
        idempotent_result_ttl: Duration::from_secs(300),
        outbox_retention: Duration::from_secs(600),
        skip_schema_init: false,
        connect_timeout: Duration::from_secs(2),
    }
}

async fn broker_with(
    options: &PostgresOptions,
    handler: Arc<dyn EventHandler>,
) -> Arc<PostgresBroker> {
    let broker = PostgresBroker::connect(options, handler, None)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "these tests need PostgreSQL at {} (set SPINDLE_TEST_POSTGRES): {error}",
                dsn()
            )
        });
    Arc::new(broker)
}

async fn postgres(
    handler: Arc<dyn EventHandler>,
) -> Fixture<PostgresBroker, MemoryPresenceManager> {
    Fixture {
        broker: broker_with(&options(true), handler).await,
        presence: MemoryPresenceManager::new(Arc::new(SystemClock), PRESENCE_TTL),
        advance: Arc::new(|by| Box::pin(tokio::time::sleep(by))),
    }
}

/// Delivery without LISTEN: the poll alone carries every publication, in order.
async fn postgres_polling(
    handler: Arc<dyn EventHandler>,
) -> Fixture<PostgresBroker, MemoryPresenceManager> {
    Fixture {
        broker: broker_with(&options(false), handler).await,
        presence: MemoryPresenceManager::new(Arc::new(SystemClock), PRESENCE_TTL),
        advance: Arc::new(|by| Box::pin(tokio::time::sleep(by))),
    }
}

conformance_tests!(postgres);

/// Map storage on the broker's tables; changes delivered through the outbox.
async fn postgres_maps(
    handler: Arc<dyn EventHandler>,
) -> map_conformance::MapFixture<PostgresMapBroker> {
    let broker = broker_with(&options(true), handler).await;
    let maps = Arc::new(broker.maps());
    let swept = maps.clone();
    map_conformance::MapFixture {
        maps,
        listen: Arc::new(move |channel| {
            let broker = broker.clone();
            Box::pin(async move { broker.subscribe(&channel).await.unwrap() })
        }),
        sweep: Arc::new(move || {
            let swept = swept.clone();
            Box::pin(async move { swept.sweep().await })
        }),
        advance: Arc::new(|by| Box::pin(tokio::time::sleep(by))),
    }
}

map_conformance_tests!(postgres_maps);

/// `<prefix>_map_publish` inside the application's transaction: a rollback changes and
/// delivers nothing, a commit delivers the change once, after the commit.
#[tokio::test]
async fn map_publish_in_the_application_transaction() {
    use spindle_core::maps::{MapBroker, StateQuery};
    let options = options(true);
    let p = options.table_prefix.clone();
    let seen = Arc::new(map_conformance::Recorder::default());
    let broker = broker_with(&options, seen.clone()).await;
    let maps = broker.maps();
    broker.subscribe("board").await.unwrap();
    let settings = map_conformance::settings(spindle_hub::config::MapMode::Persistent, 0, 100);
    // The core has seen the channel (its settings are stored with it).
    let before = maps
        .state("board", settings, StateQuery::default())
        .await
        .unwrap();
    assert_eq!(before.position.offset, 0);

    let mut app = raw().await;
    let publish = format!(
        "SELECT channel_offset, epoch, suppressed FROM {p}_map_publish('board', $1, $2::text::jsonb)"
    );
    let tx = app.transaction().await.unwrap();
    tx.query_one(&publish, &[&"rolled", &r#"{"v":1}"#])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let tx = app.transaction().await.unwrap();
    let row = tx
        .query_one(&publish, &[&"kept", &r#"{"v":2}"#])
        .await
        .unwrap();
    let (offset, epoch, suppressed): (i64, String, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (offset, epoch.as_str(), suppressed),
        (1, before.position.epoch.as_str(), false)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.of("board").is_empty(), "nothing before the commit");
    tx.commit().await.unwrap();

    let changes = seen.wait("board", 1).await;
    assert_eq!(changes[0].key, "kept");
    assert_eq!(changes[0].data.as_ref(), br#"{"v": 2}"#);
    let state = maps
        .state("board", settings, StateQuery::default())
        .await
        .unwrap();
    let keys: Vec<&str> = state
        .entries
        .iter()
        .map(|e| e.publication.key.as_str())
        .collect();
    assert_eq!(keys, ["kept"]);
    let remove = format!("SELECT suppressed FROM {p}_map_remove('board', 'kept')");
    assert!(!app.query_one(&remove, &[]).await.unwrap().get::<_, bool>(0));
    let changes = seen.wait("board", 2).await;
    assert!(changes[1].removed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.of("board").len(), 2, "each change delivered once");
}

mod polling {
    use super::*;
    conformance_tests!(@delivery postgres_polling);
}

async fn raw() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&dsn(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL at {}: {error}", dsn()));
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error() {
    let options = PostgresOptions {
        dsn: "postgres://postgres:secret-pw@127.0.0.1:1/test".to_owned(),
        connect_timeout: Duration::from_millis(300),
        ..options(true)
    };
    let error = PostgresBroker::connect(&options, Arc::new(Recorder::default()), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot connect to postgresql at 127.0.0.1:1"),
        "{error}"
    );
    assert!(!error.contains("secret-pw"), "{error}");
    let bad_prefix = PostgresOptions {
        table_prefix: "Bad-Prefix".to_owned(),
        ..options
    };
    let error = PostgresBroker::connect(&bad_prefix, Arc::new(Recorder::default()), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("table_prefix"), "{error}");
}

/// Drops what test runs more than an hour old left behind (tables and functions of `spt_*`
/// prefixes), so the shared `test` database does not grow run after run.
async fn drop_stale_test_schemas() {
    raw()
        .await
        .batch_execute(
            r#"DO $$
            DECLARE
                prefix text;
                object record;
            BEGIN
                FOR prefix IN
                    SELECT substr(c.relname, 1, length(c.relname) - length('_migrations'))
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relkind = 'r'
                      AND c.relname LIKE 'spt\_%\_migrations'
                      AND (xpath('/row/t/text()', query_to_xml(format(
                            'SELECT max(applied_at) < now() - interval ''1 hour'' AS t FROM %I',
                            c.relname), false, true, '')))[1]::text = 'true'
                LOOP
                    FOR object IN
                        SELECT p.oid::regprocedure AS f FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = current_schema() AND p.proname LIKE prefix || '\_%'
                    LOOP
                        EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', object.f);
                    END LOOP;
                    FOR object IN
                        SELECT c.relname AS t FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = current_schema() AND c.relkind = 'r'
                          AND c.relname LIKE prefix || '\_%'
                    LOOP
                        EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', object.t);
                    END LOOP;
                END LOOP;
            END $$"#,
        )
        .await
        .unwrap();
}

/// Migrations run once: a second start (and `migrate`) finds the schema current.
#[tokio::test]
async fn migrations_apply_once() {
    drop_stale_test_schemas().await;
    let options = options(true);
    let first = spindle_core::broker::migrate_postgres(&options)
        .await
        .unwrap();
    assert_eq!(first.applied, [1, 2]);
    let again = spindle_core::broker::migrate_postgres(&options)
        .await
        .unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.version, spindle_core::broker::POSTGRES_SCHEMA_VERSION);
    let skip = PostgresOptions {
        skip_schema_init: true,
        ..options.clone()
    };
    PostgresBroker::connect(&skip, Arc::new(Recorder::default()), None)
        .await
        .unwrap();
    let missing = PostgresOptions {
        table_prefix: "spt_never_migrated".to_owned(),
        ..skip
    };
    let error = PostgresBroker::connect(&missing, Arc::new(Recorder::default()), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("spindle migrate"), "{error}");
}

/// What losing a stream's meta row (a restore from an old backup, a manual cleanup) does: the
/// next publication starts a new epoch and the old position is unrecoverable.
#[tokio::test]
async fn a_lost_meta_row_starts_a_new_epoch() {
    let options = options(true);
    let broker = broker_with(&options, Arc::new(Recorder::default())).await;
    for n in ["1", "2"] {
        broker
            .publish("lost", publication(n), &with_history(10))
            .await
            .unwrap();
    }
    let before = broker
        .history("lost", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    assert_eq!(before.top.offset, 2);
    let deleted = raw()
        .await
        .execute(
            &format!(
                "DELETE FROM {}_meta WHERE channel = 'lost'",
                options.table_prefix
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(deleted, 1);

    let after = broker
        .publish("lost", publication("3"), &with_history(10))
        .await
        .unwrap()
        .position
        .unwrap();
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, before.top.epoch);
    let read = broker
        .history("lost", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    let data: Vec<_> = read
        .publications
        .iter()
        .map(|p| p.publication.data.clone())
        .collect();
    assert_eq!(data, ["3"], "publications of the old epoch are gone");
    let old = HistoryQuery {
        since: Some(StreamPosition::new(2, before.top.epoch)),
        ..Default::default()
    };
    assert_eq!(
        broker.history("lost", &old, &stream(10)).await,
        Err(HistoryReadError::Read(ReadError::Unrecoverable))
    );
}

/// An application publishes inside its own transaction: a rollback delivers nothing and
/// stores nothing; a commit delivers exactly once, with the next offset, after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_publish_commits_with_the_business_write() {
    let options = options(true);
    let p = options.table_prefix.clone();
    let seen = Arc::new(Recorder::default());
    let broker = broker_with(&options, seen.clone()).await;
    broker.subscribe("orders").await.unwrap();
    let first = broker
        .publish("orders", publication("from-api"), &with_history(10))
        .await
        .unwrap()
        .position
        .unwrap();
    assert_eq!(first.offset, 1);

    let mut app = raw().await;
    app.batch_execute(&format!(
        "CREATE TABLE {p}_app_orders (id integer PRIMARY KEY, item text NOT NULL)"
    ))
    .await
    .unwrap();
    let publish = format!(
        "SELECT \"offset\", epoch, suppressed FROM {p}_stream_publish('orders', $1::text::jsonb, 10)"
    );

    let tx = app.transaction().await.unwrap();
    tx.execute(
        &format!("INSERT INTO {p}_app_orders VALUES (1, 'rolled back')"),
        &[],
    )
    .await
    .unwrap();
    let row = tx.query_one(&publish, &[&r#"{"order":1}"#]).await.unwrap();
    assert_eq!(
        row.get::<_, i64>(0),
        2,
        "the offset is taken inside the transaction"
    );
    tx.rollback().await.unwrap();

    let tx = app.transaction().await.unwrap();
    tx.execute(
        &format!("INSERT INTO {p}_app_orders VALUES (2, 'committed')"),
        &[],
    )
    .await
    .unwrap();
    let row = tx.query_one(&publish, &[&r#"{"order":2}"#]).await.unwrap();
    let (offset, epoch, suppressed): (i64, String, bool) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (offset, epoch.as_str(), suppressed),
        (2, first.epoch.as_str(), false)
    );
    // Not delivered before the commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.of("orders").len(), 1, "nothing before the commit");
    tx.commit().await.unwrap();

    let events = seen.wait("orders", 2).await;
    let Seen::Publication { position, data, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        position.as_ref(),
        Some(&StreamPosition::new(2, first.epoch.clone()))
    );
    assert_eq!(data.as_ref(), br#"{"order": 2}"#);
    // Exactly once: a later marker arrives right after it, nothing in between.
    broker
        .publish("orders", publication("marker"), &with_history(10))
        .await
        .unwrap();
    let events = seen.wait("orders", 3).await;
    assert!(matches!(&events[2], Seen::Publication { data, .. } if data.as_ref() == b"marker"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.of("orders").len(), 3);

    let history = broker
        .history("orders", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [1, 2, 3]);
    let rows: i64 = app
        .query_one(&format!("SELECT count(*) FROM {p}_app_orders"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 1,
        "the business write committed with its event, not the other"
    );
}

/// A NOTIFY that never arrives (here: a node not listening at all, and a publication made by
/// a transaction in another session) costs latency only: the poll finds every row in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_delivers_in_offset_order() {
    let options = options(false);
    let seen = Arc::new(Recorder::default());
    let broker = broker_with(&options, seen.clone()).await;
    broker.subscribe("poll").await.unwrap();
    let app = raw().await;
    for n in 1..=20 {
        if n % 2 == 0 {
            app.execute(
                &format!(
                    "SELECT * FROM {}_stream_publish('poll', $1::bytea, 100)",
                    options.table_prefix
                ),
                &[&n.to_string().into_bytes()],
            )
            .await
            .unwrap();
        } else {
            broker
                .publish("poll", publication(&n.to_string()), &with_history(100))
                .await
                .unwrap();
        }
    }
    let offsets: Vec<u64> = seen
        .wait("poll", 20)
        .await
        .iter()
        .map(|s| match s {
            Seen::Publication { position, .. } => position.as_ref().unwrap().offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(offsets, (1..=20).collect::<Vec<_>>());
}
