//! Server API control commands and plain HTTP endpoints.

use std::time::Duration;

use serde_json::json;
use spindle_tests::client::payload_json;
use spindle_tests::{Format, OrFail, TIMEOUT, fixture, http};

use crate::{connected, start};

both_formats!(api_disconnect_closes_3503, api_unsubscribe_pushes_2000);

async fn api_disconnect_closes_3503(format: Format) {
    let server = start().await;
    let (mut target, _) = connected(&server, format, "dave").await;
    let (mut bystander, _) = connected(&server, format, "erin").await;
    let channel = fixture::unique("chat:bystander");
    bystander.subscribe_ok(&channel).await.or_fail();

    let result = server
        .api_ok("disconnect", json!({ "user": "dave" }))
        .await
        .or_fail();
    assert_eq!(result, json!({}));
    let close = target.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3503, "{close:?}");
    assert!(!close.reason.is_empty(), "close reason for 3503");

    server
        .publish(&channel, json!({ "still": "here" }))
        .await
        .or_fail();
    let publication = bystander.next_publication(&channel).await.or_fail();
    assert_eq!(
        payload_json(&publication.data).or_fail(),
        json!({ "still": "here" })
    );
}

async fn api_unsubscribe_pushes_2000(format: Format) {
    let server = start().await;
    let (mut client, _) = connected(&server, format, "frank").await;
    let channel = fixture::unique("chat:kicked");
    client.subscribe_ok(&channel).await.or_fail();

    server
        .api_ok(
            "unsubscribe",
            json!({ "channel": channel, "user": "frank" }),
        )
        .await
        .or_fail();
    let push = client.next_push(TIMEOUT).await.or_fail();
    assert_eq!(push.channel, channel, "{push:?}");
    let unsubscribe = push
        .unsubscribe
        .clone()
        .unwrap_or_else(|| panic!("want an unsubscribe push, got {push:?}"));
    assert_eq!(unsubscribe.code, 2000, "{unsubscribe:?}");
    assert!(
        !unsubscribe.reason.is_empty(),
        "SDKs read the reason: {unsubscribe:?}"
    );

    server.publish(&channel, json!({ "n": 1 })).await.or_fail();
    client
        .expect_silence(Duration::from_millis(300))
        .await
        .or_fail();
}

#[tokio::test]
async fn health_is_200_empty_object() {
    let server = start().await;
    let response = server.get("/health").await.or_fail();
    assert_eq!(response.status, 200, "{:?}", response.text());
    assert_eq!(response.json().or_fail(), json!({}));
}

#[tokio::test]
async fn plain_get_on_websocket_path_is_400() {
    let server = start().await;
    let response = server.get("/connection/websocket").await.or_fail();
    assert_eq!(response.status, 400, "{:?}", response.text());
}

#[tokio::test]
async fn api_requires_the_key() {
    let server = start().await;
    let body = json!({ "channel": "chat:x", "data": { "n": 1 } });
    let response = server.api_raw("publish", &body, &[]).await.or_fail();
    assert_eq!(response.status, 401, "no key: {:?}", response.text());
    let response = server
        .api_raw("publish", &body, &[("X-API-Key", "wrong")])
        .await
        .or_fail();
    assert_eq!(response.status, 401, "wrong key: {:?}", response.text());
    let key = format!("apikey {}", fixture::api_key());
    let response = server
        .api_raw("publish", &body, &[("Authorization", key.as_str())])
        .await
        .or_fail();
    assert_eq!(
        response.status,
        200,
        "Authorization: apikey: {:?}",
        response.text()
    );
    assert!(response.json().or_fail().get("result").is_some());
    // The legacy single route.
    let response = http::post_json(
        server.addr(),
        "/api",
        &[("X-API-Key", fixture::api_key().as_str())],
        &json!({ "method": "publish", "params": body }),
    )
    .await
    .or_fail();
    assert_eq!(response.status, 200, "POST /api: {:?}", response.text());
    assert!(
        response.json().or_fail().get("result").is_some(),
        "{:?}",
        response.text()
    );
}
