//! Client commands: decode a frame, admit each command, dispatch it to the session and act on
//! the grant (docs/protocol.md §2.5, §2.6).

use super::Connection;
use super::query::Refusal;
use crate::clock::SystemNow;
use bytes::Bytes;
use spindle_hub::codes::Disconnect;
use spindle_hub::outcome::Failure;
use spindle_hub::session::{Now, ProxyKind, RpcRoute, rpc_outcome};
use spindle_mesh::mesh;
use spindle_proto::{Command, Request, client, decode_commands};
use std::collections::BTreeMap;

/// Whether to go on with the rest of a frame.
pub(super) enum Flow {
    Continue,
    /// Stop reading this frame (after a refused connect, or when closing).
    Stop,
}

impl Connection {
    pub(super) async fn on_frame(&mut self, frame: Bytes) {
        let limit = self.shared.limits.message_size;
        let commands = match decode_commands(self.setup.format, &frame, limit) {
            Ok(commands) => commands,
            Err(error) => return self.fail(Failure::Decode(error), 0),
        };
        for command in commands {
            let flow = match command {
                Ok(command) => self.on_command(command).await,
                Err(error) => {
                    self.fail(Failure::Decode(error), 0);
                    Flow::Stop
                }
            };
            if matches!(flow, Flow::Stop) || self.outbox.closing().is_some() {
                return;
            }
        }
    }

    pub(super) async fn on_command(&mut self, command: Command) -> Flow {
        let id = command.id;
        if let Err(failure) = self.session.admit(&command) {
            self.fail(failure, id);
            return Flow::Stop;
        }
        let now = Now::system();
        let outcome = match command.request {
            Request::Connect(request) => return self.connect(id, &request, now).await,
            Request::Subscribe(request) => {
                self.subscribe_client(id, &request, now).await;
                return Flow::Continue;
            }
            Request::Unsubscribe(request) => return self.unsubscribe(id, &request).await,
            Request::Publish(request) => return self.publish(id, &request).await,
            Request::Presence(request) => {
                let answer = self.presence(id, &request).await;
                return self.answer(answer, id);
            }
            Request::PresenceStats(request) => {
                let answer = self.presence_stats(id, &request).await;
                return self.answer(answer, id);
            }
            Request::History(request) => {
                let answer = self.history(id, &request).await;
                return self.answer(answer, id);
            }
            Request::Rpc(request) => self.rpc(id, &request).await,
            // Admitted only when a message handler exists; there is none yet.
            Request::Send(_) => return Flow::Continue,
            Request::Refresh(request) => {
                self.refresh(&request, now)
                    .await
                    .map(|result| client::Reply {
                        id,
                        refresh: Some(result),
                        ..Default::default()
                    })
            }
            Request::SubRefresh(request) if self.is_track(&request) => {
                self.track(id, &request, now).await;
                return Flow::Continue;
            }
            Request::SubRefresh(request) => {
                self.sub_refresh(&request, now)
                    .await
                    .map(|result| client::Reply {
                        id,
                        sub_refresh: Some(result),
                        ..Default::default()
                    })
            }
            Request::Pong => {
                return match self.session.on_pong(now) {
                    Ok(()) => Flow::Continue,
                    Err(failure) => {
                        self.fail(failure, 0);
                        Flow::Stop
                    }
                };
            }
        };
        match outcome {
            Ok(reply) => self.send(&reply),
            Err(failure) => self.fail(failure, id),
        }
        Flow::Continue
    }

    /// A connection `refresh`, with the token's JWK set fetched first when one is configured.
    async fn refresh(
        &mut self,
        request: &client::RefreshRequest,
        now: Now,
    ) -> Result<client::RefreshResult, Failure> {
        let jwks = self.shared.rules.connection_jwks();
        match self.token_keys(jwks, &request.token).await {
            Ok(Some(keys)) => {
                self.session
                    .refresh_with_keys(&self.shared.rules, request, &keys, Now::system())
            }
            Ok(None) => self.session.refresh(&self.shared.rules, request, now),
            Err(error) => Err(error.failure(Failure::RefreshToken)),
        }
    }

    /// A `sub_refresh`, with the token's JWK set fetched first when one is configured.
    async fn sub_refresh(
        &mut self,
        request: &client::SubRefreshRequest,
        now: Now,
    ) -> Result<client::SubRefreshResult, Failure> {
        let jwks = self.shared.rules.subscription_jwks();
        match self.token_keys(jwks, &request.token).await {
            Ok(Some(keys)) => self.session.sub_refresh_with_keys(
                &self.shared.rules,
                request,
                &keys,
                Now::system(),
            ),
            Ok(None) => self.session.sub_refresh(&self.shared.rules, request, now),
            Err(error) => Err(error.failure(Failure::SubRefreshToken)),
        }
    }

