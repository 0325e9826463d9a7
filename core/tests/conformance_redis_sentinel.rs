//! The Redis broker and presence manager through Sentinel (`engine.redis.sentinel_address`,
//! `sentinel_master_name`): the client asks the sentinel for the master and works on it. The
//! test starts a master and a sentinel (`redis-server --sentinel`) of its own on spare ports;
//! without `redis-server` it fails, never skips.

mod conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use conformance::Fixture;
use redis_process::RedisProcess;
use spindle_core::broker::{EventHandler, RedisBroker, RedisConnection, RedisOptions, RedisServer};
use spindle_core::presence::RedisPresenceManager;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const MASTER: &str = "spindle-master";

/// The master and its sentinel, for the whole test binary.
fn servers() -> &'static (RedisProcess, RedisProcess) {
    static SERVERS: OnceLock<(RedisProcess, RedisProcess)> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let master = redis_process::start(&[], false);
        let sentinel = redis_process::start_sentinel(master.port, MASTER);
        (master, sentinel)
    })
}

fn sentinel_options() -> RedisOptions {
    conformance::redis::options(vec![RedisServer::Sentinel {
        addresses: vec![format!("127.0.0.1:{}", servers().1.port)],
        master_name: MASTER.to_owned(),
        sentinel_user: String::new(),
        sentinel_password: String::new(),
    }])
}

async fn through_sentinel(
    handler: Arc<dyn EventHandler>,
) -> Fixture<RedisBroker, RedisPresenceManager> {
    through_sentinel_with(sentinel_options(), handler).await
}

async fn through_sentinel_with(
    options: RedisOptions,
    handler: Arc<dyn EventHandler>,
) -> Fixture<RedisBroker, RedisPresenceManager> {
    conformance::redis::fixture(&options, handler, "the test sentinel's master").await
}

conformance_tests!(through_sentinel);

/// The data really is on the master the sentinel names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_the_master() {
    use spindle_core::broker::Broker;
    let options = sentinel_options();
    let prefix = options.prefix.clone();
    let fixture = through_sentinel_with(options, Arc::new(conformance::Recorder::default())).await;
    fixture
        .broker
        .publish(
            "s",
            conformance::publication("1"),
            &conformance::with_history(5),
        )
        .await
        .unwrap();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &servers().0.port.to_string(), "exists"])
        .arg(format!("{prefix}.meta.{{s}}"))
        .output()
        .expect("redis-cli exists");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

/// An unknown master name is a clear start-up error.
#[tokio::test]
async fn an_unknown_master_name_is_a_clear_error() {
    let mut options = sentinel_options();
    options.connect_timeout = Duration::from_millis(500);
    if let RedisServer::Sentinel { master_name, .. } = &mut options.servers[0] {
        *master_name = "nobody".to_owned();
    }
    let error = RedisConnection::connect(&options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot connect to redis at sentinel"),
        "{error}"
    );
}
