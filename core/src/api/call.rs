//! The API methods by name and number, and one decoded call of one of them.

use super::ApiError;
use super::{map_methods, methods};
use crate::Node;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use spindle_proto::{DecodeError, api};

/// A method this node serves (everything but `batch`, which wraps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Publish,
    Broadcast,
    Subscribe,
    Unsubscribe,
    Disconnect,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Info,
    Rpc,
    Refresh,
    Channels,
    MapPublish,
    MapRemove,
    MapReadState,
    MapReadStream,
    MapStats,
    MapClear,
    SharedPollPublish,
}

/// Name (route, batch key) and legacy number (`None`: the legacy protocol had none) of each
/// served method.
const SERVED: [(Method, &str, Option<i64>); 20] = [
    (Method::Publish, "publish", Some(0)),
    (Method::Broadcast, "broadcast", Some(1)),
    (Method::Unsubscribe, "unsubscribe", Some(2)),
    (Method::Disconnect, "disconnect", Some(3)),
    (Method::Presence, "presence", Some(4)),
    (Method::PresenceStats, "presence_stats", Some(5)),
    (Method::History, "history", Some(6)),
    (Method::HistoryRemove, "history_remove", Some(7)),
    (Method::Channels, "channels", Some(8)),
    (Method::Info, "info", Some(9)),
    (Method::Rpc, "rpc", Some(10)),
    (Method::Subscribe, "subscribe", Some(11)),
    (Method::Refresh, "refresh", Some(12)),
    (Method::MapPublish, "map_publish", None),
    (Method::MapRemove, "map_remove", None),
    (Method::MapReadState, "map_read_state", None),
    (Method::MapReadStream, "map_read_stream", None),
    (Method::MapStats, "map_stats", None),
    (Method::MapClear, "map_clear", None),
    (Method::SharedPollPublish, "shared_poll_publish", None),
];

/// Method names the legacy route knows but this node does not serve (PRO-only methods,
/// they answer 104, where a name nobody knows makes the body undecodable.
const UNSERVED: [&str; 19] = [
    "connections",
    "update_user_status",
    "get_user_status",
    "delete_user_status",
    "block_user",
    "unblock_user",
    "revoke_token",
    "invalidate_user_tokens",
    "device_register",
    "device_update",
    "device_remove",
    "device_list",
    "device_topic_list",
    "device_topic_update",
    "user_topic_list",
    "user_topic_update",
    "send_push_notification",
    "update_push_status",
    "cancel_push",
];

impl Method {
    pub fn name(self) -> &'static str {
        SERVED
            .iter()
            .find(|(m, ..)| *m == self)
            .map_or("", |(_, name, _)| name)
    }

    /// The method of a `/api/<name>` route (exact, lower case).
    pub fn from_route(name: &str) -> Option<Method> {
        SERVED.iter().find(|(_, n, _)| *n == name).map(|(m, ..)| *m)
    }

    /// A legacy method name, any case: `Ok(Some)` served, `Ok(None)` known but not served,
    /// `Err` unknown.
    pub fn from_legacy_name(name: &str) -> Result<Option<Method>, ()> {
        if let Some((method, ..)) = SERVED.iter().find(|(_, n, _)| n.eq_ignore_ascii_case(name)) {
            return Ok(Some(*method));
        }
        if UNSERVED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Ok(None);
        }
        Err(())
    }

    /// A legacy method number; `None` for numbers of methods not served here.
    pub fn from_legacy_number(number: i64) -> Option<Method> {
        SERVED
            .iter()
            .find(|(_, _, n)| *n == Some(number))
            .map(|(m, ..)| *m)
    }
}

/// One decoded call.
#[derive(Debug)]
pub(crate) enum Call {
    Publish(api::PublishRequest),
    Broadcast(api::BroadcastRequest),
    Subscribe(api::SubscribeRequest),
    Unsubscribe(api::UnsubscribeRequest),
    Disconnect(api::DisconnectRequest),
    Presence(api::PresenceRequest),
    PresenceStats(api::PresenceStatsRequest),
    History(api::HistoryRequest),
    HistoryRemove(api::HistoryRemoveRequest),
    Info(api::InfoRequest),
    Rpc(api::RpcRequest),
    Refresh(api::RefreshRequest),
    Channels(api::ChannelsRequest),
    MapPublish(api::MapPublishRequest),
    MapRemove(api::MapRemoveRequest),
    MapReadState(api::MapReadStateRequest),
    MapReadStream(api::MapReadStreamRequest),
    MapStats(api::MapStatsRequest),
    MapClear(api::MapClearRequest),
    SharedPollPublish(api::SharedPollPublishRequest),
}

