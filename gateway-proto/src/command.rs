//! The typed view of a client command: one id and exactly one request.

use crate::DecodeError;
use crate::client;

/// A client command after dispatch: the id and the one request it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// Echoed in the reply; 0 for a pong and usually for `send`.
    pub id: u32,
    pub request: Request,
}

/// What a command asks for. `Pong` is the empty command answering a server ping.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Connect(client::ConnectRequest),
    Subscribe(client::SubscribeRequest),
    Unsubscribe(client::UnsubscribeRequest),
    Publish(client::PublishRequest),
    Presence(client::PresenceRequest),
    PresenceStats(client::PresenceStatsRequest),
    History(client::HistoryRequest),
    Rpc(client::RpcRequest),
    Send(client::SendRequest),
    Refresh(client::RefreshRequest),
    SubRefresh(client::SubRefreshRequest),
    Pong,
}

impl Request {
    /// The request's name as it appears on the wire (`presence_stats`, `sub_refresh`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Request::Connect(_) => "connect",
            Request::Subscribe(_) => "subscribe",
            Request::Unsubscribe(_) => "unsubscribe",
            Request::Publish(_) => "publish",
            Request::Presence(_) => "presence",
            Request::PresenceStats(_) => "presence_stats",
            Request::History(_) => "history",
            Request::Rpc(_) => "rpc",
            Request::Send(_) => "send",
            Request::Refresh(_) => "refresh",
            Request::SubRefresh(_) => "sub_refresh",
            Request::Pong => "pong",
        }
    }
}

impl TryFrom<client::Command> for Command {
    type Error = DecodeError;

    /// Dispatches as Centrifugo does (docs/protocol.md §2.1, §2.6): a command with id 0 and no `send`
    /// is a pong; otherwise the first request present in the order connect, subscribe,
    /// unsubscribe, publish, presence, presence_stats, history, rpc, send, refresh, sub_refresh
    /// wins. An id > 0 with none of them (a lone `ping` included) is a protocol error.
    fn try_from(raw: client::Command) -> Result<Self, DecodeError> {
        let id = raw.id;
        if id == 0 && raw.send.is_none() {
            return Ok(Command {
                id,
                request: Request::Pong,
            });
        }
        let request = if let Some(r) = raw.connect {
            Request::Connect(r)
        } else if let Some(r) = raw.subscribe {
            Request::Subscribe(r)
        } else if let Some(r) = raw.unsubscribe {
            Request::Unsubscribe(r)
        } else if let Some(r) = raw.publish {
            Request::Publish(r)
        } else if let Some(r) = raw.presence {
            Request::Presence(r)
        } else if let Some(r) = raw.presence_stats {
            Request::PresenceStats(r)
        } else if let Some(r) = raw.history {
            Request::History(r)
        } else if let Some(r) = raw.rpc {
            Request::Rpc(r)
        } else if let Some(r) = raw.send {
            Request::Send(r)
        } else if let Some(r) = raw.refresh {
            Request::Refresh(r)
        } else if let Some(r) = raw.sub_refresh {
            Request::SubRefresh(r)
        } else {
            return Err(DecodeError::NoRequest { id });
        };
        Ok(Command { id, request })
    }
}

impl From<Command> for client::Command {
    fn from(command: Command) -> Self {
        let mut raw = client::Command {
            id: command.id,
            ..Default::default()
        };
        match command.request {
            Request::Connect(r) => raw.connect = Some(r),
            Request::Subscribe(r) => raw.subscribe = Some(r),
            Request::Unsubscribe(r) => raw.unsubscribe = Some(r),
            Request::Publish(r) => raw.publish = Some(r),
            Request::Presence(r) => raw.presence = Some(r),
            Request::PresenceStats(r) => raw.presence_stats = Some(r),
            Request::History(r) => raw.history = Some(r),
            Request::Rpc(r) => raw.rpc = Some(r),
            Request::Send(r) => raw.send = Some(r),
            Request::Refresh(r) => raw.refresh = Some(r),
            Request::SubRefresh(r) => raw.sub_refresh = Some(r),
            Request::Pong => {}
        }
        raw
    }
}
