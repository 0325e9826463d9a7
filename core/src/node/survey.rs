//! Questions to every attached edge about its local state (`channels` and `info`), answered
//! with [`mesh::SurveyReply`]s and merged here.

use super::{EdgeId, Node};
use futures_util::future::join_all;
use spindle_hub::glob::ChannelPattern;
use spindle_mesh::mesh::{self, survey};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a survey waits for each edge; an edge that does not answer in time is left out.
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(5);

/// This node as `info` reports it: identity plus counts merged from its edges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: String,
    /// Connections over all edges.
    pub num_clients: u32,
    /// Users, summed over edges: a user connected to two edges counts twice (exact with one
    /// edge, as in `spindle serve`).
    pub num_users: u32,
    /// Channels with at least one subscriber on some edge (the node's interest table).
    pub num_channels: u32,
    /// Subscriptions over all edges.
    pub num_subs: u32,
    /// Seconds since the node was built.
    pub uptime_seconds: u32,
    /// `mesh.region` of this node ("" when unset).
    pub region: String,
    /// The edges in other processes attached to it, by name (none for `spindle serve`).
    pub edges: Vec<EdgeInfo>,
}

/// An edge attached to a core over the mesh, as `info` lists it (Spindle's addition to
/// Centrifugo's `NodeResult`, docs/protocol.md §6.2 "info").
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EdgeInfo {
    pub name: String,
    pub region: String,
    pub num_clients: u32,
    pub num_users: u32,
    pub num_subs: u32,
}

impl Node {
    pub(super) async fn survey(&self, kind: survey::Kind) -> Vec<mesh::SurveyReply> {
        self.survey_edges(kind)
            .await
            .into_iter()
            .map(|(_, _, reply)| reply)
            .collect()
    }

    /// A survey's replies with who gave them: the edge, and its region when it is in another
    /// process.
    async fn survey_edges(
        &self,
        kind: survey::Kind,
    ) -> Vec<(EdgeId, Option<String>, mesh::SurveyReply)> {
        let id = self.next_survey_id();
        let asks = self
            .inner
            .edges
            .links()
            .into_iter()
            .map(|(edge, region, link)| {
                let question = mesh::Survey {
                    id,
                    kind: Some(kind.clone()),
                };
                async move {
                    match tokio::time::timeout(SURVEY_TIMEOUT, link.survey(question)).await {
                        Ok(Ok(reply)) => Some((edge, region, reply)),
                        // The edge went away while we asked.
                        Ok(Err(_)) => None,
                        Err(_) => {
                            tracing::warn!(%edge, "edge did not answer a survey in time");
                            None
                        }
                    }
                }
            });
        join_all(asks).await.into_iter().flatten().collect()
    }

    /// Channels with subscribers on any edge of any node and their subscriber counts, filtered
    /// by `pattern`: this node's edges plus a survey of the other nodes on the broker (see
    /// [`super::REMOTE_SURVEY_TIMEOUT`]).
    pub async fn active_channels(&self, pattern: &ChannelPattern) -> BTreeMap<String, u32> {
        let (mut merged, remote) =
            tokio::join!(self.local_channels(pattern), self.remote_channels(pattern));
        for (channel, count) in remote {
            let total = merged.entry(channel).or_default();
            *total = total.saturating_add(count);
        }
        merged
    }

    /// Channels with subscribers on this node's edges, filtered by `pattern`.
    pub async fn local_channels(&self, pattern: &ChannelPattern) -> BTreeMap<String, u32> {
        let kind = survey::Kind::Channels(mesh::ChannelsSurvey {
            pattern: pattern.as_str().into(),
        });
        let mut merged: BTreeMap<String, u32> = BTreeMap::new();
        for reply in self.survey(kind).await {
            for (channel, count) in reply.channels {
                // Edges filter too; filtering again keeps the answer right whatever they do.
                if pattern.matches(&channel) {
                    let total = merged.entry(channel).or_default();
                    *total = total.saturating_add(count);
                }
            }
        }
        merged
    }

    /// Every live node: this one first ([`Node::local_info`]), then the others on the broker
    /// by name, as they last announced themselves.
    pub async fn cluster_info(&self) -> Vec<NodeInfo> {
        let mut nodes = vec![self.local_info().await];
        nodes.extend(self.remote_nodes());
        nodes
    }

    /// This node's identity and counts, merged from a survey of its edges.
    pub async fn info(&self) -> NodeInfo {
        self.local_info().await
    }

    /// This node's identity and counts, merged from a survey of its edges.
    pub async fn local_info(&self) -> NodeInfo {
        let identity = &self.inner.identity;
        let mut info = NodeInfo {
            uid: identity.uid.clone(),
            name: identity.name.clone(),
            version: identity.version.clone(),
            num_channels: saturating_u32(self.inner.edges.sizes().1),
            uptime_seconds: saturating_u32(self.inner.started.elapsed().as_secs()),
            region: self.inner.config.mesh.region.clone(),
            ..NodeInfo::default()
        };
        let survey = survey::Kind::Node(mesh::NodeSurvey {});
        for (edge, region, reply) in self.survey_edges(survey).await {
            let Some(stats) = reply.node else { continue };
            info.num_clients = info.num_clients.saturating_add(stats.num_clients);
            info.num_users = info.num_users.saturating_add(stats.num_users);
            info.num_subs = info.num_subs.saturating_add(stats.num_subs);
            if let Some(region) = region {
                info.edges.push(EdgeInfo {
                    name: edge.as_str().to_owned(),
                    region,
                    num_clients: stats.num_clients,
                    num_users: stats.num_users,
                    num_subs: stats.num_subs,
                });
            }
        }
        info.edges.sort_by(|a, b| a.name.cmp(&b.name));
        info
    }
}

fn saturating_u32(value: impl TryInto<u32>) -> u32 {
    value.try_into().unwrap_or(u32::MAX)
}
