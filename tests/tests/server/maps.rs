//! Bad input on map subscriptions (docs/maps.md), from a raw client: each gets Centrifugo's
//! error code and harms no one else — a map subscriber alongside keeps its updates.

use serde_json::json;
use spindle_tests::proto::{Command, PublishRequest, Reply, SubscribeRequest};
use spindle_tests::{Client, Format, OrFail, Server, fixture};

use crate::{connected, start};

both_formats!(map_bad_input_gets_its_code);

fn page(channel: &str, cursor: &str, limit: i32) -> Command {
    Command {
        subscribe: Some(SubscribeRequest {
            channel: channel.to_owned(),
            r#type: 1,
            phase: 2,
            cursor: cursor.to_owned(),
            limit,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn subscribed(reply: Reply) -> spindle_tests::proto::SubscribeResult {
    match reply.subscribe {
        Some(result) => result,
        None => panic!("want a subscribe result, got {reply:?}"),
    }
}

fn code(reply: &Reply) -> u32 {
    reply
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("want an error, got {reply:?}"))
        .code
}

async fn seed(server: &Server, channel: &str, keys: &[&str]) {
    for key in keys {
        server
            .api_ok(
                "map_publish",
                json!({"channel": channel, "key": key, "data": {"k": key}}),
            )
            .await
            .or_fail();
    }
}

/// A map subscriber that must still get a change after the bad input.
async fn watcher(server: &Server, format: Format) -> (Client, String) {
    let (mut client, _) = connected(server, format, "watcher").await;
    let channel = fixture::unique("map:watched");
    let reply = client.request(page(&channel, "", 100)).await.or_fail();
    let result = subscribed(reply);
    assert_eq!(
        result.phase, 0,
        "an empty map goes live at once: {result:?}"
    );
    (client, channel)
}

async fn map_bad_input_gets_its_code(format: Format) {
    let server = start().await;
    let (mut watcher, watched) = watcher(&server, format).await;
    let (mut client, _) = connected(&server, format, "mallory").await;
    let channel = fixture::unique("map:board");
    seed(&server, &channel, &["a", "b", "c"]).await;

    // A continuation of pages nobody started.
    let reply = client.request(page(&channel, "x", 1)).await.or_fail();
    assert_eq!(code(&reply), 103, "a cursor without a first page");

    // A first page, then a cursor made for another channel.
    let reply = client.request(page(&channel, "", 1)).await.or_fail();
    let first = subscribed(reply);
    assert_eq!((first.phase, first.state.len()), (2, 1));
    let other = fixture::unique("map:other");
    seed(&server, &other, &["a", "b"]).await;
    let reply = client.request(page(&other, "", 1)).await.or_fail();
    let foreign = subscribed(reply).cursor;
    assert!(!foreign.is_empty());
    let reply = client.request(page(&channel, &foreign, 1)).await.or_fail();
    assert_eq!(code(&reply), 107, "a cursor from another channel");
    // The refused subscription is gone: its own cursor no longer continues anything.
    let reply = client
        .request(page(&channel, &first.cursor, 1))
        .await
        .or_fail();
    assert_eq!(code(&reply), 103);

    // An oversized page is clamped to map.max_page_size (1,000), not refused.
    let reply = client
        .request(page(&channel, "", 1_000_000_000))
        .await
        .or_fail();
    let all = subscribed(reply);
    assert_eq!((all.phase, all.state.len()), (0, 3), "every key, then live");

    // Types against the namespace: map type on a stream channel, stream type on a map, shared
    // poll on a map.
    let typed = |channel: &str, r#type: i32| Command {
        subscribe: Some(SubscribeRequest {
            channel: channel.to_owned(),
            r#type,
            phase: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    let stream = fixture::unique("chat:room");
    assert_eq!(
        code(&client.request(typed(&stream, 1)).await.or_fail()),
        103
    );
    let map = fixture::unique("map:typed");
    assert_eq!(code(&client.request(typed(&map, 0)).await.or_fail()), 103);
    assert_eq!(code(&client.request(typed(&map, 4)).await.or_fail()), 108);

    // A map write without permission (emap has no map.allow_publish_*).
    let write = Command {
        publish: Some(PublishRequest {
            channel: fixture::unique("emap:cursors"),
            data: bytes::Bytes::from_static(b"{}"),
            r#type: 1,
            key: "k".into(),
            removed: false,
        }),
        ..Default::default()
    };
    assert_eq!(code(&client.request(write).await.or_fail()), 103);

    // The watcher saw none of it and still follows its map.
    seed(&server, &watched, &["after"]).await;
    let publication = watcher.next_publication(&watched).await.or_fail();
    assert_eq!(publication.key, "after");
}
