//! Small decisions the edge makes itself: the disconnect an API `disconnect` command means.
//! (Client RPC routing lives in the hub: `SessionRules::route_rpc`.)

use spindle_hub::codes::Disconnect;
use spindle_mesh::mesh;

/// Codes whose reason is known when the API gives none.
const KNOWN: [Disconnect; 22] = [
    Disconnect::CONNECTION_CLOSED,
    Disconnect::SHUTDOWN,
    Disconnect::SERVER_ERROR,
    Disconnect::EXPIRED,
    Disconnect::SUBSCRIPTION_EXPIRED,
    Disconnect::SLOW,
    Disconnect::WRITE_ERROR,
    Disconnect::INSUFFICIENT_STATE,
    Disconnect::FORCE_RECONNECT,
    Disconnect::NO_PONG,
    Disconnect::TOO_MANY_REQUESTS,
    Disconnect::STATE_INVALIDATED,
    Disconnect::INVALID_TOKEN,
    Disconnect::BAD_REQUEST,
    Disconnect::STALE,
    Disconnect::FORCE_NO_RECONNECT,
    Disconnect::CONNECTION_LIMIT,
    Disconnect::CHANNEL_LIMIT,
    Disconnect::INAPPROPRIATE_PROTOCOL,
    Disconnect::PERMISSION_DENIED,
    Disconnect::NOT_AVAILABLE,
    Disconnect::TOO_MANY_ERRORS,
];

/// The disconnect of an API `disconnect`: code 0 means 3503 `force disconnect`; an empty
/// reason takes the code's own reason (or `"disconnect"` for application codes).
pub(crate) fn disconnect_of(command: &mesh::DisconnectCommand) -> Disconnect {
    if command.code == 0 {
        return Disconnect::FORCE_NO_RECONNECT;
    }
    if command.reason.is_empty() {
        return KNOWN
            .iter()
            .find(|known| known.code == command.code)
            .cloned()
            .unwrap_or_else(|| Disconnect::custom(command.code, "disconnect"));
    }
    Disconnect::custom(command.code, &command.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_disconnects() {
        let default = mesh::DisconnectCommand::default();
        assert_eq!(disconnect_of(&default), Disconnect::FORCE_NO_RECONNECT);
        let known = mesh::DisconnectCommand {
            code: 3011,
            ..Default::default()
        };
        assert_eq!(disconnect_of(&known), Disconnect::FORCE_RECONNECT);
        let custom = mesh::DisconnectCommand {
            code: 4001,
            reason: "bye".into(),
            ..Default::default()
        };
        assert_eq!(disconnect_of(&custom), Disconnect::custom(4001, "bye"));
        let bare = mesh::DisconnectCommand {
            code: 4500,
            ..Default::default()
        };
        assert_eq!(disconnect_of(&bare).reason, "disconnect");
    }
}
