//! Decisions the application backend takes (docs/protocol.md §7.4, §8): the session says when a
//! command needs a proxy call ([`ProxyCall`]) and completes the command with the backend's
//! answer. The session itself does no I/O: the edge asks the core over the mesh, the core calls
//! the backend, and the answer comes back here.
//!
//! The pattern, per command kind:
//! - connect: [`Session::connect_proxy`] → (call) → [`Session::connect_proxied`];
//! - subscribe: [`Session::subscribe_proxy`] → [`Session::authorize_subscribe_proxied`];
//! - publish: [`Session::publish_proxy`] → [`Session::authorize_publish_proxied`] (a map
//!   publish or removal: [`Session::authorize_map_publish_proxied`]);
//! - rpc: [`SessionRules::route_rpc`] → (call) → [`rpc_outcome`];
//! - refresh (server-side, when the connection expires): [`TimerAction::RefreshProxy`] from
//!   [`Session::on_timer`] → [`Session::refresh_proxied`];
//! - sub_refresh (server-side, when a subscription expires): [`TimerAction::SubRefreshProxy`]
//!   → [`Session::sub_refresh_proxied`].
//!
//! The backend's `error` becomes an error reply and its `disconnect` a disconnect, both through
//! [`Failure::Backend`]. A backend that could not be asked (timeout, HTTP status, network) arrives
//! here as an `error` too: the core fills in 100 (temporary) or what `status_to_code_transforms`
//! say, so the session treats both alike.
//!
//! [`TimerAction::RefreshProxy`]: super::TimerAction::RefreshProxy
//! [`TimerAction::SubRefreshProxy`]: super::TimerAction::SubRefreshProxy

use std::borrow::Cow;
use std::time::Duration;

use spindle_proto::{client, proxy};

use super::{Now, Session, SessionRules};
use crate::codes::{ClientError, Disconnect};
use crate::config::DEFAULT_PROXY_NAME;
use crate::jwt::Override;
use crate::outcome::{Failure, Outcome};

/// After a refresh / sub_refresh proxy call fails, the next try is this much later (as
/// Centrifugo: the connection or subscription stays meanwhile).
pub const PROXY_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Which backend hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Connect,
    Refresh,
    Subscribe,
    Publish,
    SubRefresh,
    Rpc,
    MapPublish,
    MapRemove,
    /// A subscription stream (`subscribe_stream_proxy_enabled`, gRPC only).
    SubscribeStream,
}

/// The map publish or remove proxy's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum MapProxyAnswer {
    Publish(proxy::MapPublishResponse),
    Remove(proxy::MapRemoveResponse),
}

/// A backend call the session needs before it can decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyCall {
    pub kind: ProxyKind,
    /// `default` (the kind's default proxy) or a name from `proxies`.
    pub proxy_name: String,
}

impl ProxyCall {
    fn new(kind: ProxyKind, proxy_name: &str) -> ProxyCall {
        ProxyCall {
            kind,
            proxy_name: match proxy_name {
                "" => DEFAULT_PROXY_NAME.to_owned(),
                name => name.to_owned(),
            },
        }
    }
}

/// Where a client `rpc` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcRoute {
    /// The built-in `rpc.ping`: an empty result.
    Ping,
    /// The rpc proxy.
    Proxy(ProxyCall),
}

impl SessionRules {
    /// Routes a client RPC method (docs/protocol.md §7.3 "RPC"), as Centrifugo's `Handler.OnRPC`
    /// and `RPCHandler.Handle`: the built-in ping first. With no RPC proxy configured anywhere
    /// there is nothing more to route to: every other method is 104 while the ping is on, and
    /// everything is 108 while it is off (Centrifugo then registers no RPC handler at all).
    /// Otherwise `ns<boundary>method` goes to `rpc.namespaces` (unknown namespace 104; an empty
    /// name before the boundary means no namespace) and a method without boundary to
    /// `rpc.without_namespace`; a namespace without `proxy_enabled` answers 108.
    pub fn route_rpc(&self, method: &str) -> Result<RpcRoute, Failure> {
        let rpc = &self.rpc;
        if rpc.ping.enabled && method == rpc.ping.method {
            return Ok(RpcRoute::Ping);
        }
        if !self.any_rpc_proxy {
            return Err(if rpc.ping.enabled {
                Failure::MethodNotFound
            } else {
                Failure::NotAvailable
            });
        }
        let boundary = rpc.namespace_boundary.as_str();
        let namespace = (!boundary.is_empty())
            .then(|| method.split_once(boundary))
            .flatten()
            .map(|(namespace, _)| namespace)
            .filter(|namespace| !namespace.is_empty());
        let options = match namespace {
            None => &rpc.without_namespace,
            Some(name) => {
                &rpc.namespaces
                    .iter()
                    .find(|ns| ns.name == name)
                    .ok_or(Failure::MethodNotFound)?
                    .options
            }
        };
        if !options.proxy_enabled {
            return Err(Failure::NotAvailable);
        }
        Ok(RpcRoute::Proxy(ProxyCall::new(
            ProxyKind::Rpc,
            &options.proxy_name,
        )))
    }

