//! Several nodes on one broker: control commands, node announcements and channel surveys
//! travel over the broker's control channel (Redis: the PUB/SUB channel `<prefix>.control`).
//!
//! Every message is `[kind][origin uid length: u8][origin uid][body]`; a node ignores the
//! messages it sent itself, so each command is applied exactly once per node (the issuing node
//! applies it directly, to report a slow edge as an error). Kinds:
//! - `c`: an API control command (disconnect, unsubscribe, subscribe, refresh), body a
//!   protobuf `mesh::Control`; every other node hands it to its edges.
//! - `i`: a node announcement, body JSON [`NodeInfo`]-like counts. Every node sends one at
//!   start and every [`NODE_INFO_INTERVAL`]; the others keep it for [`NODE_INFO_EXPIRY`]
//!   (3 intervals). `info` lists this node plus every announcement not expired.
//! - `q` / `r`: a channels survey and its replies. `channels` asks every node (`q`, body JSON
//!   `{id, pattern}`); each answers with its matching channels and subscriber counts (`r`, body
//!   JSON `{id, to, channels}` addressed to the asker). The asker waits for as many replies as
//!   it knows live nodes, at most [`REMOTE_SURVEY_TIMEOUT`], and sums the counts. A survey
//!   rather than counts in the announcements keeps announcements small whatever the number of
//!   channels, and keeps `channels` current rather than up to an interval old.
//!
//! - `e`: an `/emulation` frame for one node (body: survey id as 8 big-endian bytes, then a
//!   protobuf `EmulationRequest`). Only the named node acts: it hands the frame to its edges,
//!   then answers with an empty `r` reply of that id, which the asker waits for.
//!
//! - `p`: a `shared_poll_publish` (body: protobuf `api::SharedPollPublishRequest`, data
//!   decoded): every other node applies it to its own shared-poll channels.
//!
//! The memory engine has no control channel: one node, nothing to carry.

use super::{EdgeInfo, Inner, Node, NodeInfo};
use bytes::Bytes;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use spindle_hub::glob::ChannelPattern;
use spindle_mesh::mesh;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a node announces itself on the control channel.
pub const NODE_INFO_INTERVAL: Duration = Duration::from_secs(3);

/// How long an announcement keeps a node in `info`: three intervals.
pub const NODE_INFO_EXPIRY: Duration = Duration::from_secs(9);

/// How long `channels` waits for other nodes' replies.
pub const REMOTE_SURVEY_TIMEOUT: Duration = Duration::from_secs(2);

/// Control messages waiting to be handled; more are dropped with a warning.
pub(crate) const CONTROL_QUEUE_CAPACITY: usize = 4096;

const CONTROL: u8 = b'c';
const INFO: u8 = b'i';
const ASK: u8 = b'q';
const REPLY: u8 = b'r';
const EMULATE: u8 = b'e';
const SHARED_POLL_PUBLISH: u8 = b'p';

#[derive(Debug, Serialize, Deserialize)]
struct Announcement {
    uid: String,
    name: String,
    version: String,
    num_clients: u32,
    num_users: u32,
    num_channels: u32,
    num_subs: u32,
    uptime: u32,
    /// Absent from nodes before these fields existed.
    #[serde(default)]
    region: String,
    #[serde(default)]
    edges: Vec<EdgeInfo>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    id: u64,
    pattern: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    id: u64,
    to: String,
    channels: BTreeMap<String, u32>,
}

type Replies = mpsc::UnboundedSender<BTreeMap<String, u32>>;

/// What this node knows about the others.
#[derive(Debug, Default)]
pub(crate) struct Cluster {
    /// Other nodes by uid: their last announcement and when it came.
    nodes: Mutex<HashMap<String, (NodeInfo, Instant)>>,
    /// Channels surveys waiting for replies, by survey id.
    pending: Mutex<HashMap<u64, Replies>>,
}

