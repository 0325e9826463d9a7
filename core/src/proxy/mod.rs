//! Proxies to the application backend (docs/protocol.md §7.4, §8): the core asks the backend on an
//! edge's behalf (edges send a `mesh::ProxyRequest` over the link) and answers with the kind's
//! response.
//!
//! [`Proxies::call`] never fails: a backend that cannot be asked (no such proxy, gRPC endpoint,
//! network error, timeout, a status other than 200, a body that is not the expected JSON)
//! becomes the response's `error` — 100 "internal server error", temporary, as Centrifugo's
//! handlers answer `ErrorInternal` — or what the proxy's `status_to_code_transforms` say for
//! that HTTP status (an error or a disconnect). The session then treats it like any backend
//! `error`; for refresh / sub_refresh that means "ask again later" (`PROXY_RETRY_DELAY`).
//!
//! Choices:
//! - `timeout` (default 1 s) covers waiting for a concurrency permit, the request and reading
//!   the whole body.
//! - At most [`MAX_CONCURRENT_CALLS`] calls run at once per core; more wait (within their
//!   timeout), so a slow backend cannot make the core open unbounded sockets.
//! - Response bodies over [`MAX_RESPONSE_BYTES`] are refused (error 100).
//! - An endpoint starting with `http://` or `https://` is an HTTP proxy (TLS per `http.tls`, else
//!   the system's roots); anything else (`host:port`, `grpc://host:port`) is a gRPC proxy
//!   speaking Centrifugo's `CentrifugoProxy` service (module `grpc`, TLS per `grpc.tls`). gRPC
//!   failures (status, network) are 100 too; `status_to_code_transforms` apply to HTTP only.
//!   A TLS block that cannot be used (bad PEM) refuses to start the node.
//!
//! Layout: `http` (the HTTP client, headers, status transforms), `grpc` (the gRPC client and
//! metadata), `encode` (payload encoding of requests, base64 decoding of answers).

mod encode;
mod grpc;
mod http;
pub(crate) mod stream;

use std::sync::Arc;
use std::time::Duration;

use spindle_hub::config::{Config, DEFAULT_PROXY_NAME, Proxy};
use spindle_proto::mesh::{ProxyRequest, ProxyResponse, proxy_request, proxy_response};
use spindle_proto::proxy;
use tokio::sync::Semaphore;

use crate::tls::ClientTlsError;

pub use http::HttpProxyError;

/// Most proxy calls in flight at once per core.
pub const MAX_CONCURRENT_CALLS: usize = 1024;

/// Largest backend answer read.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The backend error a failed call becomes (docs/protocol.md §3.1: 100, temporary).
pub(crate) fn internal_error() -> proxy::Error {
    proxy::Error {
        code: 100,
        message: "internal server error".to_owned(),
        temporary: true,
    }
}

/// The subscribe answer standing for a call that did not work (a subscription stream that could
/// not be opened).
pub(crate) fn refused_subscribe(refusal: Refusal) -> proxy::SubscribeResponse {
    <proxy::SubscribeResponse as encode::Answer>::refused(refusal)
}

/// Why a call did not produce a backend answer: an error to send, or a disconnect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Error(proxy::Error),
    Disconnect(proxy::Disconnect),
}

/// The core's proxies: configuration, one HTTP client, the concurrency bound.
#[derive(Debug, Clone)]
pub struct Proxies {
    config: Arc<Config>,
    client: http::Client,
    grpc: grpc::Channels,
    permits: Arc<Semaphore>,
}

impl Proxies {
    /// Proxies of a configuration (validated: endpoints and names exist). Every TLS block is
    /// read now: a bad certificate or key is an error here, not on each call.
    pub fn new(config: Arc<Config>) -> Result<Proxies, ClientTlsError> {
        let all = configured(&config);
        grpc::Channels::check(all.iter().filter(|p| is_grpc(&p.endpoint)).copied())?;
        let client = http::Client::new(all.iter().filter(|p| !is_grpc(&p.endpoint)).copied())?;
        Ok(Proxies {
            client,
            grpc: grpc::Channels::default(),
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
            config,
        })
    }

    /// The proxy a request names: `default` is the kind's default proxy
    /// (`client.proxy.connect` / `.refresh`, `channel.proxy.<kind>`, `rpc.proxy`), anything
    /// else an entry of `proxies`.
    fn proxy_for(&self, name: &str, kind: &proxy_request::Kind) -> Option<&Proxy> {
        use proxy_request::Kind;
        if name != DEFAULT_PROXY_NAME && !name.is_empty() {
            return self.config.named_proxy(name);
        }
        let c = &self.config;
        Some(match kind {
            Kind::Connect(_) => &c.client.proxy.connect.proxy,
            Kind::Refresh(_) => &c.client.proxy.refresh.proxy,
            Kind::Subscribe(_) => &c.channel.proxy.subscribe,
            Kind::Publish(_) => &c.channel.proxy.publish,
            Kind::SubRefresh(_) => &c.channel.proxy.sub_refresh,
            Kind::Rpc(_) => &c.rpc.proxy,
            Kind::MapPublish(_) => &c.channel.proxy.map_publish,
            Kind::MapRemove(_) => &c.channel.proxy.map_remove,
        })
    }

