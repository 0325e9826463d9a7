//! [`ApiError`]: every error the server API answers with, and its HTTP status in transport
//! error mode (docs/protocol.md §6.1). The table test below pins the mapping.

use crate::{HistoryError, PresenceError, PublishError};
use axum::http::StatusCode;
use spindle_hub::channel::ChannelError;
use spindle_hub::codes::ClientError;
use spindle_proto::api;
use std::borrow::Cow;
use std::fmt;

/// An error reply of the server API. Unlike client errors there is no `temporary` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u32,
    pub message: Cow<'static, str>,
}

impl ApiError {
    /// Something on our side failed (broker, edges).
    pub const INTERNAL: ApiError = ApiError::new(100, "internal server error");
    /// The channel's namespace does not exist.
    pub const UNKNOWN_CHANNEL: ApiError = ApiError::new(102, "unknown channel");
    /// Unknown method, or an RPC method nobody serves.
    pub const NOT_FOUND: ApiError = ApiError::new(104, "not found");
    /// A required field is missing or a value is malformed.
    pub const BAD_REQUEST: ApiError = ApiError::new(107, "bad request");
    /// The feature is off for the channel, or not served by this node yet.
    pub const NOT_AVAILABLE: ApiError = ApiError::new(108, "not available");
    /// The history position cannot be served (epoch changed).
    pub const UNRECOVERABLE_POSITION: ApiError = ApiError::new(112, "unrecoverable position");
    /// A concurrent operation is in the way (map pagination).
    pub const CONFLICT: ApiError = ApiError::new(113, "conflict");

    const fn new(code: u32, message: &'static str) -> ApiError {
        ApiError {
            code,
            message: Cow::Borrowed(message),
        }
    }

    /// The HTTP status of this error in transport error mode.
    pub fn http_status(&self) -> StatusCode {
        match self.code {
            102 | 104 => StatusCode::NOT_FOUND,
            107 | 108 => StatusCode::BAD_REQUEST,
            112 => StatusCode::RANGE_NOT_SATISFIABLE,
            113 => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error as the API messages carry it.
    pub fn to_wire(&self) -> api::Error {
        api::Error {
            code: self.code,
            message: self.message.to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<&ChannelError> for ApiError {
    fn from(error: &ChannelError) -> Self {
        match error {
            ChannelError::UnknownNamespace(_) => ApiError::UNKNOWN_CHANNEL,
            ChannelError::Empty | ChannelError::TooLong { .. } | ChannelError::InvalidName => {
                ApiError::BAD_REQUEST
            }
        }
    }
}

impl From<&PublishError> for ApiError {
    fn from(error: &PublishError) -> Self {
        match error {
            PublishError::Channel(channel) => channel.into(),
            PublishError::NotStream | PublishError::BadData(_) => ApiError::BAD_REQUEST,
            PublishError::Broker(_) => ApiError::INTERNAL,
        }
    }
}

impl From<&ClientError> for ApiError {
    /// Same code; the message of the API's own error of that code when it has one.
    fn from(error: &ClientError) -> Self {
        [
            ApiError::INTERNAL,
            ApiError::UNKNOWN_CHANNEL,
            ApiError::NOT_FOUND,
            ApiError::BAD_REQUEST,
            ApiError::NOT_AVAILABLE,
            ApiError::UNRECOVERABLE_POSITION,
            ApiError::CONFLICT,
        ]
        .into_iter()
        .find(|known| known.code == error.code)
        .unwrap_or_else(|| ApiError {
            code: error.code,
            message: error.message.clone(),
        })
    }
}

impl From<&HistoryError> for ApiError {
    fn from(error: &HistoryError) -> Self {
        (&error.client_error()).into()
    }
}

impl From<&PresenceError> for ApiError {
    fn from(error: &PresenceError) -> Self {
        (&error.client_error()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_mode_statuses() {
        let table = [
            (ApiError::INTERNAL, 500),
            (ApiError::UNKNOWN_CHANNEL, 404),
            (ApiError::NOT_FOUND, 404),
            (ApiError::BAD_REQUEST, 400),
            (ApiError::NOT_AVAILABLE, 400),
            (ApiError::UNRECOVERABLE_POSITION, 416),
            (ApiError::CONFLICT, 409),
            (ApiError::new(103, "permission denied"), 500),
            (ApiError::new(1000, "application"), 500),
        ];
        for (error, status) in table {
            assert_eq!(error.http_status().as_u16(), status, "{error}");
        }
    }

    #[test]
    fn codes_and_messages() {
        let table = [
            (ApiError::INTERNAL, 100, "internal server error"),
            (ApiError::UNKNOWN_CHANNEL, 102, "unknown channel"),
            (ApiError::NOT_FOUND, 104, "not found"),
            (ApiError::BAD_REQUEST, 107, "bad request"),
            (ApiError::NOT_AVAILABLE, 108, "not available"),
            (
                ApiError::UNRECOVERABLE_POSITION,
                112,
                "unrecoverable position",
            ),
            (ApiError::CONFLICT, 113, "conflict"),
        ];
        for (error, code, message) in table {
            let wire = error.to_wire();
            assert_eq!((wire.code, wire.message.as_str()), (code, message));
        }
    }

    #[test]
    fn domain_errors_map_to_api_errors() {
        let unknown = ChannelError::UnknownNamespace("x".into());
        assert_eq!(ApiError::from(&unknown), ApiError::UNKNOWN_CHANNEL);
        assert_eq!(
            ApiError::from(&ChannelError::InvalidName),
            ApiError::BAD_REQUEST
        );
        let publish = PublishError::Channel(unknown);
        assert_eq!(ApiError::from(&publish), ApiError::UNKNOWN_CHANNEL);
        assert_eq!(
            ApiError::from(&PublishError::NotStream),
            ApiError::BAD_REQUEST
        );
        use spindle_hub::history::ReadError;
        let table = [
            (HistoryError::NotAvailable, ApiError::NOT_AVAILABLE),
            (
                HistoryError::Read(ReadError::Unrecoverable),
                ApiError::UNRECOVERABLE_POSITION,
            ),
            (
                HistoryError::Read(ReadError::ReverseFromZero),
                ApiError::BAD_REQUEST,
            ),
        ];
        for (error, expected) in table {
            assert_eq!(ApiError::from(&error), expected, "{error}");
        }
        assert_eq!(
            ApiError::from(&PresenceError::NotAvailable),
            ApiError::NOT_AVAILABLE
        );
        assert_eq!(
            ApiError::from(&ClientError::PERMISSION_DENIED),
            ApiError::new(103, "permission denied")
        );
    }
}
