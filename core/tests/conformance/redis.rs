//! The Redis runs' shared fixture (one server, sharded, Cluster, Sentinel, TLS): options under a
//! fresh key prefix, and a broker with a presence manager on one connection.

use super::{Fixture, PRESENCE_TTL};
use spindle_core::broker::{EventHandler, RedisBroker, RedisConnection, RedisOptions, RedisServer};
use spindle_core::presence::RedisPresenceManager;
use std::sync::Arc;
use std::time::Duration;

/// Options for `servers` under a key prefix of their own; the rest as the tests want it (a
/// short connect timeout, two subscriber connections per shard, probes every 5 s).
pub fn options(servers: Vec<RedisServer>) -> RedisOptions {
    RedisOptions {
        servers,
        prefix: format!("spindle-test-{}", uuid::Uuid::new_v4().simple()),
        connect_timeout: Duration::from_secs(2),
        user: String::new(),
        password: String::new(),
        db: 0,
        tls: Default::default(),
        pubsub_probe_interval: Duration::from_secs(5),
        subscribers_per_shard: 2,
    }
}

/// A broker delivering to `handler` and a presence manager, on one connection made with
/// `options`; panics naming `what` (the servers the test needs) when it cannot connect.
pub async fn fixture(
    options: &RedisOptions,
    handler: Arc<dyn EventHandler>,
    what: &str,
) -> Fixture<RedisBroker, RedisPresenceManager> {
    let connection = RedisConnection::connect(options)
        .await
        .unwrap_or_else(|error| panic!("connect to {what}: {error}"));
    let broker = RedisBroker::with_connection(connection.clone(), handler)
        .await
        .unwrap_or_else(|error| panic!("subscriber connections to {what}: {error}"));
    Fixture {
        broker: Arc::new(broker),
        presence: RedisPresenceManager::new(connection, PRESENCE_TTL),
        advance: Arc::new(|by| Box::pin(tokio::time::sleep(by))),
    }
}
