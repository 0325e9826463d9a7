//! Replies → bytes in their per-message wire form: JSON text (no newline; [`crate::Batch`] adds
//! separators) or Protobuf with its varint length prefix. Both forms concatenate into frames
//! without re-encoding, so one encoded push serves every receiver.

use crate::{EncodeError, Format, client};
use bytes::Bytes;
use prost::Message;
use std::sync::OnceLock;

/// Encodes one reply (or push, or ping: the empty reply) for `format`.
pub fn encode_reply(format: Format, reply: &client::Reply) -> Result<Bytes, EncodeError> {
    match format {
        Format::Json => serde_json::to_vec(reply)
            .map(Bytes::from)
            .map_err(|_| EncodeError::PayloadNotJson),
        Format::Protobuf => Ok(Bytes::from(reply.encode_length_delimited_to_vec())),
    }
}

/// A reply sent to many connections — a publication, join or leave push — encoded at most once
/// per format, on first use, and shared as `Bytes` from then on.
#[derive(Debug)]
pub struct SharedReply {
    reply: client::Reply,
    json: OnceLock<Result<Bytes, EncodeError>>,
    protobuf: OnceLock<Result<Bytes, EncodeError>>,
}

impl SharedReply {
    pub fn new(reply: client::Reply) -> Self {
        SharedReply {
            reply,
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
        }
    }

    /// A push for `channel`.
    pub fn push(push: client::Push) -> Self {
        Self::new(client::Reply {
            push: Some(push),
            ..Default::default()
        })
    }

    pub fn reply(&self) -> &client::Reply {
        &self.reply
    }

    /// The encoded bytes for `format`; a cheap clone after the first call.
    pub fn encoded(&self, format: Format) -> Result<Bytes, EncodeError> {
        let cell = match format {
            Format::Json => &self.json,
            Format::Protobuf => &self.protobuf,
        };
        cell.get_or_init(|| encode_reply(format, &self.reply))
            .clone()
    }
}
