//! Liveness probes on PUB/SUB connections. A subscriber connection can stay open and quiet
//! while its server no longer delivers to it (a failover behind a proxy, a half-open TCP
//! connection): nothing errors, publications are simply lost. So every shard's subscriber
//! also subscribes a probe channel of its own, and a task publishes a numbered probe on it
//! through the shard's command connection at each interval; when a probe has not come back
//! within the next interval, the subscriber is reconnected (fred then resubscribes every
//! channel), as Centrifugo does after a silent loss.

use fred::clients::SubscriberClient;
use fred::prelude::{Client, ClientLike, PubsubInterface};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// What the reader saw of the probes.
#[derive(Debug)]
pub(crate) struct ProbeState {
    /// False from a probe that could not be sent or did not come back until one does.
    delivering: AtomicBool,
    /// The highest probe number received.
    seen: AtomicU64,
    arrived: Notify,
    /// How many times the subscriber was reconnected because a probe was lost.
    pub(crate) reconnects: AtomicU64,
}

impl Default for ProbeState {
    fn default() -> Self {
        ProbeState {
            delivering: AtomicBool::new(true),
            seen: AtomicU64::new(0),
            arrived: Notify::new(),
            reconnects: AtomicU64::new(0),
        }
    }
}

impl ProbeState {
    /// Whether the last probe went through (true before the first one).
    pub(crate) fn delivering(&self) -> bool {
        self.delivering.load(Ordering::Relaxed)
    }

    /// Records a probe message (its payload is its number).
    pub(crate) fn received(&self, payload: &[u8]) {
        if let Some(number) = std::str::from_utf8(payload)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
        {
            self.seen.fetch_max(number, Ordering::Relaxed);
            self.arrived.notify_waiters();
        }
    }

    async fn wait_for(&self, number: u64, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            if self.seen.load(Ordering::Relaxed) >= number {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.seen.load(Ordering::Relaxed) >= number;
            }
        }
    }
}

/// Probes one shard's subscriber forever (the broker aborts the task when dropped).
pub(crate) async fn run(
    client: Client,
    subscriber: SubscriberClient,
    channel: String,
    state: Arc<ProbeState>,
    interval: Duration,
    server: String,
) {
    let mut number = 0u64;
    loop {
        tokio::time::sleep(interval).await;
        number += 1;
        let publish = client.publish::<(), _, _>(channel.as_str(), number.to_string());
        let lost = match tokio::time::timeout(interval, publish).await {
            // Redis itself refuses or is unreachable: the clients reconnect on their own.
            Ok(Err(error)) => {
                tracing::debug!(server, %error, "redis pub/sub probe not sent");
                state.delivering.store(false, Ordering::Relaxed);
                continue;
            }
            Ok(Ok(())) => !state.wait_for(number, interval).await,
            // The command connection is silent too.
            Err(_) => {
                if let Err(error) = client.force_reconnection().await {
                    tracing::warn!(server, %error, "redis reconnection failed");
                }
                true
            }
        };
        state.delivering.store(!lost, Ordering::Relaxed);
        if !lost {
            continue;
        }
        tracing::warn!(
            server,
            "redis pub/sub probe did not come back within {interval:?}: reconnecting the subscriber"
        );
        state.reconnects.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = subscriber.force_reconnection().await {
            tracing::warn!(server, %error, "redis subscriber reconnection failed");
        }
    }
}
