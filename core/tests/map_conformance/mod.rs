//! The conformance suite every [`MapBroker`] passes (memory, Redis single / sharded / Cluster).
//!
//! An implementation's test file defines a factory (`async fn(Arc<dyn EventHandler>) ->
//! MapFixture<M>`: fresh storage under a unique key prefix each call, delivering to the
//! handler) and expands [`map_conformance_tests!`] with it. `listen` makes a channel's changes
//! flow to the handler (a broker subscription where delivery goes through one), `sweep` runs the
//! key-expiry pass, `advance` lets time pass (a manual clock, or a real sleep).
#![allow(dead_code, clippy::unwrap_used)]

pub mod redis;

use bytes::Bytes;
use spindle_core::broker::{
    EventHandler, HistoryQuery, JoinLeave, Publication, ReadError, StreamPosition,
};
use spindle_core::maps::{
    KeyMode, MapBroker, MapReadError, MapSettings, MapSuppression, MapWrite, StateQuery,
};
use spindle_hub::config::{ChannelOptions, Duration as ConfigDuration, MapMode, SubscriptionType};
use spindle_hub::map::decode_cursor;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

pub type Async<T> = Arc<dyn Fn(T) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;
pub type Sweep = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = usize> + Send>> + Send + Sync>;

pub struct MapFixture<M> {
    pub maps: Arc<M>,
    pub listen: Async<String>,
    pub sweep: Sweep,
    pub advance: Async<Duration>,
}

/// One delivered change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub position: Option<StreamPosition>,
    pub key: String,
    pub removed: bool,
    pub data: Bytes,
    pub tags: Vec<(String, String)>,
    pub prev: Option<Bytes>,
}

#[derive(Default)]
pub struct Recorder {
    seen: Mutex<Vec<(String, Change)>>,
    changed: Notify,
}

impl Recorder {
    pub async fn wait(&self, channel: &str, count: usize) -> Vec<Change> {
        let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
        loop {
            let notified = self.changed.notified();
            let changes = self.of(channel);
            if changes.len() >= count {
                return changes;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{channel}: {} of {count} changes delivered", changes.len());
            }
        }
    }

    pub fn of(&self, channel: &str) -> Vec<Change> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, change)| change.clone())
            .collect()
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
        let change = Change {
            position: position.cloned(),
            key: publication.key.clone(),
            removed: publication.removed,
            data: publication.data.clone(),
            tags: publication.tags.clone().into_iter().collect(),
            prev: prev.map(|p| p.data.clone()),
        };
        self.seen.lock().unwrap().push((channel.to_owned(), change));
        self.changed.notify_waiters();
    }

    fn on_join_leave(&self, _: &str, _: &JoinLeave) {}
}

pub fn settings(mode: MapMode, key_ttl_secs: u64, stream_size: u32) -> MapSettings {
    let mut options = ChannelOptions {
        subscription_type: SubscriptionType::Map,
        ..ChannelOptions::default()
    };
    options.map.mode = mode;
    options.map.key_ttl = ConfigDuration::from_secs(key_ttl_secs);
    options.map.stream_size = stream_size;
    options.map.min_page_size = 1;
    MapSettings::for_channel(&options).unwrap()
}

fn persistent() -> MapSettings {
    settings(MapMode::Persistent, 0, 100)
}

fn put<'a>(key: &'a str, data: &str) -> MapWrite<'a> {
    MapWrite {
        key,
        publication: Some(Publication {
            data: Bytes::copy_from_slice(data.as_bytes()),
            ..Publication::default()
        }),
        ..MapWrite::default()
    }
}

fn remove(key: &str) -> MapWrite<'_> {
    MapWrite {
        key,
        ..MapWrite::default()
    }
}

fn channel(name: &str) -> String {
    format!("m:{name}-{}", uuid::Uuid::new_v4().simple())
}

async fn fixture<M, F, Fut>(factory: F) -> (MapFixture<M>, Arc<Recorder>)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let recorder = Arc::new(Recorder::default());
    (factory(recorder.clone()).await, recorder)
}

