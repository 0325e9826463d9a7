//! Mesh frames on QUIC streams: a reader that takes whole frames off a stream, and writers that
//! send whatever is queued in one write. quinn costs ~0.1 µs of CPU per 100-byte frame when
//! frames go out together in ~16 KiB chunks and 0.5–4 µs when written one by one, so every
//! long-lived stream has one writer task that drains its queue into a single write.

use bytes::{Bytes, BytesMut};
use prost::Message;
use spindle_proto::DecodeError;
use spindle_proto::mesh::{self, MeshFrame, mesh_frame::Kind};
use thiserror::Error;
use tokio::sync::mpsc;

/// The largest frame a peer may send (a publication with its delta base, or a history page).
pub const MAX_FRAME: usize = 16 << 20;
/// How much a writer joins into one write before it writes.
const WRITE_BATCH: usize = 64 << 10;
/// How much is read while looking for a frame's length prefix.
const PREFIX_CHUNK: usize = 1 << 10;

/// A stream that did not yield a frame.
#[derive(Debug, Error)]
pub enum ReadFrameError {
    #[error("reading the stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("a bad frame: {0}")]
    Decode(#[from] DecodeError),
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("a frame without a message")]
    Empty,
}

/// Takes whole frames off a receiving stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    stream: quinn::RecvStream,
    buffer: BytesMut,
}

impl FrameReader {
    pub(crate) fn new(stream: quinn::RecvStream) -> FrameReader {
        FrameReader {
            stream,
            buffer: BytesMut::new(),
        }
    }

    /// The whole size of the next frame (its length prefix included), read off the stream in
    /// small chunks so that little of the frame is buffered before the caller decides to
    /// take it; `None` when the stream ended cleanly first.
    pub(crate) async fn next_frame_size(&mut self) -> Result<Option<usize>, ReadFrameError> {
        loop {
            // A varint of at most 10 bytes, the last without its continuation bit.
            let prefix = self.buffer.iter().take(10).position(|b| b & 0x80 == 0);
            if let Some(last) = prefix {
                let mut bytes = &self.buffer[..=last];
                let length = prost::encoding::decode_varint(&mut bytes)
                    .map_err(|_| DecodeError::BadLengthPrefix)?;
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                return Ok(Some(length.saturating_add(last + 1)));
            }
            if self.buffer.len() >= 10 {
                return Err(DecodeError::BadLengthPrefix.into());
            }
            match self.stream.read_chunk(PREFIX_CHUNK, true).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.bytes),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(ReadFrameError::Truncated),
            }
        }
    }

    /// The next frame's message; `None` when the stream ended cleanly between frames.
    pub(crate) async fn next(&mut self) -> Result<Option<Kind>, ReadFrameError> {
        loop {
            if let Some(frame) = spindle_proto::mesh::decode_frame(&mut self.buffer, MAX_FRAME)? {
                return frame.kind.map(Some).ok_or(ReadFrameError::Empty);
            }
            match self.stream.read_chunk(WRITE_BATCH, true).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.bytes),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(ReadFrameError::Truncated),
            }
        }
    }
}

/// Appends one message as a length-prefixed frame.
pub(crate) fn put_frame(buffer: &mut BytesMut, kind: Kind) {
    let frame = MeshFrame { kind: Some(kind) };
    let length = frame.encoded_len();
    buffer.reserve(length + 10);
    prost::encoding::encode_varint(length as u64, buffer);
    // Cannot fail: the buffer was grown to fit.
    let _ = frame.encode(buffer);
}

/// One message as a frame.
pub(crate) fn frame(kind: Kind) -> Bytes {
    let mut buffer = BytesMut::new();
    put_frame(&mut buffer, kind);
    buffer.freeze()
}

/// Sends one frame and finishes the stream (a request, an answer, a survey).
pub(crate) async fn send_one(
    stream: &mut quinn::SendStream,
    kind: Kind,
) -> Result<(), quinn::WriteError> {
    stream.write_all(&frame(kind)).await?;
    let _ = stream.finish();
    Ok(())
}

/// Writes the frames queued on `queue` to `stream`, everything queued at once in one write,
/// until the queue closes or the stream fails.
pub(crate) async fn write_frames(mut stream: quinn::SendStream, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch: Vec<Bytes> = Vec::new();
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let mut size = batch[0].len();
        while size < WRITE_BATCH {
            match queue.try_recv() {
                Ok(more) => {
                    size += more.len();
                    batch.push(more);
                }
                Err(_) => break,
            }
        }
        if stream.write_all_chunks(&mut batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = stream.finish();
}

/// An event's frame, encoded once per event and written as is to every edge's lane
/// ([`crate::SharedEvent::frame`]).
pub(crate) fn event_frame(event: &mesh::ChannelEvent) -> Bytes {
    let mut buffer = BytesMut::new();
    put_event(&mut buffer, event);
    buffer.freeze()
}

/// Encodes an event as a frame into `buffer`.
pub(crate) fn put_event(buffer: &mut BytesMut, event: &mesh::ChannelEvent) {
    // The event is shared by every edge; encoding borrows it (no copy of the message itself).
    let length = event.encoded_len();
    let inner =
        length + prost::encoding::key_len(4) + prost::encoding::encoded_len_varint(length as u64);
    buffer.reserve(inner + 10);
    prost::encoding::encode_varint(inner as u64, buffer);
    prost::encoding::encode_key(4, prost::encoding::WireType::LengthDelimited, buffer);
    prost::encoding::encode_varint(length as u64, buffer);
    let _ = event.encode(buffer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_encoded_in_place_is_its_frame() {
        let event = mesh::ChannelEvent {
            channel: "news".into(),
            epoch: "e".into(),
            prev_data: Bytes::from_static(&[1; 300]),
            ..Default::default()
        };
        let mut buffer = BytesMut::new();
        put_event(&mut buffer, &event);
        assert_eq!(buffer.freeze(), frame(Kind::Event(event)));
    }
}
