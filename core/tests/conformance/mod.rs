//! The conformance suite every [`Broker`] + [`PresenceManager`] pair passes.
//!
//! An implementation's test file defines a factory (`async fn(Arc<dyn EventHandler>) ->
//! Fixture<B, P>`, a fresh broker and presence manager under a unique key prefix each call)
//! and expands [`conformance_tests!`] with it: one `#[tokio::test]` per case.
//!
//! Time: the fixture's `advance` moves the implementation's clock (a manual clock for memory,
//! a real sleep for servers), so every case uses TTLs of whole seconds.
#![allow(dead_code, clippy::unwrap_used)]

pub mod redis;

use bytes::Bytes;
use spindle_core::broker::HistoryReadError;
use spindle_core::broker::{
    Broker, EventHandler, HistoryQuery, JoinLeave, Publication, PublishOptions, ReadError,
    StreamOptions, StreamPosition, Suppression,
};
use spindle_core::presence::PresenceManager;
use spindle_proto::client::ClientInfo;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Presence entries of every fixture live this long without a refresh.
pub const PRESENCE_TTL: Duration = Duration::from_secs(1);

/// How long a case waits for deliveries.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

pub type Advance = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What a factory yields: a broker delivering to the handler it was given, a presence
/// manager with [`PRESENCE_TTL`], and a way to let time pass for both.
pub struct Fixture<B, P> {
    pub broker: Arc<B>,
    pub presence: P,
    pub advance: Advance,
}

/// What the handler saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Publication {
        channel: String,
        position: Option<StreamPosition>,
        data: Bytes,
        prev: Option<Bytes>,
    },
    Join(String, String),
    Leave(String, String),
}

impl Seen {
    pub fn channel(&self) -> &str {
        match self {
            Seen::Publication { channel, .. }
            | Seen::Join(channel, _)
            | Seen::Leave(channel, _) => channel,
        }
    }
}

/// An [`EventHandler`] recording everything, with a way to wait for it.
#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<Seen>>,
    /// Channel and publish time (unix ms) of every delivered publication, in arrival order.
    times: Mutex<Vec<(String, i64)>>,
    changed: Notify,
}

impl Recorder {
    /// Waits until `channel` has `count` events; returns them in arrival order.
    pub async fn wait(&self, channel: &str, count: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            let events = self.of(channel);
            if events.len() >= count {
                return events;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "{channel}: {} of {count} events within {DELIVERY_TIMEOUT:?}",
                    self.of(channel).len()
                );
            }
        }
    }

    pub fn of(&self, channel: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.channel() == channel)
            .cloned()
            .collect()
    }

    /// Publish times (unix ms) of the publications delivered in `channel`.
    pub fn publish_times(&self, channel: &str) -> Vec<i64> {
        let times = self.times.lock().unwrap();
        times
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, time)| *time)
            .collect()
    }

    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
        self.changed.notify_waiters();
    }
}

impl EventHandler for Recorder {
    fn on_publication(
        &self,
        channel: &str,
        position: Option<&StreamPosition>,
        publication: &Publication,
        prev: Option<&Publication>,
    ) {
        self.times
            .lock()
            .unwrap()
            .push((channel.to_owned(), publication.time));
        self.push(Seen::Publication {
            channel: channel.to_owned(),
            position: position.cloned(),
            data: publication.data.clone(),
            prev: prev.map(|p| p.data.clone()),
        });
    }

    fn on_join_leave(&self, channel: &str, event: &JoinLeave) {
        self.push(match event {
            JoinLeave::Join(info) => Seen::Join(channel.to_owned(), info.client.clone()),
            JoinLeave::Leave(info) => Seen::Leave(channel.to_owned(), info.client.clone()),
        });
    }
}

pub fn publication(data: &str) -> Publication {
    Publication {
        data: Bytes::copy_from_slice(data.as_bytes()),
        info: Some(ClientInfo {
            user: "u".into(),
            client: "c".into(),
            ..Default::default()
        }),
        tags: [("k".to_owned(), data.to_owned())].into(),
        time: unix_ms(),
        ..Publication::default()
    }
}