/// Entries in key order, page by page; the position a page was read at is the stream's top;
/// changes arrive in offset order with their keys; removals carry the entry's tags.
pub async fn state_pages_and_changes<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, seen) = fixture(factory).await;
    let ch = channel("pages");
    (f.listen)(ch.clone()).await;
    let s = persistent();
    for key in ["d", "a", "c", "b", "e"] {
        f.maps.write(&ch, s, put(key, key)).await.unwrap();
    }
    let tagged = MapWrite {
        publication: Some(Publication {
            data: Bytes::from_static(b"t"),
            tags: [("team".to_owned(), "dev".to_owned())].into(),
            ..Publication::default()
        }),
        ..put("t", "")
    };
    f.maps.write(&ch, s, tagged).await.unwrap();
    let update = f.maps.write(&ch, s, remove("t")).await.unwrap();
    assert_eq!(update.position.offset, 7);
    assert_eq!(update.suppressed, None);

    let changes = seen.wait(&ch, 7).await;
    let keys: Vec<(&str, bool)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.removed))
        .collect();
    assert_eq!(
        keys,
        [
            ("d", false),
            ("a", false),
            ("c", false),
            ("b", false),
            ("e", false),
            ("t", false),
            ("t", true)
        ]
    );
    let offsets: Vec<u64> = changes
        .iter()
        .map(|c| c.position.as_ref().unwrap().offset)
        .collect();
    assert_eq!(offsets, [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(changes[6].tags, [("team".to_owned(), "dev".to_owned())]);
    assert!(changes[6].data.is_empty());

    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let query = StateQuery {
            after: after.as_deref(),
            limit: Some(2),
            ..StateQuery::default()
        };
        let page = f.maps.state(&ch, s, query).await.unwrap();
        assert_eq!(page.position.offset, 7);
        pages.push(
            page.entries
                .iter()
                .map(|e| (e.publication.key.clone(), e.offset))
                .collect::<Vec<_>>(),
        );
        match page.cursor {
            Some(cursor) => after = decode_cursor(&ch, &cursor).unwrap().map(str::to_owned),
            None => break,
        }
    }
    let expected: Vec<Vec<(String, u64)>> = vec![
        vec![("a".into(), 2), ("b".into(), 4)],
        vec![("c".into(), 3), ("d".into(), 1)],
        vec![("e".into(), 5)],
    ];
    assert_eq!(pages, expected);
    let all = f.maps.state(&ch, s, StateQuery::default()).await.unwrap();
    assert_eq!(all.entries.len(), 5);
    assert_eq!(all.cursor, None);
    let one = StateQuery {
        key: Some("c"),
        ..StateQuery::default()
    };
    let c = f.maps.state(&ch, s, one).await.unwrap();
    assert_eq!(c.entries.len(), 1);
    assert_eq!(c.entries[0].publication.data.as_ref(), b"c");
    assert_eq!(f.maps.stats(&ch).await.unwrap(), 5);
}

/// Suppressed writes change nothing and deliver nothing.
pub async fn suppressions<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, seen) = fixture(factory).await;
    let ch = channel("suppressed");
    (f.listen)(ch.clone()).await;
    let s = persistent();
    let versioned = |version| MapWrite {
        version,
        ..put("k", "v")
    };
    f.maps.write(&ch, s, versioned(2)).await.unwrap();
    let reason = |update: spindle_core::maps::MapUpdate| update.suppressed;
    assert_eq!(
        reason(f.maps.write(&ch, s, versioned(2)).await.unwrap()),
        Some(MapSuppression::StaleVersion)
    );
    let if_new = MapWrite {
        key_mode: KeyMode::IfNew,
        ..put("k", "x")
    };
    assert_eq!(
        reason(f.maps.write(&ch, s, if_new).await.unwrap()),
        Some(MapSuppression::KeyExists)
    );
    let if_exists = MapWrite {
        key_mode: KeyMode::IfExists,
        ..put("absent", "x")
    };
    assert_eq!(
        reason(f.maps.write(&ch, s, if_exists).await.unwrap()),
        Some(MapSuppression::KeyNotFound)
    );
    assert_eq!(
        reason(f.maps.write(&ch, s, remove("absent")).await.unwrap()),
        Some(MapSuppression::KeyNotFound)
    );
    let once = MapWrite {
        idempotency_key: "once",
        ..put("i", "1")
    };
    let first = f.maps.write(&ch, s, once.clone()).await.unwrap();
    let again = f.maps.write(&ch, s, once).await.unwrap();
    assert_eq!(again.suppressed, Some(MapSuppression::Idempotent));
    assert_eq!(again.position, first.position);
    // An unversioned write keeps the key's version.
    f.maps.write(&ch, s, put("k", "unversioned")).await.unwrap();
    assert_eq!(
        reason(f.maps.write(&ch, s, versioned(2)).await.unwrap()),
        Some(MapSuppression::StaleVersion)
    );
    assert!(reason(f.maps.write(&ch, s, versioned(3)).await.unwrap()).is_none());

    let changes = seen.wait(&ch, 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seen.of(&ch).len(),
        4,
        "suppressed writes deliver nothing: {changes:?}"
    );
    let top = f
        .maps
        .stream(&ch, s, &HistoryQuery::default())
        .await
        .unwrap()
        .top;
    assert_eq!(top.offset, 4);
}

