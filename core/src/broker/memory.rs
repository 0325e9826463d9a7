//! The in-process broker: channel streams in memory, delivery to this node's handler.

use super::{
    Broker, BrokerError, EventHandler, HistoryQuery, HistoryReadError, HistoryResult, JoinLeave,
    Publication, PublishOptions, PublishResult, StreamOptions,
};
use crate::clock::Clock;
use spindle_hub::history::{Limits, PublishOutcome, PublishParams, Streams, SweepStats};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Number of channel shards: publications of different channels rarely wait for each other.
const SHARDS: usize = 64;

/// Streams kept in memory over all channels (1,048,576). Past it the least recently used
/// stream is forgotten (its channel gets a new epoch when used again). Retained publications
/// are bounded per stream by `history_size`.
pub const MAX_STREAMS: usize = 1 << 20;

/// Idempotency keys remembered over all channels (1,048,576); past it the oldest is forgotten.
pub const MAX_IDEMPOTENCY_KEYS: usize = 1 << 20;

/// Epoch randomness: the thread-local generator of `rand`.
fn random_u64() -> u64 {
    rand::random()
}

type Shard = Streams<fn() -> u64>;

/// How much the memory broker holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryBrokerStats {
    pub streams: usize,
    pub idempotency_keys: usize,
}

