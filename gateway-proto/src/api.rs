//! The server API's messages (`api.proto`, Centrifugo's `centrifugal.centrifugo.api`) and their
//! JSON codec. The HTTP API speaks JSON with the client protocol's rules (raw-JSON payloads,
//! zero values omitted, a few fields always present); gRPC speaks the same messages as Protobuf.

#[allow(missing_docs, clippy::all, missing_debug_implementations)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.api.rs"));
}
pub use generated::*;

use crate::{DecodeError, EncodeError};
use serde::{Serialize, de::DeserializeOwned};

/// Decodes one API request body. A literal `null` body reads as the empty request.
pub fn decode_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, DecodeError> {
    let value: Option<T> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(value.unwrap_or_default())
}

/// Encodes one API response.
pub fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>, EncodeError> {
    serde_json::to_vec(value).map_err(|_| EncodeError::PayloadNotJson)
}
