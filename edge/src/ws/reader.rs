//! The read side of a socket-mode WebSocket: bytes in, [`Incoming`] out.
//!
//! The read buffer exists only while bytes are arriving: the loop waits for readability with
//! no buffer, reads what is there, and lets the buffer go once every whole message in it is
//! handed on — an idle connection holds none. A ping is answered with a pong and a close with
//! the echo of its code, both through the outbox (in order with everything else written).

use crate::socket::Incoming;
use crate::writer::Outbox;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use spindle_proto::websocket::{self as frame, Decoder, Event, Violation};
use std::sync::Arc;
use tokio::net::tcp::OwnedReadHalf;

struct Reader {
    socket: OwnedReadHalf,
    /// Bytes asked of the socket per read (`websocket.read_buffer_size`).
    chunk: usize,
    buf: BytesMut,
    decoder: Decoder,
    outbox: Arc<Outbox>,
    /// The stream has ended (a close, a violation, an error or the end of the socket).
    done: bool,
}

/// What the client sends on `socket`, after `already_read` (bytes that came with the upgrade
/// request), reading `chunk` bytes at a time; messages longer than `limit` end it with
/// [`Incoming::TooBig`].
pub(crate) fn incoming(
    socket: OwnedReadHalf,
    already_read: Bytes,
    limit: usize,
    chunk: usize,
    outbox: Arc<Outbox>,
) -> impl Stream<Item = Incoming> + Unpin + Send {
    let reader = Reader {
        socket,
        chunk: chunk.max(1),
        buf: BytesMut::from(&already_read[..]),
        decoder: Decoder::new(limit),
        outbox,
        done: false,
    };
    // Fused: the connection polls again after the end (while waiting for the client's close).
    Box::pin(futures_util::stream::unfold(
        reader,
        |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        },
    ))
    .fuse()
}

impl Reader {
    async fn next(&mut self) -> Option<Incoming> {
        if self.done {
            return None;
        }
        loop {
            match self.decoder.next(&mut self.buf) {
                Ok(Some(event)) => {
                    if self.buf.is_empty() {
                        // Whole messages handed on share the old allocation; nothing else
                        // keeps it.
                        self.buf = BytesMut::new();
                    }
                    return Some(self.on_event(event));
                }
                Ok(None) => {}
                Err(violation) => {
                    self.done = true;
                    return Some(match violation {
                        Violation::TooBig => Incoming::TooBig,
                        other => Incoming::Violation(other.close_code()),
                    });
                }
            }
            if self.socket.readable().await.is_err() {
                self.done = true;
                return Some(Incoming::Failed);
            }
            self.buf.reserve(self.chunk);
            match self.socket.try_read_buf(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.done = true;
                    return Some(Incoming::Failed);
                }
            }
        }
    }

    fn on_event(&mut self, event: Event) -> Incoming {
        match event {
            Event::Message(data) => Incoming::Data(data),
            Event::Ping(payload) => {
                self.outbox.control(frame::frame(frame::OP_PONG, &payload));
                Incoming::Activity
            }
            Event::Pong => Incoming::Activity,
            Event::Close(payload) => {
                // Echo the code (RFC 6455 §5.5.1); the connection then ends with
                // `CONNECTION_CLOSED`, whose writer writes only what is owed, this included.
                self.outbox.control(frame::frame(
                    frame::OP_CLOSE,
                    payload.get(..2).unwrap_or(&[]),
                ));
                self.done = true;
                Incoming::Close
            }
        }
    }
}
