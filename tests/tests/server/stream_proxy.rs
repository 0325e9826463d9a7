//! Subscription streams (`subscribe_stream_proxy_enabled`, docs/stream-proxy.md) against a
//! tonic backend serving Centrifugo's `SubscribeUnidirectional` / `SubscribeBidirectional`:
//! the stream opens on subscribe and its first message answers it; its publications reach that
//! subscriber only; it closes on unsubscribe and on disconnect; a stream the backend ends
//! unsubscribes the client (2000); a refusing first message refuses the subscribe; client
//! publications travel up a bidirectional stream, and a unidirectional one refuses them (108).

use serde_json::{Value, json};
use spindle_tests::proto::{Push, Reply};
use spindle_tests::{Client, Format, OrFail, Server, fixture};
use std::time::Duration;

use crate::connected;

both_formats!(streams_open_flow_and_close);
both_formats!(streams_across_the_mesh);

fn data(reply: &Reply) -> Value {
    let result = reply
        .subscribe
        .as_ref()
        .unwrap_or_else(|| panic!("want a subscribe result, got {reply:?}"));
    serde_json::from_slice(&result.data).unwrap_or_else(|e| panic!("not JSON: {e}"))
}

/// The next push of `channel`.
async fn next_of(client: &mut Client, channel: &str) -> Push {
    loop {
        let push = client.next_push(Duration::from_secs(5)).await.or_fail();
        if push.channel == channel {
            return push;
        }
    }
}

async fn n_of(client: &mut Client, channel: &str) -> u64 {
    let push = next_of(client, channel).await;
    let Some(publication) = push.r#pub.clone() else {
        panic!("want a publication, got {push:?}");
    };
    let value: Value =
        serde_json::from_slice(&publication.data).unwrap_or_else(|e| panic!("not JSON: {e}"));
    value["n"].as_u64().unwrap_or_else(|| panic!("{value}"))
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn patch(backend: &spindle_tests::grpc_backend::GrpcBackend) -> Value {
    json!({
        "channel": {
            "proxy": {"subscribe_stream": {"endpoint": backend.endpoint()}},
            "namespaces": [
                {"name": "st", "subscribe_stream_proxy_enabled": true},
                {"name": "bst", "subscribe_stream_proxy_enabled": true,
                 "subscribe_stream_proxy_bidirectional": true}
            ]
        }
    })
}

async fn streams_open_flow_and_close(format: Format) {
    let backend = spindle_tests::grpc_backend::GrpcBackend::start()
        .await
        .or_fail();
    let server = Server::start_patched(patch(&backend)).await.or_fail();
    exercise(&backend, &server, format).await;
}

/// The same on a core and an edge over QUIC: clients on the edge, streams at the core.
async fn streams_across_the_mesh(format: Format) {
    let backend = spindle_tests::grpc_backend::GrpcBackend::start()
        .await
        .or_fail();
    let split = spindle_tests::Split::start_with(spindle_tests::SplitOptions {
        cores: 1,
        edges: 1,
        patch: patch(&backend),
        ..Default::default()
    })
    .await
    .or_fail();
    exercise(&backend, &split.edges[0], format).await;
}

async fn exercise(
    backend: &spindle_tests::grpc_backend::GrpcBackend,
    server: &Server,
    format: Format,
) {
    // Two clients on one endless channel: each its own stream, each only its own publications.
    let channel = fixture::unique("st:endless");
    let (mut alice, _) = connected(server, format, "alice").await;
    let (mut bob, _) = connected(server, format, "bob").await;
    let reply = alice.subscribe(&channel).await.or_fail();
    assert_eq!(data(&reply), json!({"stream": "uni", "user": "alice"}));
    let reply = bob.subscribe(&channel).await.or_fail();
    assert_eq!(data(&reply), json!({"stream": "uni", "user": "bob"}));
    for expected in 1..=3 {
        assert_eq!(
            n_of(&mut alice, &channel).await,
            expected,
            "alice: her stream, in order"
        );
        assert_eq!(
            n_of(&mut bob, &channel).await,
            expected,
            "bob: his stream, in order"
        );
    }
    assert_eq!(backend.open_streams(), 2);
    // Unsubscribe closes alice's stream; a disconnect closes bob's.
    alice.unsubscribe_ok(&channel).await.or_fail();
    until("alice's stream to close", || backend.open_streams() == 1).await;
    drop(bob);
    until("bob's stream to close", || backend.open_streams() == 0).await;

    // A stream the backend ends: three publications, then the client is unsubscribed (2000).
    let short = fixture::unique("st:short");
    alice.subscribe(&short).await.or_fail();
    for expected in 1..=3 {
        assert_eq!(n_of(&mut alice, &short).await, expected);
    }
    let push = next_of(&mut alice, &short).await;
    let Some(unsubscribe) = push.unsubscribe.clone() else {
        panic!("want an unsubscribe, got {push:?}");
    };
    assert_eq!(unsubscribe.code, 2000);

    // A first message that refuses: the subscribe gets its error, the stream is gone.
    let denied = fixture::unique("st:denied");
    let reply = alice.subscribe(&denied).await.or_fail();
    assert_eq!(reply.error.as_ref().map(|e| e.code), Some(103), "{reply:?}");
    until("the refused stream to close", || {
        backend.open_streams() == 0
    })
    .await;

    // Publishing into a unidirectional stream's channel: 108.
    let uni = fixture::unique("st:endless");
    alice.subscribe(&uni).await.or_fail();
    let reply = alice.publish(&uni, &json!({"x": 1})).await.or_fail();
    assert_eq!(reply.error.as_ref().map(|e| e.code), Some(108), "{reply:?}");

    // A bidirectional stream: publications go up, the backend's echoes come down.
    let chat = fixture::unique("bst:chat");
    let reply = alice.subscribe(&chat).await.or_fail();
    assert_eq!(data(&reply), json!({"stream": "bidi", "channel": chat}));
    for i in 0..3 {
        let reply = alice.publish(&chat, &json!({"hi": i})).await.or_fail();
        assert!(reply.error.is_none(), "{reply:?}");
        let push = next_of(&mut alice, &chat).await;
        let Some(publication) = push.r#pub.clone() else {
            panic!("want a publication, got {push:?}");
        };
        let echo: Value =
            serde_json::from_slice(&publication.data).unwrap_or_else(|e| panic!("not JSON: {e}"));
        assert_eq!(echo, json!({"echo": {"hi": i}}));
    }
}
