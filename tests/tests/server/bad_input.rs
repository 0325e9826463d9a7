//! Bad input from one client closes that client only: another client subscribed meanwhile keeps
//! receiving publications.

use std::time::Duration;

use serde_json::json;
use spindle_tests::client::{payload_json, subscribe_command};
use spindle_tests::tungstenite::Message;
use spindle_tests::{Client, Event, Format, OrFail, Server, TIMEOUT, fixture};

use crate::{connected, start};

both_formats!(
    command_before_connect_closes_3501,
    oversize_frame_closes_1009,
    two_pongs_close_3501,
);

/// A JSON client subscribed to a channel of its own, watching the server stay healthy.
struct Observer {
    client: Client,
    channel: String,
}

impl Observer {
    async fn new(server: &Server) -> Observer {
        let (mut client, _) = connected(server, Format::Json, "observer").await;
        let channel = fixture::unique("chat:observer");
        client.subscribe_ok(&channel).await.or_fail();
        Observer { client, channel }
    }

    /// The observer still gets a fresh publication (and was not disconnected meanwhile).
    async fn still_receives(&mut self, server: &Server, what: &str) {
        let data = json!({ "after": what });
        server.publish(&self.channel, data.clone()).await.or_fail();
        let publication = self
            .client
            .next_publication(&self.channel)
            .await
            .unwrap_or_else(|e| panic!("observer after {what}: {e}"));
        assert_eq!(payload_json(&publication.data).or_fail(), data);
    }
}

#[tokio::test]
async fn malformed_json_frame_closes_3501() {
    let server = start().await;
    let mut observer = Observer::new(&server).await;
    let (mut bad, _) = connected(&server, Format::Json, "bad").await;
    bad.send_raw(Message::text("{\"id\":2,\"subscribe\":{\"channel\":"))
        .await
        .or_fail();
    let close = bad.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3501, "{close:?}");
    observer.still_receives(&server, "malformed JSON").await;
}

#[tokio::test]
async fn protobuf_with_lying_length_closes_3501() {
    let server = start().await;
    let mut observer = Observer::new(&server).await;
    let (mut bad, _) = connected(&server, Format::Protobuf, "bad").await;
    // Varint length 64, then only two bytes of message.
    bad.send_raw(Message::binary(vec![0x40, 0x08, 0x02]))
        .await
        .or_fail();
    let close = bad.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3501, "{close:?}");
    observer
        .still_receives(&server, "a lying protobuf length")
        .await;
}

async fn oversize_frame_closes_1009(format: Format) {
    let server = start().await;
    let mut observer = Observer::new(&server).await;
    let (mut bad, _) = connected(&server, format, "bad").await;
    // Over the default 65536-byte client message limit.
    let big = "x".repeat(70_000);
    let frame = match format {
        Format::Json => Message::text(format!(
            "{{\"id\":2,\"publish\":{{\"channel\":\"chat:big\",\"data\":{{\"big\":\"{big}\"}}}}}}"
        )),
        Format::Protobuf => Message::binary(big.into_bytes()),
    };
    // The server may stop reading mid-frame: a failed send is fine, the close frame is not
    // optional.
    let _ = bad.send_raw(frame).await;
    let close = bad.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 1009, "{close:?}");
    observer.still_receives(&server, "an oversize frame").await;
}

async fn command_before_connect_closes_3501(format: Format) {
    let server = start().await;
    let mut observer = Observer::new(&server).await;
    let mut bad = Client::open(&server.ws_url(), format).await.or_fail();
    let mut command = subscribe_command("chat:early");
    command.id = 1;
    bad.send(&command).await.or_fail();
    let close = bad.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3501, "{close:?}");
    observer
        .still_receives(&server, "a command before connect")
        .await;
}

async fn two_pongs_close_3501(format: Format) {
    // Short pings so the test sees one quickly (the first comes within [1 s, 2 s)).
    let server = Server::start_patched(json!({
        "client": { "ping_interval": "2s", "pong_timeout": "1s" }
    }))
    .await
    .or_fail();
    let mut observer = Observer::new(&server).await;
    let (mut bad, result) = Client::connect(&server.ws_url(), format, &fixture::token("bad"))
        .await
        .or_fail();
    assert_eq!((result.ping, result.pong), (2, true), "{result:?}");
    bad.auto_pong = false;
    match bad.next_event(TIMEOUT).await.or_fail() {
        Event::Ping => {}
        other => panic!("waiting for a ping, got {other:?}"),
    }
    bad.send_pong().await.or_fail();
    bad.send_pong().await.or_fail();
    let close = bad.expect_close(TIMEOUT).await.or_fail();
    assert_eq!(close.code, 3501, "{close:?}");
    // The observer, answering each of its pings once (it reads for longer than a ping interval
    // here), stays connected and keeps receiving.
    observer
        .client
        .expect_silence(Duration::from_millis(2500))
        .await
        .or_fail();
    assert!(observer.client.pings() >= 1, "the observer saw pings too");
    observer.still_receives(&server, "two pongs").await;
}

/// A raw WebSocket connection after the upgrade (no client library: it would refuse to send
/// the frames these tests need).
async fn raw_websocket(server: &Server) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let request = format!(
        "GET /connection/websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.addr()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream
            .read_exact(&mut byte)
            .await
            .expect("upgrade response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads frames until a close frame; its code.
async fn close_code(stream: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::AsyncReadExt;
    let read = async {
        loop {
            let mut header = [0u8; 2];
            stream
                .read_exact(&mut header)
                .await
                .expect("a frame (not a dropped connection)");
            let opcode = header[0] & 0x0f;
            let mut length = u64::from(header[1] & 0x7f);
            if length == 126 {
                let mut extended = [0u8; 2];
                stream.read_exact(&mut extended).await.expect("length");
                length = u64::from(u16::from_be_bytes(extended));
            } else if length == 127 {
                let mut extended = [0u8; 8];
                stream.read_exact(&mut extended).await.expect("length");
                length = u64::from_be_bytes(extended);
            }
            let mut payload = vec![0u8; usize::try_from(length).expect("small")];
            stream.read_exact(&mut payload).await.expect("payload");
            if opcode == 0x8 {
                assert!(payload.len() >= 2, "a close frame with a code");
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .expect("a close frame in time")
}

/// A masked client frame (`fin` set) with `opcode` and `payload`.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![
        0x80 | opcode,
        0x80 | u8::try_from(payload.len()).expect("short"),
    ];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn an_unmasked_frame_is_closed_with_1002() {
    use tokio::io::AsyncWriteExt;
    let server = start().await;
    let mut stream = raw_websocket(&server).await;
    // RFC 6455 §5.1: a client must mask every frame.
    stream
        .write_all(&[0x81, 0x02, b'{', b'}'])
        .await
        .expect("write");
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_is_closed_with_1007() {
    use tokio::io::AsyncWriteExt;
    let server = start().await;
    let mut stream = raw_websocket(&server).await;
    stream
        .write_all(&masked_frame(0x1, &[0xff, 0xfe, b'{']))
        .await
        .expect("write");
    assert_eq!(close_code(&mut stream).await, 1007);
}