fn unix_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Every publication delivered in `channel` carries its publish time, and it is recent: the
/// broker carried it (or, PostgreSQL, stamped it) so edges can tell late publications
/// (`client.channel_position_max_time_lag`).
fn assert_recent_publish_times(seen: &Recorder, channel: &str) {
    let now = unix_ms();
    let times = seen.publish_times(channel);
    assert!(!times.is_empty(), "{channel}: no publications");
    for time in times {
        assert!(
            time > now - 30_000 && time <= now + 1_000,
            "{channel}: publish time {time} is not close to now ({now})"
        );
    }
}

pub fn stream(size: usize) -> StreamOptions {
    StreamOptions {
        size,
        ttl: Duration::from_secs(60),
        meta_ttl: Duration::from_secs(600),
    }
}

pub fn with_history(size: usize) -> PublishOptions {
    PublishOptions {
        history: Some(stream(size)),
        ..Default::default()
    }
}

pub fn data_of(seen: &Seen) -> String {
    match seen {
        Seen::Publication { data, .. } => String::from_utf8_lossy(data).into_owned(),
        Seen::Join(_, client) => format!("join:{client}"),
        Seen::Leave(_, client) => format!("leave:{client}"),
    }
}

fn offsets(items: &[spindle_core::broker::HistoryItem]) -> Vec<u64> {
    items.iter().map(|item| item.offset).collect()
}

/// Makes a fixture for a case.
pub trait Factory<B, P>: Fn(Arc<dyn EventHandler>) -> Self::Fut {
    type Fut: Future<Output = Fixture<B, P>>;
}

impl<B, P, F, Fut> Factory<B, P> for F
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = Fixture<B, P>>,
{
    type Fut = Fut;
}

async fn make<B, P>(factory: impl Factory<B, P>) -> (Fixture<B, P>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let fixture = factory(recorder.clone()).await;
    (fixture, recorder)
}