    /// Sends the answer to a query command (history, presence).
    fn answer(&mut self, answer: Result<client::Reply, Refusal>, id: u32) -> Flow {
        match answer {
            Ok(reply) => self.send(&reply),
            Err(refusal) => self.refuse(refusal, id),
        }
        Flow::Continue
    }

    /// A client RPC: the built-in ping, or the rpc proxy (docs/protocol.md §7.3 "RPC").
    async fn rpc(
        &mut self,
        id: u32,
        request: &client::RpcRequest,
    ) -> Result<client::Reply, Failure> {
        let result = match self.shared.rules.route_rpc(&request.method)? {
            RpcRoute::Ping => client::RpcResult::default(),
            RpcRoute::Proxy(call) => rpc_outcome(&self.ask_rpc(&call, request).await?)?,
        };
        Ok(client::Reply {
            id,
            rpc: Some(result),
            ..Default::default()
        })
    }

    async fn connect(&mut self, id: u32, request: &client::ConnectRequest, now: Now) -> Flow {
        let decided = match self.session.connect_proxy(&self.shared.rules, request) {
            Some(call) => match self.ask_connect(&call, request).await {
                Ok(answer) => self.session.connect_proxied(
                    &self.shared.rules,
                    request,
                    &answer,
                    Now::system(),
                ),
                Err(failure) => {
                    // The session is still awaiting connect: settle it as refused.
                    self.session.close();
                    Err(failure)
                }
            },
            None => {
                let jwks = self.shared.rules.connection_jwks();
                match self.token_keys(jwks, &request.token).await {
                    Ok(Some(keys)) => self.session.connect_with_keys(
                        &self.shared.rules,
                        request,
                        &keys,
                        Now::system(),
                    ),
                    Ok(None) => self.session.connect(&self.shared.rules, request, now),
                    Err(error) => {
                        self.session.close();
                        Err(error.failure(Failure::ConnectionToken))
                    }
                }
            }
        };
        let mut grant = match decided {
            Ok(grant) => grant,
            Err(failure) => {
                // After a refused connect the rest of the frame is not read (§2.6).
                self.fail(failure, id);
                return Flow::Stop;
            }
        };
        let limit = self.shared.config.client.user_connection_limit as usize;
        if limit > 0 && self.shared.hub.user_connections(&grant.user) >= limit {
            self.fail(Failure::UserConnectionLimit, id);
            return Flow::Stop;
        }
        self.shared.hub.connected(&self.client, &grant.user);
        if self.setup.native_ping {
            // Native WebSocket pings: the client is told of no application pings.
            grant.result.ping = 0;
            grant.result.pong = false;
        }
        let mut subs = BTreeMap::new();
        let mut attached = Vec::new();
        for sub in &grant.server_subs {
            let local = match self.attach(sub, None).await {
                Ok(local) => local,
                Err(_) => {
                    self.close(Disconnect::SERVER_ERROR);
                    return Flow::Stop;
                }
            };
            match self.position(sub, &local).await {
                Ok(result) => {
                    subs.insert(sub.channel.clone(), result);
                    self.commit(sub, &local);
                    attached.push(local);
                    if !self.presence_stored(&sub.channel).await {
                        return Flow::Stop;
                    }
                }
                Err(refusal) => {
                    tracing::warn!(client = %self.client, channel = %sub.channel, ?refusal, "server-side subscription not positioned");
                    self.detach(&local).await;
                    self.close(Disconnect::SERVER_ERROR);
                    return Flow::Stop;
                }
            }
        }
        grant.result.subs = subs.into_iter().map(Into::into).collect();
        if let Some(session) = &self.setup.session {
            grant.result.session = session.clone();
            grant.result.node = self.shared.node.uid.clone();
        }
        if self.setup.uni.is_some() {
            self.send(&super::uni::connect_push(grant.result));
        } else {
            self.send(&client::Reply {
                id,
                connect: Some(grant.result),
                ..Default::default()
            });
        }
        for local in &attached {
            self.activate(local).await;
        }
        if self.shared.rules.personal_single_connection()
            && self.shared.rules.personal_channel(&grant.user).is_some()
        {
            self.disconnect_older_connections(&grant.user).await;
        }
        Flow::Continue
    }

