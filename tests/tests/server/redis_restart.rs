//! Redis restarted (no persistence) under a running `spindle serve` with `engine.type: redis`:
//! `/health` answers 503 while Redis is down and 200 again after; PUB/SUB resumes by itself; a
//! subscriber with recovery is told its stream broke (unsubscribe 2500, then `recovered:
//! false`) — never a publication of the new epoch passed off as the next one. The test runs
//! its own `redis-server` on a spare port; without the binary it fails, never skips.

use std::time::Duration;

use serde_json::json;
use spindle_tests::client::payload_json;
use spindle_tests::proto::{Command, SubscribeRequest};
use spindle_tests::{Format, OrFail, Server, TIMEOUT, fixture};
use tokio::process::{Child, Command as Process};

use crate::connected;

/// A `redis-server` without persistence on `port`; killed when dropped.
async fn start_redis(port: u16) -> Child {
    let child = Process::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run redis-server (is it installed?): {e}"));
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Polls `/health` until it answers `status`; returns the body.
async fn health_becomes(server: &Server, status: u16, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let response = server.get("/health").await.or_fail();
        if response.status == status {
            return String::from_utf8_lossy(&response.body).into_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health stayed {} ({}), wanted {status}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_seen_in_health_and_never_leaves_a_silent_gap() {
    let port = spindle_tests::server::free_port().or_fail();
    let mut redis = start_redis(port).await;
    let server = Server::start_patched(json!({
        "engine": {"type": "redis", "redis": {"address": format!("redis://127.0.0.1:{port}")}}
    }))
    .await
    .or_fail();
    assert_eq!(health_becomes(&server, 200, TIMEOUT).await, "{}");

    let (mut client, _) = connected(&server, Format::Json, "alice").await;
    let channel = fixture::unique("rec:restart");
    let reply = client.subscribe(&channel).await.or_fail();
    let subscribed = reply
        .subscribe
        .clone()
        .unwrap_or_else(|| panic!("subscribe: {reply:?}"));
    for n in 1..=3 {
        server.publish(&channel, json!({ "n": n })).await.or_fail();
    }
    let mut epoch = subscribed.epoch.clone();
    for n in 1..=3u64 {
        let publication = client.next_publication(&channel).await.or_fail();
        assert_eq!(publication.offset, n);
        assert_eq!(payload_json(&publication.data).or_fail(), json!({ "n": n }));
        if epoch.is_empty() {
            // The stream was created by the first publication.
            let history = server
                .api_ok("history", json!({"channel": channel, "limit": 0}))
                .await
                .or_fail();
            epoch = history["epoch"].as_str().unwrap_or_default().to_owned();
        }
    }
    assert!(!epoch.is_empty());

    // Redis goes away: the outage shows.
    redis.kill().await.or_fail_str();
    let body = health_becomes(&server, 503, Duration::from_secs(15)).await;
    assert!(body.contains("redis"), "{body}");

    // Back, empty: health recovers and PUB/SUB resumes by itself.
    let _redis = start_redis(port).await;
    health_becomes(&server, 200, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let position = loop {
        match server.publish(&channel, json!({ "n": 4 })).await {
            Ok(position) => break position,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "publish after restart: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(
        position["epoch"],
        json!(epoch),
        "the lost stream gets a new epoch"
    );

    // The client is told its position is lost instead of receiving offset 1 of the new epoch.
    let push = client.next_push(TIMEOUT).await.or_fail();
    let unsubscribe = push
        .unsubscribe
        .clone()
        .unwrap_or_else(|| panic!("want unsubscribe 2500, got {push:?}"));
    assert_eq!(unsubscribe.code, 2500, "{push:?}");
    // Resubscribing with its old position: not recovered.
    let reply = client
        .request(Command {
            subscribe: Some(SubscribeRequest {
                channel: channel.clone(),
                recover: true,
                epoch,
                offset: 3,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .or_fail();
    let resubscribed = reply
        .subscribe
        .clone()
        .unwrap_or_else(|| panic!("resubscribe: {reply:?}"));
    assert!(!resubscribed.recovered, "{resubscribed:?}");
    // And live delivery works on the new epoch.
    server.publish(&channel, json!({ "n": 5 })).await.or_fail();
    let publication = client.next_publication(&channel).await.or_fail();
    assert_eq!(payload_json(&publication.data).or_fail(), json!({ "n": 5 }));
}

trait OrFailStr {
    fn or_fail_str(self);
}

impl<E: std::fmt::Display> OrFailStr for Result<(), E> {
    fn or_fail_str(self) {
        if let Err(error) = self {
            panic!("{error}");
        }
    }
}
