//! Codec micro-benchmarks: the per-publication cost of a broadcast (encode once per format) and
//! the per-frame cost of reading commands. Run: `cargo bench -p spindle-proto`.
#![allow(clippy::unwrap_used)] // a test or bench that cannot set up fails loudly

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use spindle_proto::{Batch, Format, SharedReply, client, decode_commands};
use std::hint::black_box;

fn publication_push() -> client::Push {
    client::Push {
        channel: "chat:room-42".into(),
        r#pub: Some(client::Publication {
            data: Bytes::from_static(
                br#"{"text":"hello there, this is a chat message","user":"alice","ts":1700000000}"#,
            ),
            offset: 123_456,
            info: Some(client::ClientInfo {
                user: "alice".into(),
                client: "8f14e45f-ceea-467f-a0e6-0a1b2c3d4e5f".into(),
                conn_info: Bytes::from_static(br#"{"name":"Alice"}"#),
                chan_info: Bytes::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode publication push");
    group.throughput(Throughput::Elements(1));
    for format in Format::ALL {
        group.bench_function(format.as_str(), |b| {
            b.iter(|| SharedReply::push(black_box(publication_push())).encoded(format))
        });
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let encoded = SharedReply::push(publication_push())
        .encoded(Format::Json)
        .unwrap();
    let mut group = c.benchmark_group("batch 64 queued pushes");
    group.throughput(Throughput::Elements(64));
    group.bench_function("json", |b| {
        b.iter(|| {
            let mut batch = Batch::framed(Format::Json);
            for _ in 0..64 {
                batch.push(black_box(&encoded));
            }
            batch.take()
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let command = client::Command {
        id: 7,
        publish: Some(client::PublishRequest {
            channel: "chat:room-42".into(),
            data: Bytes::from_static(br#"{"text":"hello there, this is a chat message"}"#),
            ..Default::default()
        }),
        ..Default::default()
    };
    let json = serde_json::to_vec(&command).unwrap();
    let protobuf = command.encode_length_delimited_to_vec();
    let mut group = c.benchmark_group("decode publish command");
    group.throughput(Throughput::Elements(1));
    for (format, frame) in [(Format::Json, &json), (Format::Protobuf, &protobuf)] {
        group.bench_function(format.as_str(), |b| {
            b.iter(|| {
                decode_commands(format, black_box(frame), 65536)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encode, batch, decode);
criterion_main!(benches);
