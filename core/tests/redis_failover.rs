//! History epochs across a Redis failover. A replica promoted while it lagged holds the
//! channel's meta hash with an older top offset; publishing on it under the same epoch would
//! hand out offsets the old master already gave to other publications, and a recovering client
//! would silently miss them. The broker stores the server's `master_replid` in the meta hash
//! and starts a new epoch when it changes; these tests check that on real `redis-server`
//! processes (a master, a replica, a sentinel, started on spare ports), and that nothing else
//! (reconnections, a replica's link dropping) changes the epoch. Without `redis-server` /
//! `redis-cli` they fail, never skip.
#![allow(clippy::unwrap_used)]

mod conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use conformance::{Recorder, publication, stream, with_history};
use redis_process::RedisProcess;
use spindle_core::broker::{
    Broker, HistoryQuery, HistoryReadError, ReadError, RedisBroker, RedisOptions, RedisServer,
    StreamPosition,
};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HISTORY: usize = 100;

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli -p {port} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A field of `INFO replication`.
fn replication(port: u16, field: &str) -> String {
    let info = redis_cli(port, &["info", "replication"]);
    info.lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO replication of :{port}: {info}"))
        .to_owned()
}

/// Polls `check` every 50 ms for up to `within`; panics with `what` when it never holds.
fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master and a replica of it, the replica's link up.
fn master_and_replica() -> (RedisProcess, RedisProcess) {
    let master = redis_process::start(&[], false);
    let replica = redis_process::start(
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
        false,
    );
    wait_until("replica link up", Duration::from_secs(10), || {
        replication(replica.port, "master_link_status") == "up"
    });
    (master, replica)
}

/// Waits until every write on `master` so far reached its replica.
fn replicated(master: &RedisProcess) {
    assert_eq!(
        redis_cli(master.port, &["wait", "1", "5000"]),
        "1",
        "WAIT 1"
    );
}

fn prefix() -> String {
    format!("spindle-test-{}", uuid::Uuid::new_v4().simple())
}

async fn broker_on(server: RedisServer, prefix: &str) -> RedisBroker {
    let options = RedisOptions {
        servers: vec![server],
        connect_timeout: Duration::from_secs(2),
        ..RedisOptions::single("", prefix)
    };
    RedisBroker::connect(&options, Arc::new(Recorder::default()))
        .await
        .unwrap_or_else(|error| panic!("connect a broker: {error}"))
}

async fn broker(port: u16, prefix: &str) -> RedisBroker {
    broker_on(
        RedisServer::Single(format!("redis://127.0.0.1:{port}")),
        prefix,
    )
    .await
}

async fn publish(broker: &RedisBroker, channel: &str, data: &str) -> StreamPosition {
    broker
        .publish(channel, publication(data), &with_history(HISTORY))
        .await
        .unwrap_or_else(|error| panic!("publish {data}: {error}"))
        .position
        .unwrap_or_else(|| panic!("publish {data}: no position"))
}

/// Every retained publication and the top.
async fn history(broker: &RedisBroker, channel: &str) -> (StreamPosition, Vec<(u64, String)>) {
    let result = broker
        .history(channel, &HistoryQuery::default(), &stream(HISTORY))
        .await
        .unwrap_or_else(|error| panic!("history of {channel}: {error}"));
    let items = result
        .publications
        .iter()
        .map(|item| {
            (
                item.offset,
                String::from_utf8_lossy(&item.publication.data).into_owned(),
            )
        })
        .collect();
    (result.top, items)
}

/// Everything any server ever said about positions: one (epoch, offset) must name one
/// publication.
#[derive(Default)]
struct Positions(BTreeMap<(String, u64), String>);

impl Positions {
    fn record(&mut self, position: &StreamPosition, data: &str, source: &str) {
        let key = (position.epoch.clone(), position.offset);
        if let Some(earlier) = self.0.insert(key, data.to_owned())
            && earlier != data
        {
            panic!(
                "({}, {}) names two publications: {earlier:?} and {data:?} ({source})",
                position.epoch, position.offset
            );
        }
    }

    fn record_history(&mut self, top: &StreamPosition, items: &[(u64, String)], source: &str) {
        for (offset, data) in items {
            self.record(
                &StreamPosition::new(*offset, top.epoch.clone()),
                data,
                source,
            );
        }
    }
}