    /// `subscribe_to_user_personal_channel.single_connection`: every other connection of
    /// `user`, on any edge of any node, is closed with 3504 (as Centrifugo's handler does, with
    /// this connection whitelisted).
    async fn disconnect_older_connections(&self, user: &str) {
        let connection_limit = Disconnect::CONNECTION_LIMIT;
        let control = mesh::Control {
            user: user.to_owned(),
            kind: Some(mesh::control::Kind::Disconnect(mesh::DisconnectCommand {
                code: connection_limit.code,
                reason: connection_limit.reason.to_string(),
                whitelist: vec![self.client.to_string()],
            })),
            ..Default::default()
        };
        let request = mesh::request::Kind::Control(control);
        if let Err(error) = self
            .shared
            .link()
            .request(Some(request), crate::deadline::CORE)
            .await
        {
            tracing::warn!(client = %self.client, %error, "older connections of the user not disconnected");
        }
    }

    async fn unsubscribe(&mut self, id: u32, request: &client::UnsubscribeRequest) -> Flow {
        // A map subscription still paging is simply dropped (it holds nothing in the hub).
        self.map_loading.remove(&request.channel);
        match self.session.unsubscribe(request) {
            Ok(Some(record)) => {
                if let Some(sub) = self.subs.remove(&record.channel) {
                    sub.close();
                    self.release_tracks(&sub);
                    self.close_stream(&record.channel);
                    self.leave_hub(&record.channel).await;
                }
                self.presence_left(&record, true).await;
            }
            Ok(None) => {}
            Err(failure) => {
                self.fail(failure, id);
                return Flow::Continue;
            }
        }
        self.send(&client::Reply {
            id,
            unsubscribe: Some(client::UnsubscribeResult::default()),
            ..Default::default()
        });
        Flow::Continue
    }

    async fn publish(&mut self, id: u32, request: &client::PublishRequest) -> Flow {
        // Into a bidirectional subscription stream this client holds: up the stream (as
        // Centrifugo, which then allows it without the publish rules).
        if let Some(outcome) = self.publish_up_stream(request).await {
            match outcome {
                Ok(()) => self.send(&client::Reply {
                    id,
                    publish: Some(client::PublishResult {}),
                    ..Default::default()
                }),
                Err(failure) => self.fail(failure, id),
            }
            return Flow::Continue;
        }
        let rules = &self.shared.rules;
        let decided = match self.session.publish_proxy(rules, request) {
            Some(call) if matches!(call.kind, ProxyKind::MapPublish | ProxyKind::MapRemove) => {
                match self.ask_map_publish(&call, request).await {
                    Ok(answer) => self.session.authorize_map_publish_proxied(
                        &self.shared.rules,
                        request,
                        &answer,
                    ),
                    Err(failure) => Err(failure),
                }
            }
            Some(call) => match self.ask_publish(&call, request).await {
                Ok(answer) => {
                    self.session
                        .authorize_publish_proxied(&self.shared.rules, request, &answer)
                }
                Err(failure) => Err(failure),
            },
            None => self.session.authorize_publish(rules, request),
        };
        let grant = match decided {
            Ok(grant) => grant,
            Err(failure) => {
                self.fail(failure, id);
                return Flow::Continue;
            }
        };
        let request = match grant.map {
            Some(change) => mesh::request::Kind::MapPublish(mesh::MapPublishRequest {
                channel: grant.channel,
                key: change.key,
                data: grant.data.into(),
                info: Some(grant.info),
                removed: change.removed,
                tags: change.tags,
                key_mode: change.key_mode,
                idempotency_key: change.idempotency_key,
                delta: change.delta,
                version: change.version,
                version_epoch: change.version_epoch,
            }),
            None => mesh::request::Kind::Publish(publish_request(
                grant.channel,
                grant.data,
                grant.info,
                grant.backend,
            )),
        };
        match self
            .shared
            .link()
            .request(Some(request), crate::deadline::CORE)
            .await
        {
            Ok(response) => match response.error {
                Some(error) => self.send(&client::Reply {
                    id,
                    error: Some(error),
                    ..Default::default()
                }),
                None => self.send(&client::Reply {
                    id,
                    publish: Some(client::PublishResult::default()),
                    ..Default::default()
                }),
            },
            Err(error) => self.fail(crate::deadline::failure_of(error), id),
        }
        Flow::Continue
    }
}

/// The mesh publish of a granted client publication, with the publish proxy's options.
fn publish_request(
    channel: String,
    data: Vec<u8>,
    info: client::ClientInfo,
    backend: Option<spindle_proto::proxy::PublishResult>,
) -> mesh::PublishRequest {
    let backend = backend.unwrap_or_default();
    mesh::PublishRequest {
        channel,
        data: data.into(),
        info: Some(info),
        tags: backend.tags,
        skip_history: backend.skip_history,
        idempotency_key: backend.idempotency_key,
        delta: backend.delta,
        version: backend.version,
        version_epoch: backend.version_epoch,
    }
}
