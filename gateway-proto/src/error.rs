//! Typed failures of decoding and encoding. The session maps every [`DecodeError`] of a client
//! frame to disconnect 3501 (bad request) and [`EncodeError::PayloadNotJson`] to 3506.

use thiserror::Error;

/// Why bytes from the network could not be turned into messages.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("empty frame")]
    EmptyFrame,
    #[error("empty line in JSON frame")]
    EmptyLine,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    #[error("truncated or invalid varint length prefix")]
    BadLengthPrefix,
    #[error("length prefix of {declared} bytes but only {available} bytes left in frame")]
    TruncatedMessage { declared: u64, available: usize },
    #[error("command {id} carries no request")]
    NoRequest { id: u32 },
}

/// Why a message could not be encoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A payload (`data`, `info`, ...) is not valid JSON, so a JSON client cannot receive it
    /// (disconnect 3506, inappropriate protocol).
    #[error("payload is not valid JSON")]
    PayloadNotJson,
}