/// The replica is promoted while it lags three publications behind the master (they reach the
/// old master after the promotion, as writes acknowledged just before a failover do): on the
/// promoted server the channel gets a new epoch, both when the first operation there is a
/// publish and when it is a history read, and no (epoch, offset) names two publications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_that_lagged_starts_a_new_epoch() {
    let (master, replica) = master_and_replica();
    let prefix = prefix();
    let old = broker(master.port, &prefix).await;
    let mut positions = Positions::default();
    let channels = ["publish-first", "read-first"];
    let mut before = Vec::new();
    for channel in channels {
        for n in 1..=5 {
            let data = format!("{channel}-{n}");
            positions.record(&publish(&old, channel, &data).await, &data, "old master");
        }
    }
    replicated(&master);
    let replid = replication(replica.port, "master_replid");
    assert_eq!(replid, replication(master.port, "master_replid"));

    // The failover: the replica becomes a master; the old one still takes three writes.
    assert_eq!(redis_cli(replica.port, &["replicaof", "no", "one"]), "OK");
    assert_ne!(replication(replica.port, "master_replid"), replid);
    for channel in channels {
        for n in 1..=3 {
            let data = format!("{channel}-lost-{n}");
            positions.record(&publish(&old, channel, &data).await, &data, "old master");
        }
        let (top, items) = history(&old, channel).await;
        assert_eq!(top.offset, 8);
        positions.record_history(&top, &items, "old master history");
        before.push(top);
    }

    let new = broker(replica.port, &prefix).await;
    // publish-first: the first publish on the promoted server starts a new epoch.
    let after = publish(&new, "publish-first", "publish-first-after").await;
    assert_ne!(
        after.epoch, before[0].epoch,
        "the promoted replica kept the epoch: offset {} reused",
        after.offset
    );
    positions.record(&after, "publish-first-after", "new master");
    // read-first: a history read on the promoted server already shows the new epoch.
    let (top, items) = history(&new, "read-first").await;
    assert_ne!(top.epoch, before[1].epoch, "history read kept the epoch");
    positions.record_history(&top, &items, "new master history");
    let next = publish(&new, "read-first", "read-first-after").await;
    assert_eq!(next.epoch, top.epoch, "a second new epoch after the first");
    positions.record(&next, "read-first-after", "new master");

    for (channel, before) in channels.iter().zip(&before) {
        // What the promoted server holds is kept, under the new epoch, followed by the new
        // publication.
        let (top, items) = history(&new, channel).await;
        positions.record_history(&top, &items, "new master history");
        let mut expected: Vec<(u64, String)> =
            (1..=5).map(|n| (n, format!("{channel}-{n}"))).collect();
        expected.push((6, format!("{channel}-after")));
        assert_eq!(items, expected, "{channel}");
        assert_eq!(top.offset, 6);

        // A client that saw the old master's last publication cannot recover here.
        let error = new
            .history(
                channel,
                &HistoryQuery {
                    since: Some(before.clone()),
                    ..Default::default()
                },
                &stream(HISTORY),
            )
            .await
            .unwrap_err();
        assert_eq!(error, HistoryReadError::Read(ReadError::Unrecoverable));
    }
    // The new epoch holds from now on (the meta hash carries the new server's id).
    let again = publish(&new, "publish-first", "publish-first-again").await;
    assert_eq!(again, StreamPosition::new(7, after.epoch.clone()));
}

