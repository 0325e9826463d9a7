//! Redis map storage passes the map conformance suite against the Redis server at
//! `SPINDLE_TEST_REDIS` (default `redis://127.0.0.1:6379`); each case under its own key
//! prefix. If Redis is not reachable the tests fail: they never skip.

mod conformance;
mod map_conformance;

use map_conformance::MapFixture;
use spindle_core::broker::{EventHandler, RedisServer};
use spindle_core::maps::RedisMapBroker;
use std::sync::Arc;

fn redis_address() -> String {
    std::env::var("SPINDLE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn redis(handler: Arc<dyn EventHandler>) -> MapFixture<RedisMapBroker> {
    let options = conformance::redis::options(vec![RedisServer::Single(redis_address())]);
    let what = format!(
        "the Redis server at {} (set SPINDLE_TEST_REDIS)",
        redis_address()
    );
    map_conformance::redis::fixture(&options, handler, &what).await
}

map_conformance_tests!(redis);
