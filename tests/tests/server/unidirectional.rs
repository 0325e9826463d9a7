//! Unidirectional transports (docs/protocol.md §1.7): `uni_http_stream`, `uni_sse` and
//! `uni_websocket` receive a connect push with a session, API publications as bare pushes and
//! a disconnect push on API disconnect; refused connects become disconnects (or an HTTP status
//! with `connect_code_to_http_response`).

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use spindle_tests::{OrFail, TIMEOUT, fixture, http};
use tokio_tungstenite::tungstenite::Message;

use crate::emulation::{Kind, Streamed};
use crate::start;

/// Percent-encodes everything (good enough for a query value).
fn encode_query(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn open(server: &spindle_tests::Server, kind: Kind, request: &Value) -> Streamed {
    let addr = server.addr();
    match kind {
        Kind::UniHttp => {
            Streamed::open(
                addr,
                kind,
                "POST",
                "/connection/uni_http_stream",
                &[("Content-Type", "application/json")],
                request.to_string().as_bytes(),
            )
            .await
        }
        Kind::UniSse => {
            let path = format!(
                "/connection/uni_sse?cf_connect={}",
                encode_query(&request.to_string())
            );
            let mut stream = Streamed::open(addr, kind, "GET", &path, &[], b"").await;
            while stream.body.len() < 2 && stream.fill(TIMEOUT).await.or_fail() {}
            assert_eq!(&stream.body[..2], b"\r\n", "SSE body starts with CRLF");
            stream.body.drain(..2);
            stream
        }
        other => panic!("not a uni kind: {other:?}"),
    }
}

async fn receives_and_is_disconnected(kind: Kind) {
    let server = start().await;
    let user = fixture::unique("uni");
    let channel = fixture::unique("chat:uni");
    let token = fixture::token_with(json!({"sub": user, "channels": [channel]}));
    let mut stream = open(&server, kind, &json!({"token": token})).await;
    assert_eq!(stream.status, 200);
    let connect = stream.next_json().await.expect("connect push");
    let connect = &connect["connect"];
    assert!(connect["client"].is_string(), "{connect}");
    assert!(
        connect["session"].as_str().is_some_and(|s| !s.is_empty()),
        "{connect}"
    );
    assert!(connect.get("pong").is_none(), "no pong expected: {connect}");
    assert!(connect["subs"].get(&channel).is_some(), "{connect}");

    server.publish(&channel, json!({"n": 1})).await.or_fail();
    let publication = stream.next_json().await.expect("publication push");
    assert_eq!(publication["channel"], json!(channel), "{publication}");
    assert_eq!(publication["pub"]["data"], json!({"n": 1}), "{publication}");

    server
        .api_ok("disconnect", json!({"user": user}))
        .await
        .or_fail();
    let disconnect = stream.next_json().await.expect("disconnect push");
    assert_eq!(
        disconnect["disconnect"]["code"],
        json!(3503),
        "{disconnect}"
    );
    assert!(stream.next_json().await.is_none(), "stream ends");
}

#[tokio::test]
async fn uni_http_stream() {
    receives_and_is_disconnected(Kind::UniHttp).await;
}

#[tokio::test]
async fn uni_sse() {
    receives_and_is_disconnected(Kind::UniSse).await;
}

#[tokio::test]
async fn connect_errors_become_disconnects() {
    let server = start().await;
    for kind in [Kind::UniHttp, Kind::UniSse] {
        let expired = json!({"token": fixture::expired_token("late")});
        let mut stream = open(&server, kind, &expired).await;
        let push = stream.next_json().await.expect("disconnect push");
        assert_eq!(push["disconnect"]["code"], json!(3005), "{kind:?} {push}");
        assert!(stream.next_json().await.is_none());

        let bad = json!({"token": fixture::badly_signed_token("mallory")});
        let mut stream = open(&server, kind, &bad).await;
        let push = stream.next_json().await.expect("disconnect push");
        assert_eq!(push["disconnect"]["code"], json!(3500), "{kind:?} {push}");
    }
    // Not a ConnectRequest at all.
    let mut stream = Streamed::open(
        server.addr(),
        Kind::UniHttp,
        "POST",
        "/connection/uni_http_stream",
        &[],
        b"{{{",
    )
    .await;
    let push = stream.next_json().await.expect("disconnect push");
    assert_eq!(push["disconnect"]["code"], json!(3501), "{push}");
    let get = http::get(server.addr(), "/connection/uni_http_stream")
        .await
        .or_fail();
    assert_eq!(get.status, 405);
    let big = vec![b' '; 70_000];
    let response = http::request(
        server.addr(),
        "POST",
        "/connection/uni_http_stream",
        &[],
        &big,
    )
    .await
    .or_fail();
    assert_eq!(response.status, 413);
}

#[tokio::test]
async fn connect_code_to_http_response() {
    let transforms = json!({"enabled": true, "transforms": [
        {"code": 109, "to": {"status_code": 401, "body": "token expired"}}
    ]});
    let server = spindle_tests::Server::start_patched(json!({
        "uni_http_stream": {"connect_code_to_http_response": transforms},
        "uni_sse": {"connect_code_to_http_response": transforms},
        "client": {"connect_code_to_unidirectional_disconnect": {"enabled": true, "transforms": [
            {"code": 103, "to": {"code": 4403, "reason": "denied"}}
        ]}}
    }))
    .await
    .or_fail();
    let expired = json!({"token": fixture::expired_token("late")}).to_string();
    let response = http::request(
        server.addr(),
        "POST",
        "/connection/uni_http_stream",
        &[],
        expired.as_bytes(),
    )
    .await
    .or_fail();
    assert_eq!(response.status, 401);
    assert_eq!(response.text(), "token expired");
    let path = format!("/connection/uni_sse?cf_connect={}", encode_query(&expired));
    let response = http::get(server.addr(), &path).await.or_fail();
    assert_eq!(response.status, 401);

    // A code without an HTTP transform still streams (a good token: the connect push).
    let good = json!({"token": fixture::token("fine")});
    let mut stream = open(&server, Kind::UniHttp, &good).await;
    assert_eq!(stream.status, 200);
    assert!(stream.next_json().await.expect("connect push")["connect"].is_object());
}

#[tokio::test]
async fn uni_websocket() {
    let server = start().await;
    let user = fixture::unique("uniws");
    let channel = fixture::unique("chat:uniws");
    let token = fixture::token_with(json!({"sub": user, "channels": [channel]}));
    let url = format!("ws://{}/connection/uni_websocket", server.addr());
    let (mut socket, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake");
    socket
        .send(Message::text(json!({"token": token}).to_string()))
        .await
        .expect("send connect");
    let mut next = async || loop {
        let message = tokio::time::timeout(TIMEOUT, socket.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("socket ok");
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).expect("JSON push");
                if value != json!({}) {
                    return Some(value);
                }
            }
            Message::Close(frame) => {
                return frame.map(|f| json!({"close": u16::from(f.code)}));
            }
            _ => {}
        }
    };
    let connect = next().await.expect("connect push");
    assert!(
        connect["connect"]["session"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{connect}"
    );
    server.publish(&channel, json!({"n": 2})).await.or_fail();
    let publication = next().await.expect("publication");
    assert_eq!(publication["pub"]["data"], json!({"n": 2}), "{publication}");
    server
        .api_ok("disconnect", json!({"user": user}))
        .await
        .or_fail();
    let push = next().await.expect("disconnect push");
    assert_eq!(push["disconnect"]["code"], json!(3503), "{push}");
    let close = next().await.expect("close frame");
    assert_eq!(close["close"], json!(3503));
}
