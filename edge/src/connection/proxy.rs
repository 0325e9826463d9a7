//! Asking the application backend (docs/protocol.md §8) through the core: the session says which
//! proxy a command needs ([`ProxyCall`]); this builds the request with the connection's common
//! fields (client, transport, protocol, user, meta, headers), sends it over the mesh link and
//! hands back the answer of the same kind. The core fills in failures (timeout, HTTP status) as
//! the answer's `error`, so only a lost link or a mismatched answer is [`Failure::Internal`] here.
//!
//! While the backend is asked this connection's task waits (its commands are processed in
//! order, as with `client.concurrency` 1); other connections and the fan-out do not.

use super::Connection;
use crate::clock::SystemNow;
use spindle_hub::outcome::Failure;
use spindle_hub::session::{MapProxyAnswer, Now, ProxyCall, ProxyKind};
use spindle_mesh::mesh::{self, proxy_request, proxy_response};
use spindle_proto::{client, proxy};

/// The request fields every proxy kind carries.
pub(super) struct Common {
    pub client: String,
    pub transport: String,
    pub protocol: String,
    pub user: String,
    pub meta: bytes::Bytes,
}

impl Connection {
    pub(super) fn proxy_common(&self) -> Common {
        Common {
            client: self.client.to_string(),
            transport: self.setup.transport.name().to_owned(),
            protocol: self.setup.format.as_str().to_owned(),
            user: self.session.user().to_owned(),
            meta: self.session.meta().to_vec().into(),
        }
    }

    /// Sends one proxy request to the core and waits for the answer.
    pub(super) async fn ask_backend(
        &self,
        call: &ProxyCall,
        kind: proxy_request::Kind,
    ) -> Result<proxy_response::Kind, Failure> {
        let request = mesh::request::Kind::Proxy(mesh::ProxyRequest {
            proxy_name: call.proxy_name.clone(),
            http_headers: self.setup.headers.as_ref().clone(),
            emulated_headers: self.emulated_headers.clone(),
            kind: Some(kind),
        });
        let response = self
            .shared
            .link()
            .request(Some(request), self.shared.limits.proxy_deadline)
            .await
            .map_err(|error| {
                tracing::warn!(client = %self.client, %error, "proxy request not answered");
                crate::deadline::failure_of(error)
            })?;
        match response.kind {
            Some(mesh::response::Kind::Proxy(mesh::ProxyResponse { kind: Some(kind) })) => Ok(kind),
            _ => {
                tracing::warn!(client = %self.client, error = ?response.error, "proxy request not answered");
                Err(Failure::Internal)
            }
        }
    }