/// A broker living inside the process.
///
/// Channels are spread over 64 locks (shards); each shard holds the streams of its channels
/// ([`spindle_hub::history::Streams`]). `publish` decides (idempotency, version) and appends
/// under the channel's shard lock, so offsets are assigned atomically with the append, and
/// takes a delivery ticket there ([`Turns`]). The hand-off to the node's handler happens after
/// the shard lock is let go, in ticket order: the handler sees each channel's publications in
/// offset order, while history reads and the next appends of the shard do not wait for a
/// fan-out to every edge. Joins and leaves take their turn the same way.
///
/// There is only one node in the process, so every publication goes to its handler; the node
/// keeps track of which edges want which channel. `subscribe` / `unsubscribe` have nothing to
/// do. Expiry is lazy per channel plus [`MemoryBroker::sweep`], which the node runs
/// periodically.
pub struct MemoryBroker {
    handler: Arc<dyn EventHandler>,
    clock: Arc<dyn Clock>,
    shards: Box<[Mutex<Shard>]>,
    /// One per shard: its events go to the handler one at a time, in the order of their
    /// appends.
    turns: Box<[Turns]>,
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
    /// A broker delivering to `handler`, reading time from `clock`.
    pub fn new(handler: Arc<dyn EventHandler>, clock: Arc<dyn Clock>) -> MemoryBroker {
        let limits = Limits {
            max_streams: MAX_STREAMS.div_ceil(SHARDS),
            max_idempotency_keys: MAX_IDEMPOTENCY_KEYS.div_ceil(SHARDS),
        };
        let entropy: fn() -> u64 = random_u64;
        MemoryBroker {
            handler,
            clock,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Streams::new(limits, entropy)))
                .collect(),
            turns: (0..SHARDS).map(|_| Turns::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn index(&self, channel: &str) -> usize {
        self.hasher.hash_one(channel) as usize % self.shards.len()
    }

    fn shard(&self, channel: &str) -> MutexGuard<'_, Shard> {
        // A panic inside a shard leaves at worst one channel's stream half-updated (an offset
        // taken without its publication retained); carrying on keeps every other channel.
        self.shards[self.index(channel)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a delivery ticket while `shard` (the channel's shard lock) is still held, lets
    /// the shard go, and waits for the ticket's turn: the next delivery waits for this one,
    /// the shard does not.
    fn hand_over<'a>(&'a self, channel: &str, shard: MutexGuard<'a, Shard>) -> Turn<'a> {
        let turns = &self.turns[self.index(channel)];
        let ticket = turns.ticket();
        drop(shard);
        turns.wait(ticket)
    }

    fn publish_now(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> PublishResult {
        let params = PublishParams {
            history: options.history,
            skip_history: options.skip_history,
            idempotency_key: &options.idempotency_key,
            version: options.version,
            version_epoch: &options.version_epoch,
            want_prev: options.delta,
        };
        let mut shard = self.shard(channel);
        let now = self.clock.now();
        match shard.publish(channel, publication, &params, now) {
            PublishOutcome::Accepted {
                position,
                publication,
                prev,
            } => {
                let _delivering = self.hand_over(channel, shard);
                self.handler.on_publication(
                    channel,
                    position.as_ref(),
                    &publication,
                    prev.as_deref(),
                );
                PublishResult {
                    position,
                    suppressed: None,
                }
            }
            PublishOutcome::Suppressed { position, reason } => PublishResult {
                position,
                suppressed: Some(reason),
            },
        }
    }

    /// Applies every history deadline passed by now (publication windows, stream metadata,
    /// idempotency keys), one shard at a time.
    pub fn sweep(&self) -> SweepStats {
        let mut total = SweepStats::default();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let stats = shard.sweep(self.clock.now());
            total.windows += stats.windows;
            total.streams += stats.streams;
            total.idempotency_keys += stats.idempotency_keys;
        }
        total
    }

    /// Streams and idempotency keys held now.
    pub fn stats(&self) -> MemoryBrokerStats {
        let mut stats = MemoryBrokerStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            stats.streams += shard.len();
            stats.idempotency_keys += shard.idempotency_keys();
        }
        stats
    }
}

/// The deliveries of one shard, one at a time in the order of their appends: a ticket is
/// taken under the shard lock, and served after the lock is let go.
#[derive(Debug, Default)]
struct Turns {
    next: AtomicU64,
    serving: Mutex<u64>,
    turn: Condvar,
}

impl Turns {
    /// The next ticket; taken with the shard lock held, so tickets follow the appends.
    fn ticket(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits until it is `ticket`'s turn; the turn passes on when the [`Turn`] goes (also
    /// when a handler panics: the shard's later deliveries still go).
    fn wait(&self, ticket: u64) -> Turn<'_> {
        let mut serving = self.serving.lock().unwrap_or_else(PoisonError::into_inner);
        while *serving != ticket {
            serving = self
                .turn
                .wait(serving)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Turn {
            turns: self,
            serving,
        }
    }
}

/// One delivery's turn in its shard.
struct Turn<'a> {
    turns: &'a Turns,
    serving: MutexGuard<'a, u64>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.serving += 1;
        self.turns.turn.notify_all();
    }
}

impl Broker for MemoryBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        options: &PublishOptions,
    ) -> Result<PublishResult, BrokerError> {
        Ok(self.publish_now(channel, publication, options))
    }

    async fn publish_join_leave(&self, channel: &str, event: JoinLeave) -> Result<(), BrokerError> {
        let _delivering = self.hand_over(channel, self.shard(channel));
        self.handler.on_join_leave(channel, &event);
        Ok(())
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        stream: &StreamOptions,
    ) -> Result<HistoryResult, HistoryReadError> {
        let mut shard = self.shard(channel);
        let now = self.clock.now();
        Ok(shard.read(channel, stream, query, now)?)
    }

    async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        self.shard(channel).remove(channel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::StreamPosition;
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use bytes::Bytes;
    use spindle_hub::history::Suppression;
    use std::time::Duration;

    /// Channel, data, offset (0 = none) and previous data of each delivery.
    type Seen = (String, Bytes, u64, Option<Bytes>);

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Seen>>);

    impl EventHandler for Recorder {
        fn on_publication(
            &self,
            channel: &str,
            position: Option<&StreamPosition>,
            p: &Publication,
            prev: Option<&Publication>,
        ) {
            self.0.lock().unwrap().push((
                channel.to_owned(),
                p.data.clone(),
                position.map_or(0, |p| p.offset),
                prev.map(|p| p.data.clone()),
            ));
        }

        fn on_join_leave(&self, channel: &str, event: &JoinLeave) {
            let (kind, info) = match event {
                JoinLeave::Join(info) => ("join", info),
                JoinLeave::Leave(info) => ("leave", info),
            };
            let text = format!("{kind}:{}", info.client);
            self.0
                .lock()
                .unwrap()
                .push((channel.to_owned(), Bytes::from(text), 0, None));
        }
    }

    fn publication(data: &'static str) -> Publication {
        Publication {
            data: Bytes::from_static(data.as_bytes()),
            ..Default::default()
        }
    }

    fn history(size: usize) -> Option<StreamOptions> {
        Some(StreamOptions {
            size,
            ttl: Duration::from_secs(60),
            meta_ttl: Duration::from_secs(600),
        })
    }

    #[tokio::test]
    async fn publish_reaches_the_handler_before_returning_in_order() {
        let recorder = Arc::new(Recorder::default());
        let broker = MemoryBroker::new(recorder.clone(), Arc::new(SystemClock));
        let options = PublishOptions {
            skip_history: true,
            ..Default::default()
        };
        for data in ["1", "2", "3"] {
            let result = broker
                .publish("a", publication(data), &options)
                .await
                .unwrap();
            assert_eq!(result, PublishResult::default());
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
            .map(|(c, d, ..)| format!("{c}:{}", std::str::from_utf8(d).unwrap()))
            .collect();
        assert_eq!(seen, ["a:1", "a:2", "a:3", "b:x"]);
        broker.subscribe("a").await.unwrap();
        broker.unsubscribe("a").await.unwrap();
    }

    /// A handler still fanning a publication out (to slow edges, say) holds up neither a
    /// history read of the channel nor the next append; the next delivery waits its turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_delivery_does_not_hold_the_shard() {
        struct Stalling {
            entered: std::sync::mpsc::SyncSender<()>,
            release: Mutex<std::sync::mpsc::Receiver<()>>,
            seen: Recorder,
        }
        impl EventHandler for Stalling {
            fn on_publication(
                &self,
                channel: &str,
                position: Option<&StreamPosition>,
                p: &Publication,
                prev: Option<&Publication>,
            ) {
                if p.data.as_ref() == b"stall" {
                    self.entered.send(()).unwrap();
                    let release = self.release.lock().unwrap();
                    release.recv_timeout(Duration::from_secs(10)).unwrap();
                }
                self.seen.on_publication(channel, position, p, prev);
            }
            fn on_join_leave(&self, _channel: &str, _event: &JoinLeave) {}
        }
        let (entered_tx, entered) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::channel();
        let handler = Arc::new(Stalling {
            entered: entered_tx,
            release: Mutex::new(release_rx),
            seen: Recorder::default(),
        });
        let broker = Arc::new(MemoryBroker::new(handler.clone(), Arc::new(SystemClock)));
        let options = PublishOptions {
            history: history(10),
            ..Default::default()
        };
        let stalled = {
            let broker = Arc::clone(&broker);
            let options = options.clone();
            tokio::task::spawn_blocking(move || {
                broker.publish_now("c", publication("stall"), &options);
            })
        };
        entered.recv_timeout(Duration::from_secs(5)).unwrap();
        // The delivery is stuck in the handler: the shard is not.
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            broker.history("c", &HistoryQuery::default(), &history(10).unwrap()),
        )
        .await
        .expect("a history read while a delivery is stuck")
        .unwrap();
        assert_eq!(read.top.offset, 1);
        let next = {
            let broker = Arc::clone(&broker);
            tokio::task::spawn_blocking(move || {
                broker.publish_now("c", publication("next"), &options)
            })
        };
        // Appended (offset 2) but not delivered before the stuck one.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while broker
            .shard("c")
            .read(
                "c",
                &history(10).unwrap(),
                &HistoryQuery::default(),
                SystemClock.now(),
            )
            .unwrap()
            .top
            .offset
            < 2
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the next append waited"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(handler.seen.0.lock().unwrap().is_empty());
        release.send(()).unwrap();
        stalled.await.unwrap();
        next.await.unwrap();
        let offsets: Vec<u64> = handler.seen.0.lock().unwrap().iter().map(|s| s.2).collect();
        assert_eq!(offsets, [1, 2], "deliveries keep the order of the appends");
    }

    #[tokio::test]
    async fn concurrent_publishers_keep_each_channel_in_offset_order() {
        let recorder = Arc::new(Recorder::default());
        let broker = Arc::new(MemoryBroker::new(recorder.clone(), Arc::new(SystemClock)));
        let mut tasks = Vec::new();
        for channel in ["x", "y", "z"] {
            for publisher in 0..2u32 {
                let broker = broker.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..200u32 {
                        let p = Publication {
                            data: Bytes::from(format!("{publisher}-{i}")),
                            ..Default::default()
                        };
                        let options = PublishOptions {
                            history: history(1000),
                            ..Default::default()
                        };
                        broker.publish(channel, p, &options).await.unwrap();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let seen = recorder.0.lock().unwrap();
        for channel in ["x", "y", "z"] {
            let events: Vec<_> = seen.iter().filter(|(c, ..)| c == channel).collect();
            let offsets: Vec<u64> = events.iter().map(|(_, _, o, _)| *o).collect();
            assert_eq!(offsets, (1..=400).collect::<Vec<_>>());
            // Each publisher's own publications keep their order.
            for publisher in 0..2 {
                let order: Vec<u32> = events
                    .iter()
                    .filter_map(|(_, d, ..)| {
                        let text = std::str::from_utf8(d).unwrap();
                        let (p, i) = text.split_once('-').unwrap();
                        (p == publisher.to_string()).then(|| i.parse().unwrap())
                    })
                    .collect();
                assert_eq!(order, (0..200).collect::<Vec<_>>());
            }
        }
    }

    #[tokio::test]
    async fn history_suppression_prev_and_expiry_through_the_clock() {
        let recorder = Arc::new(Recorder::default());
        let clock = Arc::new(ManualClock::new());
        let broker = MemoryBroker::new(recorder.clone(), clock.clone());
        let options = PublishOptions {
            history: history(2),
            delta: true,
            idempotency_key: "k".into(),
            ..Default::default()
        };
        let first = broker
            .publish("ch", publication("a"), &options)
            .await
            .unwrap();
        let position = first.position.clone().unwrap();
        assert_eq!((position.offset, position.epoch.len()), (1, 8));
        let again = broker
            .publish("ch", publication("a"), &options)
            .await
            .unwrap();
        assert_eq!(again.position, first.position);
        assert_eq!(again.suppressed, Some(Suppression::Idempotent));
        let plain = PublishOptions {
            idempotency_key: String::new(),
            ..options.clone()
        };
        broker
            .publish("ch", publication("b"), &plain)
            .await
            .unwrap();
        broker
            .publish("ch", publication("c"), &plain)
            .await
            .unwrap();
        let seen: Vec<_> = recorder.0.lock().unwrap().clone();
        let prevs: Vec<Option<Bytes>> = seen.iter().map(|(.., prev)| prev.clone()).collect();
        assert_eq!(prevs, [None, Some("a".into()), Some("b".into())]);

        let stream = history(2).unwrap();
        let read = broker
            .history("ch", &HistoryQuery::default(), &stream)
            .await
            .unwrap();
        assert_eq!(read.top.offset, 3);
        let offsets: Vec<u64> = read.publications.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [2, 3]);

        clock.advance(Duration::from_secs(60));
        assert_eq!(broker.sweep().windows, 1);
        assert_eq!(broker.stats().streams, 1);
        clock.advance(Duration::from_secs(600));
        let swept = broker.sweep();
        assert_eq!((swept.streams, swept.idempotency_keys), (1, 1));
        assert_eq!(broker.stats(), MemoryBrokerStats::default());

        broker
            .publish_join_leave("ch", JoinLeave::Join(Default::default()))
            .await
            .unwrap();
        assert_eq!(recorder.0.lock().unwrap().last().unwrap().1, "join:");
        broker.remove_history("ch").await.unwrap();
    }
}
