//! The protocols a fan-out subscriber can speak, so one generator measures Spindle and its peers
//! in the same run (docs/benchmarks.md, "Side by side"):
//!
//! - [`Wire::Centrifugo`]: Spindle's client protocol (Centrifugo v6), JSON or Protobuf;
//! - [`Wire::Plain`]: a plain WebSocket server that sends each payload as one message and
//!   subscribes a connection to the channel named by its URL path (`bench/peers/uws-fanout.mjs`,
//!   uWebSockets.js);
//! - [`Wire::Nats`]: NATS' text protocol over WebSocket (nats-server's `websocket` listener):
//!   `CONNECT` + `SUB`, then `MSG` lines with the payload, `PING` answered with `PONG`.
//!
//! Each finds the payload's stamp without decoding ([`crate::payload::find_stamp`]).

use crate::payload::{BadFrame, Item, classify, scan_frame};
use spindle_proto::Format;

/// Longest NATS message kept while waiting for the rest of it in the next frame.
const NATS_CARRY_LIMIT: usize = 1 << 20;

/// How a subscriber talks to the server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Centrifugo(Format),
    Plain,
    Nats,
}

impl Wire {
    /// `json`, `protobuf`, `plain` or `nats`, for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Wire::Centrifugo(format) => format.as_str(),
            Wire::Plain => "plain WebSocket",
            Wire::Nats => "NATS-over-WebSocket",
        }
    }

    /// The answer to one server ping, if this protocol has application-level pings.
    pub fn pong(self) -> Option<&'static [u8]> {
        match self {
            Wire::Centrifugo(Format::Json) => Some(b"{}"),
            Wire::Centrifugo(Format::Protobuf) => Some(b"\0"),
            Wire::Nats => Some(b"PONG\r\n"),
            // WebSocket-level pings are answered by the WebSocket library.
            Wire::Plain => None,
        }
    }
}

/// Splits received frames into messages, keeping what a protocol may split across frames
/// (NATS) until the rest arrives.
#[derive(Debug)]
pub struct Scanner {
    wire: Wire,
    /// The start of a NATS message whose end is in a later frame.
    carry: Vec<u8>,
}

impl Scanner {
    pub fn new(wire: Wire) -> Scanner {
        Scanner {
            wire,
            carry: Vec::new(),
        }
    }

    /// Reports every complete message of `frame` (and of what earlier frames left) to `each`.
    pub fn scan(&mut self, frame: &[u8], each: impl FnMut(Item)) -> Result<(), BadFrame> {
        match self.wire {
            Wire::Centrifugo(format) => scan_frame(format, frame, each),
            Wire::Plain => {
                if !frame.is_empty() {
                    let mut each = each;
                    each(classify(frame, false));
                }
                Ok(())
            }
            Wire::Nats => {
                if self.carry.is_empty() {
                    let used = scan_nats(frame, each)?;
                    self.keep(&frame[used..])
                } else {
                    let mut joined = std::mem::take(&mut self.carry);
                    joined.extend_from_slice(frame);
                    let used = scan_nats(&joined, each)?;
                    joined.drain(..used);
                    self.carry = joined;
                    self.check_carry()
                }
            }
        }
    }

    fn keep(&mut self, rest: &[u8]) -> Result<(), BadFrame> {
        self.carry.extend_from_slice(rest);
        self.check_carry()
    }

    fn check_carry(&self) -> Result<(), BadFrame> {
        if self.carry.len() > NATS_CARRY_LIMIT {
            return Err(BadFrame);
        }
        Ok(())
    }
}

/// Reports the complete NATS protocol messages at the start of `bytes`; returns how many bytes
/// they took (the rest is the start of a message continued in the next frame).
fn scan_nats(bytes: &[u8], mut each: impl FnMut(Item)) -> Result<usize, BadFrame> {
    let mut used = 0;
    loop {
        let rest = &bytes[used..];
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(used);
        };
        let line = &rest[..line_end];
        if let Some(header) = line.strip_prefix(b"MSG ") {
            // `MSG <subject> <sid> [reply-to] <#bytes>`
            let length = header
                .rsplit(|&b| b == b' ')
                .next()
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or(BadFrame)?;
            let payload_start = line_end + 2;
            let Some(payload) = rest.get(payload_start..payload_start + length) else {
                return Ok(used);
            };
            match rest.get(payload_start + length..payload_start + length + 2) {
                Some(b"\r\n") => {}
                Some(_) => return Err(BadFrame),
                None => return Ok(used),
            }
            each(classify(payload, false));
            used += payload_start + length + 2;
        } else {
            each(if line == b"PING" {
                Item::Ping
            } else {
                // PONG, +OK, INFO, -ERR: not publications.
                Item::Other
            });
            used += line_end + 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::write_payload;

    fn msg(sent: u64, seq: u64) -> Vec<u8> {
        let mut payload = Vec::new();
        write_payload(&mut payload, 64, sent, seq);
        let mut out = format!("MSG bench-fanout-0 1 {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(&payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn scan_all(scanner: &mut Scanner, frames: &[&[u8]]) -> Vec<Item> {
        let mut items = Vec::new();
        for frame in frames {
            scanner.scan(frame, |item| items.push(item)).unwrap();
        }
        items
    }

    #[test]
    fn nats_messages_pings_and_split_frames() {
        let mut stream = msg(10, 0);
        stream.extend_from_slice(b"PING\r\n");
        stream.extend_from_slice(&msg(11, 1));
        stream.extend_from_slice(b"+OK\r\n");
        let expected = vec![
            Item::Publication {
                sent_micros: 10,
                seq: 0,
            },
            Item::Ping,
            Item::Publication {
                sent_micros: 11,
                seq: 1,
            },
            Item::Other,
        ];
        assert_eq!(
            scan_all(&mut Scanner::new(Wire::Nats), &[&stream]),
            expected
        );
        // The same bytes cut at every position into two frames.
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            let mut scanner = Scanner::new(Wire::Nats);
            assert_eq!(scan_all(&mut scanner, &[a, b]), expected, "cut at {cut}");
            assert!(scanner.carry.is_empty());
        }
    }

    #[test]
    fn nats_garbage_is_a_bad_frame_and_the_carry_is_bounded() {
        let mut scanner = Scanner::new(Wire::Nats);
        assert_eq!(scanner.scan(b"MSG a 1 x\r\n", |_| {}), Err(BadFrame));
        let mut scanner = Scanner::new(Wire::Nats);
        assert_eq!(scanner.scan(b"MSG a 1 2\r\nabcd", |_| {}), Err(BadFrame));
        let mut scanner = Scanner::new(Wire::Nats);
        let big = vec![b'x'; NATS_CARRY_LIMIT + 1];
        assert_eq!(scanner.scan(&big, |_| {}), Err(BadFrame));
    }

    #[test]
    fn a_plain_frame_is_one_payload() {
        let mut payload = Vec::new();
        write_payload(&mut payload, 64, 5, 9);
        let items = scan_all(&mut Scanner::new(Wire::Plain), &[&payload, b""]);
        assert_eq!(
            items,
            [Item::Publication {
                sent_micros: 5,
                seq: 9
            }]
        );
    }
}
