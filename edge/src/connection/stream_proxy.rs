//! Subscription streams of one connection (docs/stream-proxy.md): a subscribe to a
//! `subscribe_stream_proxy_enabled` channel opens the backend's stream through the core; its
//! answer decides the subscribe; once the subscription is in the local hub the stream starts
//! (its publications reach this client only); unsubscribing, a refused or failed subscribe and
//! closing the connection close it. Publications of the client into a bidirectional stream's
//! channel go up the stream.

use super::Connection;
use super::proxy::Common;
use spindle_hub::outcome::Failure;
use spindle_hub::session::ProxyCall;
use spindle_mesh::mesh::{self, request, response, stream_request};
use spindle_proto::{client, proxy};

/// A stream this connection opened for a channel.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenStream {
    pub bidirectional: bool,
    /// Publications flow (the subscription is in the local hub).
    pub started: bool,
}

impl Connection {
    /// Opens the stream and returns the backend's answer to the subscribe; the stream is
    /// recorded as this connection's (closed by [`Connection::close_stream`]).
    pub(super) async fn open_stream(
        &mut self,
        call: &ProxyCall,
        bidirectional: bool,
        request: &client::SubscribeRequest,
    ) -> Result<proxy::SubscribeResponse, Failure> {
        let Common {
            client,
            transport,
            protocol,
            user,
            meta,
        } = self.proxy_common();
        let question = proxy::SubscribeRequest {
            client: client.clone(),
            transport,
            protocol,
            user,
            meta,
            channel: request.channel.clone(),
            token: request.token.clone(),
            data: request.data.clone(),
            ..Default::default()
        };
        let open = mesh::StreamOpenRequest {
            proxy: Some(mesh::ProxyRequest {
                proxy_name: call.proxy_name.clone(),
                http_headers: self.setup.headers.as_ref().clone(),
                emulated_headers: self.emulated_headers.clone(),
                kind: Some(mesh::proxy_request::Kind::Subscribe(question)),
            }),
            bidirectional,
            client,
        };
        let response = self
            .shared
            .link()
            .request(
                Some(request::Kind::StreamOpen(Box::new(open))),
                self.shared.limits.proxy_deadline,
            )
            .await
            .map_err(crate::deadline::failure_of)?;
        let answer = match response.kind {
            Some(response::Kind::Proxy(mesh::ProxyResponse {
                kind: Some(mesh::proxy_response::Kind::Subscribe(answer)),
            })) => answer,
            _ => return Err(Failure::Internal),
        };
        if answer.error.is_none() && answer.disconnect.is_none() {
            self.streams.insert(
                request.channel.clone(),
                OpenStream {
                    bidirectional,
                    started: false,
                },
            );
        }
        Ok(answer)
    }

    /// Lets the stream of `channel` flow, once the subscription is in the local hub (no-op
    /// without a stream). `Err` when the core no longer has it.
    pub(super) async fn start_stream(&mut self, channel: &str) -> Result<(), Failure> {
        let Some(stream) = self.streams.get_mut(channel) else {
            return Ok(());
        };
        if stream.started {
            return Ok(());
        }
        stream.started = true;
        let action = stream_request::Action::Start(mesh::Empty {});
        self.stream_request(channel, action).await
    }

    /// Closes the stream of `channel`, if this connection has one, without waiting.
    pub(super) fn close_stream(&mut self, channel: &str) {
        if self.streams.remove(channel).is_none() {
            return;
        }
        let link = self.shared.link();
        let request = mesh::StreamRequest {
            client: self.client.to_string(),
            channel: channel.to_owned(),
            action: Some(stream_request::Action::Close(mesh::Empty {})),
        };
        let deadline = crate::deadline::CORE;
        tokio::spawn(async move {
            let _ = link
                .request(Some(request::Kind::Stream(request)), deadline)
                .await;
        });
    }

    /// A client publish into a channel whose bidirectional stream this connection holds:
    /// `Some` with the outcome (the data goes up the stream, nothing is published), `None` for
    /// any other channel.
    pub(super) async fn publish_up_stream(
        &mut self,
        request: &client::PublishRequest,
    ) -> Option<Result<(), Failure>> {
        let stream = self.streams.get(&request.channel)?;
        if !(stream.bidirectional && stream.started) {
            return None;
        }
        let action = stream_request::Action::Publish(request.data.clone());
        Some(self.stream_request(&request.channel, action).await)
    }

    async fn stream_request(
        &self,
        channel: &str,
        action: stream_request::Action,
    ) -> Result<(), Failure> {
        let request = mesh::StreamRequest {
            client: self.client.to_string(),
            channel: channel.to_owned(),
            action: Some(action),
        };
        let response = self
            .shared
            .link()
            .request(Some(request::Kind::Stream(request)), crate::deadline::CORE)
            .await
            .map_err(crate::deadline::failure_of)?;
        match (response.error, response.kind) {
            (None, Some(response::Kind::Empty(_))) => Ok(()),
            (Some(error), _) if error.code == 108 => Err(Failure::NotAvailable),
            _ => Err(Failure::Internal),
        }
    }
}
