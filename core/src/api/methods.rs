//! What each API method does (docs/protocol.md §6.2), with its checks in Centrifugo's order.

use super::ApiError;
use crate::Node;
use crate::broker::{HistoryQuery, PublishOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures_util::StreamExt;
use spindle_hub::channel::ResolvedChannel;
use spindle_hub::glob::ChannelPattern;
use spindle_mesh::mesh::{self, control};
use spindle_proto::{api, client};

/// Channels of one broadcast published at the same time, at most.
const BROADCAST_CONCURRENCY: usize = 1024;

/// The default of `disconnect`: 3503 "force disconnect" (no reconnect).
const FORCE_DISCONNECT: (u32, &str) = (3503, "force disconnect");

/// A required channel: 107 when empty, then the name rules (102 unknown namespace, 107 bad
/// name).
pub(super) fn require_channel<'n>(
    node: &'n Node,
    channel: &str,
) -> Result<ResolvedChannel<'n>, ApiError> {
    if channel.is_empty() {
        return Err(ApiError::BAD_REQUEST);
    }
    node.channel_resolver()
        .resolve(channel)
        .map_err(|error| ApiError::from(&error))
}

/// A payload given raw (`data`) or as standard base64 (`b64data`, which wins when non-empty).
pub(super) fn payload(raw: Bytes, b64: &str) -> Result<Bytes, ApiError> {
    if b64.is_empty() {
        return Ok(raw);
    }
    BASE64
        .decode(b64)
        .map(Bytes::from)
        .map_err(|_| ApiError::BAD_REQUEST)
}

fn publish_options(
    tags: std::collections::BTreeMap<String, String>,
    skip_history: bool,
    idempotency_key: String,
    delta: bool,
    version: u64,
    version_epoch: String,
) -> PublishOptions {
    PublishOptions {
        tags,
        skip_history,
        idempotency_key,
        delta,
        version,
        version_epoch,
        history: None,
    }
}

async fn publish_one(
    node: &Node,
    channel: &str,
    data: Bytes,
    options: PublishOptions,
) -> Result<api::PublishResult, ApiError> {
    let result = node
        .publish(channel, data, None, options)
        .await
        .map_err(|error| ApiError::from(&error))?;
    let position = result.position.unwrap_or_default();
    Ok(api::PublishResult {
        offset: position.offset,
        epoch: position.epoch,
    })
}

pub(super) async fn publish(
    node: &Node,
    request: api::PublishRequest,
) -> Result<api::PublishResult, ApiError> {
    if request.channel.is_empty() {
        return Err(ApiError::BAD_REQUEST);
    }
    let data = payload(request.data, &request.b64data)?;
    let options = publish_options(
        request.tags,
        request.skip_history,
        request.idempotency_key,
        request.delta,
        request.version,
        request.version_epoch,
    );
    publish_one(node, &request.channel, data, options).await
}

/// Publishes the same data into every channel; one response per channel, in order.
pub(super) async fn broadcast(
    node: &Node,
    request: api::BroadcastRequest,
) -> Result<api::BroadcastResult, ApiError> {
    if request.channels.is_empty() {
        return Err(ApiError::BAD_REQUEST);
    }
    let data = payload(request.data, &request.b64data)?;
    let options = publish_options(
        request.tags,
        request.skip_history,
        request.idempotency_key,
        request.delta,
        request.version,
        request.version_epoch,
    );
    let responses = futures_util::stream::iter(request.channels)
        .map(|channel| {
            let (data, options) = (data.clone(), options.clone());
            async move {
                match publish_one(node, &channel, data, options).await {
                    Ok(result) => api::PublishResponse {
                        error: None,
                        result: Some(result),
                    },
                    Err(error) => api::PublishResponse {
                        error: Some(error.to_wire()),
                        result: None,
                    },
                }
            }
        })
        .buffered(BROADCAST_CONCURRENCY)
        .collect()
        .await;
    Ok(api::BroadcastResult { responses })
}

