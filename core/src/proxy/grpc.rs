//! The gRPC side of proxies: Centrifugo's `centrifugal.centrifugo.proxy.CentrifugoProxy`
//! service, so an existing gRPC backend works. Endpoints are `host:port` (or
//! `grpc://host:port`); one lazily connected channel per endpoint and TLS block, shared by
//! every call. With `grpc.tls.enabled` the channel speaks TLS (HTTP/2 by ALPN), verified as
//! the block says (see [`crate::tls`]).
//!
//! Metadata sent: the proxy's `grpc.static_metadata`, `grpc.credentials_key` /
//! `credentials_value`, and the client's HTTP headers named in `http_headers` (lower-case
//! keys). Not served yet: `grpc.compression` (ignored), the client's gRPC metadata
//! (`grpc_metadata`, only uni_grpc clients have any).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::Uri;
use hyper::http::uri::Scheme;
use spindle_hub::config::{Proxy, Tls};
use spindle_proto::mesh::ProxyRequest;
use spindle_proto::proxy;
use spindle_proto::proxy::grpc::centrifugo_proxy_client::CentrifugoProxyClient;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

pub(crate) type Client = CentrifugoProxyClient<Channel>;
type Reply<A> = Pin<Box<dyn Future<Output = Result<A, tonic::Status>> + Send>>;

/// One service method: a request message and its response.
pub(crate) trait Method: Sized + Send + 'static {
    type Answer: Send + 'static;
    fn call(self, client: Client, metadata: MetadataMap) -> Reply<Self::Answer>;
}

macro_rules! method {
    ($question:ty => $answer:ty, $name:ident) => {
        impl Method for $question {
            type Answer = $answer;
            fn call(self, mut client: Client, metadata: MetadataMap) -> Reply<$answer> {
                Box::pin(async move {
                    let mut request = tonic::Request::new(self);
                    *request.metadata_mut() = metadata;
                    client.$name(request).await.map(tonic::Response::into_inner)
                })
            }
        }
    };
}

method!(proxy::ConnectRequest => proxy::ConnectResponse, connect);
method!(proxy::RefreshRequest => proxy::RefreshResponse, refresh);
method!(proxy::SubscribeRequest => proxy::SubscribeResponse, subscribe);
method!(proxy::PublishRequest => proxy::PublishResponse, publish);
method!(proxy::SubRefreshRequest => proxy::SubRefreshResponse, sub_refresh);
method!(proxy::RpcRequest => proxy::RpcResponse, rpc);
method!(proxy::MapPublishRequest => proxy::MapPublishResponse, map_publish);
method!(proxy::MapRemoveRequest => proxy::MapRemoveResponse, map_remove);
method!(proxy::SharedPollRefreshRequest => proxy::SharedPollRefreshResponse, shared_poll_refresh);

/// Channels by endpoint and TLS block.
#[derive(Debug, Clone, Default)]
pub(crate) struct Channels {
    by_endpoint: Arc<Mutex<HashMap<ChannelKey, Channel>>>,
}

/// An endpoint, and its TLS block when enabled (the block's fields as text: `Tls` has no
/// `Hash`).
type ChannelKey = (String, Option<String>);

impl Channels {
    /// Checks every gRPC proxy's TLS block at start, so a bad certificate is a startup error.
    pub(crate) fn check<'a>(
        proxies: impl IntoIterator<Item = &'a Proxy>,
    ) -> Result<(), crate::tls::ClientTlsError> {
        for proxy in proxies {
            if proxy.grpc.tls.enabled {
                crate::https::connector(&proxy.grpc.tls, crate::https::Protocol::Http2)?;
            }
        }
        Ok(())
    }

    fn channel(&self, endpoint: &str, tls: &Tls) -> Result<Channel, String> {
        let tls_key = tls.enabled.then(|| format!("{tls:?}"));
        let key = (endpoint.to_owned(), tls_key);
        let mut channels = self
            .by_endpoint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let address = endpoint.strip_prefix("grpc://").unwrap_or(endpoint);
        let target = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|error| format!("bad gRPC endpoint {endpoint:?}: {error}"))?;
        let channel = if tls.enabled {
            let https = crate::https::connector(tls, crate::https::Protocol::Http2)
                .map_err(|error| format!("grpc.tls: {error}"))?;
            // tonic refuses an `https://` target without TLS of its own; ours wraps the
            // connection, so tonic sees `http://` and the connector gets `https://` back.
            let connector = tower::service_fn(move |uri: Uri| {
                let mut https = https.clone();
                async move {
                    let mut parts = uri.into_parts();
                    parts.scheme = Some(Scheme::HTTPS);
                    let uri = Uri::from_parts(parts)?;
                    tower::Service::call(&mut https, uri).await
                }
            });
            target.connect_with_connector_lazy(connector)
        } else {
            target.connect_lazy()
        };
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// A client of the proxy's endpoint (for the streaming calls).
    pub(crate) fn client(&self, proxy: &Proxy) -> Result<Client, String> {
        Ok(CentrifugoProxyClient::new(
            self.channel(&proxy.endpoint, &proxy.grpc.tls)?,
        ))
    }

    /// Calls the method of `question` on the proxy's endpoint.
    pub(crate) async fn call<Q: Method>(
        &self,
        proxy: &Proxy,
        request: &ProxyRequest,
        question: Q,
    ) -> Result<Q::Answer, String> {
        let channel = self.channel(&proxy.endpoint, &proxy.grpc.tls)?;
        let metadata = metadata(proxy, request);
        question
            .call(CentrifugoProxyClient::new(channel), metadata)
            .await
            .map_err(|status| format!("gRPC status {:?}: {}", status.code(), status.message()))
    }
}

/// The metadata a call with `proxy` for `request` carries: the client's headers the proxy
/// forwards, its static metadata and credentials.
pub(crate) fn metadata(proxy: &Proxy, request: &ProxyRequest) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    let mut add = |key: &str, value: &str| {
        if let (Ok(key), Ok(value)) = (
            AsciiMetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes()),
            AsciiMetadataValue::try_from(value),
        ) {
            metadata.insert(key, value);
        }
    };
    for (name, value) in &request.http_headers {
        if proxy
            .http_headers
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name))
        {
            add(name, value);
        }
    }
    for (key, value) in &proxy.grpc.static_metadata {
        add(key, value.expose());
    }
    if !proxy.grpc.credentials_key.is_empty() {
        add(
            &proxy.grpc.credentials_key,
            proxy.grpc.credentials_value.expose(),
        );
    }
    metadata
}