/// Stream reads since a position; a position the stream no longer has is unrecoverable.
pub async fn stream_reads<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, _) = fixture(factory).await;
    let ch = channel("stream");
    let s = settings(MapMode::Persistent, 0, 3);
    let mut epoch = String::new();
    for i in 0..5 {
        let update = f
            .maps
            .write(&ch, s, put(&format!("k{i}"), "v"))
            .await
            .unwrap();
        epoch = update.position.epoch;
    }
    let since = |offset: u64, epoch: &str| HistoryQuery {
        since: Some(StreamPosition::new(offset, epoch)),
        limit: Some(10),
        reverse: false,
    };
    let read = f.maps.stream(&ch, s, &since(2, &epoch)).await.unwrap();
    let offsets: Vec<u64> = read.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [3, 4, 5]);
    assert_eq!(read.publications[0].publication.key, "k2");
    let trimmed = f.maps.stream(&ch, s, &since(1, &epoch)).await;
    assert!(
        matches!(trimmed, Err(MapReadError::Read(ReadError::Unrecoverable))),
        "{trimmed:?}"
    );
    let other = f.maps.stream(&ch, s, &since(4, "other")).await;
    assert!(
        matches!(other, Err(MapReadError::Read(ReadError::Unrecoverable))),
        "{other:?}"
    );
    let at_top = f.maps.stream(&ch, s, &since(5, &epoch)).await.unwrap();
    assert!(at_top.publications.is_empty());
    let revision = StreamPosition::new(1, "other");
    let stale = StateQuery {
        revision: Some(&revision),
        ..StateQuery::default()
    };
    assert!(matches!(
        f.maps.state(&ch, s, stale).await,
        Err(MapReadError::Read(ReadError::Unrecoverable))
    ));
    let position_only = StateQuery {
        limit: Some(0),
        revision: Some(&revision),
        ..StateQuery::default()
    };
    assert!(matches!(
        f.maps.state(&ch, s, position_only).await,
        Err(MapReadError::Read(ReadError::Unrecoverable))
    ));
    let current = StreamPosition::new(5, epoch.as_str());
    let position_only = StateQuery {
        limit: Some(0),
        revision: Some(&current),
        ..StateQuery::default()
    };
    let at = f.maps.state(&ch, s, position_only).await.unwrap();
    assert_eq!((at.position.offset, at.entries.len()), (5, 0));
}

/// Expired keys become removals, appended and delivered.
pub async fn key_expiry<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, seen) = fixture(factory).await;
    let ch = channel("ttl");
    (f.listen)(ch.clone()).await;
    let s = settings(MapMode::Recoverable, 1, 100);
    f.maps.write(&ch, s, put("gone", "1")).await.unwrap();
    (f.advance)(Duration::from_millis(1_100)).await;
    let mut removed = 0;
    let deadline = tokio::time::Instant::now() + DELIVERY_TIMEOUT;
    while removed == 0 && tokio::time::Instant::now() < deadline {
        removed += (f.sweep)().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(removed, 1);
    let changes = seen.wait(&ch, 2).await;
    assert_eq!(
        (changes[1].key.as_str(), changes[1].removed),
        ("gone", true)
    );
    assert_eq!(changes[1].position.as_ref().unwrap().offset, 2);
    assert_eq!(f.maps.stats(&ch).await.unwrap(), 0);
}

/// With `want_prev`, the key's previous value travels with the change.
pub async fn previous_values<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, seen) = fixture(factory).await;
    let ch = channel("delta");
    (f.listen)(ch.clone()).await;
    let s = persistent();
    let delta = |data: &'static str| MapWrite {
        want_prev: true,
        ..put("k", data)
    };
    f.maps.write(&ch, s, delta("one")).await.unwrap();
    f.maps.write(&ch, s, put("other", "x")).await.unwrap();
    f.maps.write(&ch, s, delta("two")).await.unwrap();
    let changes = seen.wait(&ch, 3).await;
    assert_eq!(changes[0].prev, None);
    assert_eq!(changes[2].prev.as_deref(), Some(&b"one"[..]));
}

/// An ephemeral map: no offsets, no stream.
pub async fn ephemeral<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, seen) = fixture(factory).await;
    let ch = channel("ephemeral");
    (f.listen)(ch.clone()).await;
    let s = settings(MapMode::Ephemeral, 60, 0);
    let update = f.maps.write(&ch, s, put("a", "1")).await.unwrap();
    assert_eq!(update.position.offset, 0);
    let changes = seen.wait(&ch, 1).await;
    assert_eq!(changes[0].position, None);
    let state = f.maps.state(&ch, s, StateQuery::default()).await.unwrap();
    assert_eq!(state.entries.len(), 1);
    assert_eq!(state.entries[0].offset, 0);
}

/// `clear` forgets everything: the next write starts a new epoch at offset 1.
pub async fn clear_starts_a_new_epoch<M: MapBroker, F, Fut>(factory: F)
where
    F: Fn(Arc<dyn EventHandler>) -> Fut,
    Fut: Future<Output = MapFixture<M>>,
{
    let (f, _) = fixture(factory).await;
    let ch = channel("clear");
    let s = persistent();
    let before = f.maps.write(&ch, s, put("a", "1")).await.unwrap();
    f.maps.clear(&ch).await.unwrap();
    assert_eq!(f.maps.stats(&ch).await.unwrap(), 0);
    let after = f.maps.write(&ch, s, put("a", "1")).await.unwrap();
    assert_ne!(before.position.epoch, after.position.epoch);
    assert_eq!(after.position.offset, 1);
}

#[macro_export]
macro_rules! map_conformance_tests {
    ($factory:path) => {
        $crate::map_conformance_tests!(@cases $factory;
            state_pages_and_changes, suppressions, stream_reads, key_expiry, previous_values,
            ephemeral, clear_starts_a_new_epoch);
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                map_conformance::$case($factory).await;
            }
        )*
    };
}