    /// The connect proxy's answer for a connect without token.
    pub(super) async fn ask_connect(
        &mut self,
        call: &ProxyCall,
        request: &client::ConnectRequest,
    ) -> Result<proxy::ConnectResponse, Failure> {
        self.emulated_headers = request
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        let c = self.proxy_common();
        let question = proxy::ConnectRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            data: request.data.clone(),
            name: request.name.clone(),
            version: request.version.clone(),
            channels: request.subs.keys().cloned().collect(),
            ..Default::default()
        };
        match self
            .ask_backend(call, proxy_request::Kind::Connect(question))
            .await?
        {
            proxy_response::Kind::Connect(answer) => Ok(answer),
            _ => Err(Failure::Internal),
        }
    }

    pub(super) async fn ask_subscribe(
        &self,
        call: &ProxyCall,
        request: &client::SubscribeRequest,
    ) -> Result<proxy::SubscribeResponse, Failure> {
        let c = self.proxy_common();
        let question = proxy::SubscribeRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            user: c.user,
            meta: c.meta,
            channel: request.channel.clone(),
            token: request.token.clone(),
            data: request.data.clone(),
            ..Default::default()
        };
        match self
            .ask_backend(call, proxy_request::Kind::Subscribe(question))
            .await?
        {
            proxy_response::Kind::Subscribe(answer) => Ok(answer),
            _ => Err(Failure::Internal),
        }
    }

    pub(super) async fn ask_publish(
        &self,
        call: &ProxyCall,
        request: &client::PublishRequest,
    ) -> Result<proxy::PublishResponse, Failure> {
        let c = self.proxy_common();
        let question = proxy::PublishRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            user: c.user,
            meta: c.meta,
            channel: request.channel.clone(),
            data: request.data.clone(),
            ..Default::default()
        };
        match self
            .ask_backend(call, proxy_request::Kind::Publish(question))
            .await?
        {
            proxy_response::Kind::Publish(answer) => Ok(answer),
            _ => Err(Failure::Internal),
        }
    }

    /// Asks the map publish or remove proxy (`call.kind` says which) about a client map write.
    pub(super) async fn ask_map_publish(
        &self,
        call: &ProxyCall,
        request: &client::PublishRequest,
    ) -> Result<MapProxyAnswer, Failure> {
        let c = self.proxy_common();
        let question = match call.kind {
            ProxyKind::MapRemove => proxy_request::Kind::MapRemove(proxy::MapRemoveRequest {
                client: c.client,
                transport: c.transport,
                protocol: c.protocol,
                user: c.user,
                meta: c.meta,
                channel: request.channel.clone(),
                key: request.key.clone(),
                ..Default::default()
            }),
            _ => proxy_request::Kind::MapPublish(proxy::MapPublishRequest {
                client: c.client,
                transport: c.transport,
                protocol: c.protocol,
                user: c.user,
                meta: c.meta,
                channel: request.channel.clone(),
                key: request.key.clone(),
                data: request.data.clone(),
                ..Default::default()
            }),
        };
        match self.ask_backend(call, question).await? {
            proxy_response::Kind::MapPublish(answer) => Ok(MapProxyAnswer::Publish(answer)),
            proxy_response::Kind::MapRemove(answer) => Ok(MapProxyAnswer::Remove(answer)),
            _ => Err(Failure::Internal),
        }
    }

    pub(super) async fn ask_rpc(
        &self,
        call: &ProxyCall,
        request: &client::RpcRequest,
    ) -> Result<proxy::RpcResponse, Failure> {
        let c = self.proxy_common();
        let question = proxy::RpcRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            user: c.user,
            meta: c.meta,
            method: request.method.clone(),
            data: request.data.clone(),
            ..Default::default()
        };
        match self
            .ask_backend(call, proxy_request::Kind::Rpc(question))
            .await?
        {
            proxy_response::Kind::Rpc(answer) => Ok(answer),
            _ => Err(Failure::Internal),
        }
    }

    /// Server-side connection refresh (the connection expired and the refresh proxy decides).
    /// A lost link counts as a failed call: asked again later.
    pub(super) async fn refresh_by_proxy(&mut self, call: &ProxyCall) {
        debug_assert_eq!(call.kind, ProxyKind::Refresh);
        let c = self.proxy_common();
        let question = proxy::RefreshRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            user: c.user,
            meta: c.meta,
            ..Default::default()
        };
        let answer = match self
            .ask_backend(call, proxy_request::Kind::Refresh(question))
            .await
        {
            Ok(proxy_response::Kind::Refresh(answer)) => answer,
            _ => proxy::RefreshResponse {
                error: Some(proxy::Error {
                    code: 100,
                    ..Default::default()
                }),
                ..Default::default()
            },
        };
        if let Err(disconnect) = self.session.refresh_proxied(&answer, Now::system()) {
            self.close(disconnect);
        }
    }

    /// Server-side subscription refresh (the subscription expired and the sub_refresh proxy
    /// decides): expired → unsubscribe 2501, or disconnect 3006 for a server-side one.
    pub(super) async fn sub_refresh_by_proxy(&mut self, channel: String, call: &ProxyCall) {
        let c = self.proxy_common();
        let question = proxy::SubRefreshRequest {
            client: c.client,
            transport: c.transport,
            protocol: c.protocol,
            user: c.user,
            meta: c.meta,
            channel: channel.clone(),
            ..Default::default()
        };
        let answer = match self
            .ask_backend(call, proxy_request::Kind::SubRefresh(question))
            .await
        {
            Ok(proxy_response::Kind::SubRefresh(answer)) => answer,
            _ => proxy::SubRefreshResponse {
                error: Some(proxy::Error {
                    code: 100,
                    ..Default::default()
                }),
                ..Default::default()
            },
        };
        match self
            .session
            .sub_refresh_proxied(&channel, &answer, Now::system())
        {
            Ok(()) => {}
            Err(true) => {
                self.close(spindle_hub::codes::Disconnect::SUBSCRIPTION_EXPIRED);
            }
            Err(false) => {
                self.unregister(&channel).await;
                self.push(client::Push {
                    channel,
                    unsubscribe: Some(spindle_hub::codes::Unsubscribe::EXPIRED.to_push()),
                    ..Default::default()
                });
            }
        }
    }
}