    /// `client.proxy.refresh.enabled`: connection expiry is extended by the backend, not by
    /// the client.
    pub fn refresh_proxy_enabled(&self) -> bool {
        self.refresh_proxy
    }
}

/// The backend's `error` / `disconnect`, if it answered with one.
pub(crate) fn failure_of(
    error: Option<&proxy::Error>,
    disconnect: Option<&proxy::Disconnect>,
) -> Option<Failure> {
    if let Some(disconnect) = disconnect {
        return Some(Failure::Backend(Outcome::Disconnect(Disconnect::custom(
            disconnect.code,
            &disconnect.reason,
        ))));
    }
    error.map(|error| {
        Failure::Backend(Outcome::Error(ClientError {
            code: error.code,
            message: Cow::Owned(error.message.clone()),
            temporary: error.temporary,
        }))
    })
}

/// The result of an rpc proxy call: `RPCResult.data`, or the backend's error / disconnect
/// (a response with neither a result nor an error is an empty result).
pub fn rpc_outcome(response: &proxy::RpcResponse) -> Result<client::RpcResult, Failure> {
    if let Some(failure) = failure_of(response.error.as_ref(), response.disconnect.as_ref()) {
        return Err(failure);
    }
    Ok(client::RpcResult {
        data: response
            .result
            .as_ref()
            .map(|r| r.data.clone())
            .unwrap_or_default(),
    })
}

/// A proxy's `override` object as a token's.
pub(crate) fn override_of(value: Option<&proxy::SubscribeOptionOverride>) -> Override {
    let Some(o) = value else {
        return Override::default();
    };
    let flag = |v: &Option<proxy::BoolValue>| v.as_ref().map(|b| b.value);
    Override {
        presence: flag(&o.presence),
        join_leave: flag(&o.join_leave),
        force_push_join_leave: flag(&o.force_push_join_leave),
        force_recovery: flag(&o.force_recovery),
        force_positioning: flag(&o.force_positioning),
    }
}

/// `expire_at` of a proxy result: 0 means never.
pub(crate) fn expiry(expire_at: i64) -> Option<i64> {
    (expire_at > 0).then_some(expire_at)
}

/// Owned bytes of a payload field, `None` when empty.
pub(crate) fn non_empty(bytes: &[u8]) -> Option<Vec<u8>> {
    (!bytes.is_empty()).then(|| bytes.to_vec())
}

impl Session {
    /// The connection's `meta` from the connect (or refresh) proxy; empty when none. Sent
    /// with later proxy requests when the proxy has `include_connection_meta`.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    /// The connect proxy call this `connect` needs: a connect without token while
    /// `client.proxy.connect.enabled` (a token always goes through JWT verification).
    pub fn connect_proxy(
        &self,
        rules: &SessionRules,
        request: &client::ConnectRequest,
    ) -> Option<ProxyCall> {
        (self.phase == super::Phase::AwaitingConnect
            && request.token.is_empty()
            && rules.connect_proxy)
            .then(|| ProxyCall::new(ProxyKind::Connect, DEFAULT_PROXY_NAME))
    }

    /// The proxy call a client subscribe needs: a token-less subscribe to a non-private
    /// channel the user is not listed in, whose namespace has `subscribe_proxy_enabled`.
    /// `None` also when the subscribe fails earlier: [`Session::authorize_subscribe`] then
    /// reports why.
    pub fn subscribe_proxy(
        &self,
        rules: &SessionRules,
        request: &client::SubscribeRequest,
    ) -> Option<ProxyCall> {
        let options = self.backend_decides_subscribe(rules, request)?;
        options
            .subscribe_proxy_enabled
            .then(|| ProxyCall::new(ProxyKind::Subscribe, &options.subscribe_proxy_name))
    }

