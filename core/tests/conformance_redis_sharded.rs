//! The Redis broker, presence manager and map storage sharded over two Redis servers (client-side
//! consistent sharding, `engine.redis.address` as a list) pass the conformance suite. The
//! test starts both `redis-server` processes itself on spare ports; without `redis-server`
//! it fails, never skips.

mod conformance;
mod map_conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use conformance::{Fixture, PRESENCE_TTL};
use redis_process::RedisProcess;
use spindle_core::broker::{EventHandler, RedisBroker, RedisConnection, RedisOptions, RedisServer};
use spindle_core::presence::RedisPresenceManager;
use std::sync::{Arc, OnceLock};

/// Two servers for the whole test binary (each case uses its own prefix).
fn servers() -> &'static [RedisProcess] {
    static SERVERS: OnceLock<Vec<RedisProcess>> = OnceLock::new();
    SERVERS.get_or_init(|| redis_process::start_servers(2))
}

fn sharded_options() -> RedisOptions {
    let servers = servers()
        .iter()
        .map(|server| RedisServer::Single(server.url()));
    conformance::redis::options(servers.collect())
}

async fn connect(options: &RedisOptions) -> RedisConnection {
    RedisConnection::connect(options)
        .await
        .unwrap_or_else(|error| panic!("connect to the test redis servers: {error}"))
}

async fn sharded(handler: Arc<dyn EventHandler>) -> Fixture<RedisBroker, RedisPresenceManager> {
    conformance::redis::fixture(&sharded_options(), handler, "the test redis servers").await
}

conformance_tests!(sharded);

/// Map storage on the same servers: the map conformance suite.
async fn sharded_maps(
    handler: Arc<dyn EventHandler>,
) -> map_conformance::MapFixture<spindle_core::maps::RedisMapBroker> {
    map_conformance::redis::fixture(&sharded_options(), handler, "the two test redis servers").await
}

map_conformance_tests!(sharded_maps);

/// Channels really spread over both servers: each channel's keys are on the server its shard
/// index names and on no other, both servers hold some, and delivery works from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_both_shards() {
    use fred::interfaces::{ClientLike, KeysInterface};
    use spindle_core::broker::Broker;
    use spindle_core::presence::PresenceManager;

    let options = sharded_options();
    let prefix = options.prefix.clone();
    let connection = connect(&options).await;
    assert_eq!(connection.shard_count(), 2);
    let recorder = Arc::new(conformance::Recorder::default());
    let broker = RedisBroker::with_connection(connection.clone(), recorder.clone())
        .await
        .unwrap();
    let presence = RedisPresenceManager::new(connection.clone(), PRESENCE_TTL);
    let channels: Vec<String> = (0..40).map(|i| format!("spread:{i}")).collect();
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
        presence
            .add_presence(channel, Default::default())
            .await
            .unwrap();
    }
    let mut per_shard = [0usize; 2];
    for channel in &channels {
        per_shard[connection.shard_of(channel)] += 1;
    }
    assert!(per_shard.iter().all(|&n| n > 5), "{per_shard:?}");

    for (index, server) in servers().iter().enumerate() {
        let raw = fred::prelude::Builder::from_config(
            fred::prelude::Config::from_url(&server.url()).unwrap(),
        )
        .build()
        .unwrap();
        raw.init().await.unwrap();
        for channel in &channels {
            let here = connection.shard_of(channel) == index;
            for kind in ["meta", "stream", "presence.data", "presence.expire"] {
                let key = format!("{prefix}.{kind}.{{{channel}}}");
                let exists: i64 = raw.exists(&key).await.unwrap();
                assert_eq!(exists == 1, here, "{key} on server {index}");
            }
        }
        let _: () = raw.quit().await.unwrap();
    }

    // Every publication came back through the subscriber of its own shard.
    for channel in &channels {
        recorder.wait(channel, 1).await;
    }
}

/// Centrifugo's shard choice for a few channels over two shards (see the broker's `shard`
/// module for more values): a mixed deployment with the same address list agrees.
#[tokio::test]
async fn shard_choice_is_centrifugos() {
    let options = sharded_options();
    let connection = connect(&options).await;
    for (channel, shard) in [("a", 1), ("chat", 0), ("news", 1)] {
        assert_eq!(connection.shard_of(channel), shard, "{channel}");
    }
}
