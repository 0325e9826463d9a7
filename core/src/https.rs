//! The core's outbound HTTP client (HTTP proxies, JWKS fetches): pooled HTTP/1.1 over plain
//! TCP for `http://` URLs and over rustls for `https://` ones, TLS per [`crate::tls`].

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::ServerName;
use spindle_hub::config::Tls;

use crate::tls::{ClientTlsError, client_config};

/// What the connection will speak, announced by ALPN on TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 (HTTP proxies, JWKS).
    Http1,
    /// HTTP/2 (gRPC proxies).
    Http2,
}

/// A TCP connector that speaks TLS for `https://` URIs, verifying servers as `tls` says.
pub(crate) fn connector(
    tls: &Tls,
    protocol: Protocol,
) -> Result<HttpsConnector<HttpConnector>, ClientTlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // `https://` URIs need the scheme check off in the plain connector: TLS wraps it.
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_config(tls)?)
        .https_or_http();
    let builder = if tls.server_name.is_empty() {
        builder
    } else {
        let name = ServerName::try_from(tls.server_name.clone()).map_err(|error| {
            ClientTlsError::Rustls(format!("server_name {:?}: {error}", tls.server_name))
        })?;
        builder.with_server_name_resolver(FixedServerNameResolver::new(name))
    };
    Ok(match protocol {
        Protocol::Http1 => builder.enable_http1().wrap_connector(http),
        Protocol::Http2 => builder.enable_http2().wrap_connector(http),
    })
}

/// A pooled client for one TLS configuration.
#[derive(Debug, Clone)]
pub(crate) struct HttpsClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpsClient {
    /// A client verifying servers as `tls` says (the system roots for a default block).
    pub(crate) fn new(tls: &Tls) -> Result<HttpsClient, ClientTlsError> {
        Ok(HttpsClient {
            inner: Client::builder(TokioExecutor::new()).build(connector(tls, Protocol::Http1)?),
        })
    }

    /// Sends a request (the URL's scheme picks plain or TLS).
    pub(crate) fn request(&self, request: hyper::Request<Full<Bytes>>) -> ResponseFuture {
        self.inner.request(request)
    }
}