    /// The options of a subscribe's namespace when the backend may decide it: connected, no
    /// token, room for one more subscription, a channel neither private nor user-limited (a
    /// user-limited channel is never the backend's to grant: Centrifugo asks no proxy).
    fn backend_decides_subscribe<'r>(
        &self,
        rules: &'r SessionRules,
        request: &client::SubscribeRequest,
    ) -> Option<&'r crate::config::ChannelOptions> {
        if !self.is_connected() || !request.token.is_empty() || request.channel.is_empty() {
            return None;
        }
        self.check_room_for(&request.channel, rules).ok()?;
        let resolved = rules.resolver().resolve(&request.channel).ok()?;
        let user_limited = rules
            .resolver()
            .is_user_limited(&resolved, &request.channel);
        (!resolved.private && !user_limited).then_some(resolved.options)
    }

    /// The subscription stream a client subscribe opens (namespace
    /// `subscribe_stream_proxy_enabled` without `subscribe_proxy_enabled`, which Centrifugo asks
    /// first), with whether it is bidirectional. As for the subscribe proxy: not with a token,
    /// nor for a private or user-limited channel.
    pub fn subscribe_stream_proxy(
        &self,
        rules: &SessionRules,
        request: &client::SubscribeRequest,
    ) -> Option<(ProxyCall, bool)> {
        let options = self.backend_decides_subscribe(rules, request)?;
        (options.subscribe_stream_proxy_enabled && !options.subscribe_proxy_enabled).then(|| {
            (
                ProxyCall::new(
                    ProxyKind::SubscribeStream,
                    &options.subscribe_stream_proxy_name,
                ),
                options.subscribe_stream_proxy_bidirectional,
            )
        })
    }

    /// The proxy call a client publish needs (namespace `publish_proxy_enabled`). The
    /// `allow_publish_*` rules are then not applied: the backend decides.
    pub fn publish_proxy(
        &self,
        rules: &SessionRules,
        request: &client::PublishRequest,
    ) -> Option<ProxyCall> {
        if !self.is_connected() {
            return None;
        }
        let options = rules.resolver().resolve(&request.channel).ok()?.options;
        if request.r#type == 1 && options.is_map() {
            let map = &options.map;
            return match request.removed {
                true => map
                    .remove_proxy_enabled
                    .then(|| ProxyCall::new(ProxyKind::MapRemove, &map.remove_proxy_name)),
                false => map
                    .publish_proxy_enabled
                    .then(|| ProxyCall::new(ProxyKind::MapPublish, &map.publish_proxy_name)),
            };
        }
        options
            .publish_proxy_enabled
            .then(|| ProxyCall::new(ProxyKind::Publish, &options.publish_proxy_name))
    }

    /// The sub_refresh proxy of a channel, when its namespace has `sub_refresh_proxy_enabled`
    /// (only the namespace is looked up: server-side channels need not pass the name rules).
    pub(crate) fn sub_refresh_proxy(rules: &SessionRules, channel: &str) -> Option<ProxyCall> {
        let options = rules.resolver().resolve_namespace(channel).ok()?.options;
        options
            .sub_refresh_proxy_enabled
            .then(|| ProxyCall::new(ProxyKind::SubRefresh, &options.sub_refresh_proxy_name))
    }

    /// Completes a server-side connection refresh with the refresh proxy's answer.
    ///
    /// `expired` or no `result` → disconnect 3005 (`error` / `disconnect` in the answer are not
    /// acted upon, as Centrifugo). An answer with an `error` only (the backend could not be
    /// asked) keeps the connection and asks again after [`PROXY_RETRY_DELAY`]. Otherwise the
    /// expiry moves to `expire_at` (0: never), `info` and `meta` replace the old ones.
    pub fn refresh_proxied(
        &mut self,
        response: &proxy::RefreshResponse,
        now: Now,
    ) -> Result<(), Disconnect> {
        self.tick(now);
        if !self.is_connected() {
            return Ok(());
        }
        let Some(result) = &response.result else {
            if response.error.is_some() && response.disconnect.is_none() {
                self.timers.set_refresh(Some(now.mono + PROXY_RETRY_DELAY));
                return Ok(());
            }
            self.close();
            return Err(Disconnect::EXPIRED);
        };
        let expires_at = expiry(result.expire_at).filter(|at| *at > now.unix_secs());
        if result.expired || (result.expire_at > 0 && expires_at.is_none()) {
            self.close();
            return Err(Disconnect::EXPIRED);
        }
        if !result.info.is_empty() {
            self.set_conn_info(result.info.to_vec());
        }
        if !result.meta.is_empty() {
            self.meta = result.meta.to_vec();
        }
        self.expires_at = expires_at;
        self.timers
            .set_refresh(expires_at.map(|at| now.instant_at(at, Duration::ZERO)));
        Ok(())
    }

    /// Completes a server-side subscription refresh with the sub_refresh proxy's answer.
    ///
    /// `expired` or no `result` → the subscription expires: `Err(true)` for a server-side
    /// subscription (disconnect 3006), `Err(false)` for a client one (unsubscribe 2501; the
    /// edge removes it). An `error` only → asked again after [`PROXY_RETRY_DELAY`]. Otherwise
    /// the expiry moves and `info` replaces the channel info.
    pub fn sub_refresh_proxied(
        &mut self,
        channel: &str,
        response: &proxy::SubRefreshResponse,
        now: Now,
    ) -> Result<(), bool> {
        self.tick(now);
        let retry = now.mono + PROXY_RETRY_DELAY;
        let Some(subscription) = self.subscriptions.get_mut(channel) else {
            return Ok(());
        };
        let server_side = subscription.server_side;
        let Some(result) = &response.result else {
            if response.error.is_some() && response.disconnect.is_none() {
                subscription.close_at = Some(retry);
                subscription.expiry_reported = false;
                return Ok(());
            }
            return Err(server_side);
        };
        let expires_at = expiry(result.expire_at).filter(|at| *at > now.unix_secs());
        if result.expired || (result.expire_at > 0 && expires_at.is_none()) {
            return Err(server_side);
        }
        subscription.expires_at = expires_at;
        subscription.close_at = expires_at.map(|at| now.instant_at(at, Duration::ZERO));
        subscription.expiry_reported = false;
        if !result.info.is_empty() {
            subscription.info.chan_info = result.info.clone();
        }
        Ok(())
    }
}