/// Reconnections to the same master, a new broker, and the replica's link dropping and
/// coming back (a partial resynchronization) keep the epoch and its offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_master_keeps_the_epoch() {
    let (master, replica) = master_and_replica();
    let prefix = prefix();
    let channel = "steady";
    let first = broker(master.port, &prefix).await;
    let start = publish(&first, channel, "m1").await;
    assert_eq!(start.offset, 1);

    // Every client connection of the broker is cut; fred reconnects.
    redis_cli(master.port, &["client", "kill", "type", "normal"]);
    redis_cli(master.port, &["client", "kill", "type", "pubsub"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let offset = loop {
        match first
            .publish(channel, publication("m2"), &with_history(HISTORY))
            .await
        {
            // A publish caught by the cut may fail after the script ran (or be retried by
            // the client), so the offset may have moved by more than one; the epoch may not.
            Ok(result) => {
                let position = result.position.unwrap();
                assert_eq!(
                    position.epoch, start.epoch,
                    "a reconnection changed the epoch"
                );
                assert!(position.offset >= 2, "{position:?}");
                break position.offset;
            }
            Err(error) => {
                assert!(Instant::now() < deadline, "no reconnection: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // The replica's link drops and comes back with a partial resynchronization.
    replicated(&master);
    let replid = replication(master.port, "master_replid");
    redis_cli(master.port, &["client", "kill", "type", "replica"]);
    wait_until("replica link back up", Duration::from_secs(10), || {
        replication(replica.port, "master_link_status") == "up"
    });
    assert_eq!(replication(master.port, "master_replid"), replid);

    // A new broker on the same master.
    drop(first);
    let second = broker(master.port, &prefix).await;
    let (top, items) = history(&second, channel).await;
    assert_eq!(top.epoch, start.epoch);
    assert_eq!(top.offset, offset);
    assert_eq!(items.first(), Some(&(1, "m1".to_owned())));
    let last = publish(&second, channel, "m3").await;
    assert_eq!(last, StreamPosition::new(offset + 1, start.epoch.clone()));
}

/// A meta hash written by an older Spindle (no `r` field) keeps its epoch and offsets and
/// adopts the server's replication id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_without_a_replication_id_adopts_the_current_one() {
    let master = redis_process::start(&[], false);
    let prefix = prefix();
    let meta = format!("{prefix}.meta.{{legacy}}");
    redis_cli(master.port, &["hset", &meta, "e", "OldEpoch", "s", "7"]);
    let broker = broker(master.port, &prefix).await;
    let position = publish(&broker, "legacy", "first of this version").await;
    assert_eq!(position, StreamPosition::new(8, "OldEpoch"));
    assert_eq!(
        redis_cli(master.port, &["hget", &meta, "r"]),
        replication(master.port, "master_replid")
    );
    assert_eq!(
        publish(&broker, "legacy", "second").await,
        StreamPosition::new(9, "OldEpoch")
    );
}

/// A failover run by Sentinel: the broker follows the sentinel to the promoted replica, and
/// the channel continues under a new epoch there (even a failover that lost nothing cannot be
/// told apart from one that did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_starts_a_new_epoch() {
    const NAME: &str = "spindle-failover";
    let (master, replica) = master_and_replica();
    let sentinel = redis_process::start_sentinel(master.port, NAME);
    // The sentinel learns about the replica from the master's INFO (every 10 s at first).
    wait_until("sentinel sees the replica", Duration::from_secs(30), || {
        redis_cli(sentinel.port, &["sentinel", "replicas", NAME])
            .contains(&replica.port.to_string())
    });
    let prefix = prefix();
    let broker = broker_on(
        RedisServer::Sentinel {
            addresses: vec![format!("127.0.0.1:{}", sentinel.port)],
            master_name: NAME.to_owned(),
            sentinel_user: String::new(),
            sentinel_password: String::new(),
        },
        &prefix,
    )
    .await;
    let channel = "through-sentinel";
    let mut positions = Positions::default();
    for n in 1..=3 {
        let data = format!("s{n}");
        positions.record(&publish(&broker, channel, &data).await, &data, "old master");
    }
    let (before, _) = history(&broker, channel).await;
    replicated(&master);

    // The sentinel refuses (NOGOODSLAVE) until it has the replica's own INFO, which may come a
    // few seconds after it first saw the replica in the master's: ask until it accepts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = redis_cli(sentinel.port, &["sentinel", "failover", NAME]);
        if reply == "OK" {
            break;
        }
        assert!(Instant::now() < deadline, "no failover started: {reply}");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until("the replica is promoted", Duration::from_secs(30), || {
        replication(replica.port, "role") == "master" && replication(master.port, "role") == "slave"
    });
    // Publish until the broker reaches the new master (the old one refuses writes now).
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        match broker
            .publish(channel, publication("s-after"), &with_history(HISTORY))
            .await
        {
            Ok(result) => break result.position.unwrap(),
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "never reached the new master: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(after.epoch, before.epoch, "the failover kept the epoch");
    positions.record(&after, "s-after", "new master");
    let (top, items) = history(&broker, channel).await;
    positions.record_history(&top, &items, "new master history");
    assert_eq!(top, after);
    assert_eq!(
        redis_cli(
            replica.port,
            &["hget", &format!("{prefix}.meta.{{{channel}}}"), "e"]
        ),
        after.epoch
    );
}

/// A Redis user that may not run INFO is refused at connection, with the reason, instead of
/// failing every publish later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_info_is_refused_at_connection() {
    let master = redis_process::start(&[], false);
    redis_cli(
        master.port,
        &[
            "acl", "setuser", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info",
        ],
    );
    let options = RedisOptions {
        user: "noinfo".into(),
        password: "pw".into(),
        connect_timeout: Duration::from_secs(2),
        ..RedisOptions::single(format!("redis://127.0.0.1:{}", master.port), prefix())
    };
    let error = RedisBroker::connect(&options, Arc::new(Recorder::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("INFO replication refused"), "{error}");
    assert!(error.contains("+info"), "{error}");
}
