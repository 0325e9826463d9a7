//! The HTTP side of proxies: `POST <endpoint>` with a JSON body, `Content-Type:
//! application/json`, the proxy's static headers and the client headers its allow-lists name
//! (`http_headers` from the client's HTTP request, `emulated_headers` from
//! `ConnectRequest.headers`). Only status 200 is an answer; other statuses go through
//! `status_to_code_transforms` (else error 100). `https://` endpoints are verified with the
//! proxy's `http.tls` block when enabled (CA, client certificate, server name), else with the
//! system's roots.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use spindle_hub::config::{Proxy, Tls};
use spindle_proto::mesh::ProxyRequest;
use spindle_proto::proxy;
use thiserror::Error;

use super::{MAX_RESPONSE_BYTES, Refusal, internal_error};
use crate::https::HttpsClient;
use crate::tls::ClientTlsError;

/// Why an HTTP proxy call produced no answer body.
#[derive(Debug, Error)]
pub enum HttpProxyError {
    /// The request could not be built (bad URL or header).
    #[error("bad request: {0}")]
    Request(String),
    /// Network failure.
    #[error("request failed: {0}")]
    Network(String),
    /// The backend answered another status than 200.
    #[error("backend answered HTTP {0}")]
    Status(u16),
    /// The body could not be read, or was over the size limit.
    #[error("reading the answer failed: {0}")]
    Body(String),
    /// The request could not be encoded (a payload that is not JSON without
    /// `binary_encoding`).
    #[error("encoding the request failed: {0}")]
    Encode(String),
}

impl HttpProxyError {
    /// What the client gets: a `status_to_code_transforms` match for a status, else 100.
    pub(crate) fn refusal(&self, proxy: &Proxy) -> Refusal {
        if let HttpProxyError::Status(status) = self
            && let Some(t) = proxy
                .http
                .status_to_code_transforms
                .iter()
                .find(|t| t.status_code == *status)
        {
            if t.to_disconnect.code != 0 {
                return Refusal::Disconnect(proxy::Disconnect {
                    code: t.to_disconnect.code,
                    reason: t.to_disconnect.reason.clone(),
                });
            }
            if t.to_error.code != 0 {
                return Refusal::Error(proxy::Error {
                    code: t.to_error.code,
                    message: t.to_error.message.clone(),
                    temporary: t.to_error.temporary,
                });
            }
        }
        Refusal::Error(internal_error())
    }
}

/// Pooled HTTP/1.1 clients: one with the system's roots for every proxy without `http.tls`,
/// and one per distinct `http.tls` block.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    default: HttpsClient,
    by_tls: Vec<(Tls, HttpsClient)>,
}

impl Client {
    /// Clients for these proxies; a TLS block that cannot be used is an error now rather than
    /// on every call.
    pub(crate) fn new<'a>(
        proxies: impl IntoIterator<Item = &'a Proxy>,
    ) -> Result<Client, ClientTlsError> {
        let mut by_tls: Vec<(Tls, HttpsClient)> = Vec::new();
        for proxy in proxies {
            let tls = &proxy.http.tls;
            if tls.enabled && !by_tls.iter().any(|(known, _)| known == tls) {
                by_tls.push((tls.clone(), HttpsClient::new(tls)?));
            }
        }
        Ok(Client {
            default: HttpsClient::new(&Tls::default())?,
            by_tls,
        })
    }

    fn for_proxy(&self, proxy: &Proxy) -> &HttpsClient {
        let tls = &proxy.http.tls;
        self.by_tls
            .iter()
            .find(|(known, _)| tls.enabled && known == tls)
            .map_or(&self.default, |(_, client)| client)
    }

    /// Posts `body` as JSON and returns the answer body of a 200.
    pub(crate) async fn post<B: Serialize>(
        &self,
        proxy: &Proxy,
        request: &ProxyRequest,
        body: &B,
    ) -> Result<Bytes, HttpProxyError> {
        let json =
            serde_json::to_vec(body).map_err(|error| HttpProxyError::Encode(error.to_string()))?;
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(&proxy.endpoint)
            .header(CONTENT_TYPE, "application/json");
        for (name, value) in forwarded(proxy, request) {
            builder = builder.header(name, value);
        }
        for (name, value) in &proxy.http.static_headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|error| HttpProxyError::Request(error.to_string()))?;
            let value = HeaderValue::try_from(value.expose())
                .map_err(|error| HttpProxyError::Request(error.to_string()))?;
            builder = builder.header(name, value);
        }
        let http_request = builder
            .body(Full::new(Bytes::from(json)))
            .map_err(|error| HttpProxyError::Request(error.to_string()))?;
        let response = self
            .for_proxy(proxy)
            .request(http_request)
            .await
            .map_err(|error| HttpProxyError::Network(error.to_string()))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(HttpProxyError::Status(status.as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| HttpProxyError::Body(error.to_string()))?;
        Ok(body.to_bytes())
    }
}

/// The client headers the proxy's allow-lists name (case-insensitive), valid as HTTP headers.
fn forwarded(proxy: &Proxy, request: &ProxyRequest) -> Vec<(HeaderName, HeaderValue)> {
    let pick = |allowed: &[String], headers: &std::collections::BTreeMap<String, String>| {
        headers
            .iter()
            .filter(|(name, _)| allowed.iter().any(|a| a.eq_ignore_ascii_case(name)))
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::try_from(name.to_ascii_lowercase()).ok()?,
                    HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect::<Vec<_>>()
    };
    let mut headers = pick(&proxy.http_headers, &request.http_headers);
    headers.extend(pick(&proxy.emulated_headers, &request.emulated_headers));
    headers
}
