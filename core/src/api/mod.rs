//! The server HTTP API (docs/protocol.md §6): what the application backend calls to publish,
//! broadcast and manage connections.
//!
//! Routes, under `http_api.handler_prefix` (default `/api`):
//! - `POST <prefix>/<method>`: the method's JSON request → `{"result":{...}}` or
//!   `{"error":{"code","message"}}` with HTTP 200; in transport error mode (config
//!   `http_api.error_mode: transport` or header `X-Centrifugo-Error-Mode: transport`) an error is
//!   the bare error object with the status of [`ApiError::http_status`]. `batch` answers
//!   `{"replies":[...]}` and never uses transport mode. An unknown method is 404.
//! - `POST <prefix>`: the legacy route (see `legacy`).
//!
//! Every request first passes the key check: header `X-API-Key: <key>`, else header
//! `Authorization: apikey <key>` (scheme in any case, exactly two words); when neither header
//! authorized, the `api_key` query parameter. A failure is 401 with an empty body; with an empty
//! `http_api.key` every request fails unless `http_api.insecure` is set.
//!
//! Other statuses: a method other than POST is 405; a body that does not decode is 400
//! (`Bad Request`, plain text); a body over [`MAX_BODY_SIZE`] is 413.

mod batch;
mod call;
mod error;
mod legacy;
mod map_methods;
mod methods;

pub use batch::BATCH_CONCURRENCY;
pub use error::ApiError;

use crate::Node;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use call::{Call, Method, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use spindle_hub::config::ErrorMode;
use spindle_proto::api;
use std::sync::Arc;

/// Largest request body accepted: 10 MiB. Centrifugo reads API bodies without a limit; one is
/// needed (DESIGN §6), and this one is far above what publish payloads use.
pub const MAX_BODY_SIZE: usize = 10 * 1024 * 1024;

/// The header that asks for transport error mode on one request.
pub const ERROR_MODE_HEADER: &str = "x-centrifugo-error-mode";

#[derive(Debug)]
struct ApiState {
    node: Node,
    /// `None` when `http_api.insecure`: no check.
    key: Option<String>,
    transport_errors: bool,
}

impl Node {
    /// The server HTTP API as a router to merge into the server's: `POST <prefix>` (legacy) and
    /// `POST <prefix>/<method>`, with key auth, both error modes and the body limit. An empty
    /// router when `http_api.disabled`.
    pub fn api_router(&self) -> Router {
        let config = &self.config().http_api;
        if config.disabled {
            return Router::new();
        }
        self.start_sweeping();
        let state = Arc::new(ApiState {
            node: self.clone(),
            key: (!config.insecure).then(|| config.key.expose().to_owned()),
            transport_errors: config.error_mode == ErrorMode::Transport,
        });
        let base = config.handler_prefix.trim_end_matches('/');
        let legacy_path = if base.is_empty() { "/" } else { base };
        Router::new()
            .route(legacy_path, post(legacy_route))
            .route(&format!("{base}/{{method}}"), post(method_route))
            .layer(middleware::from_fn_with_state(state.clone(), authorize))
            .layer(DefaultBodyLimit::max(MAX_BODY_SIZE))
            .with_state(state)
    }
}

#[derive(Deserialize)]
struct KeyQuery {
    api_key: Option<String>,
}

async fn authorize(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if !authorized(&state, &request) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(request).await
}

fn authorized(state: &ApiState, request: &Request) -> bool {
    let Some(key) = &state.key else {
        return true;
    };
    let query_key = || {
        Query::<KeyQuery>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(q)| q.api_key)
    };
    !key.is_empty()
        && (header_key_matches(request.headers(), key)
            || query_key().is_some_and(|given| same_secret(&given, key)))
}

/// The key from `X-API-Key`, or else from `Authorization: apikey <key>`.
fn header_key_matches(headers: &HeaderMap, key: &str) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let x_api_key = text("x-api-key");
    if !x_api_key.is_empty() {
        return same_secret(x_api_key, key);
    }
    let mut words = text(header::AUTHORIZATION.as_str()).split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(scheme), Some(given), None) if scheme.eq_ignore_ascii_case("apikey") => {
            same_secret(given, key)
        }
        _ => false,
    }
}

/// Compares in time independent of where the strings differ.
fn same_secret(given: &str, key: &str) -> bool {
    let (given, key) = (given.as_bytes(), key.as_bytes());
    let mut diff = given.len() ^ key.len();
    for (i, k) in key.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ k);
    }
    diff == 0
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn bad_request() -> Response {
    (StatusCode::BAD_REQUEST, "Bad Request").into_response()
}

fn internal_error() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<api::Error>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a RawValue>,
}

impl<'a> From<&'a Outcome> for Envelope<'a> {
    fn from(outcome: &'a Outcome) -> Self {
        match outcome {
            Ok(result) => Envelope {
                error: None,
                result: Some(result),
            },
            Err(error) => Envelope {
                error: Some(error.to_wire()),
                result: None,
            },
        }
    }
}

async fn method_route(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if name == "batch" {
        let Ok(batch) = batch::BatchBody::decode(&body) else {
            return bad_request();
        };
        return match batch::run(&state.node, batch).await {
            Ok(encoded) => json_response(StatusCode::OK, encoded),
            Err(_) => internal_error(),
        };
    }
    let Some(method) = Method::from_route(&name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(call) = Call::decode(method, &body) else {
        return bad_request();
    };
    let outcome = call.run(&state.node).await;
    if let Err(error) = &outcome {
        let transport = state.transport_errors
            || headers
                .get(ERROR_MODE_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|mode| mode.trim().eq_ignore_ascii_case("transport"));
        if transport {
            return match serde_json::to_vec(&error.to_wire()) {
                Ok(encoded) => json_response(error.http_status(), encoded),
                Err(_) => internal_error(),
            };
        }
    }
    match serde_json::to_vec(&Envelope::from(&outcome)) {
        Ok(encoded) => json_response(StatusCode::OK, encoded),
        Err(_) => internal_error(),
    }
}

async fn legacy_route(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    match legacy::run(&state.node, &body).await {
        Ok(encoded) => json_response(StatusCode::OK, encoded),
        Err(legacy::BadBody) => bad_request(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn header_keys() {
        let table: &[(&[(&'static str, &str)], bool)] = &[
            (&[("x-api-key", "k")], true),
            (&[("x-api-key", "bad")], false),
            (
                &[("x-api-key", "bad"), ("authorization", "apikey k")],
                false,
            ),
            (&[("authorization", "apikey k")], true),
            (&[("authorization", "ApiKey k")], true),
            (&[("authorization", "APIKEY   k ")], true),
            (&[("authorization", "bearer k")], false),
            (&[("authorization", "apikey k extra")], false),
            (&[("authorization", "apikey")], false),
            (&[("authorization", "k")], false),
            (&[], false),
        ];
        for (pairs, expected) in table {
            assert_eq!(
                header_key_matches(&headers(pairs), "k"),
                *expected,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("key", "key"));
        assert!(!same_secret("ke", "key"));
        assert!(!same_secret("keyy", "key"));
        assert!(!same_secret("kez", "key"));
        assert!(!same_secret("", "key"));
    }
}