impl Cluster {
    /// The other nodes heard from within [`NODE_INFO_EXPIRY`], by name.
    pub fn live_nodes(&self) -> Vec<NodeInfo> {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|_, (_, seen)| seen.elapsed() < NODE_INFO_EXPIRY);
        let mut live: Vec<NodeInfo> = nodes.values().map(|(info, _)| info.clone()).collect();
        live.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uid.cmp(&b.uid)));
        live
    }

    fn seen(&self, info: NodeInfo) {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.insert(info.uid.clone(), (info, Instant::now()));
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Replies>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn encode(kind: u8, origin: &str, body: &[u8]) -> Bytes {
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut out = Vec::with_capacity(2 + origin.len() + body.len());
    out.push(kind);
    out.push(origin.len() as u8);
    out.extend_from_slice(origin);
    out.extend_from_slice(body);
    out.into()
}

fn decode(payload: &[u8]) -> Option<(u8, &str, &[u8])> {
    let (&kind, rest) = payload.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (origin, body) = rest.split_at_checked(usize::from(len))?;
    Some((kind, std::str::from_utf8(origin).ok()?, body))
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl Node {
    /// Starts handling control messages from `queue` and announcing this node. Tasks hold the
    /// node weakly and end when it is dropped.
    pub(super) fn start_cluster(&self, mut queue: mpsc::Receiver<Bytes>) {
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Some(payload) = queue.recv().await {
                let Some(node) = upgrade(&weak) else { return };
                node.on_cluster_message(payload);
            }
        });
        let weak = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let Some(node) = upgrade(&weak) else { return };
                node.announce().await;
                drop(node);
                tokio::time::sleep(NODE_INFO_INTERVAL).await;
            }
        });
    }

    async fn announce(&self) {
        let info = self.local_info().await;
        let body = json(&Announcement {
            uid: info.uid,
            name: info.name,
            version: info.version,
            num_clients: info.num_clients,
            num_users: info.num_users,
            num_channels: info.num_channels,
            num_subs: info.num_subs,
            uptime: info.uptime_seconds,
            region: info.region,
            edges: info.edges,
        });
        self.publish_cluster(INFO, &body).await.ok();
    }

    async fn publish_cluster(&self, kind: u8, body: &[u8]) -> Result<(), ()> {
        let payload = encode(kind, &self.inner.identity.uid, body);
        self.inner
            .broker
            .publish_control(payload)
            .await
            .map_err(|error| tracing::warn!(%error, "control channel publish failed"))
    }

    /// Publishes an API control command for the other nodes.
    pub(super) async fn broadcast_control(&self, control: &mesh::Control) -> Result<(), ()> {
        if !self.inner.broker.has_control() {
            return Ok(());
        }
        self.publish_cluster(CONTROL, &control.encode_to_vec())
            .await
    }

    /// Publishes a `shared_poll_publish` for the other nodes.
    pub(super) async fn broadcast_shared_poll(
        &self,
        publish: &spindle_proto::api::SharedPollPublishRequest,
    ) -> Result<(), ()> {
        if !self.inner.broker.has_control() {
            return Ok(());
        }
        self.publish_cluster(SHARED_POLL_PUBLISH, &publish.encode_to_vec())
            .await
    }

    fn on_cluster_message(&self, payload: Bytes) {
        let Some((kind, origin, body)) = decode(&payload) else {
            tracing::warn!("undecodable control message");
            return;
        };
        if origin == self.inner.identity.uid {
            return;
        }
        match kind {
            CONTROL => {
                let Ok(control) = mesh::Control::decode(body) else {
                    tracing::warn!(origin, "undecodable control command");
                    return;
                };
                let node = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = node.inner.edges.send_control(control).await {
                        tracing::warn!(%error, "control command from another node");
                    }
                });
            }
            INFO => {
                let Ok(a) = serde_json::from_slice::<Announcement>(body) else {
                    return;
                };
                self.inner.cluster.seen(NodeInfo {
                    uid: a.uid,
                    name: a.name,
                    version: a.version,
                    num_clients: a.num_clients,
                    num_users: a.num_users,
                    num_channels: a.num_channels,
                    num_subs: a.num_subs,
                    uptime_seconds: a.uptime,
                    region: a.region,
                    edges: a.edges,
                });
            }
            ASK => {
                let Ok(ask) = serde_json::from_slice::<Ask>(body) else {
                    return;
                };
                let Ok(pattern) = ChannelPattern::new(&ask.pattern) else {
                    return;
                };
                let node = self.clone();
                let to = origin.to_owned();
                tokio::spawn(async move {
                    let channels = node.local_channels(&pattern).await;
                    let reply = Reply {
                        id: ask.id,
                        to,
                        channels,
                    };
                    node.publish_cluster(REPLY, &json(&reply)).await.ok();
                });
            }
            REPLY => {
                let Ok(reply) = serde_json::from_slice::<Reply>(body) else {
                    return;
                };
                if reply.to != self.inner.identity.uid {
                    return;
                }
                if let Some(replies) = self.inner.cluster.pending().get(&reply.id) {
                    let _ = replies.send(reply.channels);
                }
            }
            EMULATE => self.on_emulate(origin, body),
            SHARED_POLL_PUBLISH => {
                let Ok(p) = spindle_proto::api::SharedPollPublishRequest::decode(body) else {
                    tracing::warn!(origin, "undecodable shared_poll_publish");
                    return;
                };
                self.inner
                    .shared_polls
                    .publish(&p.channel, &p.key, p.version, &p.epoch, p.data);
            }
            _ => tracing::debug!(kind, "unknown control message kind"),
        }
    }

    /// Channels of the other live nodes matching `pattern`, summed; empty without a control
    /// channel or other nodes.
    pub(super) async fn remote_channels(&self, pattern: &ChannelPattern) -> BTreeMap<String, u32> {
        let mut merged = BTreeMap::new();
        let expected = self.inner.cluster.live_nodes().len();
        if !self.inner.broker.has_control() || expected == 0 {
            return merged;
        }
        let id = self.next_survey_id();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.inner.cluster.pending().insert(id, tx);
        let ask = Ask {
            id,
            pattern: pattern.as_str().to_owned(),
        };
        if self.publish_cluster(ASK, &json(&ask)).await.is_ok() {
            let deadline = tokio::time::Instant::now() + REMOTE_SURVEY_TIMEOUT;
            let mut got = 0;
            while got < expected {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(channels)) => {
                        got += 1;
                        for (channel, count) in channels {
                            if pattern.matches(&channel) {
                                let total: &mut u32 = merged.entry(channel).or_default();
                                *total = total.saturating_add(count);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tracing::warn!(got, expected, "channels survey: nodes did not answer");
                        break;
                    }
                }
            }
        }
        self.inner.cluster.pending().remove(&id);
        merged
    }

    /// Sends an emulation frame to the node it names and waits up to `timeout` for that node's
    /// answer: `Ok(false)` without one.
    pub(super) async fn forward_emulation(
        &self,
        request: spindle_proto::client::EmulationRequest,
        timeout: Duration,
    ) -> Result<bool, super::EmulationError> {
        let id = self.next_survey_id();
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.inner.cluster.pending().insert(id, tx);
        let mut body = id.to_be_bytes().to_vec();
        request.encode(&mut body).ok();
        let outcome = match self.publish_cluster(EMULATE, &body).await {
            Err(()) => Err(super::EmulationError),
            Ok(()) => Ok(matches!(
                tokio::time::timeout(timeout, rx.recv()).await,
                Ok(Some(_))
            )),
        };
        self.inner.cluster.pending().remove(&id);
        if matches!(outcome, Ok(false)) {
            tracing::warn!(
                node = request.node,
                "emulation frame: the node did not answer"
            );
        }
        outcome
    }

    fn on_emulate(&self, origin: &str, body: &[u8]) {
        let Some((id, request)) = body.split_first_chunk::<8>() else {
            return;
        };
        let Ok(request) = spindle_proto::client::EmulationRequest::decode(request) else {
            tracing::warn!(origin, "undecodable emulation frame");
            return;
        };
        if request.node != self.inner.identity.uid {
            return;
        }
        let reply = Reply {
            id: u64::from_be_bytes(*id),
            to: origin.to_owned(),
            channels: BTreeMap::new(),
        };
        let node = self.clone();
        tokio::spawn(async move {
            node.emulate_locally(request).await;
            node.publish_cluster(REPLY, &json(&reply)).await.ok();
        });
    }

    /// The other live nodes (see [`NODE_INFO_EXPIRY`]).
    pub(super) fn remote_nodes(&self) -> Vec<NodeInfo> {
        self.inner.cluster.live_nodes()
    }
}

fn upgrade(weak: &Weak<Inner>) -> Option<Node> {
    weak.upgrade().map(|inner| Node { inner })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let payload = encode(CONTROL, "uid-1", b"body");
        assert_eq!(decode(&payload), Some((CONTROL, "uid-1", &b"body"[..])));
        assert_eq!(decode(b"c"), None);
        assert_eq!(decode(b"c\x05ab"), None);
    }
}
