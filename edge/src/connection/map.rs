//! Map subscriptions (docs/protocol.md §2.10): the same `subscribe` command repeated through
//! phases — STATE pages (2), STREAM pages (1), LIVE (0) — until the edge answers a LIVE reply.
//!
//! Between its first page and going live a subscription is *loading*: the grant decided on
//! the first request is kept with the position the first state page was read at (`frozen`).
//! Later pages reuse the grant (no second authorization). Going live is the stream flow
//! ([`Connection::attach`] buffering, interest acknowledged) followed by a read of the change
//! stream since the frozen or recovered position and a merge with what was buffered, so the
//! hand-over is gap-free and duplicate-free: the SDK keeps no buffer of its own while paging.
//!
//! Deliberate choices against Centrifugo: a stream that no longer covers the client's position
//! is 112 even when all of it expired (Centrifugo then skips silently); the reply `type` is 1
//! for every map type, as Centrifugo's.

use super::Connection;
use super::query::{Refusal, strip};
use crate::subscription::{smaller_patch, wire_data};
use bytes::Bytes;
use spindle_hub::codes::Disconnect;
use spindle_hub::history::{HistoryQuery, StreamPosition};
use spindle_hub::map::MapSettings;
use spindle_hub::outcome::Failure;
use spindle_hub::session::{Now, SubscribeGrant, tags_match};
use spindle_mesh::mesh::{self, request, response};
use spindle_proto::Format;
use spindle_proto::client;
use std::collections::HashMap;
use std::time::Instant;

const PHASE_LIVE: i32 = 0;
const PHASE_STREAM: i32 = 1;
const PHASE_STATE: i32 = 2;
/// `SubscribeResult.type` of every map subscription.
const RESULT_TYPE_MAP: i32 = 1;

/// A map subscription between its first page and going live.
#[derive(Debug)]
pub(super) struct MapLoading {
    grant: SubscribeGrant,
    started: Instant,
    /// The position the first state page was read at: the stream catch-up starts there.
    frozen: Option<StreamPosition>,
    /// The stream top when the first stream page was asked for.
    stream_start: Option<u64>,
    /// The tags filter of the first request (validated with the grant): every page, the
    /// catch-up and live delivery pass through it.
    filter: Option<client::FilterNode>,
}

/// What one page request leads to.
enum Step {
    /// Another page: the reply, the subscription still loading.
    Page(client::SubscribeResult),
    /// Go live from `since` (`None` for maps without a stream), with the last state page.
    Live {
        since: Option<StreamPosition>,
        state: Vec<client::Publication>,
    },
}

impl Connection {
    /// A client subscribe of type 1–3.
    pub(super) async fn subscribe_map(
        &mut self,
        id: u32,
        request: &client::SubscribeRequest,
        now: Now,
    ) {
        let channel = request.channel.clone();
        let continuing = self.map_loading.contains_key(&channel)
            && (!request.cursor.is_empty() || request.phase != PHASE_STATE);
        if continuing {
            let expired = self.map_loading.get(&channel).is_some_and(|loading| {
                let timeout = loading.grant.map.and_then(|m| m.catch_up_timeout);
                timeout.is_some_and(|t| loading.started.elapsed() > t)
            });
            if expired {
                self.map_loading.remove(&channel);
                self.close(Disconnect::SLOW);
                return;
            }
        } else {
            if let Err(failure) = self.begin_map(request, now).await {
                return self.fail(failure, id);
            }
        }
        let Some((grant, filter)) = self
            .map_loading
            .get(&channel)
            .map(|l| (l.grant.clone(), l.filter.clone()))
        else {
            return self.fail(Failure::Internal, id);
        };
        let Some(settings) = grant.map else {
            self.map_loading.remove(&channel);
            return self.fail(Failure::Internal, id);
        };
        let step = match request.phase {
            PHASE_STATE => {
                let delta = grant.options.delta;
                self.map_state_page(request, settings, filter.as_ref(), delta)
                    .await
            }
            PHASE_STREAM => {
                let delta = grant.options.delta;
                self.map_stream_page(request, settings, filter.as_ref(), delta)
                    .await
            }
            PHASE_LIVE if settings.positioned() => Ok(Step::Live {
                since: Some(StreamPosition::new(request.offset, request.epoch.clone())),
                state: Vec::new(),
            }),
            PHASE_LIVE => Ok(Step::Live {
                since: None,
                state: Vec::new(),
            }),
            _ => Err(Failure::BadRequest.into()),
        };
        match step {
            Ok(Step::Page(result)) => self.send(&client::Reply {
                id,
                subscribe: Some(result),
                ..Default::default()
            }),
            Ok(Step::Live { since, state }) => {
                self.map_loading.remove(&channel);
                self.map_live(id, &grant, request, filter, since, state)
                    .await;
            }
            Err(refusal) => {
                self.map_loading.remove(&channel);
                self.refuse(refusal, id);
            }
        }
    }

