//! Streams with explicit time and a counting entropy source: epoch `n` is `new_epoch(|| n)`.

use super::*;
use crate::config::RecoveryMode;
use std::time::{Duration, Instant};

type Counter = Box<dyn FnMut() -> u64>;

fn counter() -> Counter {
    let mut n = 0u64;
    Box::new(move || {
        n += 1;
        n
    })
}

/// The epoch the counter source makes on its `n`-th draw.
fn epoch(n: u64) -> String {
    new_epoch(&mut || n)
}

fn store() -> Streams<Counter> {
    Streams::new(Limits::default(), counter())
}

const SECOND: Duration = Duration::from_secs(1);

fn options(size: usize, ttl: u64, meta_ttl: u64) -> StreamOptions {
    StreamOptions {
        size,
        ttl: Duration::from_secs(ttl),
        meta_ttl: Duration::from_secs(meta_ttl),
    }
}

fn data(text: &str) -> Publication {
    Publication {
        data: text.to_owned().into(),
        ..Default::default()
    }
}

fn with_history(options: StreamOptions) -> PublishParams<'static> {
    PublishParams {
        history: Some(options),
        ..Default::default()
    }
}

/// Publishes and returns the accepted position (panics when suppressed).
fn publish(
    streams: &mut Streams<Counter>,
    channel: &str,
    text: &str,
    params: &PublishParams<'_>,
    now: Instant,
) -> Option<StreamPosition> {
    match streams.publish(channel, data(text), params, now) {
        PublishOutcome::Accepted { position, .. } => position,
        other => panic!("suppressed: {other:?}"),
    }
}

fn read(
    streams: &mut Streams<Counter>,
    channel: &str,
    options: &StreamOptions,
    query: HistoryQuery,
    now: Instant,
) -> Result<(StreamPosition, Vec<(u64, String)>), ReadError> {
    streams.read(channel, options, &query, now).map(|result| {
        let items = result
            .publications
            .iter()
            .map(|item| {
                let text = String::from_utf8(item.publication.data.to_vec()).unwrap();
                (item.offset, text)
            })
            .collect();
        (result.top, items)
    })
}

fn all() -> HistoryQuery {
    HistoryQuery::default()
}

fn items(pairs: &[(u64, &str)]) -> Vec<(u64, String)> {
    pairs.iter().map(|(o, t)| (*o, t.to_string())).collect()
}

#[test]
fn offsets_count_from_one_in_one_epoch_and_size_bounds_retention() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(3, 60, 600);
    let params = with_history(opts);
    for (i, text) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let position = publish(&mut streams, "ch", text, &params, t0 + SECOND * i as u32);
        assert_eq!(position, Some(StreamPosition::new(i as u64 + 1, epoch(1))));
    }
    // Another channel has its own stream and epoch.
    let other = publish(&mut streams, "other", "x", &params, t0);
    assert_eq!(other, Some(StreamPosition::new(1, epoch(2))));

    let (top, got) = read(&mut streams, "ch", &opts, all(), t0 + SECOND * 5).unwrap();
    assert_eq!(top, StreamPosition::new(5, epoch(1)));
    assert_eq!(got, items(&[(3, "c"), (4, "d"), (5, "e")]));
    assert_eq!(streams.len(), 2);
}

