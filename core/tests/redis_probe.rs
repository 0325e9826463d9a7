//! Liveness probes on the Redis subscriber connections: when the connections go silent (a
//! proxy in between stops forwarding without closing anything), the lost probe makes the
//! broker reconnect and resubscribe, and delivery resumes by itself. Without probes the same
//! silence loses every publication (checked too, so the test can fail). `health()` shows the
//! outage while a probe is lost, and only then. The test starts its
//! own `redis-server`; without it the test fails, never skips.

mod conformance;
#[path = "support/redis_process.rs"]
mod redis_process;

use conformance::Recorder;
use spindle_core::broker::{Broker, PublishOptions, RedisBroker, RedisOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy whose current connections can all be made silent at once (bytes are read and
/// dropped, nothing is closed); connections accepted afterwards forward normally.
struct SilencingProxy {
    port: u16,
    generation: Arc<AtomicU64>,
}

impl SilencingProxy {
    async fn start(target: u16) -> SilencingProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let generation = Arc::new(AtomicU64::new(0));
        let current = generation.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = current.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let current = current.clone();
                    tokio::spawn(async move {
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if current.load(Ordering::SeqCst) != born {
                                continue; // silenced: swallow
                            }
                            if to.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        SilencingProxy { port, generation }
    }

    fn silence_current_connections(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

fn options(port: u16, prefix: &str, probe: Duration) -> RedisOptions {
    RedisOptions {
        pubsub_probe_interval: probe,
        subscribers_per_shard: 2,
        ..RedisOptions::single(format!("redis://127.0.0.1:{port}"), prefix)
    }
}

/// Publishes from `publisher` until `recorder` has seen a publication on `channel` beyond
/// `already`, or `within` passes; true when one arrived.
async fn delivery_resumes(
    publisher: &RedisBroker,
    recorder: &Recorder,
    channel: &str,
    already: usize,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut n = 0;
    while tokio::time::Instant::now() < deadline {
        n += 1;
        publisher
            .publish(
                channel,
                conformance::publication(&format!("after-{n}")),
                &PublishOptions::default(),
            )
            .await
            .expect("publish through the direct connection");
        tokio::time::sleep(Duration::from_millis(200)).await;
        if recorder.of(channel).len() > already {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscriber_is_reconnected_by_the_probe() {
    let redis = redis_process::start(&[], false);
    let prefix = format!("spindle-test-{}", uuid::Uuid::new_v4().simple());
    let publisher = RedisBroker::connect(
        &options(redis.port, &prefix, Duration::ZERO),
        Arc::new(Recorder::default()),
    )
    .await
    .unwrap();

    for (probe, expect_resume) in [(Duration::from_millis(300), true), (Duration::ZERO, false)] {
        let proxy = SilencingProxy::start(redis.port).await;
        let recorder = Arc::new(Recorder::default());
        let subscriber =
            RedisBroker::connect(&options(proxy.port, &prefix, probe), recorder.clone())
                .await
                .unwrap();
        let channel = format!("probe-{}", probe.as_millis());
        subscriber.subscribe(&channel).await.unwrap();
        publisher
            .publish(
                &channel,
                conformance::publication("before"),
                &PublishOptions::default(),
            )
            .await
            .unwrap();
        recorder.wait(&channel, 1).await;

        assert_eq!(subscriber.health(), Ok(()));
        proxy.silence_current_connections();
        // Health is watched while delivery is awaited: a lost probe must show as an outage.
        let mut saw_outage = false;
        let resumed = {
            let resume =
                delivery_resumes(&publisher, &recorder, &channel, 1, Duration::from_secs(6));
            tokio::pin!(resume);
            loop {
                tokio::select! {
                    resumed = &mut resume => break resumed,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {
                        saw_outage |= subscriber.health().is_err();
                    }
                }
            }
        };
        assert_eq!(
            resumed, expect_resume,
            "probe interval {probe:?}: delivery resumed = {resumed}"
        );
        // Without probes the silence is invisible to health too: the reason probes exist.
        assert_eq!(saw_outage, expect_resume, "probe interval {probe:?}");
        if expect_resume {
            assert!(subscriber.probe_reconnects() >= 1);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while subscriber.health().is_err() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "health never came back"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            assert_eq!(subscriber.probe_reconnects(), 0);
        }
    }
}