    /// A first request: a state page without cursor, or a recovering stream page. Authorized
    /// like any subscribe, then recorded as loading.
    async fn begin_map(
        &mut self,
        request: &client::SubscribeRequest,
        now: Now,
    ) -> Result<(), Failure> {
        let recovering = request.phase == PHASE_STREAM && request.recover;
        if !request.cursor.is_empty() || (request.phase == PHASE_STREAM && !recovering) {
            // A continuation of nothing (or of another connection's pages).
            return Err(Failure::PermissionDenied);
        }
        if self.map_loading.contains_key(&request.channel) {
            return Err(Failure::AlreadySubscribed);
        }
        let grant = self.decide_subscribe(request, now).await?;
        if grant.map.is_none() {
            return Err(Failure::BadRequest);
        }
        self.map_loading.insert(
            request.channel.clone(),
            MapLoading {
                grant,
                started: Instant::now(),
                frozen: None,
                stream_start: None,
                filter: request.tf.clone(),
            },
        );
        Ok(())
    }

    /// Phase 2: one page of the state. The last page goes live at once when the stream has
    /// moved less than a page since the first one (always for maps without a stream).
    async fn map_state_page(
        &mut self,
        request: &client::SubscribeRequest,
        settings: MapSettings,
        filter: Option<&client::FilterNode>,
        delta: bool,
    ) -> Result<Step, Refusal> {
        let page = settings.pages.for_request(request.limit);
        let revision = (request.offset > 0 || !request.epoch.is_empty())
            .then(|| StreamPosition::new(request.offset, request.epoch.clone()));
        let read = mesh::MapStateRequest {
            channel: request.channel.clone(),
            cursor: request.cursor.clone(),
            limit: i32::try_from(page).unwrap_or(i32::MAX),
            revision: revision.clone().map(Into::into),
        };
        let response::Kind::MapState(state) = self.ask(request::Kind::MapState(read)).await? else {
            return Err(Failure::Internal.into());
        };
        let top = StreamPosition::new(state.offset, state.epoch.clone());
        let frozen = match self.map_loading.get_mut(&request.channel) {
            Some(loading) => loading.frozen.get_or_insert_with(|| top.clone()).clone(),
            None => return Err(Failure::Internal.into()),
        };
        let mut entries = state.state;
        // Entries written after the position the client holds come through the stream.
        if let Some(revision) = &revision {
            entries.retain(|entry| entry.offset <= revision.offset);
        }
        entries.retain(|entry| passes(filter, entry));
        if delta {
            full_values(self.setup.format, &mut entries);
        }
        if state.cursor.is_empty() {
            if !settings.positioned() {
                return Ok(Step::Live {
                    since: None,
                    state: entries,
                });
            }
            if frozen.offset.saturating_add(page as u64) >= top.offset {
                return Ok(Step::Live {
                    since: Some(frozen),
                    state: entries,
                });
            }
        }
        Ok(Step::Page(client::SubscribeResult {
            r#type: RESULT_TYPE_MAP,
            phase: PHASE_STATE,
            cursor: state.cursor,
            epoch: top.epoch,
            offset: frozen.offset,
            state: entries,
            ..Default::default()
        }))
    }

    /// Phase 1: one page of the change stream after the client's offset, or live when less
    /// than a page separates it from the top seen on the first stream request.
    async fn map_stream_page(
        &mut self,
        request: &client::SubscribeRequest,
        settings: MapSettings,
        filter: Option<&client::FilterNode>,
        delta: bool,
    ) -> Result<Step, Refusal> {
        if !settings.positioned() {
            return Err(Failure::BadRequest.into());
        }
        let since = StreamPosition::new(request.offset, request.epoch.clone());
        let start = match self
            .map_loading
            .get(&request.channel)
            .and_then(|l| l.stream_start)
        {
            Some(start) => start,
            None => {
                let top = self
                    .read_history(&request.channel, &super::subscribe::position_only())
                    .await?
                    .top;
                if !since.epoch.is_empty() && since.epoch != top.epoch {
                    return Err(Failure::UnrecoverablePosition.into());
                }
                if let Some(loading) = self.map_loading.get_mut(&request.channel) {
                    loading.stream_start = Some(top.offset);
                }
                top.offset
            }
        };
        let page = settings.pages.for_request(request.limit);
        if since.offset.saturating_add(page as u64) >= start {
            return Ok(Step::Live {
                since: Some(since),
                state: Vec::new(),
            });
        }
        let query = HistoryQuery {
            since: Some(since.clone()),
            limit: Some(page),
            reverse: false,
        };
        let history = self.read_history(&request.channel, &query).await?;
        let offset = history
            .publications
            .last()
            .map_or(since.offset, |p| p.offset);
        let mut publications = history.publications;
        // The page's offset is its last change's, filtered or not: the client continues there.
        publications.retain(|p| passes(filter, p));
        publications.iter_mut().for_each(strip);
        // The SDK takes stream pages as full values, never as deltas.
        if delta {
            full_values(self.setup.format, &mut publications);
        }
        Ok(Step::Page(client::SubscribeResult {
            r#type: RESULT_TYPE_MAP,
            phase: PHASE_STREAM,
            epoch: history.top.epoch,
            offset,
            publications,
            ..Default::default()
        }))
    }

