use super::*;
use crate::config::{ChannelOptions, Duration as ConfigDuration, MapMode, SubscriptionType};
use crate::history::{HistoryQuery, Publication, ReadError, StreamPosition};
use bytes::Bytes;
use std::time::{Duration, Instant};

fn options(mode: MapMode, key_ttl: u64) -> ChannelOptions {
    let mut options = ChannelOptions {
        subscription_type: SubscriptionType::Map,
        ..ChannelOptions::default()
    };
    options.map.mode = mode;
    options.map.key_ttl = ConfigDuration::from_secs(key_ttl);
    options.map.stream_size = 3;
    options.map.min_page_size = 1;
    options
}

fn settings(mode: MapMode, key_ttl: u64) -> MapSettings {
    MapSettings::for_channel(&options(mode, key_ttl)).unwrap()
}

fn store() -> MapStore<impl FnMut() -> u64> {
    let mut n = 0u64;
    MapStore::new(MapLimits::default(), move || {
        n += 1;
        n
    })
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

fn written(outcome: MapOutcome) -> (StreamPosition, std::sync::Arc<Publication>) {
    match outcome {
        MapOutcome::Written {
            position,
            publication,
            ..
        } => (position, publication),
        other => panic!("not written: {other:?}"),
    }
}

fn keys(state: &MapState) -> Vec<&str> {
    state
        .entries
        .iter()
        .map(|e| e.publication.key.as_str())
        .collect()
}

#[test]
fn settings_resolve_modes_and_defaults() {
    let recoverable = settings(MapMode::Recoverable, 30);
    assert_eq!(recoverable.stream.unwrap().size, 3);
    assert_eq!(recoverable.stream.unwrap().ttl, DEFAULT_STREAM_TTL);
    assert_eq!(recoverable.meta_ttl, Some(DEFAULT_STREAM_TTL * 10));
    assert_eq!(recoverable.key_ttl, Some(Duration::from_secs(30)));
    assert_eq!(
        recoverable.storage_args(),
        StorageArgs {
            stream_size: 3,
            stream_ttl_ms: 60_000,
            meta_ttl_ms: 600_000,
            key_ttl_ms: 30_000,
        }
    );
    let persistent = settings(MapMode::Persistent, 0);
    assert!(persistent.positioned());
    assert_eq!(
        (
            persistent.storage_args().meta_ttl_ms,
            persistent.storage_args().key_ttl_ms
        ),
        (0, 0)
    );
    assert_eq!((persistent.key_ttl, persistent.meta_ttl), (None, None));
    let ephemeral = settings(MapMode::Ephemeral, 30);
    assert!(!ephemeral.positioned());
    assert_eq!(ephemeral.pages.for_request(0), DEFAULT_PAGE_SIZE);
    assert_eq!(ephemeral.pages.for_request(2), 2);
    assert_eq!(ephemeral.pages.for_request(50_000), DEFAULT_MAX_PAGE_SIZE);
    assert_eq!(ephemeral.catch_up_limit, DEFAULT_MAX_PAGE_SIZE);
    let mut stream = options(MapMode::Persistent, 0);
    stream.subscription_type = SubscriptionType::Stream;
    assert_eq!(MapSettings::for_channel(&stream), None);
}

#[test]
fn writes_set_entries_and_append_changes_in_one_step() {
    let now = Instant::now();
    let s = settings(MapMode::Persistent, 0);
    let mut maps = store();
    let (first, publication) = written(maps.write("m", s, put("b", "1"), now).unwrap());
    assert_eq!(first.offset, 1);
    assert_eq!(publication.key, "b");
    let (second, _) = written(maps.write("m", s, put("a", "2"), now).unwrap());
    assert_eq!((second.offset, &second.epoch), (2, &first.epoch));
    let (third, removal) = written(maps.write("m", s, remove("b"), now).unwrap());
    assert_eq!(third.offset, 3);
    assert!(removal.removed && removal.data.is_empty());
    assert_eq!(maps.stats("m"), 1);

    let history = maps.stream("m", s, &HistoryQuery::default(), now).unwrap();
    let changes: Vec<(u64, &str, bool)> = history
        .publications
        .iter()
        .map(|i| (i.offset, i.publication.key.as_str(), i.publication.removed))
        .collect();
    assert_eq!(changes, [(1, "b", false), (2, "a", false), (3, "b", true)]);
}

#[test]
fn state_pages_follow_key_order_and_cursors() {
    let now = Instant::now();
    let s = settings(MapMode::Persistent, 0);
    let mut maps = store();
    for key in ["d", "a", "c", "b", "e"] {
        maps.write("m", s, put(key, key), now).unwrap();
    }
    let page = |maps: &mut MapStore<_>, after: Option<&str>| {
        let query = StateQuery {
            after,
            limit: Some(2),
            ..StateQuery::default()
        };
        maps.state("m", s, query, now).unwrap()
    };
    let first = page(&mut maps, None);
    assert_eq!(keys(&first), ["a", "b"]);
    assert_eq!(first.position.offset, 5);
    let cursor = first.cursor.clone().unwrap();
    let after = decode_cursor("m", &cursor).unwrap();
    let second = page(&mut maps, after);
    assert_eq!(keys(&second), ["c", "d"]);
    let after = decode_cursor("m", second.cursor.as_deref().unwrap()).unwrap();
    let last = page(&mut maps, after);
    assert_eq!(keys(&last), ["e"]);
    assert_eq!(last.cursor, None);
    assert_eq!(decode_cursor("other", &cursor), Err(CursorError));

    let only = StateQuery {
        key: Some("c"),
        ..StateQuery::default()
    };
    assert_eq!(keys(&maps.state("m", s, only, now).unwrap()), ["c"]);
    let position_only = StateQuery {
        limit: Some(0),
        ..StateQuery::default()
    };
    let state = maps.state("m", s, position_only, now).unwrap();
    assert!(state.entries.is_empty() && state.cursor.is_none());
    let stale = StreamPosition::new(1, "other");
    let revision = StateQuery {
        revision: Some(&stale),
        ..StateQuery::default()
    };
    assert_eq!(
        maps.state("m", s, revision, now),
        Err(ReadError::Unrecoverable)
    );
}

#[test]
fn suppressions_change_nothing() {
    let now = Instant::now();
    let s = settings(MapMode::Recoverable, 60);
    let mut maps = store();
    let versioned = |version| MapWrite {
        version,
        ..put("k", "v")
    };
    maps.write("m", s, versioned(2), now).unwrap();
    let stale = maps.write("m", s, versioned(2), now).unwrap();
    assert!(matches!(
        stale,
        MapOutcome::Suppressed {
            reason: MapSuppression::StaleVersion,
            ..
        }
    ));
    let if_new = MapWrite {
        key_mode: KeyMode::IfNew,
        ..put("k", "v")
    };
    assert!(matches!(
        maps.write("m", s, if_new, now).unwrap(),
        MapOutcome::Suppressed {
            reason: MapSuppression::KeyExists,
            ..
        }
    ));
    assert!(matches!(
        maps.write("m", s, remove("absent"), now).unwrap(),
        MapOutcome::Suppressed {
            reason: MapSuppression::KeyNotFound,
            ..
        }
    ));
    let once = MapWrite {
        idempotency_key: "once",
        ..put("x", "1")
    };
    let (position, _) = written(maps.write("m", s, once.clone(), now).unwrap());
    match maps.write("m", s, once, now).unwrap() {
        MapOutcome::Suppressed {
            position: earlier,
            reason: MapSuppression::Idempotent,
        } => assert_eq!(earlier, position),
        other => panic!("{other:?}"),
    }
    let top = maps
        .stream("m", s, &HistoryQuery::default(), now)
        .unwrap()
        .top;
    assert_eq!(top.offset, 2, "suppressed writes append nothing");
    let ephemeral = settings(MapMode::Ephemeral, 60);
    assert_eq!(
        maps.write("e", ephemeral, versioned(1), now),
        Err(MapWriteError::VersionWithoutStream)
    );
}

#[test]
fn expired_keys_become_removals_and_trimmed_streams_refuse_recovery() {
    let start = Instant::now();
    let s = settings(MapMode::Recoverable, 10);
    let mut maps = store();
    let (first, _) = written(maps.write("m", s, put("a", "1"), start).unwrap());
    let later = start + Duration::from_secs(5);
    maps.write("m", s, put("b", "2"), later).unwrap();
    assert!(maps.sweep(start + Duration::from_secs(9)).is_empty());
    let expired = maps.sweep(start + Duration::from_secs(10));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].publication.key, "a");
    assert!(expired[0].publication.removed);
    assert_eq!(expired[0].position.as_ref().unwrap().offset, 3);
    assert_eq!(maps.stats("m"), 1);

    // Three changes retained: 1..3. Two more trim 1 and 2 away.
    maps.write("m", s, put("c", "3"), later).unwrap();
    maps.write("m", s, put("d", "4"), later).unwrap();
    let since = |offset| HistoryQuery {
        since: Some(StreamPosition::new(offset, first.epoch.clone())),
        limit: Some(10),
        reverse: false,
    };
    assert_eq!(
        maps.stream("m", s, &since(1), later),
        Err(ReadError::Unrecoverable)
    );
    let recovered = maps.stream("m", s, &since(2), later).unwrap();
    assert_eq!(recovered.publications.len(), 3);
    assert_eq!(recovered.top.offset, 5);

    // b, c and d expire too (removals 6..8); then the changes expire after stream_ttl: the
    // position stays, recovery from before it is refused.
    let expiry = later + Duration::from_secs(10);
    assert_eq!(maps.sweep(expiry).len(), 3);
    let quiet = expiry + DEFAULT_STREAM_TTL;
    assert!(maps.sweep(quiet).is_empty());
    assert_eq!(
        maps.stream("m", s, &since(7), quiet),
        Err(ReadError::Unrecoverable)
    );
    let top = maps.stream("m", s, &since(8), quiet).unwrap();
    assert_eq!((top.top.offset, top.publications.len()), (8, 0));
}

