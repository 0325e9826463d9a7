//! The in-process broker: one node, no storage yet.

use super::{Broker, BrokerError, EventHandler, Publication, PublishOptions, PublishResult};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

/// Number of channel lock shards: publications of different channels rarely wait for each other.
const SHARDS: usize = 64;

/// A broker living inside the process. `publish` hands the publication to the node's handler
/// before returning, under a per-channel lock, so the handler sees each channel's publications
/// in publish order.
///
/// There is only one node in the process, so every publication goes to its handler; the node
/// keeps track of which edges want which channel. `subscribe` / `unsubscribe` have nothing to do.
/// The history issue puts the channel streams (offset, epoch, retained publications) behind the
/// same shard locks.
pub struct MemoryBroker {
    handler: Arc<dyn EventHandler>,
    shards: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl MemoryBroker {
    /// A broker delivering to `handler`.
    pub fn new(handler: Arc<dyn EventHandler>) -> MemoryBroker {
        MemoryBroker {
            handler,
            shards: (0..SHARDS).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, channel: &str) -> &Mutex<()> {
        let index = self.hasher.hash_one(channel) as usize % self.shards.len();
        &self.shards[index]
    }

    fn publish_now(&self, channel: &str, publication: &Publication) -> PublishResult {
        // A poisoned lock guards no data (only ordering), so carrying on is safe.
        let _ordered = self
            .shard(channel)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.handler.on_publication(channel, None, publication);
        PublishResult { position: None }
    }
}

impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        _options: &PublishOptions,
    ) -> Result<PublishResult, BrokerError> {
        Ok(self.publish_now(channel, &publication))
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::StreamPosition;
    use super::*;
    use bytes::Bytes;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Bytes)>>);

    impl EventHandler for Recorder {
        fn on_publication(&self, channel: &str, _: Option<&StreamPosition>, p: &Publication) {
            self.0
                .lock()
                .unwrap()
                .push((channel.to_owned(), p.data.clone()));
        }
    }

    fn publication(data: &'static str) -> Publication {
        Publication {
            data: Bytes::from_static(data.as_bytes()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn publish_reaches_the_handler_before_returning_in_order() {
        let recorder = Arc::new(Recorder::default());
        let broker = MemoryBroker::new(recorder.clone());
        let options = PublishOptions {
            skip_history: true,
            ..Default::default()
        };
        for data in ["1", "2", "3"] {
            let result = broker
                .publish("a", publication(data), &options)
                .await
                .unwrap();
            assert_eq!(result.position, None);
            assert_eq!(recorder.0.lock().unwrap().last().unwrap().1, data);
        }
        broker
            .publish("b", publication("x"), &options)
            .await
            .unwrap();
        let seen: Vec<String> = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(c, d)| format!("{c}:{}", std::str::from_utf8(d).unwrap()))
            .collect();
        assert_eq!(seen, ["a:1", "a:2", "a:3", "b:x"]);
        broker.subscribe("a").await.unwrap();
        broker.unsubscribe("a").await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_publishers_keep_each_channel_in_order() {
        let recorder = Arc::new(Recorder::default());
        let broker = Arc::new(MemoryBroker::new(recorder.clone()));
        let mut tasks = Vec::new();
        for channel in ["x", "y", "z"] {
            let broker = broker.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..200u32 {
                    let p = Publication {
                        data: Bytes::from(i.to_string()),
                        ..Default::default()
                    };
                    broker
                        .publish(channel, p, &PublishOptions::default())
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let seen = recorder.0.lock().unwrap();
        for channel in ["x", "y", "z"] {
            let order: Vec<u32> = seen
                .iter()
                .filter(|(c, _)| c == channel)
                .map(|(_, d)| std::str::from_utf8(d).unwrap().parse().unwrap())
                .collect();
            assert_eq!(order, (0..200).collect::<Vec<_>>());
        }
    }
}
