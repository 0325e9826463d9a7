//! History through the API and through edge requests: offsets and epochs, since / limit /
//! reverse, errors, removal, idempotency, versions, expiry and delta `prev_data`.
// Test helpers outside `#[test]` functions unwrap too: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use spindle_core::clock::ManualClock;
use spindle_mesh::mesh::{self, request, response};
use spindle_proto::client;
use std::sync::Arc;
use std::time::Duration;
use support::{Answers, FakeEdge, config, node, node_with_clock, post, publication_of};

fn router() -> (spindle_core::Node, axum::Router) {
    let node = node(config(|_| {}));
    let router = node.api_router();
    (node, router)
}

/// Publishes through the API; returns the result object.
async fn publish(router: &axum::Router, body: Value) -> Value {
    let reply = post(router, "publish", &body.to_string()).await.json();
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{body}: {reply}"))
}

async fn history(router: &axum::Router, body: Value) -> Value {
    post(router, "history", &body.to_string()).await.json()
}

fn epoch_of(result: &Value) -> String {
    let epoch = result["epoch"].as_str().unwrap().to_owned();
    assert_eq!(epoch.len(), 8, "{epoch}");
    assert!(epoch.bytes().all(|b| b.is_ascii_alphabetic()), "{epoch}");
    epoch
}

