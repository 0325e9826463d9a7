//! The WebSocket opening handshake (RFC 6455 §4.2), the server's side: the checks on the
//! upgrade request and the `101 Switching Protocols` answer. The rules and refusals are
//! axum's (`WebSocketUpgrade`), so a client sees the same answers on either path: a method
//! other than GET 405, anything else missing or wrong 400.

use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A valid upgrade request: what the answer needs.
#[derive(Debug)]
pub struct Upgrade {
    accept: HeaderValue,
    /// The first of the server's subprotocols the client offered.
    pub protocol: Option<&'static str>,
}

/// Why an upgrade request was refused, as its HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MethodNotGet,
    BadRequest,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
        }
    }
}

/// Checks an HTTP/1.1 upgrade request; `offered` are the server's subprotocols in preference
/// order.
pub fn check(
    method: &Method,
    headers: &HeaderMap,
    offered: &[&'static str],
) -> Result<Upgrade, Refusal> {
    if method != Method::GET {
        return Err(Refusal::MethodNotGet);
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    if !has_token(header::CONNECTION, "upgrade")
        || !has_token(header::UPGRADE, "websocket")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
    {
        return Err(Refusal::BadRequest);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or(Refusal::BadRequest)?;
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| Refusal::BadRequest)?;
    let requested = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok());
    let protocol = requested.and_then(|requested| {
        offered
            .iter()
            .copied()
            .find(|offer| requested.split(',').any(|asked| asked.trim() == *offer))
    });
    Ok(Upgrade { accept, protocol })
}

impl Upgrade {
    /// The `101 Switching Protocols` answer.
    pub fn response<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept.clone());
        if let Some(protocol) = self.protocol {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const OFFERED: [&str; 2] = ["centrifuge-json", "centrifuge-protobuf"];

    #[test]
    fn accepts_the_rfc_example_and_picks_the_servers_first_protocol() {
        let headers = request(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (
                "sec-websocket-protocol",
                "centrifuge-protobuf, centrifuge-json",
            ),
        ]);
        let upgrade = check(&Method::GET, &headers, &OFFERED).unwrap();
        assert_eq!(upgrade.protocol, Some("centrifuge-json"));
        let response: Response<()> = upgrade.response();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455 §1.3's example.
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn refusals() {
        let good = [
            ("connection", "upgrade"),
            ("upgrade", "WebSocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        assert!(check(&Method::GET, &request(&good), &OFFERED).is_ok());
        assert_eq!(
            check(&Method::POST, &request(&good), &OFFERED).unwrap_err(),
            Refusal::MethodNotGet
        );
        for skip in 0..good.len() {
            let partial: Vec<_> = good
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, pair)| *pair)
                .collect();
            assert_eq!(
                check(&Method::GET, &request(&partial), &OFFERED).unwrap_err(),
                Refusal::BadRequest,
                "without {}",
                good[skip].0
            );
        }
        let mut old = good;
        old[2] = ("sec-websocket-version", "8");
        assert_eq!(
            check(&Method::GET, &request(&old), &OFFERED).unwrap_err(),
            Refusal::BadRequest
        );
    }
}
