//! The client-facing vocabulary of failure (docs/protocol.md §3): command error replies,
//! disconnects and server unsubscribes, with their reconnect semantics.

use spindle_proto::client;
use std::borrow::Cow;

/// An error reply to one command; the connection stays open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    pub code: u32,
    pub message: Cow<'static, str>,
    /// The SDK may retry (connect: reconnect; subscribe: resubscribe).
    pub temporary: bool,
}

macro_rules! client_errors {
    ($($name:ident = $code:literal, $message:literal, $temporary:literal;)*) => {
        impl ClientError {
            $(pub const $name: ClientError =
                ClientError { code: $code, message: Cow::Borrowed($message), temporary: $temporary };)*
        }
    };
}

client_errors! {
    INTERNAL = 100, "internal server error", true;
    UNAUTHORIZED = 101, "unauthorized", false;
    UNKNOWN_CHANNEL = 102, "unknown channel", false;
    PERMISSION_DENIED = 103, "permission denied", false;
    METHOD_NOT_FOUND = 104, "method not found", false;
    ALREADY_SUBSCRIBED = 105, "already subscribed", false;
    LIMIT_EXCEEDED = 106, "limit exceeded", false;
    BAD_REQUEST = 107, "bad request", false;
    NOT_AVAILABLE = 108, "not available", false;
    TOKEN_EXPIRED = 109, "token expired", false;
    EXPIRED = 110, "expired", false;
    TOO_MANY_REQUESTS = 111, "too many requests", true;
    UNRECOVERABLE_POSITION = 112, "unrecoverable position", false;
    CONCURRENT_PAGINATION = 113, "concurrent pagination", true;
}

impl From<&ClientError> for client::Error {
    fn from(error: &ClientError) -> Self {
        client::Error {
            code: error.code,
            message: error.message.to_string(),
            temporary: error.temporary,
        }
    }
}

/// The end of a connection, with the code and reason the client sees (a WebSocket close frame,
/// or a disconnect push on other transports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u32,
    /// ASCII, at most 123 bytes (the WebSocket close frame limit).
    pub reason: Cow<'static, str>,
}

macro_rules! disconnects {
    ($($name:ident = $code:literal, $reason:literal;)*) => {
        impl Disconnect {
            $(pub const $name: Disconnect = Disconnect { code: $code, reason: Cow::Borrowed($reason) };)*
        }
    };
}

disconnects! {
    CONNECTION_CLOSED = 3000, "connection closed";
    SHUTDOWN = 3001, "shutdown";
    SERVER_ERROR = 3004, "internal server error";
    EXPIRED = 3005, "connection expired";
    SUBSCRIPTION_EXPIRED = 3006, "subscription expired";
    SLOW = 3008, "slow";
    WRITE_ERROR = 3009, "write error";
    INSUFFICIENT_STATE = 3010, "insufficient state";
    FORCE_RECONNECT = 3011, "force reconnect";
    NO_PONG = 3012, "no pong";
    TOO_MANY_REQUESTS = 3013, "too many requests";
    STATE_INVALIDATED = 3014, "state invalidated";
    INVALID_TOKEN = 3500, "invalid token";
    BAD_REQUEST = 3501, "bad request";
    STALE = 3502, "stale";
    FORCE_NO_RECONNECT = 3503, "force disconnect";
    CONNECTION_LIMIT = 3504, "connection limit";
    CHANNEL_LIMIT = 3505, "channel limit";
    INAPPROPRIATE_PROTOCOL = 3506, "inappropriate protocol";
    PERMISSION_DENIED = 3507, "permission denied";
    NOT_AVAILABLE = 3508, "not available";
    TOO_MANY_ERRORS = 3509, "too many errors";
}

impl Disconnect {
    /// Whether SDKs reconnect after it: not for 3500–3999 and 4500–4999; yes for 3000–3499,
    /// 4000–4499 and ≥ 5000 (docs/protocol.md §3.2).
    pub fn reconnect(&self) -> bool {
        !matches!(self.code, 3500..=3999 | 4500..=4999)
    }

    /// A disconnect chosen by the application (API or proxy): codes 4000–4999 and the reason
    /// cut to what a close frame can carry.
    pub fn custom(code: u32, reason: &str) -> Disconnect {
        Disconnect {
            code,
            reason: Cow::Owned(close_reason(reason)),
        }
    }

    pub fn to_push(&self) -> client::Disconnect {
        client::Disconnect {
            code: self.code,
            reason: self.reason.to_string(),
            reconnect: false,
        }
    }
}

/// Keeps the printable ASCII of `reason`, at most 123 bytes.
fn close_reason(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .take(123)
        .collect()
}

/// Why the server ended one subscription (an unsubscribe push).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    pub code: u32,
    pub reason: Cow<'static, str>,
}

macro_rules! unsubscribes {
    ($($name:ident = $code:literal, $reason:literal;)*) => {
        impl Unsubscribe {
            $(pub const $name: Unsubscribe = Unsubscribe { code: $code, reason: Cow::Borrowed($reason) };)*
        }
    };
}

unsubscribes! {
    CLIENT = 0, "client unsubscribed";
    DISCONNECT = 1, "client disconnected";
    SERVER = 2000, "server unsubscribe";
    INSUFFICIENT_STATE = 2500, "insufficient state";
    EXPIRED = 2501, "subscription expired";
    STATE_INVALIDATED = 2502, "state invalidated";
}

impl Unsubscribe {
    /// Whether SDKs resubscribe after it: codes ≥ 2500 (docs/protocol.md §3.3).
    pub fn resubscribe(&self) -> bool {
        self.code >= 2500
    }

    /// Codes below 2000 are internal and never pushed to a client.
    pub fn is_sent_to_client(&self) -> bool {
        self.code >= 2000
    }

    pub fn to_push(&self) -> client::Unsubscribe {
        client::Unsubscribe {
            code: self.code,
            reason: self.reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_follows_the_code_ranges() {
        let table = [
            (3000, true),
            (3012, true),
            (3499, true),
            (3500, false),
            (3999, false),
            (4000, true),
            (4499, true),
            (4500, false),
            (4999, false),
            (5000, true),
        ];
        for (code, reconnect) in table {
            assert_eq!(
                Disconnect::custom(code, "r").reconnect(),
                reconnect,
                "{code}"
            );
        }
        assert!(!Disconnect::BAD_REQUEST.reconnect());
        assert!(Disconnect::SLOW.reconnect());
    }

    #[test]
    fn custom_reasons_fit_a_close_frame() {
        let long = "é".repeat(10) + &"x".repeat(200) + "\n";
        let disconnect = Disconnect::custom(4001, &long);
        assert_eq!(disconnect.reason.len(), 123);
        assert!(disconnect.reason.chars().all(|c| c == 'x'));
    }

    #[test]
    fn unsubscribe_semantics() {
        assert!(!Unsubscribe::SERVER.resubscribe());
        assert!(Unsubscribe::INSUFFICIENT_STATE.resubscribe());
        assert!(!Unsubscribe::CLIENT.is_sent_to_client());
        assert_eq!(Unsubscribe::EXPIRED.to_push().code, 2501);
    }

    #[test]
    fn errors_convert_to_the_wire() {
        let wire = client::Error::from(&ClientError::INTERNAL);
        assert_eq!(
            (wire.code, wire.message.as_str(), wire.temporary),
            (100, "internal server error", true)
        );
    }
}
