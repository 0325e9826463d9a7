//! Slow and silent HTTP clients (issue 13): a connection that never sends a request, one that
//! drips its headers, and an idle keep-alive connection are closed after the header deadline
//! (10 s, as Centrifugo's `ReadHeaderTimeout`), and while many such connections are open the
//! server still answers `/health` and upgrades WebSockets.

use std::time::{Duration, Instant};

use spindle_tests::{Client, Format, OrFail, Server, ServerOptions, fixture, http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's header deadline, and how much later than it a close may come.
const HEADER_DEADLINE: Duration = Duration::from_secs(10);
const SLACK: Duration = Duration::from_secs(4);

/// Reads until the server closes the connection (EOF or reset); returns how long that took
/// from `since`. Fails when it stays open past the deadline and slack.
async fn closed_by_server(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buffer = [0u8; 4096];
    let give_up = HEADER_DEADLINE + SLACK;
    loop {
        let left = give_up.saturating_sub(since.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => panic!("still open {:?} after the request began", since.elapsed()),
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_deadline() {
    let server = Server::start().await.or_fail();
    let start = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    let took = closed_by_server(&mut stream, start).await;
    assert!(
        took >= HEADER_DEADLINE - Duration::from_millis(500),
        "closed early: {took:?}"
    );
}

#[tokio::test]
async fn dripped_headers_are_cut_at_the_deadline() {
    let server = Server::start().await.or_fail();
    let start = Instant::now();
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // One byte a second: a header that would take over a minute to finish.
    let mut cut = None;
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = Some(start.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = Some(start.elapsed());
                break;
            }
            Ok(Ok(_)) => panic!("the server answered an unfinished request"),
            Err(_) => {}
        }
        assert!(
            start.elapsed() < HEADER_DEADLINE + SLACK,
            "still open after {:?}",
            start.elapsed()
        );
    }
    let took = cut.expect("the connection was cut");
    assert!(
        took >= HEADER_DEADLINE - Duration::from_millis(500),
        "cut early: {took:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = Server::start().await.or_fail();
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write a request");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(b"{}") {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer")
            .expect("read");
        assert!(read > 0, "closed before answering");
        answer.extend_from_slice(&buffer[..read]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let idle_from = Instant::now();
    let took = closed_by_server(&mut stream, idle_from).await;
    assert!(
        took >= HEADER_DEADLINE - Duration::from_millis(500),
        "closed early: {took:?}"
    );
}

#[tokio::test]
async fn silent_connections_do_not_starve_health_or_upgrades() {
    // 300 silent connections against a server allowed 256 descriptors: without a bound on
    // connections waiting for a request, accept fails and nothing else gets in.
    let server = Server::start_with(ServerOptions {
        descriptor_limit: Some(256),
        ..ServerOptions::default()
    })
    .await
    .or_fail();
    let mut silent = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(server.addr()).await {
            Ok(stream) => silent.push(stream),
            Err(error) => panic!("connect failed: {error}"),
        }
    }
    let health = tokio::time::timeout(Duration::from_secs(5), server.get("/health"))
        .await
        .expect("/health answers while silent connections are open")
        .or_fail();
    assert_eq!(health.status, 200);
    let token = fixture::token(&fixture::unique("slow"));
    let (mut client, _) = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(&server.ws_url(), Format::Json, &token),
    )
    .await
    .expect("a WebSocket upgrade while silent connections are open")
    .or_fail();
    // An upgraded connection is not cut by the header deadline.
    tokio::time::sleep(HEADER_DEADLINE + SLACK).await;
    // A command still gets an answer (any reply proves the connection is alive).
    client.subscribe("slow_clients").await.or_fail();
    drop(silent);
}

/// The same over TLS: connections that never start their handshake are bounded too (the
/// oldest handshake goes), so `/health` still gets through under a 256-descriptor limit.
#[tokio::test]
async fn silent_tls_connections_do_not_starve_health() {
    let tls = fixture::crate_dir().join("fixtures/tls");
    let patch = serde_json::json!({"http_server": {"tls": {
        "enabled": true,
        "cert_pem": tls.join("backend.pem"),
        "key_pem": tls.join("backend.key.pem")
    }}});
    let server = Server::start_with(ServerOptions {
        descriptor_limit: Some(256),
        ..ServerOptions::patched(patch)
    })
    .await
    .or_fail();
    let ca = spindle_tests::tls_front::CA_PEM;
    let health = http::get_tls(server.addr(), "/health", ca).await.or_fail();
    assert_eq!(health.status, 200, "over TLS before the silent ones");
    let mut silent = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(server.addr()).await {
            Ok(stream) => silent.push(stream),
            Err(error) => panic!("connect failed: {error}"),
        }
    }
    let health = tokio::time::timeout(
        Duration::from_secs(5),
        http::get_tls(server.addr(), "/health", ca),
    )
    .await
    .expect("/health answers over TLS while silent connections are open")
    .or_fail();
    assert_eq!(health.status, 200);
    drop(silent);
}

#[tokio::test]
async fn health_is_served_only_when_enabled() {
    let off = Server::start_patched(serde_json::json!({"health": {"enabled": false}}))
        .await
        .or_fail();
    assert_eq!(off.get("/health").await.or_fail().status, 404);
    let on = Server::start().await.or_fail();
    assert_eq!(on.get("/health").await.or_fail().status, 200);
}

#[tokio::test]
async fn shutdown_timeout_bounds_the_drain() {
    // A client that never answers the server's close: the drain waits for it at most
    // `shutdown.timeout`, not a built-in time.
    let server = Server::start_patched(serde_json::json!({"shutdown": {"timeout": "1s"}}))
        .await
        .or_fail();
    let token = fixture::token(&fixture::unique("silent"));
    let (client, _) = Client::connect(&server.ws_url(), Format::Json, &token)
        .await
        .or_fail();
    let started = Instant::now();
    let status = server.stop().await.or_fail();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    drop(client);
}
