//! The local hub: which local connections exist, which users they belong to, and which channels
//! they are subscribed to, for fan-out of core events, API control commands and surveys.
//!
//! Fan-out follows DESIGN §5: one [`SharedReply`] per event, encoded at most once per format,
//! and the same `Bytes` queued to every subscriber; the subscriber list is a snapshot taken
//! under a shard lock and written to after it is released, and queueing never waits.

use crate::handle::{ClientId, ConnectionHandle};
use crate::subscription::{LocalSub, PubEvent, Variants};
use bytes::Bytes;
use spindle_hub::codes::Disconnect;
use spindle_hub::glob::ChannelPattern;
use spindle_hub::registry::{Added, Removed, SubscriptionRegistry};
use spindle_mesh::mesh;
use spindle_proto::{EncodeError, Format, SharedReply, client};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Shards of the channel registry.
const SHARDS: usize = 64;

/// One local subscription as fan-out sees it.
pub type Subscriber = Arc<LocalSub>;

/// Local connections and subscriptions.
#[derive(Debug)]
pub struct LocalHub {
    subscriptions: SubscriptionRegistry<ClientId, Subscriber>,
    connections: Mutex<Connections>,
    encodes: AtomicU64,
    events: AtomicU64,
    /// `client.channel_position_max_time_lag` in milliseconds; 0 = publications are never late.
    max_time_lag_ms: i64,
}

#[derive(Debug, Default)]
struct Connections {
    /// Every open connection, connected or not yet.
    all: HashMap<ClientId, ConnectionHandle>,
    /// Connected ones, by user.
    users: HashMap<String, HashSet<ClientId>>,
    user_of: HashMap<ClientId, String>,
}

/// Counts of the local hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubCounts {
    /// Open connections, connected or not.
    pub connections: usize,
    /// Connections that completed connect.
    pub clients: usize,
    /// Distinct users among them.
    pub users: usize,
    pub channels: usize,
    pub subscriptions: usize,
}

impl Default for LocalHub {
    fn default() -> Self {
        Self::new()
    }
}

/// The local subscriptions a presence refresh names in one channel: by client id, or with
/// their whole info where map presence is fed from them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PresenceMembers {
    pub clients: Vec<String>,
    pub infos: Vec<spindle_proto::client::ClientInfo>,
}

impl LocalHub {
    pub fn new() -> Self {
        Self::with_max_time_lag(Duration::ZERO)
    }

