//! The map methods of the server API (docs/protocol.md §6.2, "Map / shared-poll methods"):
//! 107 without a channel (or key), 102 / 107 for its name, 107 when its namespace is not a map
//! type, 112 for a revision or `since` position the map no longer has. And
//! `shared_poll_publish` (as Centrifugo's): 107 without channel, key or version, 102 for an
//! unknown namespace, 107 when the namespace is not `shared_poll`, 108 without
//! `shared_poll.publish_enabled`.

use super::ApiError;
use super::methods::{payload, require_channel};
use crate::broker::{HistoryItem, HistoryQuery, Publication, StreamPosition};
use crate::maps::{KeyMode, MapUpdate};
use crate::{MapCallError, MapPublishOptions, MapStateRead, Node};
use spindle_proto::api;

impl From<&MapCallError> for ApiError {
    fn from(error: &MapCallError) -> Self {
        (&error.client_error()).into()
    }
}

fn api_error(error: MapCallError) -> ApiError {
    ApiError::from(&error)
}

/// `key_mode`: `""`, `if_new` or `if_exists`; anything else is 107.
fn key_mode(mode: &str) -> Result<KeyMode, ApiError> {
    match mode {
        "" => Ok(KeyMode::Replace),
        "if_new" => Ok(KeyMode::IfNew),
        "if_exists" => Ok(KeyMode::IfExists),
        _ => Err(ApiError::BAD_REQUEST),
    }
}

fn entry(item: &HistoryItem) -> api::MapEntry {
    let publication = &item.publication;
    api::MapEntry {
        key: publication.key.clone(),
        data: publication.data.clone(),
        tags: publication.tags.clone(),
        offset: item.offset,
        removed: publication.removed,
        time: publication.time,
        score: 0,
    }
}

fn update_parts(update: MapUpdate) -> (u64, String, bool, String) {
    let reason = update
        .suppressed
        .map(|reason| reason.as_str().to_owned())
        .unwrap_or_default();
    (
        update.position.offset,
        update.position.epoch,
        update.suppressed.is_some(),
        reason,
    )
}

/// Sets a key. `score` and `stream_data` are accepted and not used (as in Centrifugo, where
/// ordered maps are not enabled).
pub(super) async fn map_publish(
    node: &Node,
    request: api::MapPublishRequest,
) -> Result<api::MapPublishResult, ApiError> {
    require_channel(node, &request.channel)?;
    let data = payload(request.data, &request.b64data)?;
    let options = MapPublishOptions {
        key_mode: key_mode(&request.key_mode)?,
        idempotency_key: request.idempotency_key,
        version: request.version,
        version_epoch: request.version_epoch,
        delta: request.delta,
    };
    let publication = Publication {
        data,
        tags: request.tags,
        ..Publication::default()
    };
    let update = node
        .map_publish(&request.channel, &request.key, publication, &options)
        .await
        .map_err(api_error)?;
    let (offset, epoch, suppressed, suppress_reason) = update_parts(update);
    Ok(api::MapPublishResult {
        offset,
        epoch,
        suppressed,
        suppress_reason,
    })
}

/// Removes a key (suppressed with `key_not_found` when absent).
pub(super) async fn map_remove(
    node: &Node,
    request: api::MapRemoveRequest,
) -> Result<api::MapRemoveResult, ApiError> {
    require_channel(node, &request.channel)?;
    let update = node
        .map_remove(&request.channel, &request.key, &request.idempotency_key)
        .await
        .map_err(api_error)?;
    let (offset, epoch, suppressed, suppress_reason) = update_parts(update);
    Ok(api::MapRemoveResult {
        offset,
        epoch,
        suppressed,
        suppress_reason,
    })
}

/// A page of the state: `limit` 0 is the position only, negative every entry; a cursor from
/// another channel is 107; `asc` is accepted and not used (keys come in byte order).
pub(super) async fn map_read_state(
    node: &Node,
    request: api::MapReadStateRequest,
) -> Result<api::MapReadStateResult, ApiError> {
    require_channel(node, &request.channel)?;
    let revision = (request.revision_offset > 0 || !request.revision_epoch.is_empty())
        .then(|| StreamPosition::new(request.revision_offset, request.revision_epoch));
    let read = MapStateRead {
        cursor: request.cursor,
        limit: HistoryQuery::limit_from_wire(request.limit, None),
        key: Some(request.key).filter(|key| !key.is_empty()),
        revision,
    };
    let state = node
        .map_state(&request.channel, &read)
        .await
        .map_err(api_error)?;
    let entries = state
        .entries
        .iter()
        .map(|e| {
            entry(&HistoryItem {
                offset: e.offset,
                publication: e.publication.clone(),
            })
        })
        .collect();
    Ok(api::MapReadStateResult {
        entries,
        offset: state.position.offset,
        epoch: state.position.epoch,
        cursor: state.cursor.unwrap_or_default(),
    })
}

/// The change stream since a position (`limit` as in `map_read_state`).
pub(super) async fn map_read_stream(
    node: &Node,
    request: api::MapReadStreamRequest,
) -> Result<api::MapReadStreamResult, ApiError> {
    require_channel(node, &request.channel)?;
    let since = (request.since_offset > 0 || !request.since_epoch.is_empty())
        .then(|| StreamPosition::new(request.since_offset, request.since_epoch));
    let query = HistoryQuery {
        since,
        limit: HistoryQuery::limit_from_wire(request.limit, None),
        reverse: request.reverse,
    };
    let result = node
        .map_stream(&request.channel, &query)
        .await
        .map_err(api_error)?;
    Ok(api::MapReadStreamResult {
        entries: result.publications.iter().map(entry).collect(),
        offset: result.top.offset,
        epoch: result.top.epoch,
    })
}

pub(super) async fn map_stats(
    node: &Node,
    request: api::MapStatsRequest,
) -> Result<api::MapStatsResult, ApiError> {
    require_channel(node, &request.channel)?;
    let keys = node.map_stats(&request.channel).await.map_err(api_error)?;
    Ok(api::MapStatsResult {
        num_keys: keys as u64,
    })
}

/// Forgets the map: subscribers resynchronize from a new epoch.
pub(super) async fn map_clear(
    node: &Node,
    request: api::MapClearRequest,
) -> Result<api::MapClearResult, ApiError> {
    require_channel(node, &request.channel)?;
    node.map_clear(&request.channel).await.map_err(api_error)?;
    Ok(api::MapClearResult {})
}

/// A versioned value of a shared-poll key, delivered to its trackers on every core when newer
/// than what each holds (docs/shared-poll.md).
pub(super) async fn shared_poll_publish(
    node: &Node,
    request: api::SharedPollPublishRequest,
) -> Result<api::SharedPollPublishResult, ApiError> {
    if request.channel.is_empty() || request.key.is_empty() || request.version == 0 {
        return Err(ApiError::BAD_REQUEST);
    }
    let data = payload(request.data, &request.b64data)?;
    node.shared_poll_publish(
        &request.channel,
        &request.key,
        request.version,
        &request.epoch,
        data,
    )
    .await
    .map_err(|error| ApiError::from(&error.client_error()))?;
    Ok(api::SharedPollPublishResult {})
}
