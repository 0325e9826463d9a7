//! What changes for unidirectional transports (docs/protocol.md §1.7): the client's one message is
//! a bare `ConnectRequest`; the connect result goes out as a `connect` push; a refused connect
//! becomes a disconnect; pings expect no pong. Stripping the Reply envelope off pushes is the
//! transport adapter's job (`crate::unidirectional`), since fan-out shares encoded replies.

use super::Connection;
use bytes::Bytes;
use spindle_hub::codes::{ClientError, Disconnect};
use spindle_hub::config::Config;
use spindle_proto::{Command, Request, client, decode_uni_connect};
use std::borrow::Cow;

impl Connection {
    /// The uni client's one message: its connect request. Anything after connect is ignored.
    pub(super) async fn on_uni_frame(&mut self, frame: Bytes) {
        if self.session.is_connected() {
            return;
        }
        let limit = self.shared.limits.message_size;
        match decode_uni_connect(self.setup.format, &frame, limit) {
            Ok(request) => {
                let command = Command {
                    id: 1,
                    request: Request::Connect(request),
                };
                self.on_command(command).await;
            }
            Err(_) => self.close(Disconnect::BAD_REQUEST),
        }
    }

    /// A refused uni connect: remembered for `connect_code_to_http_response`, then closed with
    /// the disconnect the error maps to.
    pub(super) fn fail_uni(&mut self, error: &ClientError) {
        if let Some(uni) = &self.setup.uni {
            let _ = uni.set(error.code);
        }
        let disconnect = uni_disconnect(&self.shared.config, error.code);
        self.close(disconnect);
    }
}

/// The connect result as the `connect` push of a uni transport.
pub(super) fn connect_push(result: client::ConnectResult) -> client::Reply {
    client::Reply {
        push: Some(client::Push {
            connect: Some(client::Connect {
                client: result.client,
                version: result.version,
                data: result.data,
                subs: result.subs,
                expires: result.expires,
                ttl: result.ttl,
                ping: result.ping,
                pong: false,
                session: result.session,
                node: result.node,
                time: result.time,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The disconnect a connect error becomes on a uni transport: the configured transform, else
/// 109/110 → 3005, 111 → 3013, 103 → 3507, anything else → 3004.
pub(crate) fn uni_disconnect(config: &Config, code: u32) -> Disconnect {
    let transforms = &config.client.connect_code_to_unidirectional_disconnect;
    if transforms.enabled
        && let Some(transform) = transforms
            .transforms
            .iter()
            .find(|transform| transform.code == code && transform.to.code != 0)
    {
        return Disconnect {
            code: transform.to.code,
            reason: Cow::Owned(transform.to.reason.clone()),
        };
    }
    match code {
        109 | 110 => Disconnect::EXPIRED,
        111 => Disconnect::TOO_MANY_REQUESTS,
        103 => Disconnect::PERMISSION_DENIED,
        _ => Disconnect::SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_hub::config::{TransformDisconnect, UniDisconnectTransform};

    #[test]
    fn connect_errors_map_to_disconnects() {
        let mut config = Config::default();
        assert_eq!(uni_disconnect(&config, 109).code, 3005);
        assert_eq!(uni_disconnect(&config, 110).code, 3005);
        assert_eq!(uni_disconnect(&config, 111).code, 3013);
        assert_eq!(uni_disconnect(&config, 103).code, 3507);
        assert_eq!(uni_disconnect(&config, 100).code, 3004);
        let transforms = &mut config.client.connect_code_to_unidirectional_disconnect;
        transforms.enabled = true;
        transforms.transforms.push(UniDisconnectTransform {
            code: 103,
            to: TransformDisconnect {
                code: 4403,
                reason: "nope".into(),
            },
        });
        let mapped = uni_disconnect(&config, 103);
        assert_eq!((mapped.code, &*mapped.reason), (4403, "nope"));
        assert_eq!(uni_disconnect(&config, 109).code, 3005);
    }
}