    /// A hub for which a publication arriving more than `max_time_lag` after its publish time
    /// is late (zero: never).
    pub fn with_max_time_lag(max_time_lag: Duration) -> Self {
        LocalHub {
            subscriptions: SubscriptionRegistry::new(SHARDS),
            connections: Mutex::new(Connections::default()),
            encodes: AtomicU64::new(0),
            events: AtomicU64::new(0),
            max_time_lag_ms: i64::try_from(max_time_lag.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Whether a publication published at `time` (unix ms, 0 = unknown) is later than
    /// `client.channel_position_max_time_lag`: one clock read per publication, not per
    /// subscriber. A publication without a time is never late.
    fn is_late(&self, time: i64) -> bool {
        self.max_time_lag_ms > 0
            && time > 0
            && crate::clock::unix_ms().saturating_sub(time) > self.max_time_lag_ms
    }

    fn connections(&self) -> MutexGuard<'_, Connections> {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection, before connect.
    pub fn open(&self, connection: ConnectionHandle) {
        self.connections()
            .all
            .insert(connection.client().clone(), connection);
    }

    /// The connection completed connect as `user`.
    pub fn connected(&self, client: &ClientId, user: &str) {
        let mut connections = self.connections();
        connections
            .users
            .entry(user.to_owned())
            .or_default()
            .insert(client.clone());
        connections.user_of.insert(client.clone(), user.to_owned());
    }

    /// The connection is gone. Its subscriptions must have been removed already.
    pub fn closed(&self, client: &ClientId) {
        let mut connections = self.connections();
        connections.all.remove(client);
        if let Some(user) = connections.user_of.remove(client)
            && let Some(clients) = connections.users.get_mut(&user)
        {
            clients.remove(client);
            if clients.is_empty() {
                connections.users.remove(&user);
            }
        }
    }

    /// Connected connections of `user`.
    pub fn user_connections(&self, user: &str) -> usize {
        self.connections().users.get(user).map_or(0, HashSet::len)
    }

    /// Open connections, connected or not.
    pub fn connection_count(&self) -> usize {
        self.connections().all.len()
    }

    /// Every open connection (for shutdown).
    pub fn all_connections(&self) -> Vec<ConnectionHandle> {
        self.connections().all.values().cloned().collect()
    }

    pub fn subscribe(&self, channel: &str, subscriber: Subscriber) -> Added {
        let client = subscriber.connection.client().clone();
        self.subscriptions.add(channel, client, subscriber)
    }

    pub fn unsubscribe(&self, channel: &str, client: &ClientId) -> Removed {
        self.subscriptions.remove(channel, client)
    }

    /// The local subscriptions of `channel` now (a snapshot).
    pub(crate) fn subscribers(&self, channel: &str) -> Option<Arc<[Subscriber]>> {
        self.subscriptions.subscribers(channel)
    }

    /// Whether any local connection is subscribed to `channel`.
    pub fn has_subscribers(&self, channel: &str) -> bool {
        self.subscriptions.count(channel) > 0
    }

    /// Offers a core event to every local subscriber of its channel: a publication goes
    /// through each subscription's state ([`LocalSub::offer`]: buffered, positioned, filtered,
    /// delta-encoded), a join or leave to those that asked for them. Encodes are shared.
    pub fn broadcast(&self, event: mesh::ChannelEvent) {
        use mesh::channel_event::Kind;
        let Some(subscribers) = self.subscriptions.subscribers(&event.channel) else {
            return;
        };
        self.events.fetch_add(1, Ordering::Relaxed);
        // A subscription stream's event: for one client's subscription only.
        let subscribers: Arc<[Subscriber]> = if event.client.is_empty() {
            subscribers
        } else {
            subscribers
                .iter()
                .filter(|s| s.connection.client().as_str() == event.client)
                .cloned()
                .collect()
        };
        let channel = event.channel;
        let push = match event.kind {
            Some(Kind::Publication(publication)) => {
                let late = self.is_late(publication.time);
                let mut event = PubEvent::new(channel, publication, event.epoch, event.prev_data);
                event.late = late;
                let event = Arc::new(event);
                let mut variants = Variants::new(&event);
                for subscriber in subscribers.iter() {
                    subscriber.offer(&event, &mut variants);
                }
                self.encodes
                    .fetch_add(variants.encodes(), Ordering::Relaxed);
                return;
            }
            Some(Kind::Join(info)) => client::Push {
                channel,
                join: Some(client::Join { info: Some(info) }),
                ..Default::default()
            },
            Some(Kind::Leave(info)) => client::Push {
                channel,
                leave: Some(client::Leave { info: Some(info) }),
                ..Default::default()
            },
            // A subscription stream ended: its subscriber is unsubscribed by its connection,
            // after the publications queued before (this is the channel's lane order).
            Some(Kind::StreamEnded(code)) => {
                self.stream_ended(&channel, &event.client, code);
                return;
            }
            // Shared-poll epochs are handled before fan-out (`crate::shared_poll`).
            Some(Kind::SharedPollEpoch(_)) | None => return,
        };
        let shared = SharedReply::push(push);
        let mut encoded: [Option<Result<Bytes, EncodeError>>; 2] = [None, None];
        for subscriber in subscribers.iter() {
            if !subscriber.accepts_join_leave() {
                continue;
            }
            let format = subscriber.connection.format();
            let slot = &mut encoded[format_index(format)];
            let bytes = slot.get_or_insert_with(|| {
                self.encodes.fetch_add(1, Ordering::Relaxed);
                shared.encoded(format)
            });
            match bytes {
                Ok(bytes) => {
                    subscriber.connection.push(bytes.clone());
                }
                Err(EncodeError::PayloadNotJson) => {
                    subscriber
                        .connection
                        .close(Disconnect::INAPPROPRIATE_PROTOCOL);
                }
            }
        }
    }

    /// Tells `client`'s connection to unsubscribe from `channel` with `code` (its subscription
    /// stream ended), as an API unsubscribe for that client would.
    fn stream_ended(&self, channel: &str, client: &str, code: u32) {
        let id = ClientId::from(client);
        let connections = self.connections();
        let (Some(user), Some(connection)) =
            (connections.user_of.get(&id), connections.all.get(&id))
        else {
            return;
        };
        connection.deliver(mesh::Control {
            user: user.clone(),
            client: client.to_owned(),
            kind: Some(mesh::control::Kind::Unsubscribe(mesh::UnsubscribeCommand {
                channel: channel.to_owned(),
                code,
            })),
            ..Default::default()
        });
    }

    /// Signals every subscriber of `channel` that its stream has a gap nothing could repair
    /// (each loses its position and its connection is told). Returns how many were told.
    pub fn lose_channel(&self, channel: &str) -> usize {
        let Some(subscribers) = self.subscriptions.subscribers(channel) else {
            return 0;
        };
        subscribers.iter().filter(|s| s.lose()).count()
    }

    /// Live local subscriptions in presence, by channel: what a presence refresh names.
    pub fn presence_members(&self) -> BTreeMap<String, PresenceMembers> {
        let mut members = BTreeMap::new();
        for channel in self.subscriptions.channels() {
            let Some(subscribers) = self.subscriptions.subscribers(&channel) else {
                continue;
            };
            let mut present = PresenceMembers::default();
            for sub in subscribers.iter().filter(|s| s.in_presence()) {
                match sub.presence_info() {
                    Some(info) => present.infos.push(info.clone()),
                    None => present.clients.push(sub.connection.client().to_string()),
                }
            }
            if !present.clients.is_empty() || !present.infos.is_empty() {
                members.insert(channel.to_string(), present);
            }
        }
        members
    }

    /// The connections an API control command may concern: by client id when one is given,
    /// else by user. The connection itself checks the rest (user, session) with its session.
    /// Clients in a disconnect's whitelist are left out.
    pub fn control_targets(&self, control: &mesh::Control) -> Vec<ConnectionHandle> {
        let whitelist: HashSet<&str> = match &control.kind {
            Some(mesh::control::Kind::Disconnect(command)) => {
                command.whitelist.iter().map(String::as_str).collect()
            }
            _ => HashSet::new(),
        };
        let connections = self.connections();
        let candidates: Vec<&ClientId> = if !control.client.is_empty() {
            let id = ClientId::from(control.client.as_str());
            match connections.user_of.get_key_value(&id) {
                Some((id, user)) if control.user.is_empty() || *user == control.user => vec![id],
                _ => Vec::new(),
            }
        } else if !control.user.is_empty() {
            connections
                .users
                .get(&control.user)
                .map(|clients| clients.iter().collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        candidates
            .into_iter()
            .filter(|id| !whitelist.contains(id.as_str()))
            .filter_map(|id| connections.all.get(id).cloned())
            .collect()
    }

    /// Local subscriber counts of the channels matching `pattern` (empty: every channel). A
    /// pattern that does not parse matches nothing.
    pub fn channel_counts(&self, pattern: &str) -> BTreeMap<String, u32> {
        let Ok(pattern) = ChannelPattern::new(pattern) else {
            return BTreeMap::new();
        };
        self.subscriptions
            .channels()
            .into_iter()
            .filter(|channel| pattern.matches(channel))
            .filter_map(|channel| {
                let count = self.subscriptions.count(&channel);
                (count > 0).then(|| (channel.to_string(), saturate(count)))
            })
            .collect()
    }

    pub fn counts(&self) -> HubCounts {
        let totals = self.subscriptions.totals();
        let connections = self.connections();
        HubCounts {
            connections: connections.all.len(),
            clients: connections.user_of.len(),
            users: connections.users.len(),
            channels: totals.channels,
            subscriptions: totals.subscriptions,
        }
    }

    /// Events fanned out, and encodes they cost (at most one per format per event).
    pub fn fanout_counters(&self) -> (u64, u64) {
        (
            self.events.load(Ordering::Relaxed),
            self.encodes.load(Ordering::Relaxed),
        )
    }

    /// The users with local connections, for tests and debugging.
    pub fn users(&self) -> BTreeMap<String, usize> {
        self.connections()
            .users
            .iter()
            .map(|(user, clients)| (user.clone(), clients.len()))
            .collect()
    }
}

fn format_index(format: Format) -> usize {
    match format {
        Format::Json => 0,
        Format::Protobuf => 1,
    }
}

pub(crate) fn saturate(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod time_lag_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::{BufferLimits, SubFlags};
    use crate::writer::Outbox;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// A live subscription with `flags`.
    fn live(channel: &str, connection: ConnectionHandle, flags: SubFlags) -> Subscriber {
        let limits = BufferLimits {
            publications: 100,
            bytes: 1 << 20,
        };
        let sub = LocalSub::new(channel.into(), connection, flags, None, limits);
        sub.go_live().unwrap();
        sub
    }

    fn connection(id: &str, format: Format) -> (ConnectionHandle, Arc<Outbox>) {
        let outbox = Arc::new(Outbox::new(format, 1 << 20));
        let (tx, _rx) = mpsc::channel(4);
        (
            ConnectionHandle::new(ClientId::from(id), outbox.clone(), tx),
            outbox,
        )
    }

    fn publication(channel: &str, data: &'static [u8]) -> mesh::ChannelEvent {
        mesh::ChannelEvent {
            channel: channel.into(),
            kind: Some(mesh::channel_event::Kind::Publication(
                client::Publication {
                    data: Bytes::from_static(data),
                    offset: 3,
                    ..Default::default()
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn one_encode_per_format_however_many_subscribers() {
        let hub = LocalHub::new();
        let mut outboxes = Vec::new();
        for i in 0..10 {
            let format = if i % 3 == 0 {
                Format::Protobuf
            } else {
                Format::Json
            };
            let (connection, outbox) = connection(&format!("c{i}"), format);
            hub.subscribe("news", live("news", connection, SubFlags::default()));
            outboxes.push(outbox);
        }
        hub.broadcast(publication("news", b"{\"x\":1}"));
        assert_eq!(hub.fanout_counters(), (1, 2));
        for outbox in &outboxes {
            assert!(outbox.queued_bytes() > 0);
        }
        hub.broadcast(publication("elsewhere", b"{}"));
        assert_eq!(hub.fanout_counters(), (1, 2));
    }

    #[test]
    fn non_json_payload_closes_json_subscribers_only() {
        let hub = LocalHub::new();
        let (json, json_box) = connection("j", Format::Json);
        let (proto, proto_box) = connection("p", Format::Protobuf);
        for connection in [json, proto] {
            hub.subscribe("bin", live("bin", connection, SubFlags::default()));
        }
        hub.broadcast(publication("bin", b"\xff\x00binary"));
        assert_eq!(json_box.closing(), Some(Disconnect::INAPPROPRIATE_PROTOCOL));
        assert_eq!(proto_box.closing(), None);
        assert!(proto_box.queued_bytes() > 0);
    }

    #[test]
    fn join_leave_only_to_those_who_asked() {
        let hub = LocalHub::new();
        let (wants, wants_box) = connection("a", Format::Json);
        let (not, not_box) = connection("b", Format::Json);
        let flags = SubFlags {
            push_join_leave: true,
            ..SubFlags::default()
        };
        hub.subscribe("room", live("room", wants, flags));
        hub.subscribe("room", live("room", not, SubFlags::default()));
        let join = mesh::ChannelEvent {
            channel: "room".into(),
            kind: Some(mesh::channel_event::Kind::Join(client::ClientInfo {
                user: "u".into(),
                client: "x".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        hub.broadcast(join);
        assert!(wants_box.queued_bytes() > 0);
        assert_eq!(not_box.queued_bytes(), 0);
    }

    #[test]
    fn control_targets_by_client_and_user_with_whitelist() {
        let hub = LocalHub::new();
        for (id, user) in [("c1", "alice"), ("c2", "alice"), ("c3", "bob")] {
            let (handle, _) = connection(id, Format::Json);
            hub.open(handle);
            hub.connected(&ClientId::from(id), user);
        }
        let (pending, _) = connection("c4", Format::Json);
        hub.open(pending);
        let ids = |control: &mesh::Control| {
            let mut ids: Vec<String> = hub
                .control_targets(control)
                .iter()
                .map(|h| h.client().to_string())
                .collect();
            ids.sort();
            ids
        };
        let by_user = mesh::Control {
            user: "alice".into(),
            ..Default::default()
        };
        assert_eq!(ids(&by_user), ["c1", "c2"]);
        let by_client = mesh::Control {
            client: "c3".into(),
            ..Default::default()
        };
        assert_eq!(ids(&by_client), ["c3"]);
        let wrong_user = mesh::Control {
            user: "alice".into(),
            client: "c3".into(),
            ..Default::default()
        };
        assert!(ids(&wrong_user).is_empty());
        let whitelisted = mesh::Control {
            user: "alice".into(),
            kind: Some(mesh::control::Kind::Disconnect(mesh::DisconnectCommand {
                whitelist: vec!["c2".into()],
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(ids(&whitelisted), ["c1"]);
        assert_eq!(
            hub.counts(),
            HubCounts {
                connections: 4,
                clients: 3,
                users: 2,
                channels: 0,
                subscriptions: 0
            }
        );
        hub.closed(&ClientId::from("c3"));
        assert_eq!(hub.counts().users, 1);
    }

    #[test]
    fn channel_counts_by_pattern() {
        let hub = LocalHub::new();
        for (id, channel) in [
            ("a", "chat:1"),
            ("b", "chat:1"),
            ("c", "chat:2"),
            ("d", "news"),
        ] {
            let (connection, _) = connection(id, Format::Json);
            hub.subscribe(channel, live(channel, connection, SubFlags::default()));
        }
        let chat = hub.channel_counts("chat:*");
        assert_eq!(chat.len(), 2);
        assert_eq!(chat["chat:1"], 2);
        assert_eq!(hub.channel_counts("").len(), 3);
        assert!(hub.channel_counts("[").is_empty());
    }
}
