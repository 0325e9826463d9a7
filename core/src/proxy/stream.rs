//! Subscription streams (`subscribe_stream_proxy_enabled`, gRPC only; docs/stream-proxy.md):
//! opening Centrifugo's `SubscribeUnidirectional` / `SubscribeBidirectional` and reading their
//! first message (the subscribe answer). What happens to the stream afterwards is the node's
//! (`crate::node` `stream_proxy`).

use super::{Proxies, Refusal, internal_error, is_grpc};
use spindle_hub::config::{DEFAULT_PROXY_NAME, Proxy};
use spindle_proto::mesh::{ProxyRequest, proxy_request};
use spindle_proto::proxy;
use tokio::sync::mpsc;

/// Client publications queued up a bidirectional stream before the call fails them.
pub const STREAM_PUBLISH_QUEUE: usize = 64;

/// An open subscription stream, its first message read.
#[derive(Debug)]
pub(crate) struct OpenedStream {
    /// The backend's answer to the subscribe.
    pub response: proxy::SubscribeResponse,
    /// The messages after the first.
    pub messages: tonic::Streaming<proxy::StreamSubscribeResponse>,
    /// Bidirectional streams: where client publications go up.
    pub up: Option<mpsc::Sender<proxy::StreamSubscribeRequest>>,
}

impl Proxies {
    /// Opens the subscription stream `request` (kind subscribe) asks for, with
    /// `channel.proxy.subscribe_stream` or the named proxy, and reads its first message within
    /// the proxy's `timeout`. A first message without a subscribe answer, a non-gRPC endpoint,
    /// a failed call or a timeout is an error 100 (temporary), as a failed unary call.
    pub(crate) async fn open_stream(
        &self,
        request: &ProxyRequest,
        bidirectional: bool,
    ) -> Result<OpenedStream, Refusal> {
        let Some(proxy_request::Kind::Subscribe(mut subscribe)) = request.kind.clone() else {
            return Err(Refusal::Error(internal_error()));
        };
        let proxy = self.stream_proxy(&request.proxy_name).ok_or_else(|| {
            tracing::error!(
                proxy = request.proxy_name,
                "subscribe stream proxy not configured (gRPC only)"
            );
            Refusal::Error(internal_error())
        })?;
        super::encode::Question::prepare(&mut subscribe, proxy);
        let timeout = proxy.timeout.as_std();
        let open = async {
            let mut client = self.grpc.client(proxy).map_err(|error| {
                tracing::warn!(endpoint = %proxy.endpoint, %error, "subscribe stream proxy");
                Refusal::Error(internal_error())
            })?;
            let metadata = super::grpc::metadata(proxy, request);
            let failed = |status: tonic::Status| {
                tracing::warn!(endpoint = %proxy.endpoint, code = ?status.code(), message = status.message(), "subscribe stream call failed");
                Refusal::Error(internal_error())
            };
            let (mut messages, up) = if bidirectional {
                let (up, queue) = mpsc::channel(STREAM_PUBLISH_QUEUE);
                up.send(proxy::StreamSubscribeRequest {
                    subscribe_request: Some(subscribe),
                    publication: None,
                })
                .await
                .map_err(|_| Refusal::Error(internal_error()))?;
                let outgoing = futures_util::stream::unfold(queue, |mut queue| async move {
                    queue.recv().await.map(|message| (message, queue))
                });
                let mut call = tonic::Request::new(outgoing);
                *call.metadata_mut() = metadata;
                let reply = client.subscribe_bidirectional(call).await.map_err(failed)?;
                (reply.into_inner(), Some(up))
            } else {
                let mut call = tonic::Request::new(subscribe);
                *call.metadata_mut() = metadata;
                let reply = client
                    .subscribe_unidirectional(call)
                    .await
                    .map_err(failed)?;
                (reply.into_inner(), None)
            };
            let first = messages.message().await.map_err(failed)?;
            let response = first.and_then(|m| m.subscribe_response).ok_or_else(|| {
                tracing::warn!(endpoint = %proxy.endpoint, "no subscribe response in the stream's first message");
                Refusal::Error(internal_error())
            })?;
            Ok(OpenedStream {
                response,
                messages,
                up,
            })
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(opened) => opened,
            Err(_) => {
                tracing::warn!(endpoint = %proxy.endpoint, ?timeout, "subscribe stream proxy timed out");
                Err(Refusal::Error(internal_error()))
            }
        }
    }

    fn stream_proxy(&self, name: &str) -> Option<&Proxy> {
        let proxy = if name.is_empty() || name == DEFAULT_PROXY_NAME {
            Some(&self.config.channel.proxy.subscribe_stream)
        } else {
            self.config.named_proxy(name)
        };
        proxy.filter(|p| !p.endpoint.is_empty() && is_grpc(&p.endpoint))
    }
}
