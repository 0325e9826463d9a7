//! What the publisher sends and how a subscriber finds it again without decoding.
//!
//! A payload is compact JSON, `{"sb":[<sent µs>,<seq>],"p":"xxxx…"}`, padded to the requested
//! size. Both encodings carry publication data verbatim (JSON embeds it raw, Protobuf as
//! `bytes`), so a subscriber only has to split a frame into messages by the transport's rules
//! (docs/protocol.md §1.2) and look for the `"sb":[` marker in each; an empty message is a server
//! ping. Nothing is parsed or allocated per message.

use spindle_proto::Format;
use std::io::Write as _;

/// The bytes that open the timestamp/sequence pair; unique in every frame we receive.
const MARKER: &[u8] = b"\"sb\":[";

/// Appends a payload of (at least) `size` bytes carrying `sent_micros` and `seq` to `out`:
/// exactly `size` unless `size` is below the unpadded form (about 20 bytes).
pub fn write_payload(out: &mut Vec<u8>, size: usize, sent_micros: u64, seq: u64) {
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"sb\":[{sent_micros},{seq}]");
    const PAD_OVERHEAD: usize = ",\"p\":\"\"".len();
    let used = out.len() - start + 1; // + the closing brace
    if size >= used + PAD_OVERHEAD {
        out.extend_from_slice(b",\"p\":\"");
        out.resize(out.len() + (size - used - PAD_OVERHEAD), b'x');
        out.push(b'"');
    }
    out.push(b'}');
}

/// One message of a received frame, as far as the benchmark cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// An empty reply: answer with a pong.
    Ping,
    /// A publication made by this benchmark.
    Publication { sent_micros: u64, seq: u64 },
    /// Anything else (a reply, another push).
    Other,
}

/// The frame is not valid transport framing for its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFrame;

/// Splits `frame` into messages by `format`'s batching rules and reports each to `each`.
pub fn scan_frame(
    format: Format,
    frame: &[u8],
    mut each: impl FnMut(Item),
) -> Result<(), BadFrame> {
    match format {
        Format::Json => {
            for line in frame.split(|&b| b == b'\n') {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                each(classify(line, line == b"{}"));
            }
        }
        Format::Protobuf => {
            let mut rest = frame;
            while !rest.is_empty() {
                let (len, used) = varint(rest).ok_or(BadFrame)?;
                rest = &rest[used..];
                let len = usize::try_from(len).map_err(|_| BadFrame)?;
                let message = rest.get(..len).ok_or(BadFrame)?;
                rest = &rest[len..];
                each(classify(message, len == 0));
            }
        }
    }
    Ok(())
}

/// What one message is: a ping when `empty` (the transport's empty message), else a
/// publication if it carries a stamp.
pub fn classify(message: &[u8], empty: bool) -> Item {
    if empty {
        return Item::Ping;
    }
    match find_stamp(message) {
        Some((sent_micros, seq)) => Item::Publication { sent_micros, seq },
        None => Item::Other,
    }
}

/// The `(sent µs, seq)` pair of the first payload in `message`, if any.
pub fn find_stamp(message: &[u8]) -> Option<(u64, u64)> {
    let at = message
        .windows(MARKER.len())
        .position(|window| window == MARKER)?;
    let rest = &message[at + MARKER.len()..];
    let (sent, rest) = number(rest)?;
    let rest = rest.strip_prefix(b",")?;
    let (seq, rest) = number(rest)?;
    rest.starts_with(b"]").then_some((sent, seq))
}

/// A decimal u64 at the start of `bytes` and what follows it.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let value = bytes[..digits]
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some((value, &bytes[digits..]))
}

