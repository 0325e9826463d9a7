//! Property tests for framing: any sequence of commands survives a frame in either format, any
//! sequence of replies survives a batch, and mesh frames survive any chunking.
#![allow(clippy::unwrap_used)] // a test or bench that cannot set up fails loudly

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use prost::Message;
use spindle_proto::{Batch, Command, Format, Request, client, decode_commands, encode_reply, mesh};

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        any::<i64>().prop_map(|n| Bytes::from(n.to_string())),
        "[a-z \\\\\"é]{0,12}".prop_map(|s| Bytes::from(serde_json::to_vec(&s).unwrap())),
        ("[a-z]{1,5}", any::<u32>())
            .prop_map(|(k, v)| Bytes::from(format!(r#"{{"{k}":[{v},null,true]}}"#))),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let channel = "[a-z:$#,0-9]{0,20}";
    let request = prop_oneof![
        (channel, payload()).prop_map(|(channel, data)| Request::Publish(client::PublishRequest {
            channel,
            data,
            ..Default::default()
        })),
        (channel, any::<bool>(), any::<u64>(), "[A-Za-z]{0,8}").prop_map(
            |(channel, recover, offset, epoch)| Request::Subscribe(client::SubscribeRequest {
                channel,
                recover,
                offset,
                epoch,
                flag: 1,
                ..Default::default()
            })
        ),
        (channel, -5i32..500).prop_map(|(channel, limit)| Request::History(
            client::HistoryRequest {
                channel,
                limit,
                ..Default::default()
            }
        )),
        ("[a-z.]{0,10}", payload())
            .prop_map(|(method, data)| Request::Rpc(client::RpcRequest { method, data })),
        Just(Request::Pong),
    ];
    (1u32.., request).prop_map(|(id, request)| {
        let id = if request == Request::Pong { 0 } else { id };
        Command { id, request }
    })
}

fn frame_of(format: Format, commands: &[Command]) -> Vec<u8> {
    let mut frame = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let raw = client::Command::from(command.clone());
        match format {
            Format::Json => {
                if i > 0 {
                    frame.push(b'\n');
                }
                frame.extend(serde_json::to_vec(&raw).unwrap());
            }
            Format::Protobuf => raw.encode_length_delimited(&mut frame).unwrap(),
        }
    }
    frame
}

proptest! {
    #[test]
    fn commands_survive_a_frame(commands in prop::collection::vec(command(), 1..20), trailing in any::<bool>()) {
        for format in Format::ALL {
            let mut frame = frame_of(format, &commands);
            if trailing && format == Format::Json {
                frame.push(b'\n');
            }
            let decoded: Vec<Command> = decode_commands(format, &frame, 1 << 20)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(&decoded, &commands);
        }
    }

    #[test]
    fn replies_survive_a_batch(ids in prop::collection::vec(any::<u32>(), 1..20), data in payload()) {
        for format in Format::ALL {
            let replies: Vec<client::Reply> = ids
                .iter()
                .map(|&id| client::Reply {
                    id,
                    rpc: Some(client::RpcResult { data: data.clone() }),
                    ..Default::default()
                })
                .collect();
            let mut batch = Batch::framed(format);
            for reply in &replies {
                batch.push(&encode_reply(format, reply).unwrap());
            }
            let frame = batch.take();
            // Decode the way an SDK does.
            let decoded: Vec<client::Reply> = match format {
                Format::Json => frame
                    .split(|&b| b == b'\n')
                    .map(|line| serde_json::from_slice(line).unwrap())
                    .collect(),
                Format::Protobuf => {
                    let mut rest = &frame[..];
                    let mut out = Vec::new();
                    while !rest.is_empty() {
                        out.push(client::Reply::decode_length_delimited(&mut rest).unwrap());
                    }
                    out
                }
            };
            prop_assert_eq!(decoded, replies);
        }
    }

    #[test]
    fn mesh_frames_survive_any_chunking(
        seqs in prop::collection::vec(any::<u64>(), 1..10),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let frames: Vec<mesh::MeshFrame> = seqs
            .iter()
            .map(|&seq| mesh::MeshFrame {
                kind: Some(mesh::mesh_frame::Kind::Heartbeat(mesh::Heartbeat { seq, sent_at_ms: 1 })),
            })
            .collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| mesh::encode_frame(f).to_vec()).collect();
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cut_points.push(stream.len());
        cut_points.sort_unstable();
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for cut in cut_points {
            buffer.extend_from_slice(&stream[start..cut]);
            start = cut;
            while let Some(frame) = mesh::decode_frame(&mut buffer, 1024).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoded, frames);
        prop_assert!(buffer.is_empty());
    }
}

#[test]
fn an_oversized_mesh_frame_is_refused_before_it_is_buffered() {
    let mut buffer = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0x0f][..]);
    assert!(mesh::decode_frame(&mut buffer, 1 << 20).is_err());
    let mut partial = BytesMut::from(&[0x80][..]);
    assert_eq!(mesh::decode_frame(&mut partial, 1 << 20), Ok(None));
}
