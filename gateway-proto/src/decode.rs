//! Client frames → commands, lazily and in order, so a session can stop reading a frame
//! midway (after a connect error) and a bad command late in a frame does not undo the earlier
//! ones.

use crate::{Command, DecodeError, Format, client};
use prost::Message;

/// Decodes the commands of one client frame (docs/protocol.md §1.2).
///
/// JSON: commands separated by exactly one `\n`, at most one trailing `\n`, no empty lines.
/// Protobuf: each command prefixed by its varint length; a zero length is an empty command (a
/// pong). A frame with no command at all, or over `max_frame_size`, is an error.
pub fn decode_commands(
    format: Format,
    frame: &[u8],
    max_frame_size: usize,
) -> Result<CommandDecoder<'_>, DecodeError> {
    if frame.len() > max_frame_size {
        return Err(DecodeError::FrameTooLarge {
            size: frame.len(),
            limit: max_frame_size,
        });
    }
    if frame.is_empty() {
        return Err(DecodeError::EmptyFrame);
    }
    let rest = match format {
        Format::Json => frame.strip_suffix(b"\n").unwrap_or(frame),
        Format::Protobuf => frame,
    };
    if rest.is_empty() {
        return Err(DecodeError::EmptyFrame);
    }
    Ok(CommandDecoder {
        format,
        rest,
        failed: false,
    })
}

/// Iterator over the commands of a frame. After the first error it yields nothing more.
#[derive(Debug)]
pub struct CommandDecoder<'a> {
    format: Format,
    rest: &'a [u8],
    failed: bool,
}

impl Iterator for CommandDecoder<'_> {
    type Item = Result<Command, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let raw = match self.format {
            Format::Json => self.next_json(),
            Format::Protobuf => self.next_protobuf(),
        };
        let command = raw.and_then(Command::try_from);
        self.failed = command.is_err();
        Some(command)
    }
}

impl<'a> CommandDecoder<'a> {
    fn next_json(&mut self) -> Result<client::Command, DecodeError> {
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&self.rest[..at], &self.rest[at + 1..]),
            None => (self.rest, &[][..]),
        };
        // A separator right at the end means the frame ended in an empty line.
        if line.is_empty() || (rest.is_empty() && self.rest.len() > line.len()) {
            return Err(DecodeError::EmptyLine);
        }
        self.rest = rest;
        decode_json(line)
    }

    fn next_protobuf(&mut self) -> Result<client::Command, DecodeError> {
        let message = split_length_prefixed(&mut self.rest)?;
        client::Command::decode(message).map_err(|e| DecodeError::Protobuf(e.to_string()))
    }
}

fn decode_json<T: serde::de::DeserializeOwned + Default>(text: &[u8]) -> Result<T, DecodeError> {
    let value: Option<T> =
        serde_json::from_slice(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(value.unwrap_or_default())
}

/// Takes one varint-length-prefixed message off the front of `rest`, never reading past it.
pub(crate) fn split_length_prefixed<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let mut cursor = *rest;
    let declared =
        prost::encoding::decode_varint(&mut cursor).map_err(|_| DecodeError::BadLengthPrefix)?;
    let length = usize::try_from(declared)
        .ok()
        .filter(|&length| length <= cursor.len())
        .ok_or(DecodeError::TruncatedMessage {
            declared,
            available: cursor.len(),
        })?;
    let (message, tail) = cursor.split_at(length);
    *rest = tail;
    Ok(message)
}

/// Decodes the one `ConnectRequest` a unidirectional client sends (docs/protocol.md §1.7): JSON text
/// (`null` or empty = the empty request) or a bare Protobuf message.
pub fn decode_uni_connect(
    format: Format,
    bytes: &[u8],
    max_size: usize,
) -> Result<client::ConnectRequest, DecodeError> {
    if bytes.len() > max_size {
        return Err(DecodeError::FrameTooLarge {
            size: bytes.len(),
            limit: max_size,
        });
    }
    match format {
        Format::Json if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Default::default()),
        Format::Json => decode_json(bytes),
        Format::Protobuf => {
            client::ConnectRequest::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))
        }
    }
}
