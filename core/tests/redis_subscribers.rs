//! PUB/SUB over several connections per Redis shard: a broker with two subscriber connections
//! spreads its channels over both, and every channel still delivers through exactly one of
//! them. Starts its own `redis-server` (so `CLIENT LIST` shows only this broker's connections);
//! fails, never skips, without it.
#![allow(clippy::unwrap_used)]

mod conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use spindle_core::broker::{Broker, RedisBroker, RedisConnection, RedisServer};
use std::process::Command;
use std::sync::Arc;

/// The `sub=` count of every connection of the server at `port` that subscribes something.
fn subscriptions_per_connection(port: u16) -> Vec<usize> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "CLIENT", "LIST"])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("sub="))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .filter(|&n| n > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_spread_over_the_subscriber_connections_of_a_shard() {
    let server = redis_process::start(&[], false);
    let options = conformance::redis::options(vec![RedisServer::Single(server.url())]);
    let connection = RedisConnection::connect(&options)
        .await
        .unwrap_or_else(|error| panic!("connect to the test redis server: {error}"));
    let recorder = Arc::new(conformance::Recorder::default());
    let broker = RedisBroker::with_connection(connection, recorder.clone())
        .await
        .unwrap();
    let channels: Vec<String> = (0..40).map(|i| format!("spread:{i}")).collect();
    for channel in &channels {
        broker.subscribe(channel).await.unwrap();
    }

    // Two subscriber connections, each with its probe channel and some of the 40 channels.
    let mut counts = subscriptions_per_connection(server.port);
    counts.sort_unstable();
    assert_eq!(counts.len(), 2, "subscriber connections: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 40 + 2, "{counts:?}");
    assert!(counts[0] > 5, "channels spread over both: {counts:?}");

    // Every channel delivers, once, in order, through its connection.
    for round in 1..=3 {
        for channel in &channels {
            broker
                .publish(
                    channel,
                    conformance::publication(&round.to_string()),
                    &conformance::with_history(10),
                )
                .await
                .unwrap();
        }
    }
    for channel in &channels {
        let seen = recorder.wait(channel, 3).await;
        let offsets: Vec<u64> = seen
            .iter()
            .filter_map(|seen| match seen {
                conformance::Seen::Publication { position, .. } => {
                    position.as_ref().map(|p| p.offset)
                }
                _ => None,
            })
            .collect();
        assert_eq!(offsets, [1, 2, 3], "{channel}");
    }
}
