//! The socket-mode outbox and writer over a real TCP connection: direct writes, corked
//! writes, a full socket handed to the writer task, order kept throughout.

use crate::writer::{Outbox, Pushed, cork};
use bytes::{Bytes, BytesMut};
use spindle_hub::codes::Disconnect;
use spindle_proto::Format;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// A socket-mode outbox writing to one end of a TCP connection; the other end, to read.
async fn pair(limit: usize) -> (Arc<Outbox>, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let (_read, write) = server.into_split();
    // The read half is dropped: the server end only writes in these tests.
    let peer = Peer {
        socket: client,
        buf: BytesMut::new(),
    };
    (
        Arc::new(Outbox::with_socket(Format::Json, limit, write)),
        peer,
    )
}

/// The client's end: reads unmasked server frames, keeping what it read past a frame.
struct Peer {
    socket: TcpStream,
    buf: BytesMut,
}

impl Peer {
    /// The next `n` frames: (opcode, payload).
    async fn frames(&mut self, n: usize) -> Vec<(u8, Bytes)> {
        let mut out = Vec::new();
        while out.len() < n {
            if let Some((opcode, payload, used)) = parse(&self.buf) {
                out.push((opcode, Bytes::copy_from_slice(payload)));
                let _ = self.buf.split_to(used);
                continue;
            }
            let read =
                tokio::time::timeout(Duration::from_secs(5), self.socket.read_buf(&mut self.buf))
                    .await
                    .expect("a frame within 5 s")
                    .unwrap();
            assert!(read > 0, "the server closed after {} frames", out.len());
        }
        out
    }
}

fn parse(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    let [b0, b1, ..] = *buf else { return None };
    assert_eq!(b1 & 0x80, 0, "server frames are not masked");
    let (len, at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = buf.get(at..at + len)?;
    Some((b0 & 0x0f, payload, at + len))
}

#[tokio::test]
async fn an_idle_connection_is_written_at_once_without_its_writer_task() {
    let (outbox, mut client) = pair(1 << 20).await;
    // No writer task runs: only a direct write can deliver these.
    for n in 0..3 {
        let message = Bytes::from(format!("{{\"n\":{n}}}"));
        assert_eq!(outbox.push(message), Pushed::Queued);
    }
    let got = client.frames(3).await;
    let texts: Vec<_> = got.iter().map(|(op, p)| (*op, p.clone())).collect();
    assert_eq!(
        texts,
        [
            (1, Bytes::from_static(b"{\"n\":0}")),
            (1, Bytes::from_static(b"{\"n\":1}")),
            (1, Bytes::from_static(b"{\"n\":2}")),
        ]
    );
}

#[tokio::test]
async fn a_cork_writes_each_connection_once_with_its_messages_joined_in_order() {
    let (a, mut client_a) = pair(1 << 20).await;
    let (b, mut client_b) = pair(1 << 20).await;
    let cork = cork::begin();
    for n in 0..3 {
        a.push(Bytes::from(format!("{{\"a\":{n}}}")));
        b.push(Bytes::from(format!("{{\"b\":{n}}}")));
    }
    assert_eq!(
        a.queued_bytes(),
        3 * 7,
        "nothing is written before the flush"
    );
    cork.flush();
    assert_eq!(
        client_a.frames(1).await[0].1,
        Bytes::from_static(b"{\"a\":0}\n{\"a\":1}\n{\"a\":2}")
    );
    assert_eq!(
        client_b.frames(1).await[0].1,
        Bytes::from_static(b"{\"b\":0}\n{\"b\":1}\n{\"b\":2}")
    );
}

#[tokio::test]
async fn a_full_socket_hands_the_rest_to_the_writer_task_and_order_is_kept() {
    let (outbox, mut client) = pair(64 << 20).await;
    let writer = tokio::spawn(super::run_socket_writer(
        Arc::clone(&outbox),
        Duration::from_secs(10),
    ));
    // Far more than the socket buffers hold while the client does not read: some frames go
    // directly, one is cut part-way, the rest queue for the writer task.
    let count = 3_000;
    for n in 0..count {
        let message = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(4000));
        assert_eq!(outbox.push(Bytes::from(message)), Pushed::Queued);
    }
    assert!(outbox.queued_bytes() > 0, "the socket never filled up");
    let mut seen = 0;
    while seen < count {
        for (opcode, payload) in client.frames(1).await {
            assert_eq!(opcode, 1);
            for message in payload.split(|&b| b == b'\n') {
                let value: serde_json::Value = serde_json::from_slice(message).unwrap();
                assert_eq!(value["n"], seen, "messages out of order");
                seen += 1;
            }
        }
    }
    outbox.close(Disconnect::BAD_REQUEST);
    let close = client.frames(1).await;
    assert_eq!(close[0].0, 8);
    assert_eq!(&close[0].1[..2], &3501u16.to_be_bytes());
    writer.await.unwrap();
}

#[tokio::test]
async fn a_queue_over_the_limit_closes_with_3008_and_writes_nothing_more() {
    let (outbox, mut client) = pair(100_000).await;
    let writer = tokio::spawn(super::run_socket_writer(
        Arc::clone(&outbox),
        Duration::from_secs(10),
    ));
    let mut pushed = Vec::new();
    for _ in 0..10_000 {
        let result = outbox.push(Bytes::from(vec![b'7'; 10_000]));
        pushed.push(result);
        if result != Pushed::Queued {
            break;
        }
    }
    assert_eq!(pushed.last(), Some(&Pushed::Overflow));
    assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
    // The client reads: whole data frames, then the 3008 close.
    loop {
        let (opcode, payload) = client.frames(1).await.remove(0);
        if opcode == 8 {
            assert_eq!(&payload[..2], &3008u16.to_be_bytes());
            break;
        }
        assert_eq!(opcode, 1);
        assert!(payload.iter().all(|&b| b == b'7' || b == b'\n'));
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn a_pass_writes_directly_only_within_its_budget() {
    let (a, mut client_a) = pair(1 << 20).await;
    let (b, _client_b) = pair(1 << 20).await;
    {
        let _pass = cork::pass(1);
        a.push(Bytes::from_static(b"{\"to\":\"a\"}"));
        b.push(Bytes::from_static(b"{\"to\":\"b\"}"));
    }
    assert_eq!(a.queued_bytes(), 0, "the first push goes out at once");
    assert_eq!(
        b.queued_bytes(),
        10,
        "past the budget a push waits for its writer task"
    );
    assert_eq!(
        client_a.frames(1).await[0].1,
        Bytes::from_static(b"{\"to\":\"a\"}")
    );
    // Outside a pass, direct writes are not counted.
    let (c, mut client_c) = pair(1 << 20).await;
    c.push(Bytes::from_static(b"{}"));
    assert_eq!(client_c.frames(1).await[0].1, Bytes::from_static(b"{}"));
}
