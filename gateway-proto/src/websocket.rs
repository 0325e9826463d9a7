//! RFC 6455 §5 framing, the server's side: headers of the frames we send (never masked) and a
//! decoder of the frames clients send (always masked), reassembling fragmented messages. The
//! edge's WebSocket (`spindle_edge::ws`) reads and writes with it.
//!
//! The decoder is bounded: a message longer than the limit is refused from its header, before
//! its payload is read, so a client cannot make the server buffer more than `limit` bytes plus
//! one frame header. Every rule it enforces maps to a close code in [`Violation`].

use bytes::{Buf, Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Longest header of a server frame: 2 bytes and a 64-bit length.
pub const MAX_HEADER: usize = 10;
/// Longest payload of a control frame (§5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The header of an unmasked, final frame of `opcode` carrying `len` bytes: the buffer and how
/// many of its bytes are the header.
pub fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut head = [0u8; MAX_HEADER];
    head[0] = 0x80 | opcode;
    let used = if len < 126 {
        // Fits the 7-bit length.
        head[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (head, used)
}

/// A whole frame of `opcode` with `payload`, as one buffer (control frames, close frames).
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let (head, used) = header(opcode, payload.len());
    let mut out = Vec::with_capacity(used + payload.len());
    out.extend_from_slice(&head[..used]);
    out.extend_from_slice(payload);
    out.into()
}

/// A close frame with `code` and `reason` (cut to the 123 bytes a control frame leaves, at a
/// character boundary).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(OP_CLOSE, &payload)
}

/// A client's frame (masked with `mask`): what the decoder reads. For tests and the fuzz
/// harness; a server never sends one.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => match u16::try_from(n) {
            Ok(short) => {
                out.push(0x80 | 126);
                out.extend_from_slice(&short.to_be_bytes());
            }
            Err(_) => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        },
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// What a client sent, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message: text (valid UTF-8) or binary.
    Message(Bytes),
    /// A ping, with the payload its pong must echo.
    Ping(Bytes),
    Pong,
    /// A close frame, with its payload (a close code and reason, or nothing) to echo.
    Close(Bytes),
}

/// A client broke the protocol; the connection closes with [`Violation::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A malformed frame: reserved bits, an unknown opcode, no mask, a fragmented or long
    /// control frame, a continuation without a start or a start inside a message.
    Protocol,
    /// A message longer than the limit.
    TooBig,
    /// A text message that is not UTF-8.
    NotUtf8,
}

impl Violation {
    pub fn close_code(self) -> u16 {
        match self {
            Violation::Protocol => 1002,
            Violation::TooBig => 1009,
            Violation::NotUtf8 => 1007,
        }
    }
}

/// Reassembles client frames into [`Event`]s.
#[derive(Debug)]
pub struct Decoder {
    limit: usize,
    /// The fragments so far of a message in progress, and whether it is text.
    partial: Option<(bool, BytesMut)>,
}

/// A parsed frame header.
struct Head {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    len: usize,
    /// Bytes of the header (with the mask key).
    size: usize,
}

impl Decoder {
    /// A decoder refusing messages longer than `limit` bytes.
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            limit,
            partial: None,
        }
    }

    /// Bytes held for a message in progress.
    pub fn holding(&self) -> usize {
        self.partial.as_ref().map_or(0, |(_, data)| data.len())
    }

    /// The next event from the front of `buf`, consuming the frames it took; `None` when
    /// `buf` holds no whole frame yet (nothing consumed then, except whole fragments of a
    /// message in progress).
    #[allow(clippy::should_implement_trait)] // not an iterator: it takes the buffer each time
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Violation> {
        loop {
            let Some(head) = self.head(buf)? else {
                return Ok(None);
            };
            if buf.len() < head.size + head.len {
                return Ok(None);
            }
            buf.advance(head.size);
            let mut payload = buf.split_to(head.len);
            unmask(&mut payload, head.mask);
            match head.opcode {
                OP_PING => return Ok(Some(Event::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Event::Pong)),
                OP_CLOSE => {
                    // A close payload is empty or a code and a UTF-8 reason (§5.5.1).
                    if payload.len() == 1
                        || std::str::from_utf8(payload.get(2..).unwrap_or(&[])).is_err()
                    {
                        return Err(Violation::Protocol);
                    }
                    return Ok(Some(Event::Close(payload.freeze())));
                }
                OP_TEXT | OP_BINARY if head.fin => {
                    return finish(head.opcode == OP_TEXT, payload).map(Some);
                }
                OP_TEXT | OP_BINARY => {
                    self.partial = Some((head.opcode == OP_TEXT, payload));
                }
                _ => {
                    // A continuation (the header check ensures a message is in progress).
                    let Some((text, mut data)) = self.partial.take() else {
                        return Err(Violation::Protocol);
                    };
                    data.unsplit(payload);
                    if head.fin {
                        return finish(text, data).map(Some);
                    }
                    self.partial = Some((text, data));
                }
            }
        }
    }

    /// The header at the front of `buf`, checked against the rules and the limit before any
    /// payload is read.
    fn head(&self, buf: &[u8]) -> Result<Option<Head>, Violation> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
            // Reserved bits (no extension is negotiated), or an unmasked client frame.
            return Err(Violation::Protocol);
        }
        let (len, at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(bytes) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(bytes);
                    (u64::from_be_bytes(be), 10)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(Violation::Protocol);
                }
            }
            OP_TEXT | OP_BINARY if self.partial.is_some() => return Err(Violation::Protocol),
            OP_CONTINUATION if self.partial.is_none() => return Err(Violation::Protocol),
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                if len.saturating_add(self.holding() as u64) > self.limit as u64 {
                    return Err(Violation::TooBig);
                }
            }
            _ => return Err(Violation::Protocol),
        }
        let Some(key) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        let mask = [key[0], key[1], key[2], key[3]];
        // Below the limit (data) or 125 (control): fits in usize.
        let len = usize::try_from(len).map_err(|_| Violation::TooBig)?;
        Ok(Some(Head {
            fin,
            opcode,
            mask,
            len,
            size: at + 4,
        }))
    }
}

/// A whole message: text must be UTF-8.
fn finish(text: bool, data: BytesMut) -> Result<Event, Violation> {
    if text && std::str::from_utf8(&data).is_err() {
        return Err(Violation::NotUtf8);
    }
    Ok(Event::Message(data.freeze()))
}

/// XORs `payload` with the client's masking key (§5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

#[cfg(test)]
mod tests;
