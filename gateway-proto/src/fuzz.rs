//! Harnesses shared by the `cargo fuzz` targets (`fuzz/`) and the stable test that replays
//! their corpus on every CI run. Each takes arbitrary bytes, must never panic, and checks that
//! whatever decodes re-encodes to something that decodes to the same value.

use crate::{Format, api, client, decode_commands, decode_uni_connect, encode_reply, mesh};
use bytes::BytesMut;
use prost::Message;

/// The size limit the harnesses decode under (the default client frame limit).
const LIMIT: usize = crate::DEFAULT_MAX_FRAME_SIZE;

/// A client frame in `format`, through the command decoder; every command that decodes is
/// re-encoded and decoded again (a bad command does not stop the ones after it: the session
/// answers each on its own).
pub fn client_frame(format: Format, data: &[u8]) {
    let Ok(commands) = decode_commands(format, data, LIMIT) else {
        return;
    };
    for command in commands.into_iter().flatten() {
        round_trip(format, &client::Command::from(command));
    }
}

/// `message` encoded in `format` decodes to itself. Payloads were captured as valid JSON, so a
/// decoded message always re-encodes.
fn round_trip<M>(format: Format, message: &M)
where
    M: Message
        + Default
        + PartialEq
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let again = match format {
        Format::Json => {
            let Ok(text) = serde_json::to_vec(message) else {
                panic!("a decoded message failed to re-encode: {message:?}")
            };
            serde_json::from_slice::<M>(&text).expect("re-decode")
        }
        Format::Protobuf => M::decode(message.encode_to_vec().as_slice()).expect("re-decode"),
    };
    assert_eq!(&again, message);
}

/// A server reply as a client would decode it (the SDK side), then encoded by us: it encodes,
/// and the encoding is a normal form (decoded and encoded again, the same bytes).
pub fn reply(format: Format, data: &[u8]) {
    let Some(reply) = decode_reply(format, data) else {
        return;
    };
    let encoded = encode_reply(format, &reply).expect("a decoded reply re-encodes");
    let again = decode_reply(format, &encoded).expect("our encoding decodes");
    assert_eq!(
        encode_reply(format, &again).expect("re-encode"),
        encoded,
        "an encoded reply changes when decoded and encoded again"
    );
}

fn decode_reply(format: Format, data: &[u8]) -> Option<client::Reply> {
    match format {
        Format::Json => serde_json::from_slice(data).ok(),
        // On the wire (encode_reply) a Protobuf reply carries its varint length.
        Format::Protobuf => client::Reply::decode_length_delimited(data).ok(),
    }
}

/// An HTTP API request body.
pub fn api_request(data: &[u8]) {
    if let Ok(batch) = api::decode_json::<api::BatchRequest>(data) {
        let text = api::encode_json(&batch).expect("decoded API request re-encodes");
        let again = api::decode_json::<api::BatchRequest>(&text).expect("re-decode");
        // Raw JSON payloads are written compactly, so the input's own whitespace is not kept:
        // the first encoding is the normal form, and it must survive a round trip exactly.
        assert_eq!(
            api::encode_json(&again).expect("re-encode"),
            text,
            "an encoded API request changes when decoded and encoded again"
        );
    }
    let _ = api::decode_json::<api::PublishRequest>(data);
    let _ = api::decode_json::<api::SubscribeRequest>(data);
}

/// A stream of mesh frames, fed in two arbitrary chunks.
pub fn mesh_stream(data: &[u8]) {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut buffer = BytesMut::from(&data[..split]);
    let mut rest = &data[split..];
    loop {
        match mesh::decode_frame(&mut buffer, LIMIT) {
            Ok(Some(frame)) => {
                let mut again = BytesMut::from(&mesh::encode_frame(&frame)[..]);
                assert_eq!(mesh::decode_frame(&mut again, LIMIT), Ok(Some(frame)));
            }
            Ok(None) if !rest.is_empty() => {
                buffer.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A stream of client WebSocket frames, fed in two arbitrary chunks: never a panic, never more
/// held than the limit; every event re-encoded as a client frame decodes to itself.
pub fn websocket_frames(data: &[u8]) {
    use crate::websocket::{self, Decoder, Event};
    const WS_LIMIT: usize = 4096;
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut buffer = BytesMut::from(&data[..split]);
    let mut rest = &data[split..];
    let mut decoder = Decoder::new(WS_LIMIT);
    loop {
        assert!(
            decoder.holding() <= WS_LIMIT,
            "the decoder held more than its limit"
        );
        match decoder.next(&mut buffer) {
            Ok(Some(event)) => {
                let (opcode, payload) = match &event {
                    Event::Message(data) => (websocket::OP_BINARY, data.clone()),
                    Event::Ping(data) => (websocket::OP_PING, data.clone()),
                    Event::Pong => (websocket::OP_PONG, bytes::Bytes::new()),
                    Event::Close(data) => (websocket::OP_CLOSE, data.clone()),
                };
                let mut again = BytesMut::from(
                    &websocket::client_frame(true, opcode, &payload, [1, 2, 3, 4])[..],
                );
                assert_eq!(Decoder::new(WS_LIMIT).next(&mut again), Ok(Some(event)));
            }
            Ok(None) if !rest.is_empty() => {
                buffer.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// A unidirectional connect request and an emulation request; what decodes round-trips.
pub fn uni_connect(data: &[u8]) {
    for format in Format::ALL {
        if let Ok(request) = decode_uni_connect(format, data, LIMIT) {
            round_trip(format, &request);
        }
    }
    if let Ok(request) = serde_json::from_slice::<client::EmulationRequest>(data) {
        round_trip(Format::Json, &request);
    }
    if let Ok(request) = client::EmulationRequest::decode(data) {
        round_trip(Format::Protobuf, &request);
    }
}

/// Every harness, for corpus replay: which one a corpus directory belongs to.
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "json_commands" => |d| client_frame(Format::Json, d),
        "protobuf_commands" => |d| client_frame(Format::Protobuf, d),
        "json_reply" => |d| reply(Format::Json, d),
        "protobuf_reply" => |d| reply(Format::Protobuf, d),
        "api_request" => api_request,
        "mesh_stream" => mesh_stream,
        "uni_connect" => uni_connect,
        "websocket_frames" => websocket_frames,
        _ => return None,
    })
}

/// The names of all harnesses (one fuzz target each).
pub const TARGETS: &[&str] = &[
    "json_commands",
    "protobuf_commands",
    "json_reply",
    "protobuf_reply",
    "api_request",
    "mesh_stream",
    "uni_connect",
    "websocket_frames",
];
