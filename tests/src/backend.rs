//! A test application backend answering Centrifugo's HTTP proxy protocol (docs/protocol.md §8), run
//! in-process on 127.0.0.1:0 by the tests that need one.
//!
//! One route per proxy kind (`POST /connect`, `/refresh`, `/subscribe`, `/publish`,
//! `/sub_refresh`, `/rpc`, and `/named/<kind>` for named proxies). What it answers is chosen by
//! the request, so one backend serves every scenario:
//! - connect: by `data.mode` — `"user"` (result with `data.user`, info, data, channels, meta,
//!   `data.expire_in` seconds), `"none"` (no result), `"error"`, `"disconnect"`, `"slow"`
//!   (sleeps past the 1 s default timeout), `"500"`;
//! - subscribe / publish / sub_refresh: by words in the channel — `denied` (error 103 / 1403),
//!   `disconnect` (4502), `slow`, `500`, `rewrite` (publish data replaced), `none` (empty
//!   answer), `expire` (sub_refresh: expired), anything else allowed;
//! - rpc: by method — `echo`, `error`, `disconnect`, `slow`, `500`, `teapot` (HTTP 418);
//! - refresh: by user — `refresh-expire` answers expired, others get 60 s more.
//!
//! Every request (path, headers, JSON body) is recorded for [`Backend::requests`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::{Error, Result, fixture};

/// How long "slow" answers take: past the default 1 s proxy timeout.
pub const SLOW: Duration = Duration::from_millis(1600);

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The route, e.g. `connect` or `named/subscribe`.
    pub path: String,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Value,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running test backend; stops when dropped.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Starts the backend on a free port.
    pub async fn start() -> Result<Backend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::new(format!("backend bind: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(format!("backend address: {e}")))?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/{kind}", post(answer))
            .route("/named/{kind}", post(answer_named))
            .with_state(received.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Backend {
            addr,
            received,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every request received so far on `path`, in order.
    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .map(|r| r.iter().filter(|r| r.path == path).cloned().collect())
            .unwrap_or_default()
    }

    /// The config patch pointing every proxy kind at this backend (the `px` namespace with the
    /// subscribe, publish and sub_refresh proxies, `named` using a named binary-encoding
    /// proxy, rpc without namespace proxied, `rpc.ping` on, connect and refresh proxies on).
    pub fn config_patch(&self) -> Value {
        json!({
            "client": {
                "proxy": {
                    "connect": {"enabled": true, "endpoint": self.url("connect"),
                                "emulated_headers": ["X-Emulated"],
                                "http": {"static_headers": {"X-Static": "static-value"}}},
                    "refresh": {"enabled": true, "endpoint": self.url("refresh"),
                                "include_connection_meta": true}
                }
            },
            "channel": {
                "proxy": {
                    "subscribe": {"endpoint": self.url("subscribe"), "include_connection_meta": true},
                    "publish": {"endpoint": self.url("publish")},
                    "sub_refresh": {"endpoint": self.url("sub_refresh")}
                },
                "namespaces": [
                    {"name": "chat", "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true},
                    {"name": "px", "subscribe_proxy_enabled": true, "publish_proxy_enabled": true,
                     "sub_refresh_proxy_enabled": true,
                     "history_size": 10, "history_ttl": "60s"},
                    {"name": "named", "subscribe_proxy_enabled": true, "subscribe_proxy_name": "bin"}
                ]
            },
            "proxies": [
                {"name": "bin", "endpoint": self.url("named/subscribe"), "binary_encoding": true}
            ],
            "rpc": {
                "proxy": {"endpoint": self.url("rpc"),
                          "http": {"status_to_code_transforms": [
                              {"status_code": 418, "to_error": {"code": 1418, "message": "teapot"}}]}},
                "without_namespace": {"proxy_enabled": true},
                "namespaces": [{"name": "off"}],
                "ping": {"enabled": true}
            }
        })
    }
}

async fn answer_named(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(received, format!("named/{kind}"), &kind, headers, body).await
}

async fn answer(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(received, kind.clone(), &kind, headers, body).await
}

async fn respond(
    received: Arc<Mutex<Vec<Received>>>,
    path: String,
    kind: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Ok(mut all) = received.lock() {
        all.push(Received {
            path,
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: body.clone(),
        });
    }
    let selector = match kind {
        "connect" => body["data"]["mode"].as_str().unwrap_or("none").to_owned(),
        "rpc" => body["method"].as_str().unwrap_or("").to_owned(),
        "refresh" => body["user"].as_str().unwrap_or("").to_owned(),
        _ => body["channel"].as_str().unwrap_or("").to_owned(),
    };
    if selector.contains("slow") {
        tokio::time::sleep(SLOW).await;
    }
    if selector.contains("500") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    if selector.contains("teapot") {
        return (StatusCode::IM_A_TEAPOT, "teapot").into_response();
    }
    if selector.contains("disconnect") {
        return axum::Json(json!({"disconnect": {"code": 4502, "reason": "backend says bye"}}))
            .into_response();
    }
    let answer = match kind {
        "connect" => connect_answer(&selector, &body),
        "subscribe" => subscribe_answer(&selector, &body),
        "publish" => publish_answer(&selector, &body),
        "rpc" => rpc_answer(&selector, &body),
        "refresh" if selector == "refresh-expire" => json!({"result": {"expired": true}}),
        "refresh" => json!({"result": {"expire_at": fixture::unix_now() + 60,
                                       "info": {"refreshed": true}}}),
        "sub_refresh" if selector.contains("expire") => json!({"result": {"expired": true}}),
        "sub_refresh" => json!({"result": {"expire_at": fixture::unix_now() + 60}}),
        _ => json!({}),
    };
    axum::Json(answer).into_response()
}

fn connect_answer(mode: &str, body: &Value) -> Value {
    let data = &body["data"];
    match mode {
        "user" => {
            let mut result = json!({
                "user": data["user"],
                "info": {"name": data["user"]},
                "data": {"welcome": data["user"]},
                "meta": {"tenant": "t1"},
            });
            if let Some(channels) = data.get("channels") {
                result["channels"] = channels.clone();
            }
            if let Some(seconds) = data["expire_in"].as_i64() {
                result["expire_at"] = json!(fixture::unix_now() + seconds);
            }
            json!({"result": result})
        }
        "error" => json!({"error": {"code": 1000, "message": "backend refuses"}}),
        _ => json!({}),
    }
}

fn subscribe_answer(channel: &str, body: &Value) -> Value {
    if channel.contains("denied") {
        return json!({"error": {"code": 103, "message": "permission denied"}});
    }
    if channel.contains("none") {
        return json!({});
    }
    let mut result = json!({
        "info": {"channel_info": true},
        "data": {"hello": body["user"]},
    });
    if channel.contains("expire") || channel.contains("keep") {
        result["expire_at"] = json!(fixture::unix_now() + 1);
    }
    json!({"result": result})
}

fn publish_answer(channel: &str, body: &Value) -> Value {
    if channel.contains("denied") {
        return json!({"error": {"code": 1403, "message": "not allowed"}});
    }
    if channel.contains("rewrite") {
        return json!({"result": {"data": {"rewritten": true, "original": body["data"]}}});
    }
    json!({})
}

fn rpc_answer(method: &str, body: &Value) -> Value {
    match method {
        "error" => json!({"error": {"code": 1500, "message": "rpc failed", "temporary": true}}),
        _ => json!({"result": {"data": {"echo": body["data"], "user": body["user"],
                                        "method": method}}}),
    }
}
