//! Connecting: tokens (valid, invalid, expired, from `spindle gentoken`) and graceful shutdown.

use std::time::Duration;

use serde_json::json;
use spindle_tests::client::connect_command;
use spindle_tests::server::gentoken;
use spindle_tests::{Client, Format, OrFail, TIMEOUT, fixture};

use crate::{connected, start};

both_formats!(
    connect_with_token,
    invalid_token_closes_3500,
    expired_token_is_error_109,
    graceful_shutdown_closes_3001,
);

async fn connect_with_token(format: Format) {
    let server = start().await;
    let (mut client, result) = Client::connect(&server.ws_url(), format, &fixture::token("alice"))
        .await
        .or_fail();
    assert!(!result.client.is_empty(), "client id in {result:?}");
    assert!(!result.version.is_empty(), "server version in {result:?}");
    // Centrifugo defaults: app-level ping every 25 s, pong expected.
    assert_eq!((result.ping, result.pong), (25, true), "{result:?}");
    // The token has `exp` and no refresh proxy is configured: the client must refresh.
    assert!(result.expires, "expires in {result:?}");
    assert!(
        (3500..=3600).contains(&result.ttl),
        "ttl {} for a token expiring in an hour",
        result.ttl
    );
    assert!(result.subs.is_empty(), "no server-side subs: {result:?}");
    client
        .expect_silence(Duration::from_millis(200))
        .await
        .or_fail();
}

async fn invalid_token_closes_3500(format: Format) {
    let server = start().await;
    for token in [
        fixture::badly_signed_token("mallory"),
        "not-a-jwt".to_owned(),
    ] {
        let mut client = Client::open(&server.ws_url(), format).await.or_fail();
        let mut command = connect_command(&token);
        command.id = 1;
        client.send(&command).await.or_fail();
        let close = client.expect_close(TIMEOUT).await.or_fail();
        assert_eq!(close.code, 3500, "token {token:?}: {close:?}");
        assert!(!close.reason.is_empty(), "close reason for 3500");
    }
}

async fn expired_token_is_error_109(format: Format) {
    let server = start().await;
    let mut client = Client::open(&server.ws_url(), format).await.or_fail();
    let reply = client
        .connect_reply(&fixture::expired_token("late"))
        .await
        .or_fail();
    let error = reply
        .error
        .clone()
        .unwrap_or_else(|| panic!("want error 109, got {reply:?}"));
    assert_eq!(error.code, 109, "{error:?}");
    assert!(reply.connect.is_none());
}

async fn graceful_shutdown_closes_3001(format: Format) {
    let server = start().await;
    let (mut a, _) = connected(&server, format, "a").await;
    let (mut b, _) = connected(&server, crate::other(format), "b").await;
    let channel = fixture::unique("chat:shutdown");
    a.subscribe_ok(&channel).await.or_fail();
    let wait = Duration::from_secs(20);
    let (status, close_a, close_b) =
        tokio::join!(server.stop(), a.expect_close(wait), b.expect_close(wait));
    let (close_a, close_b) = (close_a.or_fail(), close_b.or_fail());
    assert_eq!(close_a.code, 3001, "{close_a:?}");
    assert_eq!(close_b.code, 3001, "{close_b:?}");
    let status = status.or_fail();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[tokio::test]
async fn gentoken_token_connects_as_its_user() {
    let server = start().await;
    let token = gentoken(server.config_path(), "gena", 3600).await.or_fail();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token:?}");
    let (mut client, _) = Client::connect(&server.ws_url(), Format::Json, &token)
        .await
        .or_fail();
    // The token's user is the connection's user: disconnecting "gena" closes it.
    server
        .api_ok("disconnect", json!({ "user": "gena" }))
        .await
        .or_fail();
    let close = client.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3503, "{close:?}");
}

#[tokio::test]
async fn single_connection_closes_the_users_older_connections_with_3504() {
    let server = spindle_tests::Server::start_patched(serde_json::json!({
        "channel": {"without_namespace": {"presence": true}},
        "client": {"subscribe_to_user_personal_channel": {"enabled": true, "single_connection": true}}
    }))
    .await
    .or_fail();
    let user = fixture::unique("single");
    let (mut older, _) = crate::connected(&server, spindle_tests::Format::Json, &user).await;
    let (mut other_user, _) = crate::connected(
        &server,
        spindle_tests::Format::Json,
        &fixture::unique("other"),
    )
    .await;
    let (mut newer, _) = crate::connected(&server, spindle_tests::Format::Json, &user).await;
    let close = older
        .expect_close(std::time::Duration::from_secs(5))
        .await
        .or_fail();
    assert_eq!(close.code, 3504, "{close:?}");
    // The new connection and other users stay.
    newer
        .expect_silence(std::time::Duration::from_millis(300))
        .await
        .or_fail();
    other_user
        .expect_silence(std::time::Duration::from_millis(300))
        .await
        .or_fail();
}
