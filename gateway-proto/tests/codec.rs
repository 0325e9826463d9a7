//! Round trips in both codecs, cross-codec equality, and Centrifugo's JSON rules.
#![allow(clippy::unwrap_used)] // a test or bench that cannot set up fails loudly

mod common;

use bytes::Bytes;
use common::*;
use prost::Message;
use serde_json::{Value, json as j};
use spindle_proto::{
    Batch, Command, DEFAULT_MAX_FRAME_SIZE, DecodeError, EncodeError, Format, Request, SharedReply,
    api, client, decode_commands, encode_reply,
};

fn protobuf_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let bytes = message.encode_to_vec();
    assert_eq!(&M::decode(bytes.as_slice()).unwrap(), message);
}

fn json_round_trip<M>(message: &M) -> String
where
    M: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(message).unwrap();
    let back: M = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, message, "JSON round trip of {text}");
    text
}

#[test]
fn every_client_message_round_trips_in_both_codecs() {
    let command = command_with_everything();
    protobuf_round_trip(&command);
    json_round_trip(&command);
    let reply = reply_with_everything();
    protobuf_round_trip(&reply);
    json_round_trip(&reply);
    let emulation = client::EmulationRequest {
        node: "n".into(),
        session: "s".into(),
        data: json(r#"{"id":2,"subscribe":{"channel":"news"}}"#),
    };
    protobuf_round_trip(&emulation);
    let text = json_round_trip(&emulation);
    // Emulation `data` is a JSON string holding the command frame, not embedded JSON.
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["data"],
        j!(r#"{"id":2,"subscribe":{"channel":"news"}}"#)
    );
}

#[test]
fn codecs_agree_on_every_client_message() {
    let reply = reply_with_everything();
    let from_json: client::Reply =
        serde_json::from_slice(&encode_reply(Format::Json, &reply).unwrap()).unwrap();
    let pb = encode_reply(Format::Protobuf, &reply).unwrap();
    let from_pb = client::Reply::decode_length_delimited(pb).unwrap();
    assert_eq!(from_json, from_pb);
    assert_eq!(from_pb, reply);

    let command = command_with_everything();
    let from_json: client::Command =
        serde_json::from_str(&serde_json::to_string(&command).unwrap()).unwrap();
    let from_pb = client::Command::decode(command.encode_to_vec().as_slice()).unwrap();
    assert_eq!(from_json, from_pb);
}

#[test]
fn every_api_message_round_trips() {
    let publish = api_publish();
    let batch = api::BatchRequest {
        commands: vec![api::Command {
            publish: Some(publish.clone()),
            broadcast: Some(api::BroadcastRequest {
                channels: vec!["a".into(), "b".into()],
                data: json("{}"),
                ..Default::default()
            }),
            subscribe: Some(api::SubscribeRequest {
                channel: "c".into(),
                user: "u".into(),
                expire_at: 10,
                info: json("{}"),
                b64info: "AA==".into(),
                client: "cl".into(),
                data: json("[]"),
                b64data: "AA==".into(),
                recover_since: Some(api::StreamPosition {
                    offset: 1,
                    epoch: "e".into(),
                }),
                r#override: Some(api::SubscribeOptionOverride {
                    presence: Some(api::BoolValue { value: true }),
                    join_leave: Some(api::BoolValue { value: false }),
                    ..Default::default()
                }),
                session: "s".into(),
            }),
            disconnect: Some(api::DisconnectRequest {
                user: "u".into(),
                disconnect: Some(api::Disconnect {
                    code: 4000,
                    reason: "r".into(),
                }),
                whitelist: vec!["c".into()],
                ..Default::default()
            }),
            history: Some(api::HistoryRequest {
                channel: "h".into(),
                limit: 5,
                since: Some(api::StreamPosition {
                    offset: 2,
                    epoch: "e".into(),
                }),
                reverse: true,
            }),
            rpc: Some(api::RpcRequest {
                method: "m".into(),
                params: json(r#"{"p":1}"#),
            }),
            refresh: Some(api::RefreshRequest {
                expired: true,
                ..Default::default()
            }),
            channels: Some(api::ChannelsRequest {
                pattern: "chat:*".into(),
            }),
            info: Some(api::InfoRequest {}),
            ..Default::default()
        }],
        parallel: true,
    };
    protobuf_round_trip(&batch);
    json_round_trip(&batch);
    let info = api::InfoResult {
        nodes: vec![api::NodeResult {
            uid: "u".into(),
            name: "n".into(),
            metrics: Some(api::Metrics {
                interval: 60.0,
                items: [("x".to_string(), 1.5)].into(),
            }),
            ..Default::default()
        }],
    };
    protobuf_round_trip(&info);
    let text = json_round_trip(&info);
    // Node identity and counters are always present, zero or not.
    let node = &serde_json::from_str::<Value>(&text).unwrap()["nodes"][0];
    assert_eq!(node["num_clients"], j!(0));
    assert_eq!(node["num_subs"], j!(0));
    assert!(node.get("uptime").is_none());
}

