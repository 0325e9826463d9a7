//! Edge ↔ core messages (`mesh.proto`) and their framing: every [`MeshFrame`] travels with a
//! varint length prefix. The in-process link passes the same messages without encoding them.

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/spindle.mesh.v1.rs"));
}
pub use generated::*;

use crate::DecodeError;
use bytes::{Buf, Bytes, BytesMut};
use prost::Message;

/// The mesh protocol version carried in [`Hello`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Encodes a frame with its varint length prefix.
pub fn encode_frame(frame: &MeshFrame) -> Bytes {
    Bytes::from(frame.encode_length_delimited_to_vec())
}

/// Takes one complete frame off the front of `buffer`, if it holds one.
///
/// `Ok(None)` means more bytes are needed. A declared length over `max_frame_size` fails before
/// anything is buffered for it, so a peer cannot make us allocate.
pub fn decode_frame(
    buffer: &mut BytesMut,
    max_frame_size: usize,
) -> Result<Option<MeshFrame>, DecodeError> {
    let mut peek = &buffer[..];
    let declared = match prost::encoding::decode_varint(&mut peek) {
        Ok(length) => length,
        // Fewer than 10 bytes and no terminating byte yet: wait for more.
        Err(_) if buffer.len() < 10 && buffer.iter().all(|b| b & 0x80 != 0) => return Ok(None),
        Err(_) => return Err(DecodeError::BadLengthPrefix),
    };
    let length = usize::try_from(declared).map_err(|_| DecodeError::BadLengthPrefix)?;
    if length > max_frame_size {
        return Err(DecodeError::FrameTooLarge {
            size: length,
            limit: max_frame_size,
        });
    }
    let prefix = buffer.len() - peek.len();
    if peek.len() < length {
        return Ok(None);
    }
    buffer.advance(prefix);
    let body = buffer.split_to(length).freeze();
    MeshFrame::decode(body)
        .map(Some)
        .map_err(|e| DecodeError::Protobuf(e.to_string()))
}