/// An unsigned LEB128 varint: its value and length in bytes.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use spindle_proto::client::{Publication, Push, Reply};
    use spindle_proto::encode_reply;

    fn payload(size: usize, sent: u64, seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_payload(&mut out, size, sent, seq);
        out
    }

    fn publication(data: &[u8]) -> Reply {
        Reply {
            push: Some(Push {
                channel: "bench".into(),
                r#pub: Some(Publication {
                    data: data.to_vec().into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn payload_is_json_of_the_requested_size() {
        for size in [0, 10, 24, 27, 28, 128, 1000] {
            let p = payload(size, 1_234_567, 42);
            let value: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(value["sb"], serde_json::json!([1_234_567, 42]));
            let unpadded = br#"{"sb":[1234567,42]}"#.len();
            if size >= unpadded + 7 {
                assert_eq!(p.len(), size, "size {size}");
            } else {
                assert_eq!(p.len(), unpadded, "size {size}");
            }
        }
    }

    #[test]
    fn finds_the_stamp_in_a_payload_and_rejects_lookalikes() {
        assert_eq!(find_stamp(&payload(128, 99, 7)), Some((99, 7)));
        assert_eq!(find_stamp(br#"{"sb":[1,2]}"#), Some((1, 2)));
        assert_eq!(find_stamp(br#"{"sb":[1 ,2]}"#), None);
        assert_eq!(find_stamp(br#"{"sb":[,2]}"#), None);
        assert_eq!(find_stamp(br#"{"sb":[1,2"#), None);
        assert_eq!(find_stamp(br#"{"sb":[99999999999999999999,2]}"#), None);
        assert_eq!(find_stamp(b"{}"), None);
    }

    #[test]
    fn scans_a_batched_json_frame() {
        let mut frame = Vec::new();
        frame.extend_from_slice(
            &encode_reply(Format::Json, &publication(&payload(64, 5, 1))).unwrap(),
        );
        frame.push(b'\n');
        frame.extend_from_slice(b"{}");
        frame.push(b'\n');
        frame.extend_from_slice(br#"{"id":2,"subscribe":{}}"#);
        frame.push(b'\n');
        frame.extend_from_slice(
            &encode_reply(Format::Json, &publication(&payload(64, 6, 2))).unwrap(),
        );
        let mut items = Vec::new();
        scan_frame(Format::Json, &frame, |item| items.push(item)).unwrap();
        assert_eq!(
            items,
            [
                Item::Publication {
                    sent_micros: 5,
                    seq: 1
                },
                Item::Ping,
                Item::Other,
                Item::Publication {
                    sent_micros: 6,
                    seq: 2
                },
            ]
        );
    }

    #[test]
    fn scans_a_batched_protobuf_frame() {
        let mut frame = Vec::new();
        for seq in 0..3 {
            let reply = publication(&payload(300, 1000 + seq, seq));
            frame.extend_from_slice(&encode_reply(Format::Protobuf, &reply).unwrap());
        }
        frame.push(0); // a ping
        Reply {
            id: 1,
            ..Default::default()
        }
        .encode_length_delimited(&mut frame)
        .unwrap();
        let mut items = Vec::new();
        scan_frame(Format::Protobuf, &frame, |item| items.push(item)).unwrap();
        assert_eq!(
            items,
            [
                Item::Publication {
                    sent_micros: 1000,
                    seq: 0
                },
                Item::Publication {
                    sent_micros: 1001,
                    seq: 1
                },
                Item::Publication {
                    sent_micros: 1002,
                    seq: 2
                },
                Item::Ping,
                Item::Other,
            ]
        );
    }

    #[test]
    fn rejects_truncated_protobuf_frames() {
        assert_eq!(
            scan_frame(Format::Protobuf, &[5, 1, 2], |_| {}),
            Err(BadFrame)
        );
        assert_eq!(scan_frame(Format::Protobuf, &[0x80], |_| {}), Err(BadFrame));
        assert_eq!(scan_frame(Format::Protobuf, &[0], |_| {}), Ok(()));
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0]), Some((0, 1)));
        assert_eq!(varint(&[0xac, 0x02]), Some((300, 2)));
        assert_eq!(varint(&[0xff; 11]), None);
    }
}