#[test]
fn since_limit_and_reverse() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    for text in ["1", "2", "3", "4", "5"] {
        publish(&mut streams, "ch", text, &with_history(opts), t0);
    }
    let e = epoch(1);
    let since = |offset: u64, epoch: &str| Some(StreamPosition::new(offset, epoch));
    let q = |since, limit, reverse| HistoryQuery {
        since,
        limit,
        reverse,
    };
    let table: Vec<(HistoryQuery, Vec<(u64, String)>)> = vec![
        (
            q(None, None, false),
            items(&[(1, "1"), (2, "2"), (3, "3"), (4, "4"), (5, "5")]),
        ),
        (q(None, Some(2), false), items(&[(1, "1"), (2, "2")])),
        (q(None, Some(2), true), items(&[(5, "5"), (4, "4")])),
        (
            q(None, None, true),
            items(&[(5, "5"), (4, "4"), (3, "3"), (2, "2"), (1, "1")]),
        ),
        (q(None, Some(0), false), items(&[])),
        (
            q(since(2, &e), None, false),
            items(&[(3, "3"), (4, "4"), (5, "5")]),
        ),
        (q(since(2, &e), Some(1), false), items(&[(3, "3")])),
        (q(since(5, &e), None, false), items(&[])),
        (q(since(9, &e), None, false), items(&[])),
        (
            q(since(0, &e), Some(2), false),
            items(&[(1, "1"), (2, "2")]),
        ),
        // Reverse with since: backwards from since.offset − 1.
        (
            q(since(4, &e), None, true),
            items(&[(3, "3"), (2, "2"), (1, "1")]),
        ),
        (q(since(4, &e), Some(2), true), items(&[(3, "3"), (2, "2")])),
        (q(since(1, &e), None, true), items(&[])),
        (q(since(9, &e), Some(1), true), items(&[(5, "5")])),
        // An empty since epoch matches any epoch.
        (q(since(3, ""), None, false), items(&[(4, "4"), (5, "5")])),
        (q(since(3, &e), Some(0), false), items(&[])),
    ];
    for (query, expected) in table {
        let (top, got) = read(&mut streams, "ch", &opts, query.clone(), t0).unwrap();
        assert_eq!(top, StreamPosition::new(5, e.clone()), "{query:?}");
        assert_eq!(got, expected, "{query:?}");
    }
    assert_eq!(
        read(&mut streams, "ch", &opts, q(since(0, &e), None, true), t0),
        Err(ReadError::ReverseFromZero)
    );
    assert_eq!(
        read(
            &mut streams,
            "ch",
            &opts,
            q(since(2, "other"), None, false),
            t0
        ),
        Err(ReadError::Unrecoverable)
    );
    assert_eq!(ReadError::ReverseFromZero.code(), 107);
    assert_eq!(ReadError::Unrecoverable.code(), 112);
}

#[test]
fn a_read_creates_the_position_a_later_publish_continues() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    let (top, got) = read(&mut streams, "ch", &opts, all(), t0).unwrap();
    assert_eq!((top, got), (StreamPosition::new(0, epoch(1)), vec![]));
    let position = publish(&mut streams, "ch", "x", &with_history(opts), t0 + SECOND);
    assert_eq!(position, Some(StreamPosition::new(1, epoch(1))));
}

#[test]
fn the_publication_window_expires_but_the_position_stays() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    let params = with_history(opts);
    publish(&mut streams, "ch", "a", &params, t0);
    publish(&mut streams, "ch", "b", &params, t0 + SECOND * 30);
    // The window runs from the last publication.
    let (_, got) = read(&mut streams, "ch", &opts, all(), t0 + SECOND * 89).unwrap();
    assert_eq!(got, items(&[(1, "a"), (2, "b")]));
    // Lazily, on access.
    let (top, got) = read(&mut streams, "ch", &opts, all(), t0 + SECOND * 90).unwrap();
    assert_eq!((top, got), (StreamPosition::new(2, epoch(1)), vec![]));
    let position = publish(&mut streams, "ch", "c", &params, t0 + SECOND * 91);
    assert_eq!(position, Some(StreamPosition::new(3, epoch(1))));

    // And by the sweep.
    let stats = streams.sweep(t0 + SECOND * 151);
    assert_eq!((stats.windows, stats.streams), (1, 0));
    let (top, got) = read(&mut streams, "ch", &opts, all(), t0 + SECOND * 152).unwrap();
    assert_eq!((top, got), (StreamPosition::new(3, epoch(1)), vec![]));
}

#[test]
fn expired_metadata_starts_a_new_epoch_from_offset_one() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    let params = with_history(opts);
    publish(&mut streams, "ch", "a", &params, t0);
    publish(&mut streams, "ch", "b", &params, t0);
    // Lazily: the publish after the metadata expired opens a new stream.
    let position = publish(&mut streams, "ch", "c", &params, t0 + SECOND * 600);
    assert_eq!(position, Some(StreamPosition::new(1, epoch(2))));

    // By the sweep: the stream is forgotten, the next read makes a new epoch.
    publish(&mut streams, "other", "x", &params, t0);
    let stats = streams.sweep(t0 + SECOND * 600);
    assert_eq!(
        stats,
        SweepStats {
            windows: 1,
            streams: 1,
            idempotency_keys: 0
        }
    );
    assert_eq!(streams.len(), 1);
    let (top, _) = read(&mut streams, "other", &opts, all(), t0 + SECOND * 601).unwrap();
    assert_eq!(top, StreamPosition::new(0, epoch(4)));
}

