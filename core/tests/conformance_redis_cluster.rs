//! The Redis broker, presence manager and map storage on a Redis Cluster (`engine.redis.cluster_address`):
//! hash-tagged keys so each publish script touches one slot, sharded PUB/SUB (SPUBLISH /
//! SSUBSCRIBE). The test creates a 3-master cluster of its own `redis-server` processes on
//! spare ports; without `redis-server` / `redis-cli` it fails, never skips.

mod conformance;
mod map_conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use conformance::Fixture;
use redis_process::RedisProcess;
use spindle_core::broker::{EventHandler, RedisBroker, RedisConnection, RedisOptions, RedisServer};
use spindle_core::presence::RedisPresenceManager;
use std::sync::{Arc, OnceLock};

/// One cluster for the whole test binary (each case uses its own prefix).
fn cluster() -> &'static [RedisProcess] {
    static CLUSTER: OnceLock<Vec<RedisProcess>> = OnceLock::new();
    CLUSTER.get_or_init(|| redis_process::start_cluster(3))
}

fn cluster_options() -> RedisOptions {
    // One seed is enough; the client discovers the others.
    let seed = format!("127.0.0.1:{}", cluster()[0].port);
    conformance::redis::options(vec![RedisServer::Cluster(vec![seed])])
}

async fn connect(options: &RedisOptions) -> RedisConnection {
    RedisConnection::connect(options)
        .await
        .unwrap_or_else(|error| panic!("connect to the test redis cluster: {error}"))
}

async fn clustered(handler: Arc<dyn EventHandler>) -> Fixture<RedisBroker, RedisPresenceManager> {
    conformance::redis::fixture(&cluster_options(), handler, "the test redis cluster").await
}

conformance_tests!(clustered);

/// Map storage on the same servers: the map conformance suite.
async fn clustered_maps(
    handler: Arc<dyn EventHandler>,
) -> map_conformance::MapFixture<spindle_core::maps::RedisMapBroker> {
    map_conformance::redis::fixture(&cluster_options(), handler, "the test redis cluster").await
}

map_conformance_tests!(clustered_maps);

/// Channels land on every master of the cluster, and deliveries come back from each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_the_cluster_nodes() {
    use fred::interfaces::{ClientLike, KeysInterface};
    use spindle_core::broker::Broker;

    let options = cluster_options();
    let prefix = options.prefix.clone();
    let connection = connect(&options).await;
    let recorder = Arc::new(conformance::Recorder::default());
    let broker = RedisBroker::with_connection(connection, recorder.clone())
        .await
        .unwrap();
    let channels: Vec<String> = (0..30).map(|i| format!("spread:{i}")).collect();
    for channel in &channels {
        broker.subscribe(channel).await.unwrap();
        broker
            .publish(
                channel,
                conformance::publication("x"),
                &conformance::with_history(10),
            )
            .await
            .unwrap();
    }
    for channel in &channels {
        recorder.wait(channel, 1).await;
    }
    // Delivery uses sharded PUB/SUB: each channel has exactly one shard-channel subscriber
    // in the cluster (on its slot's master), and no plain subscriber.
    for channel in &channels {
        let name = format!("{prefix}.client.{{{channel}}}");
        let count = |kind: &str| -> u64 {
            cluster()
                .iter()
                .map(|node| {
                    let out = std::process::Command::new("redis-cli")
                        .args(["-p", &node.port.to_string(), "pubsub", kind, &name])
                        .output()
                        .expect("redis-cli pubsub");
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.lines()
                        .nth(1)
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                })
                .sum()
        };
        assert_eq!(count("shardnumsub"), 1, "{name}");
        assert_eq!(count("numsub"), 0, "{name}");
    }
    for node in cluster() {
        // A plain (non-cluster) connection sees only the keys this master holds.
        let raw = fred::prelude::Builder::from_config(
            fred::prelude::Config::from_url_centralized(&node.url()).unwrap(),
        )
        .build()
        .unwrap();
        raw.init().await.unwrap();
        let mut here = 0;
        for channel in &channels {
            let key = format!("{prefix}.meta.{{{channel}}}");
            let exists: Result<i64, _> = raw.exists(&key).await;
            if exists == Ok(1) {
                here += 1;
            }
        }
        assert!(here > 0, "no channel on the master at port {}", node.port);
        let _: () = raw.quit().await.unwrap();
    }
}
