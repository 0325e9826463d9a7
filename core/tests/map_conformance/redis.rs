//! The Redis runs' shared map fixture: map storage and a broker (whose subscribers deliver the
//! changes) on one connection under a fresh key prefix.

use super::{MapFixture, settings};
use spindle_core::broker::{Broker, EventHandler, RedisBroker, RedisConnection, RedisOptions};
use spindle_core::maps::RedisMapBroker;
use spindle_hub::config::MapMode;
use std::sync::Arc;

pub async fn fixture(
    options: &RedisOptions,
    handler: Arc<dyn EventHandler>,
    what: &str,
) -> MapFixture<RedisMapBroker> {
    let connection = RedisConnection::connect(options)
        .await
        .unwrap_or_else(|error| panic!("connect to {what}: {error}"));
    let broker = Arc::new(
        RedisBroker::with_connection(connection.clone(), handler)
            .await
            .unwrap_or_else(|error| panic!("subscriber connections to {what}: {error}")),
    );
    let maps = Arc::new(RedisMapBroker::new(connection));
    let swept = maps.clone();
    MapFixture {
        maps,
        listen: Arc::new(move |channel| {
            let broker = broker.clone();
            Box::pin(async move { broker.subscribe(&channel).await.unwrap() })
        }),
        // Every swept channel is the expiry case's (key_ttl 1 s).
        sweep: Arc::new(move || {
            let swept = swept.clone();
            Box::pin(async move {
                swept
                    .sweep(|_| Some(settings(MapMode::Recoverable, 1, 100)))
                    .await
            })
        }),
        advance: Arc::new(|by| Box::pin(tokio::time::sleep(by))),
    }
}