#[test]
fn reads_keep_the_metadata_alive() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    publish(&mut streams, "ch", "a", &with_history(opts), t0);
    read(&mut streams, "ch", &opts, all(), t0 + SECOND * 500).unwrap();
    assert_eq!(streams.sweep(t0 + SECOND * 1000).streams, 0);
    let (top, _) = read(&mut streams, "ch", &opts, all(), t0 + SECOND * 1000).unwrap();
    assert_eq!(top, StreamPosition::new(1, epoch(1)));
    assert_eq!(streams.sweep(t0 + SECOND * 1600).streams, 1);
}

#[test]
fn remove_forgets_the_stream_and_the_next_one_has_a_new_epoch() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    let params = with_history(opts);
    publish(&mut streams, "ch", "a", &params, t0);
    publish(&mut streams, "ch", "b", &params, t0);
    assert!(streams.remove("ch"));
    assert!(!streams.remove("ch"));
    let (top, got) = read(&mut streams, "ch", &opts, all(), t0).unwrap();
    assert_eq!((top, got), (StreamPosition::new(0, epoch(2)), vec![]));
    let since_old = HistoryQuery {
        since: Some(StreamPosition::new(2, epoch(1))),
        ..Default::default()
    };
    assert_eq!(
        read(&mut streams, "ch", &opts, since_old, t0),
        Err(ReadError::Unrecoverable)
    );
    let position = publish(&mut streams, "ch", "c", &params, t0);
    assert_eq!(position, Some(StreamPosition::new(1, epoch(2))));
}

#[test]
fn skip_history_and_channels_without_history_get_no_offset() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    publish(&mut streams, "ch", "a", &with_history(opts), t0);
    let skip = PublishParams {
        skip_history: true,
        ..with_history(opts)
    };
    assert_eq!(publish(&mut streams, "ch", "skipped", &skip, t0), None);
    assert_eq!(
        publish(&mut streams, "plain", "x", &PublishParams::default(), t0),
        None
    );
    let (top, got) = read(&mut streams, "ch", &opts, all(), t0).unwrap();
    assert_eq!(
        (top, got),
        (StreamPosition::new(1, epoch(1)), items(&[(1, "a")]))
    );
    // No stream was made for the channel without history.
    assert_eq!(streams.len(), 1);
}

#[test]
fn idempotency_keys_return_the_earlier_result_for_five_minutes() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 600, 600);
    let keyed = PublishParams {
        idempotency_key: "k",
        ..with_history(opts)
    };
    assert_eq!(
        publish(&mut streams, "ch", "first", &keyed, t0),
        Some(StreamPosition::new(1, epoch(1)))
    );
    publish(&mut streams, "ch", "other", &with_history(opts), t0);
    let again = streams.publish("ch", data("retry"), &keyed, t0 + SECOND * 299);
    assert_eq!(
        again,
        PublishOutcome::Suppressed {
            position: Some(StreamPosition::new(1, epoch(1))),
            reason: Suppression::Idempotent,
        }
    );
    // The same key in another channel is another key.
    assert_eq!(
        publish(&mut streams, "ch2", "x", &keyed, t0),
        Some(StreamPosition::new(1, epoch(2)))
    );
    // After the window the key publishes again.
    assert_eq!(
        publish(&mut streams, "ch", "later", &keyed, t0 + IDEMPOTENCY_WINDOW),
        Some(StreamPosition::new(3, epoch(1)))
    );
    let (_, got) = read(&mut streams, "ch", &opts, all(), t0 + IDEMPOTENCY_WINDOW).unwrap();
    assert_eq!(got, items(&[(1, "first"), (2, "other"), (3, "later")]));

    // Without history too: the earlier (empty) result.
    let t1 = t0 + IDEMPOTENCY_WINDOW;
    let plain = PublishParams {
        idempotency_key: "p",
        ..Default::default()
    };
    assert_eq!(publish(&mut streams, "plain", "x", &plain, t1), None);
    assert_eq!(
        streams.publish("plain", data("x"), &plain, t1 + SECOND),
        PublishOutcome::Suppressed {
            position: None,
            reason: Suppression::Idempotent
        }
    );
    // "ch"/"k" again and "plain"/"p"; the first "ch"/"k" and "ch2"/"k" expired.
    assert_eq!(streams.idempotency_keys(), 2);
    let swept = streams.sweep(t1 + IDEMPOTENCY_WINDOW);
    assert_eq!(swept.idempotency_keys, 2);
    assert_eq!(streams.idempotency_keys(), 0);
}

