//! The PostgreSQL broker's `health()` follows its delivery connection: cut the connection (a
//! TCP proxy in front of the real server drops every connection and refuses new ones) and
//! health says so; let it through again and health recovers and delivery resumes. Against the
//! local server at 127.0.0.1:5432 (user `postgres`, database `test`, as the machine provides);
//! fails, never skips, when it is down.
#![allow(clippy::unwrap_used)]

mod conformance;

use conformance::{Recorder, publication};
use spindle_core::broker::{Broker, PostgresBroker, PostgresOptions, PublishOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

fn options(dsn: String, prefix: &str) -> PostgresOptions {
    PostgresOptions {
        dsn,
        table_prefix: prefix.to_owned(),
        pool_size: 2,
        poll_interval: Duration::from_millis(50),
        batch_size: 100,
        use_notify: true,
        cleanup_interval: Duration::from_secs(60),
        idempotent_result_ttl: Duration::from_secs(300),
        outbox_retention: Duration::from_secs(600),
        skip_schema_init: false,
        connect_timeout: Duration::from_secs(2),
    }
}

const POSTGRES: &str = "127.0.0.1:5432";

/// A proxy to [`POSTGRES`] that can be cut: `generation` odd = down (existing connections
/// end, new ones are closed at once), even = up.
struct CuttableProxy {
    port: u16,
    generation: Arc<AtomicU64>,
}

impl CuttableProxy {
    async fn start() -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = Arc::new(AtomicU64::new(0));
        let gen_accept = generation.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let born = gen_accept.load(Ordering::SeqCst);
                if born % 2 == 1 {
                    continue; // down: dropped at once
                }
                let generation = gen_accept.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(POSTGRES).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while generation.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        () = cut => {}
                    }
                });
            }
        });
        CuttableProxy { port, generation }
    }

    fn flip(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

async fn health_becomes(broker: &PostgresBroker, ok: bool, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while broker.health().is_ok() != ok {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health stayed {:?}",
            broker.health()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_delivery_connection() {
    let proxy = CuttableProxy::start().await;
    let prefix = format!("spt_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let direct = options(format!("postgres://postgres@{POSTGRES}/test"), &prefix);
    let through = options(
        format!("postgres://postgres@127.0.0.1:{}/test", proxy.port),
        &prefix,
    );
    let recorder = Arc::new(Recorder::default());
    let broker = PostgresBroker::connect(&through, recorder.clone(), None)
        .await
        .unwrap();
    let publisher = PostgresBroker::connect(&direct, Arc::new(Recorder::default()), None)
        .await
        .unwrap();
    broker.subscribe("health").await.unwrap();
    assert_eq!(broker.health(), Ok(()));

    proxy.flip(); // down
    health_becomes(&broker, false, Duration::from_secs(5)).await;
    let error = broker.health().unwrap_err();
    assert!(error.contains("delivery connection down"), "{error}");

    proxy.flip(); // up
    health_becomes(&broker, true, Duration::from_secs(10)).await;
    publisher
        .publish("health", publication("after"), &PublishOptions::default())
        .await
        .unwrap();
    recorder.wait("health", 1).await;
}
