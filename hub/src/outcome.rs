//! The one place where an internal failure becomes what the client sees: an error reply that
//! keeps the connection, or a disconnect. Everything client-facing goes through
//! [`Failure::outcome`], and the table test below pins every row.

use crate::channel::ChannelError;
use crate::codes::{ClientError, Disconnect};
use crate::jwt::TokenError;
use spindle_proto::{DecodeError, EncodeError};

/// Why a command (or the connection) failed, in the domain's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The client's bytes did not decode (docs/protocol.md §1.2).
    Decode(DecodeError),
    /// A payload cannot be sent to this client's format (non-JSON data to a JSON client).
    Encode(EncodeError),
    /// Commands out of order: anything before connect, a second connect, an unexpected pong,
    /// a required field missing where the protocol says disconnect.
    ProtocolViolation,
    Channel(ChannelError),
    /// The connection token failed verification.
    ConnectionToken(TokenError),
    /// A subscription token failed verification.
    SubscriptionToken(TokenError),
    /// The new token of a connection `refresh` failed verification (expired closes the
    /// connection as expired, anything else as an invalid token).
    RefreshToken(TokenError),
    /// The new token of a `sub_refresh` failed verification (expired is an error reply, the
    /// rest closes the connection as an invalid token).
    SubRefreshToken(TokenError),
    /// A valid token names another user, channel or client than this connection's.
    TokenMismatch,
    /// A token with an empty user while `disallow_anonymous_connection_tokens` is set.
    AnonymousTokenDisallowed,
    /// No token and no other way to authenticate.
    NoCredentials,
    PermissionDenied,
    AlreadySubscribed,
    /// A client subscribe over `client.channel_limit`.
    ChannelLimit,
    /// A shared-poll track over `shared_poll.max_keys_per_connection`.
    TrackedKeyLimit,
    /// A shared-poll track batch whose signature was not made for this user, channel and keys.
    TrackSignatureInvalid,
    /// A shared-poll track batch whose signature expired (beyond the grace period).
    TrackSignatureExpired,
    /// Server-side subscriptions at connect over `client.channel_limit`.
    ServerSideChannelLimit,
    /// Over `client.user_connection_limit`.
    UserConnectionLimit,
    /// The feature is off for this channel or connection (history, presence, RPC, proxy).
    NotAvailable,
    MethodNotFound,
    /// A request the protocol rejects with 107 (bad filter, bad data format, bad history
    /// position).
    BadRequest,
    /// A refresh whose new expiry is already past.
    Expired,
    /// The history position cannot be served (epoch changed), or recovery was impossible and
    /// the client asked to be refused rather than told.
    UnrecoverablePosition,
    /// Something on our side failed (broker, link, proxy); the client may retry.
    Internal,
    /// The connection's server-side subscriptions no longer match what the client holds (a
    /// refreshed token with other channels, lost publications on a server-side subscription).
    InsufficientState,
    /// A `send` command: there is no message handler (as in Centrifugo OSS).
    NoMessageHandler,
    /// The application backend decided (a proxy's `error` or `disconnect`, or a failed proxy
    /// call turned into one by the core): passed to the client as is.
    Backend(Outcome),
}

/// What the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An error reply to the command; the connection stays open.
    Error(ClientError),
    /// The connection is closed with this code.
    Disconnect(Disconnect),
}

impl Failure {
    pub fn outcome(&self) -> Outcome {
        use Outcome::{Disconnect as Close, Error};
        match self {
            Failure::Decode(_) | Failure::ProtocolViolation | Failure::NoCredentials => {
                Close(Disconnect::BAD_REQUEST)
            }
            Failure::Encode(EncodeError::PayloadNotJson) => {
                Close(Disconnect::INAPPROPRIATE_PROTOCOL)
            }
            Failure::Channel(ChannelError::Empty) => Close(Disconnect::BAD_REQUEST),
            Failure::Channel(ChannelError::UnknownNamespace(_)) => {
                Error(ClientError::UNKNOWN_CHANNEL)
            }
            Failure::Channel(ChannelError::TooLong { .. } | ChannelError::InvalidName) => {
                Error(ClientError::BAD_REQUEST)
            }
            Failure::ConnectionToken(TokenError::Expired)
            | Failure::SubscriptionToken(TokenError::Expired)
            | Failure::SubRefreshToken(TokenError::Expired) => Error(ClientError::TOKEN_EXPIRED),
            Failure::RefreshToken(TokenError::Expired) => Close(Disconnect::EXPIRED),
            Failure::ConnectionToken(_)
            | Failure::RefreshToken(_)
            | Failure::SubRefreshToken(_)
            | Failure::TokenMismatch => Close(Disconnect::INVALID_TOKEN),
            Failure::SubscriptionToken(_) | Failure::PermissionDenied => {
                Error(ClientError::PERMISSION_DENIED)
            }
            Failure::AnonymousTokenDisallowed => Close(Disconnect::PERMISSION_DENIED),
            Failure::AlreadySubscribed => Error(ClientError::ALREADY_SUBSCRIBED),
            Failure::ChannelLimit | Failure::TrackedKeyLimit => Error(ClientError::LIMIT_EXCEEDED),
            Failure::TrackSignatureInvalid => Error(ClientError::PERMISSION_DENIED),
            Failure::TrackSignatureExpired => Error(ClientError::TOKEN_EXPIRED),
            Failure::ServerSideChannelLimit => Close(Disconnect::CHANNEL_LIMIT),
            Failure::UserConnectionLimit => Close(Disconnect::CONNECTION_LIMIT),
            Failure::NotAvailable => Error(ClientError::NOT_AVAILABLE),
            Failure::MethodNotFound => Error(ClientError::METHOD_NOT_FOUND),
            Failure::BadRequest => Error(ClientError::BAD_REQUEST),
            Failure::Expired => Error(ClientError::EXPIRED),
            Failure::UnrecoverablePosition => Error(ClientError::UNRECOVERABLE_POSITION),
            Failure::Internal => Error(ClientError::INTERNAL),
            Failure::InsufficientState => Close(Disconnect::INSUFFICIENT_STATE),
            Failure::NoMessageHandler => Close(Disconnect::NOT_AVAILABLE),
            Failure::Backend(outcome) => outcome.clone(),
        }
    }
}