#[test]
fn ephemeral_maps_have_no_offsets_and_are_forgotten_when_empty() {
    let start = Instant::now();
    let s = settings(MapMode::Ephemeral, 10);
    let mut maps = store();
    let (position, _) = written(maps.write("m", s, put("a", "1"), start).unwrap());
    assert_eq!(position.offset, 0);
    let expired = maps.sweep(start + Duration::from_secs(10));
    assert_eq!(expired[0].position, None);
    assert_eq!(maps.len(), 0, "empty and idle for key_ttl");
}

#[test]
fn clear_starts_a_new_epoch_and_bounds_refuse_writes() {
    let now = Instant::now();
    let s = settings(MapMode::Persistent, 0);
    let mut maps = store();
    let (before, _) = written(maps.write("m", s, put("a", "1"), now).unwrap());
    assert!(maps.clear("m"));
    let (after, _) = written(maps.write("m", s, put("a", "1"), now).unwrap());
    assert_ne!(before.epoch, after.epoch);
    assert_eq!(after.offset, 1);

    let limits = MapLimits {
        max_channels: 1,
        max_keys: 1,
        max_idempotency_keys: 4,
    };
    let mut small = MapStore::new(limits, || 7u64);
    small.write("m", s, put("a", "1"), now).unwrap();
    assert_eq!(
        small.write("m", s, put("b", "1"), now),
        Err(MapWriteError::TooManyKeys)
    );
    assert!(
        small.write("m", s, put("a", "2"), now).is_ok(),
        "a present key"
    );
    assert_eq!(
        small.write("n", s, put("a", "1"), now),
        Err(MapWriteError::TooManyChannels)
    );
}