/// Sends `kind` to the connections matching `user` / `client` / `session` on every node.
async fn control(
    node: &Node,
    user: String,
    client: String,
    session: String,
    kind: control::Kind,
) -> Result<(), ApiError> {
    let command = mesh::Control {
        user,
        client,
        session,
        kind: Some(kind),
    };
    node.control(command).await.map(|_| ()).map_err(|error| {
        tracing::error!(%error, "API control command");
        ApiError::INTERNAL
    })
}

/// Subscribes matching connections of `user` on every edge. The `override` options have no
/// place in the mesh's `SubscribeCommand` yet and are not forwarded.
pub(super) async fn subscribe(
    node: &Node,
    request: api::SubscribeRequest,
) -> Result<api::SubscribeResult, ApiError> {
    require_channel(node, &request.channel)?;
    let info = payload(request.info, &request.b64info)?;
    let data = payload(request.data, &request.b64data)?;
    let command = mesh::SubscribeCommand {
        channel: request.channel,
        expire_at: request.expire_at,
        info,
        data,
        recover_since: request.recover_since.map(|p| client::StreamPosition {
            offset: p.offset,
            epoch: p.epoch,
        }),
    };
    let kind = control::Kind::Subscribe(command);
    control(node, request.user, request.client, request.session, kind).await?;
    Ok(api::SubscribeResult {})
}

/// Unsubscribes matching connections; the channel is checked only when given.
pub(super) async fn unsubscribe(
    node: &Node,
    request: api::UnsubscribeRequest,
) -> Result<api::UnsubscribeResult, ApiError> {
    if !request.channel.is_empty() {
        require_channel(node, &request.channel)?;
    }
    let kind = control::Kind::Unsubscribe(mesh::UnsubscribeCommand {
        channel: request.channel,
        ..Default::default()
    });
    control(node, request.user, request.client, request.session, kind).await?;
    Ok(api::UnsubscribeResult {})
}

/// Disconnects matching connections, except the whitelisted client ids.
pub(super) async fn disconnect(
    node: &Node,
    request: api::DisconnectRequest,
) -> Result<api::DisconnectResult, ApiError> {
    let (code, reason) = match request.disconnect {
        Some(d) => (d.code, d.reason),
        None => (FORCE_DISCONNECT.0, FORCE_DISCONNECT.1.to_owned()),
    };
    let kind = control::Kind::Disconnect(mesh::DisconnectCommand {
        code,
        reason,
        whitelist: request.whitelist,
    });
    control(node, request.user, request.client, request.session, kind).await?;
    Ok(api::DisconnectResult {})
}

/// Refreshes matching connections (new expiry / info, or expired).
pub(super) async fn refresh(
    node: &Node,
    request: api::RefreshRequest,
) -> Result<api::RefreshResult, ApiError> {
    let kind = control::Kind::Refresh(mesh::RefreshCommand {
        expired: request.expired,
        expire_at: request.expire_at,
        info: request.info,
    });
    control(node, request.user, request.client, request.session, kind).await?;
    Ok(api::RefreshResult {})
}

/// A client info as the API writes it.
fn api_info(info: client::ClientInfo) -> api::ClientInfo {
    api::ClientInfo {
        user: info.user,
        client: info.client,
        conn_info: info.conn_info,
        chan_info: info.chan_info,
    }
}

/// The clients present in the channel: 107 without a channel, 102 / 107 for its name, 108 when
/// the namespace has no `presence`.
pub(super) async fn presence(
    node: &Node,
    request: api::PresenceRequest,
) -> Result<api::PresenceResult, ApiError> {
    require_channel(node, &request.channel)?;
    let clients = node
        .presence(&request.channel)
        .await
        .map_err(|error| ApiError::from(&error))?;
    Ok(api::PresenceResult {
        presence: clients
            .into_iter()
            .map(|(client, info)| (client, api_info(info)))
            .collect(),
    })
}

