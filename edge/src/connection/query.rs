//! Questions for the core over the mesh link — history reads, presence, presence stats — and the
//! client commands answered with them (docs/protocol.md §2.5, §4.5, §7.3 "Presence/history").

use super::Connection;
use crate::deadline;
use spindle_hub::history::{HistoryQuery, HistoryResult};
use spindle_hub::outcome::Failure;
use spindle_mesh::mesh::{self, request, response};
use spindle_proto::client;

/// Why the core's answer did not come: a failure of ours, or the core's own error reply
/// (passed to the client as it is, e.g. 108 history off, 112 epoch mismatch, 107).
#[derive(Debug)]
pub(super) enum Refusal {
    Failure(Failure),
    Core(client::Error),
}

impl From<Failure> for Refusal {
    fn from(failure: Failure) -> Self {
        Refusal::Failure(failure)
    }
}

impl Connection {
    /// Asks the core, within [`deadline::CORE`]; a dead link or no answer in time is
    /// [`Failure::Internal`].
    pub(super) async fn ask(&self, kind: request::Kind) -> Result<response::Kind, Refusal> {
        let response = self
            .shared
            .link()
            .request(Some(kind), deadline::CORE)
            .await
            .map_err(deadline::failure_of)?;
        match (response.error, response.kind) {
            (Some(error), _) => Err(Refusal::Core(error)),
            (None, Some(kind)) => Ok(kind),
            (None, None) => Err(Failure::Internal.into()),
        }
    }

    /// One history read of `channel`.
    pub(super) async fn read_history(
        &self,
        channel: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryResult<client::Publication>, Refusal> {
        let limit = match query.limit {
            Some(limit) => i32::try_from(limit).unwrap_or(i32::MAX),
            None => -1,
        };
        let request = mesh::HistoryRequest {
            channel: channel.to_owned(),
            limit,
            since: query.since.clone().map(Into::into),
            reverse: query.reverse,
        };
        match self.ask(request::Kind::History(request)).await? {
            response::Kind::History(result) => Ok(result.into()),
            _ => Err(Failure::Internal.into()),
        }
    }

    /// A refusal as the client sees it: the core's error as is, or our failure's outcome.
    pub(super) fn refuse(&mut self, refusal: Refusal, id: u32) {
        match refusal {
            Refusal::Failure(failure) => self.fail(failure, id),
            Refusal::Core(error) => self.send(&client::Reply {
                id,
                error: Some(error),
                ..Default::default()
            }),
        }
    }

    /// The client `history` command: access (108 / 103), the limit capped by
    /// `client.history_max_publication_limit` (negative = up to the cap), then the core's read.
    pub(super) async fn history(
        &mut self,
        id: u32,
        request: &client::HistoryRequest,
    ) -> Result<client::Reply, Refusal> {
        self.session
            .authorize_history(&self.shared.rules, &request.channel)?;
        let cap = self.shared.limits.history_max;
        let limit = HistoryQuery::limit_from_wire(request.limit, Some(cap)).unwrap_or(cap);
        let read = mesh::HistoryRequest {
            channel: request.channel.clone(),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
            since: request.since.clone(),
            reverse: request.reverse,
        };
        match self.ask(request::Kind::History(read)).await? {
            response::Kind::History(mut result) => {
                for publication in &mut result.publications {
                    strip(publication);
                }
                Ok(client::Reply {
                    id,
                    history: Some(result),
                    ..Default::default()
                })
            }
            _ => Err(Failure::Internal.into()),
        }
    }

    /// The client `presence` command: access (108 / 103), then the core's answer.
    pub(super) async fn presence(
        &mut self,
        id: u32,
        request: &client::PresenceRequest,
    ) -> Result<client::Reply, Refusal> {
        self.session
            .authorize_presence(&self.shared.rules, &request.channel)?;
        let question = mesh::PresenceRequest {
            channel: request.channel.clone(),
        };
        match self.ask(request::Kind::Presence(question)).await? {
            response::Kind::Presence(result) => Ok(client::Reply {
                id,
                presence: Some(result),
                ..Default::default()
            }),
            _ => Err(Failure::Internal.into()),
        }
    }

    /// The client `presence_stats` command: access (108 / 103), then the core's answer.
    pub(super) async fn presence_stats(
        &mut self,
        id: u32,
        request: &client::PresenceStatsRequest,
    ) -> Result<client::Reply, Refusal> {
        self.session
            .authorize_presence(&self.shared.rules, &request.channel)?;
        let question = mesh::PresenceStatsRequest {
            channel: request.channel.clone(),
        };
        match self.ask(request::Kind::PresenceStats(question)).await? {
            response::Kind::PresenceStats(result) => Ok(client::Reply {
                id,
                presence_stats: Some(result),
                ..Default::default()
            }),
            _ => Err(Failure::Internal.into()),
        }
    }
}

/// Clears the broker-internal fields of a publication before it reaches a client.
pub(super) fn strip(publication: &mut client::Publication) {
    publication.prev_data = Default::default();
    publication.time = 0;
}