/// Publications of subscribed channels reach the handler, per channel in publish order, with
/// their positions; publications without history carry none; joins and leaves keep their
/// place among publications.
pub async fn delivery_in_order<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, seen) = make(factory).await;
    for channel in ["a", "b", "plain"] {
        f.broker.subscribe(channel).await.unwrap();
    }
    for n in 1..=20 {
        for channel in ["a", "b"] {
            let result = f
                .broker
                .publish(channel, publication(&n.to_string()), &with_history(100))
                .await
                .unwrap();
            assert_eq!(result.position.unwrap().offset, n);
        }
    }
    let plain = f
        .broker
        .publish("plain", publication("p1"), &PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(plain.position, None);
    assert_eq!(plain.suppressed, None);
    let info = ClientInfo {
        client: "x".into(),
        ..Default::default()
    };
    f.broker
        .publish_join_leave("plain", JoinLeave::Join(info.clone()))
        .await
        .unwrap();
    f.broker
        .publish("plain", publication("p2"), &PublishOptions::default())
        .await
        .unwrap();
    f.broker
        .publish_join_leave("plain", JoinLeave::Leave(info))
        .await
        .unwrap();

    for channel in ["a", "b"] {
        let events = seen.wait(channel, 20).await;
        let got: Vec<u64> = events
            .iter()
            .map(|s| match s {
                Seen::Publication { position, .. } => position.as_ref().unwrap().offset,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, (1..=20).collect::<Vec<_>>());
        let data: Vec<String> = events.iter().map(data_of).collect();
        assert_eq!(data, (1..=20).map(|n| n.to_string()).collect::<Vec<_>>());
        assert_recent_publish_times(&seen, channel);
    }
    let plain: Vec<String> = seen.wait("plain", 4).await.iter().map(data_of).collect();
    assert_eq!(plain, ["p1", "join:x", "p2", "leave:x"]);
    let Seen::Publication { position, .. } = &seen.of("plain")[0] else {
        panic!()
    };
    assert_eq!(*position, None);
    f.broker.unsubscribe("a").await.unwrap();
    f.broker.unsubscribe("a").await.unwrap();
}

/// Offsets from 1 in one epoch; retention bounded by size; since / limit / reverse; errors.
pub async fn history_reads<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, _) = make(factory).await;
    let mut epoch = String::new();
    for n in 1..=5u64 {
        let result = f
            .broker
            .publish("h", publication(&n.to_string()), &with_history(3))
            .await
            .unwrap();
        let position = result.position.unwrap();
        assert_eq!(position.offset, n);
        assert_eq!(position.epoch.len(), 8);
        if n == 1 {
            epoch = position.epoch;
        } else {
            assert_eq!(position.epoch, epoch);
        }
    }
    let read = |query: HistoryQuery| {
        let broker = f.broker.clone();
        async move { broker.history("h", &query, &stream(3)).await }
    };
    let all = read(HistoryQuery::default()).await.unwrap();
    assert_eq!(all.top, StreamPosition::new(5, epoch.clone()));
    assert_eq!(offsets(&all.publications), [3, 4, 5]);
    let first = &all.publications[0].publication;
    assert_eq!(first.data, "3");
    assert_eq!(first.info.as_ref().unwrap().user, "u");
    assert_eq!(first.tags["k"], "3");

    let position_only = read(HistoryQuery {
        limit: Some(0),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(position_only.top.offset, 5);
    assert!(position_only.publications.is_empty());

    let limited = read(HistoryQuery {
        limit: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(offsets(&limited.publications), [3, 4]);

    let reverse = read(HistoryQuery {
        limit: Some(2),
        reverse: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(offsets(&reverse.publications), [5, 4]);

    let since = |offset: u64, epoch: &str, limit: Option<usize>, reverse: bool| HistoryQuery {
        since: Some(StreamPosition::new(offset, epoch)),
        limit,
        reverse,
    };
    let after = read(since(3, &epoch, None, false)).await.unwrap();
    assert_eq!(offsets(&after.publications), [4, 5]);
    let after_any_epoch = read(since(4, "", Some(10), false)).await.unwrap();
    assert_eq!(offsets(&after_any_epoch.publications), [5]);
    let after_old = read(since(1, &epoch, Some(1), false)).await.unwrap();
    assert_eq!(offsets(&after_old.publications), [3]);
    let at_top = read(since(5, &epoch, None, false)).await.unwrap();
    assert!(at_top.publications.is_empty());
    let before = read(since(5, &epoch, None, true)).await.unwrap();
    assert_eq!(offsets(&before.publications), [4, 3]);
    let before_limited = read(since(5, &epoch, Some(1), true)).await.unwrap();
    assert_eq!(offsets(&before_limited.publications), [4]);
    let before_gone = read(since(3, &epoch, None, true)).await.unwrap();
    assert!(before_gone.publications.is_empty());

    assert_eq!(
        read(since(0, &epoch, None, true)).await,
        Err(HistoryReadError::Read(ReadError::ReverseFromZero))
    );
    assert_eq!(
        read(since(1, "otherEpc", None, false)).await,
        Err(HistoryReadError::Read(ReadError::Unrecoverable))
    );
}

/// A read of a channel without a stream creates one (offset 0, new epoch) that the next
/// publication continues; removing history starts a new epoch at offset 1.
pub async fn epochs_and_remove<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, _) = make(factory).await;
    let empty = f
        .broker
        .history("e", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    assert_eq!(empty.top.offset, 0);
    assert_eq!(empty.top.epoch.len(), 8);
    assert!(empty.publications.is_empty());
    let first = f
        .broker
        .publish("e", publication("1"), &with_history(10))
        .await
        .unwrap();
    assert_eq!(
        first.position,
        Some(StreamPosition::new(1, empty.top.epoch.clone()))
    );

    f.broker.remove_history("e").await.unwrap();
    f.broker.remove_history("never-used").await.unwrap();
    let after = f
        .broker
        .publish("e", publication("2"), &with_history(10))
        .await
        .unwrap();
    let after = after.position.unwrap();
    assert_eq!(after.offset, 1);
    assert_ne!(after.epoch, empty.top.epoch);
    let read = f
        .broker
        .history("e", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    assert_eq!(read.top, after);
    assert_eq!(offsets(&read.publications), [1]);
    assert_eq!(read.publications[0].publication.data, "2");
    // The old position cannot be recovered.
    let old = HistoryQuery {
        since: Some(StreamPosition::new(1, empty.top.epoch)),
        ..Default::default()
    };
    assert_eq!(
        f.broker.history("e", &old, &stream(10)).await,
        Err(HistoryReadError::Read(ReadError::Unrecoverable))
    );
}

/// Publications expire `ttl` after the last publish (the position stays); the position and
/// epoch expire `meta_ttl` after the last publish or read (then a new epoch starts).
pub async fn history_ttl_and_meta_ttl<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, _) = make(factory).await;
    let options = StreamOptions {
        size: 10,
        ttl: Duration::from_secs(1),
        meta_ttl: Duration::from_secs(3),
    };
    let publish = PublishOptions {
        history: Some(options),
        ..Default::default()
    };
    f.broker
        .publish("t", publication("1"), &publish)
        .await
        .unwrap();
    let second = f
        .broker
        .publish("t", publication("2"), &publish)
        .await
        .unwrap();
    let position = second.position.unwrap();

    (f.advance)(Duration::from_millis(1300)).await;
    let read = f
        .broker
        .history("t", &HistoryQuery::default(), &options)
        .await
        .unwrap();
    assert_eq!(read.top, position, "the position outlives the publications");
    assert!(read.publications.is_empty(), "publications expired");

    // The read above kept the metadata for another meta_ttl.
    (f.advance)(Duration::from_millis(2000)).await;
    let kept = f
        .broker
        .history("t", &HistoryQuery::default(), &options)
        .await
        .unwrap();
    assert_eq!(kept.top, position, "a read keeps the metadata alive");

    (f.advance)(Duration::from_millis(3300)).await;
    let gone = f
        .broker
        .history("t", &HistoryQuery::default(), &options)
        .await
        .unwrap();
    assert_eq!(gone.top.offset, 0);
    assert_ne!(
        gone.top.epoch, position.epoch,
        "a new epoch after the metadata expired"
    );
    let next = f
        .broker
        .publish("t", publication("3"), &publish)
        .await
        .unwrap();
    assert_eq!(next.position, Some(StreamPosition::new(1, gone.top.epoch)));
}

/// A repeated idempotency key returns the first result, suppressed and not delivered; keys
/// are per channel; channels without history are covered too.
pub async fn idempotency_keys<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, seen) = make(factory).await;
    for channel in ["i", "j", "n"] {
        f.broker.subscribe(channel).await.unwrap();
    }
    let keyed = PublishOptions {
        idempotency_key: "key-1".into(),
        ..with_history(10)
    };
    let first = f
        .broker
        .publish("i", publication("a"), &keyed)
        .await
        .unwrap();
    assert_eq!(first.suppressed, None);
    let again = f
        .broker
        .publish("i", publication("b"), &keyed)
        .await
        .unwrap();
    assert_eq!(again.position, first.position);
    assert_eq!(again.suppressed, Some(Suppression::Idempotent));
    let other_channel = f
        .broker
        .publish("j", publication("c"), &keyed)
        .await
        .unwrap();
    assert_eq!(other_channel.suppressed, None);
    assert_eq!(other_channel.position.unwrap().offset, 1);
    let other_key = PublishOptions {
        idempotency_key: "key-2".into(),
        ..with_history(10)
    };
    let next = f
        .broker
        .publish("i", publication("d"), &other_key)
        .await
        .unwrap();
    assert_eq!(next.position.unwrap().offset, 2);

    let no_history = PublishOptions {
        idempotency_key: "key-1".into(),
        ..Default::default()
    };
    let plain = f
        .broker
        .publish("n", publication("e"), &no_history)
        .await
        .unwrap();
    assert_eq!((plain.position, plain.suppressed), (None, None));
    let plain_again = f
        .broker
        .publish("n", publication("f"), &no_history)
        .await
        .unwrap();
    assert_eq!(plain_again.position, None);
    assert_eq!(plain_again.suppressed, Some(Suppression::Idempotent));

    // A marker publication after the suppressed ones: once it arrives, nothing else came.
    f.broker
        .publish("i", publication("end"), &with_history(10))
        .await
        .unwrap();
    f.broker
        .publish("n", publication("end"), &PublishOptions::default())
        .await
        .unwrap();
    let i: Vec<String> = seen.wait("i", 3).await.iter().map(data_of).collect();
    assert_eq!(i, ["a", "d", "end"]);
    let n: Vec<String> = seen.wait("n", 2).await.iter().map(data_of).collect();
    assert_eq!(n, ["e", "end"]);
    let history = f
        .broker
        .history("i", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    assert_eq!(offsets(&history.publications), [1, 2, 3]);
}

/// A version not above the stream's (in the same version epoch) is dropped with the current
/// top; another version epoch starts over.
pub async fn versions<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, _) = make(factory).await;
    let versioned = |version: u64, epoch: &str| PublishOptions {
        version,
        version_epoch: epoch.into(),
        ..with_history(10)
    };
    let v2 = f
        .broker
        .publish("v", publication("v2"), &versioned(2, "x"))
        .await
        .unwrap();
    assert_eq!(v2.suppressed, None);
    let top = v2.position.unwrap();
    for stale in [1, 2] {
        let result = f
            .broker
            .publish("v", publication("old"), &versioned(stale, "x"))
            .await
            .unwrap();
        assert_eq!(result.suppressed, Some(Suppression::StaleVersion));
        assert_eq!(result.position.as_ref(), Some(&top));
    }
    let v3 = f
        .broker
        .publish("v", publication("v3"), &versioned(3, "x"))
        .await
        .unwrap();
    assert_eq!(v3.position.unwrap().offset, 2);
    let other_epoch = f
        .broker
        .publish("v", publication("y1"), &versioned(1, "y"))
        .await
        .unwrap();
    assert_eq!(other_epoch.position.unwrap().offset, 3);
    let unversioned = f
        .broker
        .publish("v", publication("u"), &with_history(10))
        .await
        .unwrap();
    assert_eq!(unversioned.position.unwrap().offset, 4);
    let read = f
        .broker
        .history("v", &HistoryQuery::default(), &stream(10))
        .await
        .unwrap();
    let data: Vec<_> = read
        .publications
        .iter()
        .map(|p| p.publication.data.clone())
        .collect();
    assert_eq!(data, ["v2", "v3", "y1", "u"]);
}