    /// Phase 0: into the local hub (buffering), the changes since `since` merged with what
    /// was buffered, then the LIVE reply and live delivery. More changes than the catch-up
    /// limit, or a position the stream no longer has, is 112: the SDK starts over from the
    /// state.
    async fn map_live(
        &mut self,
        id: u32,
        grant: &SubscribeGrant,
        request: &client::SubscribeRequest,
        filter: Option<client::FilterNode>,
        since: Option<StreamPosition>,
        state: Vec<client::Publication>,
    ) {
        let sub = match self.attach(grant, filter).await {
            Ok(sub) => sub,
            Err(failure) => return self.fail(failure, id),
        };
        let debounce = grant.map.map_or(0, |m| m.publish_debounce.as_millis());
        let mut result = client::SubscribeResult {
            r#type: RESULT_TYPE_MAP,
            phase: PHASE_LIVE,
            state,
            publish_debounce: u32::try_from(debounce).unwrap_or(u32::MAX),
            ..grant.result.clone()
        };
        if let Some(since) = since {
            let limit = grant.map.map_or(0, |m| m.catch_up_limit);
            match self
                .map_catch_up(&sub, &request.channel, &since, limit)
                .await
            {
                Ok((publications, position)) => {
                    result.publications = publications;
                    result.epoch = position.epoch;
                    result.offset = position.offset;
                    result.recoverable = true;
                    if request.recover {
                        result.was_recovering = true;
                        result.recovered = true;
                    }
                }
                Err(refusal) => {
                    self.detach(&sub).await;
                    return self.refuse(refusal, id);
                }
            }
        }
        self.commit(grant, &sub);
        if !self.presence_stored(&grant.channel).await {
            return;
        }
        self.send(&client::Reply {
            id,
            subscribe: Some(result),
            ..Default::default()
        });
        self.activate(&sub).await;
    }

    /// The changes after `since` (at most `limit`), merged with the buffered ones; the
    /// subscription's position is set to the last.
    async fn map_catch_up(
        &mut self,
        sub: &crate::subscription::LocalSub,
        channel: &str,
        since: &StreamPosition,
        limit: usize,
    ) -> Result<(Vec<client::Publication>, StreamPosition), Refusal> {
        let query = HistoryQuery {
            since: Some(since.clone()),
            limit: Some(limit.saturating_add(1)),
            reverse: false,
        };
        let history = self.read_history(channel, &query).await?;
        let epoch = history.top.epoch;
        if history.publications.len() > limit || since.offset > history.top.offset {
            return Err(Failure::UnrecoverablePosition.into());
        }
        let mut publications = history.publications;
        let top = publications.last().map_or(since.offset, |p| p.offset);
        let position = match super::subscribe::merge_buffered(sub, top, &epoch, &mut publications) {
            Ok(position) => position,
            Err(crate::subscription::PositionLost) => {
                sub.mark_lost();
                top
            }
        };
        sub.set_position(position, &epoch);
        publications.retain(|p| sub.passes(p));
        publications.iter_mut().for_each(strip);
        if sub.flags.delta {
            key_deltas(self.setup.format, &mut publications);
        }
        Ok((publications, StreamPosition::new(position, epoch)))
    }
}

/// Whether an entry or change passes the subscription's tags filter (always, without one). A
/// removal carries the tags of the entry it removes, so it passes where the entry did.
fn passes(filter: Option<&client::FilterNode>, publication: &client::Publication) -> bool {
    filter.is_none_or(|filter| tags_match(filter, &publication.tags))
}

/// With delta negotiated on JSON every value travels as a JSON string (the SDK parses it after
/// applying deltas); removals carry no data. On Protobuf the bytes are as they are.
fn full_values(format: Format, publications: &mut [client::Publication]) {
    for publication in publications.iter_mut().filter(|p| !p.removed) {
        // A payload that cannot be a string stays as it is: the reply then fails to encode
        // and the connection closes with 3506, as for any non-JSON payload to a JSON client.
        if let Ok(wire) = wire_data(format, &publication.data) {
            publication.data = wire;
        }
    }
}

/// The catch-up of a delta-negotiated map subscriber: per key, the first change in full and
/// each next one a fossil delta against the one before when that is smaller (the SDK keeps one
/// base per key); removals untouched, and they end their key's chain.
fn key_deltas(format: Format, publications: &mut [client::Publication]) {
    let mut previous: HashMap<String, Bytes> = HashMap::new();
    for publication in publications.iter_mut() {
        if publication.removed {
            previous.remove(&publication.key);
            continue;
        }
        let data = publication.data.clone();
        let patch = previous
            .get(&publication.key)
            .and_then(|base| smaller_patch(base, &data));
        let wire = match &patch {
            Some(patch) => wire_data(format, patch),
            None => wire_data(format, &data),
        };
        if let Ok(wire) = wire {
            publication.data = wire;
            publication.delta = patch.is_some();
        }
        previous.insert(publication.key.clone(), data);
    }
}
