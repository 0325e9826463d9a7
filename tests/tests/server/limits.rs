//! Node admission limits (docs/protocol.md §1.9, §7.2): `client.connection_limit` (open connections
//! of the node) and `client.connection_rate_limit` (new connections per second) answer HTTP 503
//! before the upgrade, on the WebSocket and on the emulation transports alike; room made (a
//! connection closed, a second passed) admits again.

use std::time::{Duration, Instant};

use serde_json::json;
use spindle_tests::tungstenite;
use spindle_tests::{Client, Format, OrFail, Server, fixture, http};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket upgrade: the open socket, or the refusal's HTTP status and body.
async fn upgrade(server: &Server) -> Result<Socket, (u16, String)> {
    let url = server.ws_url();
    match tokio::time::timeout(
        spindle_tests::TIMEOUT,
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .expect("handshake within the timeout")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("upgrade failed otherwise: {other}"),
    }
}

/// `POST /connection/http_stream` with a connect command: the status of a refusal (an
/// admitted stream stays open, so this is only for refusals).
async fn http_stream_refusal(server: &Server) -> u16 {
    let body = json!({"id": 1, "connect": {"token": fixture::token("limits")}}).to_string();
    let response = http::request(
        server.addr(),
        "POST",
        "/connection/http_stream",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    response.or_fail().status
}

#[tokio::test]
async fn connection_limit_answers_503_before_upgrade() {
    let server = Server::start_patched(json!({"client": {"connection_limit": 2}}))
        .await
        .or_fail();
    let token = fixture::token(&fixture::unique("limit"));
    let (first, _) = Client::connect(&server.ws_url(), Format::Json, &token)
        .await
        .or_fail();
    let (_second, _) = Client::connect(&server.ws_url(), Format::Json, &token)
        .await
        .or_fail();

    let Err(refused) = upgrade(&server).await else {
        panic!("a third connection was admitted");
    };
    assert_eq!(refused, (503, "connection limit".to_owned()));
    assert_eq!(http_stream_refusal(&server).await, 503);

    // Closing one makes room (once the server has seen the close).
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match upgrade(&server).await {
            Ok(_) => break,
            Err(refusal) if Instant::now() < deadline => {
                assert_eq!(refusal.0, 503);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(refusal) => panic!("still refused after a close: {refusal:?}"),
        }
    }
}

#[tokio::test]
async fn connection_rate_limit_answers_503_before_upgrade() {
    const RATE: usize = 5;
    let server = Server::start_patched(json!({"client": {"connection_rate_limit": RATE}}))
        .await
        .or_fail();
    let started = Instant::now();
    let mut open = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..(3 * RATE) {
        match upgrade(&server).await {
            Ok(client) => open.push(client),
            Err(refusal) => refused.push(refusal),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A burst of one second's worth, then RATE per second.
    let allowed = RATE + (elapsed * RATE as f64).ceil() as usize;
    assert!(
        open.len() >= RATE && open.len() <= allowed,
        "{} admitted in {elapsed:.2} s",
        open.len()
    );
    assert!(!refused.is_empty(), "nothing refused in {elapsed:.2} s");
    for refusal in &refused {
        assert_eq!(refusal, &(503, "connection rate limit".to_owned()));
    }

    // A second later the bucket has refilled.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        upgrade(&server).await.is_ok(),
        "admitted again after a pause"
    );
}

#[tokio::test]
async fn user_connection_limit_closes_the_connection_over_it_with_3504() {
    let server = Server::start_patched(json!({"client": {"user_connection_limit": 2}}))
        .await
        .or_fail();
    let user = fixture::unique("limited");
    let token = fixture::token(&user);
    let (_first, _) = Client::connect(&server.ws_url(), Format::Json, &token)
        .await
        .or_fail();
    let (_second, _) = Client::connect(&server.ws_url(), Format::Json, &token)
        .await
        .or_fail();
    let mut third = Client::open(&server.ws_url(), Format::Json).await.or_fail();
    // The third is refused: never a connect result (the close may come before any reply).
    if let Ok(reply) = third.connect_reply(&token).await {
        assert!(reply.connect.is_none(), "a third connection: {reply:?}");
    }
    let close = third.expect_close(Duration::from_secs(5)).await.or_fail();
    assert_eq!(close.code, 3504, "{close:?}");
    // Another user is not limited by alice's connections.
    Client::connect(
        &server.ws_url(),
        Format::Json,
        &fixture::token("someone-else"),
    )
    .await
    .or_fail();
}