/// Delta publishes hand the previous publication of the stream along.
pub async fn delta_prev<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, seen) = make(factory).await;
    f.broker.subscribe("d").await.unwrap();
    let delta = PublishOptions {
        delta: true,
        ..with_history(10)
    };
    for data in ["a", "b", "c"] {
        f.broker
            .publish("d", publication(data), &delta)
            .await
            .unwrap();
    }
    let prevs: Vec<Option<Bytes>> = seen
        .wait("d", 3)
        .await
        .into_iter()
        .map(|s| match s {
            Seen::Publication { prev, .. } => prev,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(prevs, [None, Some("a".into()), Some("b".into())]);
}

/// Many publishers on one channel: offsets unique and contiguous, delivered in offset order.
pub async fn concurrent_publishers<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, seen) = make(factory).await;
    f.broker.subscribe("c").await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for publisher in 0..4 {
        let broker = f.broker.clone();
        tasks.spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..50 {
                let data = format!("{publisher}-{i}");
                let result = broker
                    .publish("c", publication(&data), &with_history(1000))
                    .await
                    .unwrap();
                offsets.push(result.position.unwrap().offset);
            }
            offsets
        });
    }
    let mut all = Vec::new();
    while let Some(offsets) = tasks.join_next().await {
        let offsets = offsets.unwrap();
        assert!(offsets.is_sorted(), "one publisher's offsets increase");
        all.extend(offsets);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<_>>());
    let delivered: Vec<u64> = seen
        .wait("c", 200)
        .await
        .iter()
        .map(|s| match s {
            Seen::Publication { position, .. } => position.as_ref().unwrap().offset,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(delivered, (1..=200).collect::<Vec<_>>());
    let read = f
        .broker
        .history("c", &HistoryQuery::default(), &stream(1000))
        .await
        .unwrap();
    assert_eq!(offsets(&read.publications), (1..=200).collect::<Vec<_>>());
}

fn info(client: &str, user: &str) -> ClientInfo {
    ClientInfo {
        client: client.into(),
        user: user.into(),
        conn_info: Bytes::from(format!("{{\"c\":\"{client}\"}}")),
        ..Default::default()
    }
}

/// Add, replace, refresh, remove, stats.
pub async fn presence_entries<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, _) = make(factory).await;
    let p = &f.presence;
    assert!(p.presence("p").await.unwrap().is_empty());
    assert!(p.add_presence("p", info("c1", "u1")).await.unwrap());
    assert!(!p.add_presence("p", info("c1", "u1")).await.unwrap());
    assert!(p.add_presence("p", info("c2", "u1")).await.unwrap());
    assert!(p.add_presence("p", info("c3", "")).await.unwrap());
    assert!(p.add_presence("p", info("c4", "")).await.unwrap());
    assert!(p.add_presence("other", info("c9", "u9")).await.unwrap());
    let all = p.presence("p").await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["c1", "c2", "c3", "c4"]);
    assert_eq!(all["c2"], info("c2", "u1"));
    let stats = p.presence_stats("p").await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (4, 2));

    assert!(p.refresh_presence("p", "c1").await.unwrap());
    assert!(!p.refresh_presence("p", "nobody").await.unwrap());
    assert_eq!(
        p.remove_presence("p", "c1").await.unwrap(),
        Some(info("c1", "u1"))
    );
    assert_eq!(p.remove_presence("p", "c1").await.unwrap(), None);
    assert!(!p.refresh_presence("p", "c1").await.unwrap());
    let stats = p.presence_stats("p").await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (3, 2));
    assert_eq!(p.presence("other").await.unwrap().len(), 1);
}