impl From<DecodeError> for Failure {
    fn from(error: DecodeError) -> Self {
        Failure::Decode(error)
    }
}

impl From<EncodeError> for Failure {
    fn from(error: EncodeError) -> Self {
        Failure::Encode(error)
    }
}

impl From<ChannelError> for Failure {
    fn from(error: ChannelError) -> Self {
        Failure::Channel(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (failure, error code or disconnect code, is a disconnect)
    fn table() -> Vec<(Failure, u32, bool)> {
        vec![
            (Failure::Decode(DecodeError::EmptyFrame), 3501, true),
            (
                Failure::Decode(DecodeError::NoRequest { id: 3 }),
                3501,
                true,
            ),
            (Failure::Encode(EncodeError::PayloadNotJson), 3506, true),
            (Failure::ProtocolViolation, 3501, true),
            (Failure::NoCredentials, 3501, true),
            (Failure::Channel(ChannelError::Empty), 3501, true),
            (
                Failure::Channel(ChannelError::UnknownNamespace("x".into())),
                102,
                false,
            ),
            (
                Failure::Channel(ChannelError::TooLong {
                    length: 300,
                    max: 255,
                }),
                107,
                false,
            ),
            (Failure::Channel(ChannelError::InvalidName), 107, false),
            (Failure::ConnectionToken(TokenError::Expired), 109, false),
            (
                Failure::ConnectionToken(TokenError::BadSignature),
                3500,
                true,
            ),
            (Failure::ConnectionToken(TokenError::Malformed), 3500, true),
            (Failure::ConnectionToken(TokenError::NoKey), 3500, true),
            (
                Failure::ConnectionToken(TokenError::UnsupportedAlgorithm("none".into())),
                3500,
                true,
            ),
            (
                Failure::ConnectionToken(TokenError::InvalidClaims("aud".into())),
                3500,
                true,
            ),
            (Failure::SubscriptionToken(TokenError::Expired), 109, false),
            (
                Failure::SubscriptionToken(TokenError::BadSignature),
                103,
                false,
            ),
            (
                Failure::SubscriptionToken(TokenError::InvalidClaims("channel".into())),
                103,
                false,
            ),
            (Failure::RefreshToken(TokenError::Expired), 3005, true),
            (Failure::RefreshToken(TokenError::BadSignature), 3500, true),
            (Failure::RefreshToken(TokenError::Malformed), 3500, true),
            (Failure::SubRefreshToken(TokenError::Expired), 109, false),
            (
                Failure::SubRefreshToken(TokenError::BadSignature),
                3500,
                true,
            ),
            (
                Failure::SubRefreshToken(TokenError::InvalidClaims("channel".into())),
                3500,
                true,
            ),
            (Failure::TokenMismatch, 3500, true),
            (Failure::AnonymousTokenDisallowed, 3507, true),
            (Failure::PermissionDenied, 103, false),
            (Failure::AlreadySubscribed, 105, false),
            (Failure::ChannelLimit, 106, false),
            (Failure::TrackedKeyLimit, 106, false),
            (Failure::TrackSignatureInvalid, 103, false),
            (Failure::TrackSignatureExpired, 109, false),
            (Failure::ServerSideChannelLimit, 3505, true),
            (Failure::UserConnectionLimit, 3504, true),
            (Failure::NotAvailable, 108, false),
            (Failure::MethodNotFound, 104, false),
            (Failure::BadRequest, 107, false),
            (Failure::Expired, 110, false),
            (Failure::UnrecoverablePosition, 112, false),
            (Failure::Internal, 100, false),
            (Failure::InsufficientState, 3010, true),
            (Failure::NoMessageHandler, 3508, true),
            (
                Failure::Backend(Outcome::Error(ClientError {
                    code: 1000,
                    message: "backend".into(),
                    temporary: false,
                })),
                1000,
                false,
            ),
            (
                Failure::Backend(Outcome::Disconnect(Disconnect::custom(4500, "bye"))),
                4500,
                true,
            ),
        ]
    }

    #[test]
    fn every_failure_maps_to_its_protocol_code() {
        for (failure, code, disconnects) in table() {
            let (got_code, got_disconnect) = match failure.outcome() {
                Outcome::Error(error) => (error.code, false),
                Outcome::Disconnect(disconnect) => (disconnect.code, true),
            };
            assert_eq!(
                (got_code, got_disconnect),
                (code, disconnects),
                "{failure:?}"
            );
        }
    }

    #[test]
    fn only_internal_errors_are_temporary() {
        for (failure, _, _) in table() {
            if let Outcome::Error(error) = failure.outcome() {
                assert_eq!(error.temporary, failure == Failure::Internal, "{failure:?}");
            }
        }
    }
}