#[tokio::test]
async fn publications_get_offsets_from_one_and_one_epoch() {
    let (node, router) = router();
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["hist:a", "chat:a"], &[]).await;

    let first = publish(&router, json!({"channel": "hist:a", "data": {"n": 1}})).await;
    let epoch = epoch_of(&first);
    assert_eq!(first, json!({"offset": 1, "epoch": epoch}));
    for n in 2..=3 {
        let result = publish(&router, json!({"channel": "hist:a", "data": {"n": n}})).await;
        assert_eq!(result, json!({"offset": n, "epoch": epoch}));
    }
    // A channel without history: no position.
    let plain = publish(&router, json!({"channel": "chat:a", "data": 1})).await;
    assert_eq!(plain, json!({}));
    // skip_history: published, but not part of the stream.
    let skipped = json!({"channel": "hist:a", "data": {"n": "skip"}, "skip_history": true});
    assert_eq!(publish(&router, skipped).await, json!({}));

    for n in 1..=3u64 {
        let event = edge.next_event().await;
        assert_eq!(event.channel, "hist:a");
        assert_eq!(event.epoch, epoch);
        let p = publication_of(&event);
        assert_eq!(p.offset, n);
        assert_eq!(p.data.as_ref(), format!(r#"{{"n":{n}}}"#).as_bytes());
        // Only the first publication of the epoch carries it (docs/protocol.md §9.8).
        let expected = if n == 1 { epoch.as_str() } else { "" };
        assert_eq!(p.epoch, expected);
        assert!(event.prev_data.is_empty());
    }
    let event = edge.next_event().await;
    assert_eq!(
        (event.channel.as_str(), event.epoch.as_str()),
        ("chat:a", "")
    );
    assert_eq!(publication_of(&event).offset, 0);
    let event = edge.next_event().await;
    assert_eq!(
        (event.epoch.as_str(), publication_of(&event).offset),
        ("", 0)
    );

    let top = history(&router, json!({"channel": "hist:a", "limit": -1})).await;
    assert_eq!(top["result"]["offset"], 3);
    assert_eq!(top["result"]["publications"].as_array().unwrap().len(), 3);
    assert_eq!(node.stats().streams, 1);
}

#[tokio::test]
async fn api_history_since_limit_and_reverse() {
    let (_node, router) = router();
    let mut epoch = String::new();
    for n in 1..=12 {
        let mut body = json!({"channel": "hist:a", "data": {"n": n}});
        if n == 12 {
            body["tags"] = json!({"k": "v"});
        }
        epoch = epoch_of(&publish(&router, body).await);
    }
    let item = |n: u64| json!({"data": {"n": n}, "offset": n});
    let last = json!({"data": {"n": 12}, "offset": 12, "tags": {"k": "v"}});
    let items = |range: &[u64]| -> Vec<Value> {
        range
            .iter()
            .map(|&n| if n == 12 { last.clone() } else { item(n) })
            .collect()
    };
    let since = |offset: u64| json!({"offset": offset, "epoch": epoch});
    let table = [
        // No limit given: position only.
        (json!({}), items(&[])),
        (json!({"limit": 0}), items(&[])),
        // history_size 10: 3..=12 are retained; the API does not cap the limit.
        (
            json!({"limit": -1}),
            items(&[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        ),
        (
            json!({"limit": 100000}),
            items(&[3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
        ),
        (json!({"limit": 2}), items(&[3, 4])),
        (json!({"limit": 2, "reverse": true}), items(&[12, 11])),
        (
            json!({"limit": -1, "since": since(9)}),
            items(&[10, 11, 12]),
        ),
        (json!({"limit": 1, "since": since(9)}), items(&[10])),
        (
            json!({"limit": 3, "since": since(9), "reverse": true}),
            items(&[8, 7, 6]),
        ),
        (json!({"limit": -1, "since": since(12)}), items(&[])),
        // An empty since epoch matches any epoch.
        (
            json!({"limit": 5, "since": {"offset": 10}}),
            items(&[11, 12]),
        ),
    ];
    for (extra, publications) in table {
        let mut body = json!({"channel": "hist:a"});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let reply = history(&router, body.clone()).await;
        let expected = json!({"result": {
            "publications": publications, "epoch": epoch, "offset": 12,
        }});
        assert_eq!(reply, expected, "{body}");
    }
}

#[tokio::test]
async fn history_errors() {
    let (_node, router) = router();
    let epoch = epoch_of(&publish(&router, json!({"channel": "hist:a", "data": 1})).await);
    let error = |code: u32, message: &str| json!({"error": {"code": code, "message": message}});
    let table = [
        (
            json!({"channel": "hist:a", "since": {"offset": 1, "epoch": "XXXXXXXX"}}),
            error(112, "unrecoverable position"),
        ),
        (
            json!({"channel": "hist:a", "since": {"offset": 0, "epoch": epoch}, "reverse": true}),
            error(107, "bad request"),
        ),
        (json!({"channel": "chat:a"}), error(108, "not available")),
        (json!({"channel": "nope:a"}), error(102, "unknown channel")),
        (json!({"channel": ""}), error(107, "bad request")),
    ];
    for (body, expected) in table {
        assert_eq!(history(&router, body.clone()).await, expected, "{body}");
    }
    // Reverse with a non-zero since is fine.
    let reply = history(
        &router,
        json!({"channel": "hist:a", "limit": -1, "since": {"offset": 2, "epoch": epoch}, "reverse": true}),
    )
    .await;
    assert_eq!(
        reply["result"]["publications"],
        json!([{"data": 1, "offset": 1}])
    );
}

#[tokio::test]
async fn history_remove_starts_a_new_epoch() {
    let (node, router) = router();
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["hist:a"], &[]).await;
    publish(&router, json!({"channel": "hist:a", "data": 1})).await;
    let old = epoch_of(&publish(&router, json!({"channel": "hist:a", "data": 2})).await);

    let reply = post(&router, "history_remove", r#"{"channel":"hist:a"}"#).await;
    assert_eq!(reply.body, r#"{"result":{}}"#);
    let reply = history(&router, json!({"channel": "hist:a", "limit": -1})).await;
    let new = epoch_of(&reply["result"]);
    assert_ne!(new, old);
    assert_eq!(
        reply,
        json!({"result": {"publications": [], "epoch": new, "offset": 0}})
    );
    let since_old = json!({"channel": "hist:a", "since": {"offset": 2, "epoch": old}});
    assert_eq!(history(&router, since_old).await["error"]["code"], 112);

    let result = publish(&router, json!({"channel": "hist:a", "data": 3})).await;
    assert_eq!(result, json!({"offset": 1, "epoch": new}));
    for _ in 0..2 {
        edge.next_event().await;
    }
    let event = edge.next_event().await;
    assert_eq!(
        (event.epoch.as_str(), publication_of(&event).offset),
        (new.as_str(), 1)
    );
    assert_eq!(publication_of(&event).epoch, new);
}

#[tokio::test]
async fn idempotency_keys_and_versions_suppress_publications() {
    let (node, router) = router();
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["hist:a", "chat:a"], &[]).await;

    let keyed = json!({"channel": "hist:a", "data": "first", "idempotency_key": "k1"});
    let first = publish(&router, keyed).await;
    let epoch = epoch_of(&first);
    let retry = json!({"channel": "hist:a", "data": "retry", "idempotency_key": "k1"});
    assert_eq!(
        publish(&router, retry).await,
        json!({"offset": 1, "epoch": epoch})
    );
    // Without history the earlier (empty) result comes back too.
    let plain = json!({"channel": "chat:a", "data": 1, "idempotency_key": "k1"});
    assert_eq!(publish(&router, plain.clone()).await, json!({}));
    assert_eq!(publish(&router, plain).await, json!({}));

    let versioned = |data: &str, version: u64, version_epoch: &str| json!({"channel": "hist:a", "data": data, "version": version, "version_epoch": version_epoch});
    assert_eq!(
        publish(&router, versioned("v5", 5, "a")).await,
        json!({"offset": 2, "epoch": epoch})
    );
    // Stale: the current top comes back, nothing is published.
    assert_eq!(
        publish(&router, versioned("v4", 4, "a")).await,
        json!({"offset": 2, "epoch": epoch})
    );
    assert_eq!(
        publish(&router, versioned("v5 again", 5, "a")).await,
        json!({"offset": 2, "epoch": epoch})
    );
    assert_eq!(
        publish(&router, versioned("v1 of b", 1, "b")).await,
        json!({"offset": 3, "epoch": epoch})
    );

    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = edge.next_event().await;
        let p = publication_of(&event);
        seen.push((
            event.channel.clone(),
            String::from_utf8(p.data.to_vec()).unwrap(),
        ));
    }
    let expected = [
        ("hist:a", r#""first""#),
        ("chat:a", "1"),
        ("hist:a", r#""v5""#),
        ("hist:a", r#""v1 of b""#),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, d)| (c.to_string(), d.to_string()))
        .collect();
    assert_eq!(seen, expected);
    edge.barrier().await;
    edge.assert_quiet().await;
    let stats = node.stats();
    assert_eq!((stats.publications, stats.suppressed), (4, 4));
}

#[tokio::test]
async fn edge_history_requests() {
    let (node, router) = router();
    let edge = FakeEdge::attach(&node, "e1", Answers::default());
    let mut epoch = String::new();
    for n in 1..=4 {
        epoch = epoch_of(&publish(&router, json!({"channel": "hist:a", "data": n})).await);
    }
    let ask = |channel: &str, limit: i32, since: Option<(u64, &str)>, reverse: bool| {
        Some(request::Kind::History(mesh::HistoryRequest {
            channel: channel.into(),
            limit,
            since: since.map(|(offset, epoch)| client::StreamPosition {
                offset,
                epoch: epoch.into(),
            }),
            reverse,
        }))
    };
    let offsets = |response: &mesh::Response| -> (Vec<u64>, String, u64) {
        assert_eq!(response.error, None);
        let Some(response::Kind::History(result)) = &response.kind else {
            panic!("{response:?}")
        };
        let offsets = result.publications.iter().map(|p| p.offset).collect();
        (offsets, result.epoch.clone(), result.offset)
    };
    let e = epoch.as_str();
    let table = [
        (ask("hist:a", -1, None, false), vec![1, 2, 3, 4]),
        (ask("hist:a", 0, None, false), vec![]),
        (ask("hist:a", 2, Some((1, e)), false), vec![2, 3]),
        (ask("hist:a", -1, Some((3, e)), true), vec![2, 1]),
        (ask("hist:a", 1, None, true), vec![4]),
        // Recovery reads leave the epoch empty.
        (ask("hist:a", 300, Some((2, "")), false), vec![3, 4]),
    ];
    for (kind, expected) in table {
        let response = edge.request(kind.clone()).await;
        assert_eq!(offsets(&response), (expected, epoch.clone(), 4), "{kind:?}");
    }
    let response = edge.request(ask("hist:a", -1, None, false)).await;
    let Some(response::Kind::History(result)) = response.kind else {
        panic!()
    };
    let first = &result.publications[0];
    assert_eq!(
        (first.data.as_ref(), first.info.as_ref()),
        (&b"1"[..], None)
    );

    let errors = [
        (
            ask("hist:a", 1, Some((1, "XXXXXXXX")), false),
            112,
            "unrecoverable position",
        ),
        (ask("hist:a", 1, Some((0, e)), true), 107, "bad request"),
        (ask("chat:a", 1, None, false), 108, "not available"),
        (ask("nope:a", 1, None, false), 102, "unknown channel"),
    ];
    for (kind, code, message) in errors {
        let response = edge.request(kind).await;
        let error = response.error.unwrap();
        assert_eq!((error.code, error.message.as_str()), (code, message));
        assert_eq!(response.kind, None);
    }
}

#[tokio::test]
async fn prev_data_only_for_delta_publishes() {
    let (node, router) = router();
    let mut edge = FakeEdge::attach(&node, "e1", Answers::default());
    edge.interest(&["hist:a", "hdelta:a", "delta:a"], &[]).await;
    let bodies = [
        // Namespace delta_publish with history: every publication after the first.
        json!({"channel": "hdelta:a", "data": {"v": 1}}),
        json!({"channel": "hdelta:a", "data": {"v": 2}}),
        // History without delta_publish: only with the API's delta flag.
        json!({"channel": "hist:a", "data": {"h": 1}}),
        json!({"channel": "hist:a", "data": {"h": 2}}),
        json!({"channel": "hist:a", "data": {"h": 3}, "delta": true}),
        // delta_publish without history: no previous publication to give.
        json!({"channel": "delta:a", "data": {"d": 1}}),
        json!({"channel": "delta:a", "data": {"d": 2}}),
        // skip_history publications are not delta-capable.
        json!({"channel": "hdelta:a", "data": {"v": 3}, "skip_history": true}),
        json!({"channel": "hdelta:a", "data": {"v": 4}}),
    ];
    for body in bodies {
        publish(&router, body).await;
    }
    let expected: [&[u8]; 9] = [
        b"",
        br#"{"v":1}"#,
        b"",
        b"",
        br#"{"h":2}"#,
        b"",
        b"",
        b"",
        br#"{"v":2}"#,
    ];
    for prev in expected {
        let event = edge.next_event().await;
        assert_eq!(
            event.prev_data.as_ref(),
            prev,
            "{:?}",
            publication_of(&event).data
        );
    }
}

#[tokio::test]
async fn history_expires_by_time() {
    let clock = Arc::new(ManualClock::new());
    let node = node_with_clock(config(|_| {}), clock.clone());
    let router = node.api_router();
    publish(&router, json!({"channel": "hist:a", "data": 1})).await;
    let epoch = epoch_of(&publish(&router, json!({"channel": "hist:a", "data": 2})).await);
    let all = json!({"channel": "hist:a", "limit": -1});

    // history_ttl 60 s: the publications go, the position stays.
    clock.advance(Duration::from_secs(59));
    let reply = history(&router, all.clone()).await;
    assert_eq!(reply["result"]["publications"].as_array().unwrap().len(), 2);
    clock.advance(Duration::from_secs(1));
    let report = node.sweep();
    assert_eq!((report.history_windows, report.streams), (1, 0));
    let reply = history(&router, all.clone()).await;
    assert_eq!(
        reply,
        json!({"result": {"publications": [], "epoch": epoch, "offset": 2}})
    );
    let result = publish(&router, json!({"channel": "hist:a", "data": 3})).await;
    assert_eq!(result, json!({"offset": 3, "epoch": epoch}));

    // history_meta_ttl 600 s after the last publish or read: a new stream, a new epoch.
    clock.advance(Duration::from_secs(600));
    assert_eq!(node.sweep().streams, 1);
    assert_eq!(node.stats().streams, 0);
    let result = publish(&router, json!({"channel": "hist:a", "data": 4})).await;
    let new = epoch_of(&result);
    assert_ne!(new, epoch);
    assert_eq!(result, json!({"offset": 1, "epoch": new}));
}