/// A call's answer: its result as JSON, or an error.
pub(crate) type Outcome = Result<Box<RawValue>, ApiError>;

impl Call {
    /// Decodes `params` (a JSON object; `null` reads as the empty request) for `method`.
    pub fn decode(method: Method, params: &[u8]) -> Result<Call, DecodeError> {
        use decode_object as d;
        Ok(match method {
            Method::Publish => Call::Publish(d(params)?),
            Method::Broadcast => Call::Broadcast(d(params)?),
            Method::Subscribe => Call::Subscribe(d(params)?),
            Method::Unsubscribe => Call::Unsubscribe(d(params)?),
            Method::Disconnect => Call::Disconnect(d(params)?),
            Method::Presence => Call::Presence(d(params)?),
            Method::PresenceStats => Call::PresenceStats(d(params)?),
            Method::History => Call::History(d(params)?),
            Method::HistoryRemove => Call::HistoryRemove(d(params)?),
            Method::Info => Call::Info(d(params)?),
            Method::Rpc => Call::Rpc(d(params)?),
            Method::Refresh => Call::Refresh(d(params)?),
            Method::Channels => Call::Channels(d(params)?),
            Method::MapPublish => Call::MapPublish(d(params)?),
            Method::MapRemove => Call::MapRemove(d(params)?),
            Method::MapReadState => Call::MapReadState(d(params)?),
            Method::MapReadStream => Call::MapReadStream(d(params)?),
            Method::MapStats => Call::MapStats(d(params)?),
            Method::MapClear => Call::MapClear(d(params)?),
            Method::SharedPollPublish => Call::SharedPollPublish(d(params)?),
        })
    }

    /// The call of a batch command: its first method field set, in Centrifugo's order; `None`
    /// when none is.
    pub fn from_command(command: api::Command) -> Option<Call> {
        let api::Command {
            publish,
            broadcast,
            subscribe,
            unsubscribe,
            disconnect,
            presence,
            presence_stats,
            history,
            history_remove,
            info,
            rpc,
            refresh,
            channels,
            map_publish,
            map_remove,
            map_read_state,
            map_read_stream,
            map_stats,
            map_clear,
            shared_poll_publish,
        } = command;
        None.or(publish.map(Call::Publish))
            .or(broadcast.map(Call::Broadcast))
            .or(subscribe.map(Call::Subscribe))
            .or(unsubscribe.map(Call::Unsubscribe))
            .or(disconnect.map(Call::Disconnect))
            .or(history.map(Call::History))
            .or(history_remove.map(Call::HistoryRemove))
            .or(presence.map(Call::Presence))
            .or(presence_stats.map(Call::PresenceStats))
            .or(info.map(Call::Info))
            .or(rpc.map(Call::Rpc))
            .or(refresh.map(Call::Refresh))
            .or(channels.map(Call::Channels))
            .or(map_publish.map(Call::MapPublish))
            .or(map_remove.map(Call::MapRemove))
            .or(map_read_state.map(Call::MapReadState))
            .or(map_read_stream.map(Call::MapReadStream))
            .or(map_stats.map(Call::MapStats))
            .or(map_clear.map(Call::MapClear))
            .or(shared_poll_publish.map(Call::SharedPollPublish))
    }

    pub fn method(&self) -> Method {
        match self {
            Call::Publish(_) => Method::Publish,
            Call::Broadcast(_) => Method::Broadcast,
            Call::Subscribe(_) => Method::Subscribe,
            Call::Unsubscribe(_) => Method::Unsubscribe,
            Call::Disconnect(_) => Method::Disconnect,
            Call::Presence(_) => Method::Presence,
            Call::PresenceStats(_) => Method::PresenceStats,
            Call::History(_) => Method::History,
            Call::HistoryRemove(_) => Method::HistoryRemove,
            Call::Info(_) => Method::Info,
            Call::Rpc(_) => Method::Rpc,
            Call::Refresh(_) => Method::Refresh,
            Call::Channels(_) => Method::Channels,
            Call::MapPublish(_) => Method::MapPublish,
            Call::MapRemove(_) => Method::MapRemove,
            Call::MapReadState(_) => Method::MapReadState,
            Call::MapReadStream(_) => Method::MapReadStream,
            Call::MapStats(_) => Method::MapStats,
            Call::MapClear(_) => Method::MapClear,
            Call::SharedPollPublish(_) => Method::SharedPollPublish,
        }
    }