/// Client and user counts of the channel (the anonymous user counting as one).
pub(super) async fn presence_stats(
    node: &Node,
    request: api::PresenceStatsRequest,
) -> Result<api::PresenceStatsResult, ApiError> {
    require_channel(node, &request.channel)?;
    let stats = node
        .presence_stats(&request.channel)
        .await
        .map_err(|error| ApiError::from(&error))?;
    Ok(api::PresenceStatsResult {
        num_clients: stats.num_clients,
        num_users: stats.num_users,
    })
}

/// The channel's history: 108 without history, 107 for `reverse` from offset 0, 112 for a
/// `since` epoch that is not the stream's. The limit is not capped (as in Centrifugo): negative
/// means every retained publication, 0 only the position.
pub(super) async fn history(
    node: &Node,
    request: api::HistoryRequest,
) -> Result<api::HistoryResult, ApiError> {
    require_channel(node, &request.channel)?;
    let query = HistoryQuery {
        since: request
            .since
            .map(|since| spindle_hub::history::StreamPosition::new(since.offset, since.epoch)),
        limit: HistoryQuery::limit_from_wire(request.limit, None),
        reverse: request.reverse,
    };
    let result = node
        .history(&request.channel, &query)
        .await
        .map_err(|error| ApiError::from(&error))?;
    let publications = result
        .publications
        .into_iter()
        .map(|item| api::Publication {
            data: item.publication.data.clone(),
            info: item.publication.info.clone().map(api_info),
            offset: item.offset,
            tags: item.publication.tags.clone(),
        })
        .collect();
    Ok(api::HistoryResult {
        publications,
        epoch: result.top.epoch,
        offset: result.top.offset,
    })
}

/// Forgets the channel's history; its next publication starts a new epoch. 108 without
/// history.
pub(super) async fn history_remove(
    node: &Node,
    request: api::HistoryRemoveRequest,
) -> Result<api::HistoryRemoveResult, ApiError> {
    require_channel(node, &request.channel)?;
    node.remove_history(&request.channel)
        .await
        .map_err(|error| ApiError::from(&error))?;
    Ok(api::HistoryRemoveResult {})
}

/// Every live node (this one first) with counts merged from its edges.
pub(super) async fn info(
    node: &Node,
    _request: api::InfoRequest,
) -> Result<api::InfoResult, ApiError> {
    let nodes = node
        .cluster_info()
        .await
        .into_iter()
        .map(|info| api::NodeResult {
            uid: info.uid,
            name: info.name,
            version: info.version,
            num_clients: info.num_clients,
            num_users: info.num_users,
            num_channels: info.num_channels,
            uptime: info.uptime_seconds,
            metrics: None,
            process: None,
            num_subs: info.num_subs,
            region: info.region,
            edges: info
                .edges
                .into_iter()
                .map(|edge| api::EdgeResult {
                    name: edge.name,
                    region: edge.region,
                    num_clients: edge.num_clients,
                    num_users: edge.num_users,
                    num_subs: edge.num_subs,
                })
                .collect(),
        })
        .collect();
    Ok(api::InfoResult { nodes })
}

/// No API RPC methods are registered (as in Centrifugo OSS): 107 without a method, else 104.
pub(super) fn rpc(_node: &Node, request: api::RpcRequest) -> Result<api::RpcResult, ApiError> {
    if request.method.is_empty() {
        return Err(ApiError::BAD_REQUEST);
    }
    Err(ApiError::NOT_FOUND)
}

/// Active channels over every edge, filtered by the glob `pattern` (107 when it does not parse).
pub(super) async fn channels(
    node: &Node,
    request: api::ChannelsRequest,
) -> Result<api::ChannelsResult, ApiError> {
    let pattern = ChannelPattern::new(&request.pattern).map_err(|_| ApiError::BAD_REQUEST)?;
    let channels = node
        .active_channels(&pattern)
        .await
        .into_iter()
        .map(|(channel, num_clients)| (channel, api::ChannelInfo { num_clients }))
        .collect();
    Ok(api::ChannelsResult { channels })
}