#[test]
fn versions_drop_stale_publications_within_a_version_epoch() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    let versioned = |version, version_epoch| PublishParams {
        version,
        version_epoch,
        ..with_history(opts)
    };
    let stale = |position: u64| PublishOutcome::Suppressed {
        position: Some(StreamPosition::new(position, epoch(1))),
        reason: Suppression::StaleVersion,
    };
    assert!(publish(&mut streams, "ch", "v2", &versioned(2, "a"), t0).is_some());
    assert_eq!(
        streams.publish("ch", data("v2 again"), &versioned(2, "a"), t0),
        stale(1)
    );
    assert_eq!(
        streams.publish("ch", data("v1"), &versioned(1, "a"), t0),
        stale(1)
    );
    assert!(publish(&mut streams, "ch", "v3", &versioned(3, "a"), t0).is_some());
    // Another version epoch starts over; version 0 is never checked.
    assert!(publish(&mut streams, "ch", "b1", &versioned(1, "b"), t0).is_some());
    assert!(publish(&mut streams, "ch", "none", &versioned(0, "b"), t0).is_some());
    assert_eq!(
        streams.publish("ch", data("b1"), &versioned(1, "b"), t0),
        stale(4)
    );
    let (_, got) = read(&mut streams, "ch", &opts, all(), t0).unwrap();
    assert_eq!(got, items(&[(1, "v2"), (2, "v3"), (3, "b1"), (4, "none")]));
    // The version outlives the publication window (it is metadata).
    assert_eq!(
        streams.publish("ch", data("late"), &versioned(1, "b"), t0 + SECOND * 120),
        stale(4)
    );
}

