//! Joining encoded messages into one transport frame (docs/protocol.md §1.2).

use crate::Format;
use bytes::{Bytes, BytesMut};

/// Collects encoded messages (from [`crate::encode_reply`] / [`crate::SharedReply`]) into one
/// frame. Protobuf messages already carry their length prefix and simply concatenate. JSON
/// messages are joined by `\n`: with no trailing newline for message-framed transports
/// (WebSocket), or with a newline after every message for byte streams (HTTP-streaming,
/// WebTransport).
#[derive(Debug)]
pub struct Batch {
    format: Format,
    newline_after_each: bool,
    buffer: BytesMut,
    count: usize,
}

impl Batch {
    /// A batch for a message-framed transport (WebSocket).
    pub fn framed(format: Format) -> Self {
        Batch {
            format,
            newline_after_each: false,
            buffer: BytesMut::new(),
            count: 0,
        }
    }

    /// [`Batch::framed`] with room for `capacity` bytes, so joining known messages does not
    /// reallocate.
    pub fn framed_with_capacity(format: Format, capacity: usize) -> Self {
        Batch {
            buffer: BytesMut::with_capacity(capacity),
            ..Batch::framed(format)
        }
    }

    /// A batch for a byte-stream transport: every JSON message ends with `\n`.
    pub fn streamed(format: Format) -> Self {
        Batch {
            format,
            newline_after_each: true,
            buffer: BytesMut::new(),
            count: 0,
        }
    }

    pub fn push(&mut self, message: &[u8]) {
        if self.format == Format::Json {
            if self.count > 0 && !self.newline_after_each {
                self.buffer.extend_from_slice(b"\n");
            }
            self.buffer.extend_from_slice(message);
            if self.newline_after_each {
                self.buffer.extend_from_slice(b"\n");
            }
        } else {
            self.buffer.extend_from_slice(message);
        }
        self.count += 1;
    }

    /// Bytes the frame will hold (for queue accounting and size limits).
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of messages pushed.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The frame; the batch is empty again afterwards.
    pub fn take(&mut self) -> Bytes {
        self.count = 0;
        self.buffer.split().freeze()
    }
}