#[test]
fn json_omits_zero_values_but_keeps_the_always_present_fields() {
    let reply = client::Reply {
        id: 1,
        presence: Some(client::PresenceResult::default()),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Format::Json, &reply).unwrap(),
        r#"{"id":1,"presence":{"presence":{}}}"#
    );
    let reply = client::Reply {
        id: 2,
        history: Some(client::HistoryResult::default()),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Format::Json, &reply).unwrap(),
        r#"{"id":2,"history":{"publications":[],"epoch":"","offset":0}}"#
    );
    let reply = client::Reply {
        id: 3,
        presence_stats: Some(client::PresenceStatsResult::default()),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Format::Json, &reply).unwrap(),
        r#"{"id":3,"presence_stats":{"num_clients":0,"num_users":0}}"#
    );
    let push = client::Reply {
        push: Some(client::Push {
            channel: "news".into(),
            join: Some(client::Join {
                info: Some(client::ClientInfo::default()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Format::Json, &push).unwrap(),
        r#"{"push":{"channel":"news","join":{"info":{"user":"","client":""}}}}"#
    );
    // A successful empty result is `{}`, never omitted.
    let reply = client::Reply {
        id: 4,
        publish: Some(client::PublishResult {}),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Format::Json, &reply).unwrap(),
        r#"{"id":4,"publish":{}}"#
    );
}

#[test]
fn ping_is_the_empty_reply_in_both_formats() {
    let ping = client::Reply::default();
    assert_eq!(encode_reply(Format::Json, &ping).unwrap(), "{}");
    assert_eq!(&encode_reply(Format::Protobuf, &ping).unwrap()[..], &[0u8]);
}

#[test]
fn payloads_are_raw_json_and_64_bit_integers_are_numbers() {
    let reply = client::Reply {
        push: Some(client::Push {
            channel: "c".into(),
            r#pub: Some(client::Publication {
                data: json("{\"a\":\n 1}"),
                offset: u64::MAX,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        encode_reply(Format::Json, &reply).unwrap(),
        format!(
            r#"{{"push":{{"channel":"c","pub":{{"data":{{"a": 1}},"offset":{}}}}}}}"#,
            u64::MAX
        )
    );
}

#[test]
fn a_payload_that_is_not_json_cannot_go_to_a_json_client() {
    for bad in [&b"not json"[..], b"{\"a\":", b"\xff\xfe", b"1 2"] {
        let reply = client::Reply {
            push: Some(client::Push {
                r#pub: Some(client::Publication {
                    data: Bytes::copy_from_slice(bad),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            encode_reply(Format::Json, &reply),
            Err(EncodeError::PayloadNotJson),
            "{bad:?}"
        );
        assert!(encode_reply(Format::Protobuf, &reply).is_ok());
    }
}

#[test]
fn raw_payloads_are_captured_verbatim_on_decode() {
    let frame = br#"{"id":3,"publish":{"channel":"chat","data":{ "text" : "hi",  "n":1.50 }}}"#;
    let command = decode_commands(Format::Json, frame, DEFAULT_MAX_FRAME_SIZE)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let Request::Publish(publish) = command.request else {
        panic!("not a publish")
    };
    assert_eq!(&publish.data[..], br#"{ "text" : "hi",  "n":1.50 }"#);
}

#[test]
fn null_and_unknown_keys_are_tolerated() {
    let frame = br#"{"id":2,"subscribe":{"channel":"news","token":null,"tf":null,"data":null,"offset":null,"future_field":{"x":[1]}},"unknown":1}"#;
    let command = decode_commands(Format::Json, frame, DEFAULT_MAX_FRAME_SIZE)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        command,
        Command {
            id: 2,
            request: Request::Subscribe(client::SubscribeRequest {
                channel: "news".into(),
                ..Default::default()
            })
        }
    );
}

#[test]
fn json_frames_follow_the_newline_rules() {
    let decode = |frame: &[u8]| -> Result<Vec<Command>, DecodeError> {
        decode_commands(Format::Json, frame, DEFAULT_MAX_FRAME_SIZE)?.collect()
    };
    let two = br#"{"id":1,"presence":{"channel":"a"}}
{"id":2,"history":{"channel":"b"}}"#;
    assert_eq!(decode(two).unwrap().len(), 2);
    let mut trailing = two.to_vec();
    trailing.push(b'\n');
    assert_eq!(
        decode(&trailing).unwrap().len(),
        2,
        "one trailing newline is allowed"
    );
    trailing.push(b'\n');
    assert_eq!(
        decode(&trailing),
        Err(DecodeError::EmptyLine),
        "two are not"
    );
    assert_eq!(decode(b"{}\n\n{}"), Err(DecodeError::EmptyLine));
    assert_eq!(decode(b""), Err(DecodeError::EmptyFrame));
    assert_eq!(decode(b"\n"), Err(DecodeError::EmptyFrame));
    assert_eq!(
        decode(b"{}").unwrap(),
        vec![Command {
            id: 0,
            request: Request::Pong
        }]
    );
    assert!(matches!(
        decode(b"{\"id\":1}"),
        Err(DecodeError::NoRequest { id: 1 })
    ));
    assert!(matches!(
        decode(b"{\"id\":1,\"ping\":{}}"),
        Err(DecodeError::NoRequest { id: 1 })
    ));
    assert!(decode(b"[1]").is_err());
    assert!(matches!(decode(b"[1"), Err(DecodeError::Json(_))));
    assert!(matches!(decode(b"{\"id\":-1}"), Err(DecodeError::Json(_))));
    assert!(matches!(
        decode(b"{\"id\":1,\"connect\":\"x\"}"),
        Err(DecodeError::Json(_))
    ));
}

#[test]
fn commands_after_a_bad_one_are_not_decoded_but_earlier_ones_are() {
    let frame =
        b"{\"id\":1,\"presence\":{\"channel\":\"a\"}}\nnot json\n{\"id\":3,\"presence\":{}}";
    let results: Vec<_> = decode_commands(Format::Json, frame, DEFAULT_MAX_FRAME_SIZE)
        .unwrap()
        .collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(results[1].is_err());
}

#[test]
fn dispatch_order_and_pong_rules() {
    let first = |raw: client::Command| Command::try_from(raw).unwrap().request.name();
    let mut raw = command_with_everything();
    assert_eq!(first(raw.clone()), "connect");
    raw.connect = None;
    raw.subscribe = None;
    raw.unsubscribe = None;
    raw.publish = None;
    assert_eq!(first(raw.clone()), "presence");
    raw.presence = None;
    raw.presence_stats = None;
    raw.history = None;
    assert_eq!(first(raw.clone()), "rpc");
    raw.rpc = None;
    assert_eq!(first(raw.clone()), "send");
    raw.send = None;
    assert_eq!(first(raw.clone()), "refresh");
    raw.refresh = None;
    assert_eq!(first(raw.clone()), "sub_refresh");
    // id 0 without `send` is a pong whatever else it carries; `send` needs no id.
    raw.id = 0;
    assert_eq!(first(raw.clone()), "pong");
    raw.send = Some(client::SendRequest::default());
    assert_eq!(first(raw), "send");
}

#[test]
fn typed_commands_convert_back_to_raw() {
    let raw = client::Command {
        id: 9,
        rpc: Some(client::RpcRequest {
            data: json("1"),
            method: "m".into(),
        }),
        ..Default::default()
    };
    let typed = Command::try_from(raw.clone()).unwrap();
    assert_eq!(client::Command::from(typed), raw);
}

#[test]
fn protobuf_frames_are_length_prefixed_commands() {
    let commands = [
        client::Command {
            id: 1,
            connect: Some(Default::default()),
            ..Default::default()
        },
        client::Command::default(),
        client::Command {
            id: 2,
            presence: Some(Default::default()),
            ..Default::default()
        },
    ];
    let mut frame = Vec::new();
    for command in &commands {
        command.encode_length_delimited(&mut frame).unwrap();
    }
    assert_eq!(
        &frame[..6],
        &[4, 0x08, 0x01, 0x22, 0, 0],
        "the empty command is the single byte 0"
    );
    let decoded: Vec<Command> = decode_commands(Format::Protobuf, &frame, DEFAULT_MAX_FRAME_SIZE)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let names: Vec<_> = decoded.iter().map(|c| c.request.name()).collect();
    assert_eq!(names, ["connect", "pong", "presence"]);
}

#[test]
fn broken_protobuf_frames_are_errors_not_panics() {
    let decode = |frame: &[u8]| -> Result<Vec<Command>, DecodeError> {
        decode_commands(Format::Protobuf, frame, DEFAULT_MAX_FRAME_SIZE)?.collect()
    };
    assert_eq!(decode(&[0x80]), Err(DecodeError::BadLengthPrefix));
    assert_eq!(decode(&[0xff; 11]), Err(DecodeError::BadLengthPrefix));
    assert_eq!(
        decode(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]),
        Err(DecodeError::TruncatedMessage {
            declared: 0xffff_ffff,
            available: 2
        })
    );
    assert!(matches!(
        decode(&[4, 0x08, 0x01, 0x22]),
        Err(DecodeError::TruncatedMessage { .. })
    ));
    assert!(matches!(
        decode(&[3, 0x08, 0x01, 0x22]),
        Err(DecodeError::Protobuf(_))
    ));
    assert!(matches!(
        decode(&[2, 0x22, 0x05]),
        Err(DecodeError::Protobuf(_))
    ));
    assert!(matches!(
        decode_commands(Format::Protobuf, &[0; 10], 9),
        Err(DecodeError::FrameTooLarge { size: 10, limit: 9 })
    ));
}

#[test]
fn deeply_nested_input_is_rejected() {
    let deep_json = format!(r#"{{"id":1,"subscribe":{}}}"#, "{\"tf\":".repeat(5000));
    let result: Result<Vec<_>, _> = decode_commands(Format::Json, deep_json.as_bytes(), 1 << 20)
        .unwrap()
        .collect();
    assert!(matches!(result, Err(DecodeError::Json(_))));
    // Inside an opaque payload, depth is the payload's business: captured, never a stack overflow.
    let deep_payload = format!(
        r#"{{"id":1,"publish":{{"channel":"c","data":{}1{}}}}}"#,
        "[".repeat(30000),
        "]".repeat(30000)
    );
    let result: Result<Vec<_>, _> = decode_commands(Format::Json, deep_payload.as_bytes(), 1 << 20)
        .unwrap()
        .collect();
    let Request::Publish(publish) = &result.unwrap()[0].request else {
        panic!()
    };
    assert_eq!(publish.data.len(), 60001);

    // A filter tree nested far beyond prost's recursion limit.
    let mut node = client::FilterNode::default();
    for _ in 0..200 {
        node = client::FilterNode {
            op: "not".into(),
            nodes: vec![node],
            ..Default::default()
        };
    }
    let command = client::Command {
        id: 1,
        subscribe: Some(client::SubscribeRequest {
            tf: Some(node),
            ..Default::default()
        }),
        ..Default::default()
    };
    let frame = command.encode_length_delimited_to_vec();
    let result: Result<Vec<_>, _> = decode_commands(Format::Protobuf, &frame, 1 << 20)
        .unwrap()
        .collect();
    assert!(matches!(result, Err(DecodeError::Protobuf(_))));
}

#[test]
fn batches_join_messages_by_the_protocol_rules() {
    let a = encode_reply(
        Format::Json,
        &client::Reply {
            id: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let b = encode_reply(Format::Json, &client::Reply::default()).unwrap();
    let mut framed = Batch::framed(Format::Json);
    framed.push(&a);
    assert_eq!(
        framed.take(),
        r#"{"id":1}"#,
        "a lone message has no newline"
    );
    framed.push(&a);
    framed.push(&b);
    assert_eq!(framed.take(), "{\"id\":1}\n{}");
    assert!(framed.is_empty());
    let mut streamed = Batch::streamed(Format::Json);
    streamed.push(&a);
    streamed.push(&b);
    assert_eq!(streamed.take(), "{\"id\":1}\n{}\n");

    let pa = encode_reply(
        Format::Protobuf,
        &client::Reply {
            id: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let pb = encode_reply(Format::Protobuf, &client::Reply::default()).unwrap();
    let mut batch = Batch::streamed(Format::Protobuf);
    batch.push(&pa);
    batch.push(&pb);
    assert_eq!(batch.count(), 2);
    assert_eq!(&batch.take()[..], &[2, 0x08, 0x01, 0][..]);
}

#[test]
fn a_shared_push_is_encoded_once_per_format() {
    let shared = SharedReply::push(client::Push {
        channel: "news".into(),
        r#pub: Some(client::Publication {
            data: json(r#"{"n":1}"#),
            offset: 1,
            ..Default::default()
        }),
        ..Default::default()
    });
    let first = shared.encoded(Format::Json).unwrap();
    let second = shared.encoded(Format::Json).unwrap();
    assert_eq!(
        first.as_ptr(),
        second.as_ptr(),
        "the same bytes, not a second encoding"
    );
    assert_eq!(
        first,
        r#"{"push":{"channel":"news","pub":{"data":{"n":1},"offset":1}}}"#
    );
    let pb = shared.encoded(Format::Protobuf).unwrap();
    assert_eq!(
        pb.as_ptr(),
        shared.encoded(Format::Protobuf).unwrap().as_ptr()
    );
    assert_eq!(
        client::Reply::decode_length_delimited(pb).unwrap(),
        *shared.reply()
    );
}

#[test]
fn delta_payloads_for_json_clients_are_strings() {
    let data = spindle_proto::json::string_payload(b"{\"a\":1}\n");
    let reply = client::Reply {
        push: Some(client::Push {
            r#pub: Some(client::Publication {
                data,
                delta: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let text = encode_reply(Format::Json, &reply).unwrap();
    let value: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(value["push"]["pub"]["data"], j!("{\"a\":1}\n"));
}

#[test]
fn api_bodies_decode_with_raw_payloads() {
    let request: api::PublishRequest =
        api::decode_json(br#"{"channel":"news","data":{"text": "hi"},"tags":{"a":"b"}}"#).unwrap();
    assert_eq!(&request.data[..], br#"{"text": "hi"}"#);
    assert_eq!(request.tags["a"], "b");
    let empty: api::InfoRequest = api::decode_json(b"null").unwrap();
    assert_eq!(empty, api::InfoRequest {});
    assert!(api::decode_json::<api::PublishRequest>(b"{\"channel\":").is_err());
    let response = api::PublishResponse {
        result: Some(Default::default()),
        error: None,
    };
    assert_eq!(api::encode_json(&response).unwrap(), br#"{"result":{}}"#);
}

#[test]
fn uni_connect_requests_decode_from_either_format() {
    use spindle_proto::decode_uni_connect;
    let request = decode_uni_connect(
        Format::Json,
        br#"{"token":"t","subs":{"a":{"recover":true,"offset":3}}}"#,
        1024,
    )
    .unwrap();
    assert_eq!(request.token, "t");
    assert_eq!(request.subs["a"].offset, 3);
    assert_eq!(
        decode_uni_connect(Format::Json, b"null", 1024).unwrap(),
        Default::default()
    );
    assert_eq!(
        decode_uni_connect(Format::Json, b"", 1024).unwrap(),
        Default::default()
    );
    let bytes = request.encode_to_vec();
    assert_eq!(
        decode_uni_connect(Format::Protobuf, &bytes, 1024).unwrap(),
        request
    );
    assert!(decode_uni_connect(Format::Json, b"{}", 1).is_err());
}

#[test]
fn empty_map_values_are_still_written() {
    // centrifuge-js reads a map entry without its value as null and fails on server-side
    // subscriptions whose result is empty.
    let result = client::ConnectResult {
        subs: vec![("news".to_string(), client::SubscribeResult::default()).into()],
        ..Default::default()
    };
    let bytes = result.encode_to_vec();
    // field 6 (len) { field 1 "news", field 2 (len 0) }
    assert_eq!(bytes, [0x32, 8, 0x0a, 4, b'n', b'e', b'w', b's', 0x12, 0]);
    assert_eq!(
        serde_json::to_string(&result).unwrap(),
        r#"{"subs":{"news":{}}}"#
    );
    let back: client::ConnectResult =
        serde_json::from_str(r#"{"subs":{"news":{},"x":null}}"#).unwrap();
    assert_eq!(back.subs.len(), 2);
    assert_eq!(back.subs[1].value, Some(client::SubscribeResult::default()));
}