#[test]
fn delta_publishes_get_the_previous_publication_while_retained() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    let delta = PublishParams {
        want_prev: true,
        ..with_history(opts)
    };
    fn prev_of(
        streams: &mut Streams<Counter>,
        text: &str,
        params: &PublishParams<'_>,
        now: Instant,
    ) -> Option<Vec<u8>> {
        match streams.publish("ch", data(text), params, now) {
            PublishOutcome::Accepted { prev, .. } => prev.map(|p| p.data.to_vec()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(prev_of(&mut streams, "a", &delta, t0), None);
    assert_eq!(prev_of(&mut streams, "b", &delta, t0), Some(b"a".to_vec()));
    assert_eq!(prev_of(&mut streams, "c", &with_history(opts), t0), None);
    // After the window expired there is nothing to diff against.
    assert_eq!(prev_of(&mut streams, "d", &delta, t0 + SECOND * 60), None);
    let skip = PublishParams {
        skip_history: true,
        ..delta
    };
    assert_eq!(prev_of(&mut streams, "e", &skip, t0 + SECOND * 61), None);
    assert_eq!(
        prev_of(&mut streams, "f", &delta, t0 + SECOND * 62),
        Some(b"d".to_vec())
    );
}

#[test]
fn the_stream_cap_forgets_the_least_recently_used_stream() {
    let t0 = Instant::now();
    let limits = Limits {
        max_streams: 2,
        max_idempotency_keys: 10,
    };
    let mut streams = Streams::new(limits, counter());
    let opts = options(10, 60, 600);
    let params = with_history(opts);
    publish(&mut streams, "a", "1", &params, t0);
    publish(&mut streams, "b", "1", &params, t0 + SECOND);
    publish(&mut streams, "a", "2", &params, t0 + SECOND * 2);
    // "b" was touched least recently: it goes.
    publish(&mut streams, "c", "1", &params, t0 + SECOND * 3);
    assert_eq!(streams.len(), 2);
    let (top, _) = read(&mut streams, "a", &opts, all(), t0 + SECOND * 4).unwrap();
    assert_eq!(top, StreamPosition::new(2, epoch(1)));
    // Reading "b" again makes a new stream (evicting "c", now the oldest), with a new epoch.
    let (top, _) = read(&mut streams, "b", &opts, all(), t0 + SECOND * 5).unwrap();
    assert_eq!(top, StreamPosition::new(0, epoch(4)));
    assert_eq!(streams.len(), 2);
}

#[test]
fn wire_limits() {
    let table = [
        (0, None, Some(0)),
        (5, None, Some(5)),
        (-1, None, None),
        (i32::MIN, None, None),
        (0, Some(300), Some(0)),
        (5, Some(300), Some(5)),
        (500, Some(300), Some(300)),
        (-1, Some(300), Some(300)),
    ];
    for (limit, cap, expected) in table {
        assert_eq!(
            HistoryQuery::limit_from_wire(limit, cap),
            expected,
            "{limit} {cap:?}"
        );
    }
}

#[test]
fn stream_options_of_a_namespace() {
    use crate::config::{ChannelOptions, Duration as ConfigDuration};
    let default_meta = ConfigDuration::from_secs(3600);
    let mut ns = ChannelOptions::default();
    assert_eq!(StreamOptions::for_channel(&ns, default_meta), None);
    ns.history_size = 5;
    assert_eq!(StreamOptions::for_channel(&ns, default_meta), None);
    ns.history_ttl = ConfigDuration::from_secs(60);
    assert_eq!(
        StreamOptions::for_channel(&ns, default_meta),
        Some(options(5, 60, 3600))
    );
    ns.history_meta_ttl = ConfigDuration::from_secs(120);
    assert_eq!(
        StreamOptions::for_channel(&ns, default_meta),
        Some(options(5, 60, 120))
    );
    // Never shorter than the publication window.
    assert_eq!(
        StreamOptions::for_channel(&ns, ConfigDuration::from_secs(1)).map(|o| o.meta_ttl),
        Some(Duration::from_secs(120))
    );
    ns.history_meta_ttl = ConfigDuration::ZERO;
    assert_eq!(
        StreamOptions::for_channel(&ns, ConfigDuration::from_secs(1)),
        Some(options(5, 60, 60))
    );
}

fn offsets(offsets: &[u64]) -> Vec<HistoryItem> {
    offsets
        .iter()
        .map(|&offset| HistoryItem {
            offset,
            publication: std::sync::Arc::new(data(&offset.to_string())),
        })
        .collect()
}

fn history(top: u64, top_epoch: &str, publications: &[u64]) -> HistoryResult {
    HistoryResult {
        top: StreamPosition::new(top, top_epoch),
        publications: offsets(publications),
    }
}

fn outcome(recovery: &Recovery<HistoryItem>) -> (bool, Vec<u64>, &str, u64) {
    let offsets = recovery.publications.iter().map(|p| p.offset).collect();
    (
        recovery.recovered,
        offsets,
        recovery.epoch.as_str(),
        recovery.offset,
    )
}

#[test]
fn stream_mode_recovery() {
    let client = |offset, epoch: &str| StreamPosition::new(offset, epoch);
    type Case<'a> = (
        StreamPosition,
        HistoryResult,
        (bool, Vec<u64>, &'a str, u64),
    );
    let table: Vec<Case<'_>> = vec![
        // Missed 3..=5: recovered, offset stays the client's.
        (
            client(2, "E"),
            history(5, "E", &[3, 4, 5]),
            (true, vec![3, 4, 5], "E", 2),
        ),
        // Up to date.
        (client(5, "E"), history(5, "E", &[]), (true, vec![], "E", 5)),
        (client(0, ""), history(0, "E", &[]), (true, vec![], "E", 0)),
        // An empty client epoch is accepted.
        (
            client(4, ""),
            history(5, "E", &[5]),
            (true, vec![5], "E", 4),
        ),
        // Another epoch.
        (
            client(4, "X"),
            history(5, "E", &[5]),
            (false, vec![], "E", 5),
        ),
        (
            client(5, "X"),
            history(5, "E", &[]),
            (false, vec![], "E", 5),
        ),
        // Retention lost the first missed publication.
        (
            client(1, "E"),
            history(5, "E", &[3, 4, 5]),
            (false, vec![], "E", 5),
        ),
        // More missed than the read's limit: the last returned is not the top.
        (
            client(1, "E"),
            history(9, "E", &[2, 3, 4]),
            (false, vec![], "E", 9),
        ),
        // Nothing returned but behind the top (window expired).
        (
            client(3, "E"),
            history(5, "E", &[]),
            (false, vec![], "E", 5),
        ),
        // A hole in what came back.
        (
            client(1, "E"),
            history(4, "E", &[2, 4]),
            (false, vec![], "E", 4),
        ),
        // Ahead of the stream.
        (
            client(7, "E"),
            history(5, "E", &[]),
            (false, vec![], "E", 5),
        ),
    ];
    for (position, result, expected) in table {
        let recovery = recover(RecoveryMode::Stream, &position, result.clone());
        assert_eq!(outcome(&recovery), expected, "{position:?} {result:?}");
    }
}

#[test]
fn cache_mode_recovery() {
    let client = |offset, epoch: &str| StreamPosition::new(offset, epoch);
    type Case<'a> = (
        StreamPosition,
        HistoryResult,
        (bool, Vec<u64>, &'a str, u64),
    );
    let table: Vec<Case<'_>> = vec![
        (
            client(5, "E"),
            history(5, "E", &[5]),
            (true, vec![], "E", 5),
        ),
        (
            client(3, "E"),
            history(5, "E", &[5]),
            (true, vec![5], "E", 5),
        ),
        (
            client(5, "X"),
            history(5, "E", &[5]),
            (true, vec![5], "E", 5),
        ),
        (
            client(5, ""),
            history(5, "E", &[5]),
            (true, vec![5], "E", 5),
        ),
        (client(0, ""), history(0, "E", &[]), (false, vec![], "E", 0)),
        // Nothing retained any more.
        (
            client(3, "E"),
            history(5, "E", &[]),
            (false, vec![], "E", 5),
        ),
        (client(5, "E"), history(5, "E", &[]), (true, vec![], "E", 5)),
    ];
    for (position, result, expected) in table {
        let recovery = recover(RecoveryMode::Cache, &position, result.clone());
        assert_eq!(outcome(&recovery), expected, "{position:?} {result:?}");
    }
}