    /// Runs the call on `node`.
    pub async fn run(self, node: &Node) -> Outcome {
        match self {
            Call::Publish(r) => encode(methods::publish(node, r).await),
            Call::Broadcast(r) => encode(methods::broadcast(node, r).await),
            Call::Subscribe(r) => encode(methods::subscribe(node, r).await),
            Call::Unsubscribe(r) => encode(methods::unsubscribe(node, r).await),
            Call::Disconnect(r) => encode(methods::disconnect(node, r).await),
            Call::Presence(r) => encode(methods::presence(node, r).await),
            Call::PresenceStats(r) => encode(methods::presence_stats(node, r).await),
            Call::History(r) => encode(methods::history(node, r).await),
            Call::HistoryRemove(r) => encode(methods::history_remove(node, r).await),
            Call::Info(r) => encode(methods::info(node, r).await),
            Call::Rpc(r) => encode(methods::rpc(node, r)),
            Call::Refresh(r) => encode(methods::refresh(node, r).await),
            Call::Channels(r) => encode(methods::channels(node, r).await),
            Call::MapPublish(r) => encode(map_methods::map_publish(node, r).await),
            Call::MapRemove(r) => encode(map_methods::map_remove(node, r).await),
            Call::MapReadState(r) => encode(map_methods::map_read_state(node, r).await),
            Call::MapReadStream(r) => encode(map_methods::map_read_stream(node, r).await),
            Call::MapStats(r) => encode(map_methods::map_stats(node, r).await),
            Call::MapClear(r) => encode(map_methods::map_clear(node, r).await),
            Call::SharedPollPublish(r) => encode(map_methods::shared_poll_publish(node, r).await),
        }
    }
}

/// Decodes a request that must be a JSON object (or `null`, the empty request). serde would
/// also read a struct from an array of its fields; Centrifugo refuses that, and so do we.
pub(crate) fn decode_object<T: DeserializeOwned + Default>(json: &[u8]) -> Result<T, DecodeError> {
    let first = json.iter().copied().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') && first != Some(b'n') {
        return Err(DecodeError::Json("expected a JSON object".into()));
    }
    api::decode_json(json)
}

fn encode<T: Serialize>(result: Result<T, ApiError>) -> Outcome {
    let result = result?;
    serde_json::value::to_raw_value(&result).map_err(|error| {
        tracing::error!(%error, "API result does not encode");
        ApiError::INTERNAL
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for (method, name, number) in SERVED {
            assert_eq!(method.name(), name);
            assert_eq!(Method::from_route(name), Some(method));
            assert_eq!(
                Method::from_legacy_name(&name.to_uppercase()),
                Ok(Some(method))
            );
            if let Some(number) = number {
                assert_eq!(Method::from_legacy_number(number), Some(method));
            }
        }
        assert_eq!(Method::from_route("Publish"), None);
        assert_eq!(Method::from_route("batch"), None);
        assert_eq!(
            Method::from_legacy_name("Map_Publish"),
            Ok(Some(Method::MapPublish))
        );
        assert_eq!(
            Method::from_legacy_name("Shared_Poll_Publish"),
            Ok(Some(Method::SharedPollPublish))
        );
        assert_eq!(Method::from_legacy_name("Connections"), Ok(None));
        assert_eq!(Method::from_legacy_name("nope"), Err(()));
        assert_eq!(Method::from_legacy_number(13), None);
        assert_eq!(Method::from_legacy_number(-1), None);
    }

    #[test]
    fn batch_commands_take_the_first_method_in_order() {
        let command: api::Command =
            api::decode_json(br#"{"presence":{"channel":"a"},"history":{"channel":"b"}}"#).unwrap();
        assert_eq!(
            Call::from_command(command).unwrap().method(),
            Method::History
        );
        assert!(Call::from_command(api::Command::default()).is_none());
    }
}