    /// Asks the backend; always answers with the request's kind of response (see the module
    /// doc). A request without a kind gets `None`.
    pub async fn call(&self, request: ProxyRequest) -> Option<ProxyResponse> {
        use proxy_request::Kind as Q;
        use proxy_response::Kind as A;
        let kind = request.kind.clone()?;
        let answer = match self.proxy_for(&request.proxy_name, &kind) {
            Some(proxy) => {
                let call = Call {
                    proxies: self,
                    proxy,
                    request: &request,
                };
                match kind {
                    Q::Connect(q) => A::Connect(call.run("connect", q).await),
                    Q::Refresh(q) => A::Refresh(call.run("refresh", q).await),
                    Q::Subscribe(q) => A::Subscribe(call.run("subscribe", q).await),
                    Q::Publish(q) => A::Publish(call.run("publish", q).await),
                    Q::SubRefresh(q) => A::SubRefresh(call.run("sub_refresh", q).await),
                    Q::Rpc(q) => A::Rpc(call.run("rpc", q).await),
                    Q::MapPublish(q) => A::MapPublish(call.run("map_publish", q).await),
                    Q::MapRemove(q) => A::MapRemove(call.run("map_remove", q).await),
                }
            }
            None => {
                tracing::error!(proxy = %request.proxy_name, "proxy not configured");
                let refusal = Refusal::Error(internal_error());
                match kind {
                    Q::Connect(_) => A::Connect(encode::Answer::refused(refusal)),
                    Q::Refresh(_) => A::Refresh(encode::Answer::refused(refusal)),
                    Q::Subscribe(_) => A::Subscribe(encode::Answer::refused(refusal)),
                    Q::Publish(_) => A::Publish(encode::Answer::refused(refusal)),
                    Q::SubRefresh(_) => A::SubRefresh(encode::Answer::refused(refusal)),
                    Q::Rpc(_) => A::Rpc(encode::Answer::refused(refusal)),
                    Q::MapPublish(_) => A::MapPublish(encode::Answer::refused(refusal)),
                    Q::MapRemove(_) => A::MapRemove(encode::Answer::refused(refusal)),
                }
            }
        };
        Some(ProxyResponse { kind: Some(answer) })
    }
}

impl Proxies {
    /// A shared-poll refresh (the core's own call, for no client: no headers forwarded) with
    /// the proxy `proxy_name` names (`""` / `default`: `channel.proxy.shared_poll_refresh`).
    /// Never fails: a call that did not work is the response's `error`.
    pub async fn shared_poll_refresh(
        &self,
        proxy_name: &str,
        request: proxy::SharedPollRefreshRequest,
    ) -> proxy::SharedPollRefreshResponse {
        use encode::Answer as _;
        let proxy = if proxy_name.is_empty() || proxy_name == DEFAULT_PROXY_NAME {
            Some(&self.config.channel.proxy.shared_poll_refresh)
        } else {
            self.config.named_proxy(proxy_name)
        };
        let Some(proxy) = proxy.filter(|p| !p.endpoint.is_empty()) else {
            tracing::error!(
                proxy = proxy_name,
                "shared_poll_refresh proxy not configured"
            );
            return proxy::SharedPollRefreshResponse::refused(Refusal::Error(internal_error()));
        };
        let no_client = ProxyRequest::default();
        let call = Call {
            proxies: self,
            proxy,
            request: &no_client,
        };
        call.run("shared_poll_refresh", request).await
    }
}

/// One call: which proxy, and the edge's request (headers).
struct Call<'a> {
    proxies: &'a Proxies,
    proxy: &'a Proxy,
    request: &'a ProxyRequest,
}

impl Call<'_> {
    async fn run<Q, A>(&self, what: &'static str, mut question: Q) -> A
    where
        Q: encode::Question + grpc::Method<Answer = A>,
        A: encode::Answer,
    {
        question.prepare(self.proxy);
        let timeout: Duration = self.proxy.timeout.as_std();
        let work = async {
            let _permit = self
                .proxies
                .permits
                .acquire()
                .await
                .map_err(|_| Refusal::Error(internal_error()))?;
            let mut answer: A = if is_grpc(&self.proxy.endpoint) {
                self.proxies
                    .grpc
                    .call(self.proxy, self.request, question)
                    .await
                    .map_err(|error| {
                        tracing::warn!(proxy = what, endpoint = %self.proxy.endpoint, %error, "gRPC proxy call failed");
                        Refusal::Error(internal_error())
                    })?
            } else {
                let body = self
                    .proxies
                    .client
                    .post(self.proxy, self.request, &question)
                    .await
                    .map_err(|error| {
                        tracing::warn!(proxy = what, endpoint = %self.proxy.endpoint, %error, "proxy call failed");
                        error.refusal(self.proxy)
                    })?;
                serde_json::from_slice(&body).map_err(|error| {
                    tracing::warn!(proxy = what, endpoint = %self.proxy.endpoint, %error, "proxy answer is not valid");
                    Refusal::Error(internal_error())
                })?
            };
            answer.decode_base64().map_err(|()| {
                tracing::warn!(proxy = what, endpoint = %self.proxy.endpoint, "proxy answer has bad base64");
                Refusal::Error(internal_error())
            })?;
            Ok::<A, Refusal>(answer)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(refusal)) => A::refused(refusal),
            Err(_) => {
                tracing::warn!(proxy = what, endpoint = %self.proxy.endpoint, ?timeout, "proxy call timed out");
                A::refused(Refusal::Error(internal_error()))
            }
        }
    }
}

/// Every proxy the configuration names that has an endpoint.
fn configured(config: &Config) -> Vec<&Proxy> {
    config
        .all_proxies()
        .filter(|p| !p.endpoint.is_empty())
        .collect()
}

/// `http://` and `https://` endpoints are HTTP proxies; everything else is gRPC.
fn is_grpc(endpoint: &str) -> bool {
    !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
}

#[cfg(test)]
mod tests;