#[test]
fn recovery_works_on_wire_publications_and_with_the_recovery_queries() {
    let t0 = Instant::now();
    let mut streams = store();
    let opts = options(10, 60, 600);
    for text in ["a", "b", "c", "d"] {
        publish(&mut streams, "ch", text, &with_history(opts), t0);
    }
    let client = StreamPosition::new(1, epoch(1));
    let query = stream_recovery_query(&client, 300);
    assert_eq!(query.since, Some(StreamPosition::new(1, "")));
    let wire: spindle_proto::client::HistoryResult =
        streams.read("ch", &opts, &query, t0).unwrap().into();
    assert_eq!((wire.offset, wire.epoch.as_str()), (4, epoch(1).as_str()));
    let recovery = recover(RecoveryMode::Stream, &client, HistoryResult::from(wire));
    let got: Vec<(u64, &[u8])> = recovery
        .publications
        .iter()
        .map(|p| (p.offset, p.data.as_ref()))
        .collect();
    assert_eq!(got, [(2, &b"b"[..]), (3, b"c"), (4, b"d")]);
    assert_eq!((recovery.recovered, recovery.offset), (true, 1));

    // Limited to 2: too many missed.
    let query = stream_recovery_query(&client, 2);
    let result = streams.read("ch", &opts, &query, t0).unwrap();
    assert!(!recover(RecoveryMode::Stream, &client, result).recovered);

    // After an epoch change the read still answers; recovery says no.
    streams.remove("ch");
    let result = streams
        .read("ch", &opts, &stream_recovery_query(&client, 300), t0)
        .unwrap();
    let recovery = recover(RecoveryMode::Stream, &client, result);
    assert_eq!(outcome(&recovery), (false, vec![], epoch(2).as_str(), 0));

    publish(&mut streams, "ch", "x", &with_history(opts), t0);
    publish(&mut streams, "ch", "y", &with_history(opts), t0);
    let result = streams
        .read("ch", &opts, &cache_recovery_query(), t0)
        .unwrap();
    let recovery = recover(RecoveryMode::Cache, &client, result);
    assert_eq!(outcome(&recovery), (true, vec![2], epoch(2).as_str(), 2));
}

#[test]
fn signed_bounds_for_storage_scripts() {
    let position = |offset| Some(StreamPosition::new(offset, "e".to_owned()));
    let query = |since, limit, reverse| HistoryQuery {
        since,
        limit,
        reverse,
    };
    assert_eq!(query(None, None, false).signed_bounds(), Ok((-1, -1)));
    assert_eq!(
        query(position(7), Some(3), true).signed_bounds(),
        Ok((7, 3))
    );
    assert_eq!(
        query(position(0), Some(0), false).signed_bounds(),
        Ok((0, 0))
    );
    assert_eq!(
        query(position(u64::MAX), Some(usize::MAX), false).signed_bounds(),
        Ok((i64::MAX, i64::MAX))
    );
    assert_eq!(
        query(position(0), None, true).signed_bounds(),
        Err(ReadError::ReverseFromZero)
    );
}