/// Entries expire [`PRESENCE_TTL`] after their last add or refresh.
pub async fn presence_expiry<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, _) = make(factory).await;
    let p = &f.presence;
    p.add_presence("x", info("old", "u1")).await.unwrap();
    p.add_presence("x", info("kept", "u2")).await.unwrap();
    (f.advance)(PRESENCE_TTL / 2 + Duration::from_millis(100)).await;
    assert!(p.refresh_presence("x", "kept").await.unwrap());
    (f.advance)(PRESENCE_TTL / 2 + Duration::from_millis(100)).await;
    let live = p.presence("x").await.unwrap();
    assert_eq!(live.keys().collect::<Vec<_>>(), ["kept"]);
    assert!(
        !p.refresh_presence("x", "old").await.unwrap(),
        "no refresh brings one back"
    );
    let stats = p.presence_stats("x").await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));
    (f.advance)(PRESENCE_TTL).await;
    assert!(p.presence("x").await.unwrap().is_empty());
    assert!(p.add_presence("x", info("old", "u1")).await.unwrap());
}

/// The PUB/SUB subset, without history: publications and joins / leaves of subscribed channels
/// reach the handler in publish order per channel, subscribe / unsubscribe are idempotent, and
/// channel names a subject-based broker must escape arrive under their own name.
pub async fn delivery_only<B: Broker, P: PresenceManager>(factory: impl Factory<B, P>) {
    let (f, seen) = make(factory).await;
    let channels = [
        "a",
        "b",
        "with space",
        "star*",
        "gt>",
        "dots..x",
        ".lead",
        "trail.",
        "pct%20",
    ];
    for channel in channels {
        f.broker.subscribe(channel).await.unwrap();
        f.broker.subscribe(channel).await.unwrap();
    }
    f.broker.subscribe("gone").await.unwrap();
    f.broker.unsubscribe("gone").await.unwrap();
    f.broker.unsubscribe("gone").await.unwrap();
    f.broker
        .publish("gone", publication("never"), &PublishOptions::default())
        .await
        .unwrap();
    f.broker
        .publish(
            "unsubscribed",
            publication("never"),
            &PublishOptions::default(),
        )
        .await
        .unwrap();
    let info = ClientInfo {
        client: "x".into(),
        ..Default::default()
    };
    for channel in channels {
        for n in 1..=10 {
            let result = f
                .broker
                .publish(
                    channel,
                    publication(&format!("{channel}/{n}")),
                    &PublishOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(result.position, None);
            assert_eq!(result.suppressed, None);
        }
        f.broker
            .publish_join_leave(channel, JoinLeave::Join(info.clone()))
            .await
            .unwrap();
        f.broker
            .publish_join_leave(channel, JoinLeave::Leave(info.clone()))
            .await
            .unwrap();
    }
    for channel in channels {
        let got: Vec<String> = seen.wait(channel, 12).await.iter().map(data_of).collect();
        let mut expected: Vec<String> = (1..=10).map(|n| format!("{channel}/{n}")).collect();
        expected.extend(["join:x".to_owned(), "leave:x".to_owned()]);
        assert_eq!(got, expected, "{channel}");
        assert_recent_publish_times(&seen, channel);
        for event in seen.of(channel) {
            if let Seen::Publication { position, prev, .. } = event {
                assert_eq!((position, prev), (None, None));
            }
        }
    }
    // Delivery of channels this node did not subscribe is not part of the contract (the memory
    // broker hands everything to its handler, which filters by interest); brokers that filter
    // test it in their own file.
}

/// Several publishers on one channel without history: every publication arrives once, each
/// publisher's in its publish order.
pub async fn concurrent_publishers_delivery<B: Broker, P: PresenceManager>(
    factory: impl Factory<B, P>,
) {
    let (f, seen) = make(factory).await;
    f.broker.subscribe("c").await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for publisher in 0..4 {
        let broker = f.broker.clone();
        tasks.spawn(async move {
            for i in 0..50 {
                let data = format!("{publisher}-{i}");
                broker
                    .publish("c", publication(&data), &PublishOptions::default())
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    seen.wait("c", 200).await;
    // A duplicate would come late: give it the time to.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delivered: Vec<String> = seen.of("c").iter().map(data_of).collect();
    assert_eq!(delivered.len(), 200, "each publication once");
    for publisher in 0..4 {
        let own: Vec<&String> = delivered
            .iter()
            .filter(|d| d.starts_with(&format!("{publisher}-")))
            .collect();
        let expected: Vec<String> = (0..50).map(|i| format!("{publisher}-{i}")).collect();
        assert_eq!(own, expected.iter().collect::<Vec<_>>());
    }
}

/// One `#[tokio::test]` per conformance case for `$factory`; `(@delivery $factory)` expands
/// only the PUB/SUB subset and presence, for brokers without history (NATS).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            delivery_in_order, history_reads, epochs_and_remove, history_ttl_and_meta_ttl,
            idempotency_keys, versions, delta_prev, concurrent_publishers, presence_entries,
            presence_expiry, delivery_only, concurrent_publishers_delivery);
    };
    (@delivery $factory:path) => {
        $crate::conformance_tests!(@cases $factory;
            delivery_only, concurrent_publishers_delivery, presence_entries, presence_expiry);
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                conformance::$case($factory).await;
            }
        )*
    };
}
