//! Subscribing and publishing: API publish, client publish with publisher info, unsubscribe,
//! server-side subscriptions from the token, permission checks.

use std::time::Duration;

use serde_json::json;
use spindle_tests::client::{ok, payload_json};
use spindle_tests::{Client, Format, OrFail, fixture};

use crate::{connected, other, start};

const QUIET: Duration = Duration::from_millis(300);

both_formats!(
    api_publish_received_once,
    client_publish_reaches_other_subscriber,
    unsubscribe_stops_delivery,
    server_side_subscription_from_token,
    permission_denied_103,
);

async fn api_publish_received_once(format: Format) {
    let server = start().await;
    let (mut client, _) = connected(&server, format, "alice").await;
    let channel = fixture::unique("chat:room");
    let reply = client.subscribe(&channel).await.or_fail();
    let result = ok(reply, "subscribe").or_fail().subscribe;
    assert!(result.is_some(), "subscribe result present");

    let data = json!({ "text": "hello", "n": 1 });
    server.publish(&channel, data.clone()).await.or_fail();
    let publication = client.next_publication(&channel).await.or_fail();
    assert_eq!(payload_json(&publication.data).or_fail(), data);
    assert!(
        publication.info.is_none(),
        "API publications carry no publisher info"
    );
    client.expect_silence(QUIET).await.or_fail();
}

async fn client_publish_reaches_other_subscriber(format: Format) {
    let server = start().await;
    let channel = fixture::unique("chat:room");
    let (mut alice, _) = connected(&server, format, "alice").await;
    // The publisher speaks the other encoding: fan-out crosses formats both ways.
    let (mut bob, bob_client) = connected(&server, other(format), "bob").await;
    alice.subscribe_ok(&channel).await.or_fail();
    bob.subscribe_ok(&channel).await.or_fail();

    let data = json!({ "from": "bob" });
    let reply = bob.publish(&channel, &data).await.or_fail();
    let reply = ok(reply, "publish").or_fail();
    assert!(reply.publish.is_some(), "publish result present: {reply:?}");

    for (name, client) in [("alice", &mut alice), ("bob", &mut bob)] {
        let publication = client.next_publication(&channel).await.or_fail();
        assert_eq!(payload_json(&publication.data).or_fail(), data, "{name}");
        let info = publication
            .info
            .unwrap_or_else(|| panic!("{name}: client publication without info"));
        assert_eq!(info.user, "bob", "{name}: {info:?}");
        assert_eq!(info.client, bob_client, "{name}: {info:?}");
        client.expect_silence(QUIET).await.or_fail();
    }
}

async fn unsubscribe_stops_delivery(format: Format) {
    let server = start().await;
    let (mut client, _) = connected(&server, format, "carol").await;
    let gone = fixture::unique("chat:gone");
    let kept = fixture::unique("chat:kept");
    client.subscribe_ok(&gone).await.or_fail();
    client.subscribe_ok(&kept).await.or_fail();
    client.unsubscribe_ok(&gone).await.or_fail();

    server.publish(&gone, json!({ "n": 1 })).await.or_fail();
    server.publish(&kept, json!({ "n": 2 })).await.or_fail();
    let publication = client.next_publication(&kept).await.or_fail();
    assert_eq!(payload_json(&publication.data).or_fail(), json!({ "n": 2 }));
    client.expect_silence(QUIET).await.or_fail();
}

async fn server_side_subscription_from_token(format: Format) {
    let server = start().await;
    let channel = fixture::unique("chat:server-side");
    let token = fixture::token_with(json!({ "sub": "dan", "channels": [channel] }));
    let (mut client, result) = Client::connect(&server.ws_url(), format, &token)
        .await
        .or_fail();
    assert!(
        result.subs.iter().any(|entry| entry.key == channel),
        "connect result subs {:?} should hold {channel}",
        result.subs
    );
    let data = json!({ "server": "side" });
    server.publish(&channel, data.clone()).await.or_fail();
    let publication = client.next_publication(&channel).await.or_fail();
    assert_eq!(payload_json(&publication.data).or_fail(), data);
    client.expect_silence(QUIET).await.or_fail();
}

async fn permission_denied_103(format: Format) {
    let server = start().await;
    let (mut client, _) = connected(&server, format, "eve").await;
    let secret = fixture::unique("secret:vault");

    let reply = client.subscribe(&secret).await.or_fail();
    assert_eq!(
        reply.error.as_ref().map(|e| e.code),
        Some(103),
        "subscribe {secret}: {reply:?}"
    );

    let reply = client.publish(&secret, &json!({ "x": 1 })).await.or_fail();
    assert_eq!(
        reply.error.as_ref().map(|e| e.code),
        Some(103),
        "publish {secret}: {reply:?}"
    );

    // `chat` allows publishing to subscribers only.
    let chat = fixture::unique("chat:not-subscribed");
    let reply = client.publish(&chat, &json!({ "x": 2 })).await.or_fail();
    assert_eq!(
        reply.error.as_ref().map(|e| e.code),
        Some(103),
        "publish {chat}: {reply:?}"
    );

    // Errors keep the connection usable.
    client.subscribe_ok(&chat).await.or_fail();
    let reply = client.publish(&chat, &json!({ "x": 3 })).await.or_fail();
    ok(reply, "publish after subscribing").or_fail();
}
