//! Subscribing, for every kind of grant (client subscribe, connect's server-side subscriptions,
//! API subscribe), in four steps (docs/protocol.md §2.9, §4.2–§4.6):
//!
//! 1. [`Connection::attach`]: into the local hub, **buffering** (the core is told of interest
//!    when it is the channel's first local subscriber), so nothing published from now on is
//!    missed while the core is asked.
//! 2. [`Connection::position`]: the stream top (positioned) or the history since the client's
//!    offset (recovery, stream or cache mode), decided by `spindle_hub::history::recover`,
//!    merged with what was buffered meanwhile (deduplicated by offset), tags-filtered and
//!    delta-encoded into the reply.
//! 3. [`Connection::commit`]: recorded in the session; the caller queues the reply or push.
//! 4. [`Connection::activate`]: the buffer's rest goes out after the reply and the
//!    subscription goes live; then the join message (which makes the join push, §2.9). The
//!    presence entry itself is stored between steps 3 and 4, before the reply
//!    ([`super::presence`]).
//!
//! A failure in step 2 undoes step 1 ([`Connection::detach`]). Waiting for the core blocks only
//! this connection's task: fan-out keeps buffering for it, bounded, and never waits.

use super::Connection;
use super::query::{Refusal, strip};
use crate::clock::SystemNow;
use crate::deadline;
use crate::subscription::{
    BufferLimits, LocalSub, PositionLost, SubFlags, smaller_patch, wire_data,
};
use bytes::Bytes;
use spindle_hub::codes::{Disconnect, Unsubscribe};
use spindle_hub::config::RecoveryMode;
use spindle_hub::history::{
    HistoryQuery, StreamPosition, cache_recovery_query, recover, stream_recovery_query,
};
use spindle_hub::outcome::Failure;
use spindle_hub::registry::Added;
use spindle_hub::session::{Now, SubscribeGrant, tags_match};
use spindle_proto::{Format, client};
use std::sync::Arc;

impl Connection {
    /// Step 1: the subscription enters the local hub, buffering.
    pub(super) async fn attach(
        &mut self,
        grant: &SubscribeGrant,
        filter: Option<client::FilterNode>,
    ) -> Result<Arc<LocalSub>, Failure> {
        let options = grant.options;
        let flags = SubFlags {
            server_side: grant.server_side,
            positioned: options.positioned,
            delta: options.delta,
            push_join_leave: options.push_join_leave,
            presence: options.presence,
            keyed: grant.map.is_some(),
            shared_poll: grant.shared_poll.is_some(),
        };
        let limits = &self.shared.limits;
        let buffer = BufferLimits {
            publications: limits
                .recovery_max
                .saturating_add(limits.buffer_publications),
            bytes: limits.queue_max_size,
        };
        let sub = LocalSub::new(
            grant.channel.clone(),
            self.handle.clone(),
            flags,
            filter,
            buffer,
        );
        let added = self.shared.hub.subscribe(&grant.channel, Arc::clone(&sub));
        if added == Added::FirstInChannel {
            self.shared.interest.touch(&grant.channel);
        }
        // Every subscriber waits until the core has the channel's interest in effect (at once
        // when an earlier subscriber already waited): from then on nothing published is
        // missed, whatever order the link delivers history answers and events in.
        let ready = self
            .shared
            .interest
            .ready(&grant.channel, deadline::CORE)
            .await;
        if let Err(error) = ready {
            tracing::debug!(channel = grant.channel, %error, "interest not in effect");
            self.detach(&sub).await;
            return Err(Failure::Internal);
        }
        Ok(sub)
    }

    /// Undoes [`Connection::attach`].
    pub(super) async fn detach(&mut self, sub: &LocalSub) {
        sub.close();
        self.release_tracks(sub);
        self.close_stream(&sub.channel);
        self.leave_hub(&sub.channel).await;
    }

    /// Step 2: fills the result's position and recovery fields, and the subscription's
    /// tracked position and delta base. Error 112 when recovery failed and the client asked
    /// for that instead of `recovered: false`.
    pub(super) async fn position(
        &mut self,
        grant: &SubscribeGrant,
        sub: &LocalSub,
    ) -> Result<client::SubscribeResult, Refusal> {
        let options = grant.options;
        let mut result = grant.result.clone();
        if !options.positioned {
            return Ok(result);
        }
        let auto_cache = options.recoverable
            && options.recovery_mode == RecoveryMode::Cache
            && options.auto_cache_recover;
        let since = match (&grant.recover_since, auto_cache) {
            (Some(since), _) => StreamPosition::from(since.clone()),
            (None, true) => StreamPosition::default(),
            (None, false) => {
                let top = self
                    .read_history(&grant.channel, &position_only())
                    .await?
                    .top;
                sub.set_position(top.offset, &top.epoch);
                result.epoch = top.epoch;
                result.offset = top.offset;
                return Ok(result);
            }
        };
        let mode = options.recovery_mode;
        let limit = self.shared.limits.recovery_max;
        let query = match mode {
            RecoveryMode::Stream => stream_recovery_query(&since, limit),
            // The latest publication passing the filter, among the last `limit`.
            RecoveryMode::Cache if sub.has_filter() => HistoryQuery {
                since: None,
                limit: Some(limit),
                reverse: true,
            },
            RecoveryMode::Cache => cache_recovery_query(),
        };
        let mut history = self.read_history(&grant.channel, &query).await?;
        if mode == RecoveryMode::Cache {
            history.publications.retain(|p| sub.passes(p));
            history.publications.truncate(1);
        }
        let recovery = recover(mode, &since, history);
        result.was_recovering = true;
        result.recovered = recovery.recovered;
        result.epoch.clone_from(&recovery.epoch);
        result.offset = recovery.offset;
        if !recovery.recovered {
            if grant.reject_unrecovered {
                return Err(Failure::UnrecoverablePosition.into());
            }
            sub.set_position(recovery.offset, &recovery.epoch);
            return Ok(result);
        }
        let mut publications = recovery.publications;
        let position = match mode {
            RecoveryMode::Stream => {
                let top = publications.last().map_or(recovery.offset, |p| p.offset);
                match merge_buffered(sub, top, &recovery.epoch, &mut publications) {
                    Ok(position) => position,
                    Err(PositionLost) => {
                        sub.mark_lost();
                        top
                    }
                }
            }
            RecoveryMode::Cache => recovery.offset,
        };
        sub.set_position(position, &recovery.epoch);
        publications.retain(|p| sub.passes(p));
        for publication in &mut publications {
            strip(publication);
        }
        if options.delta {
            if let Some(last) = publications.last() {
                sub.set_delta_base(last.offset, last.data.clone());
            }
            encode_deltas(self.setup.format, &mut publications);
        }
        result.publications = publications;
        Ok(result)
    }

    /// Decides a client subscribe: the subscribe proxy, a JWKS-verified token, or the
    /// session's own rules.
    pub(super) async fn decide_subscribe(
        &mut self,
        request: &client::SubscribeRequest,
        now: Now,
    ) -> Result<SubscribeGrant, Failure> {
        let rules = &self.shared.rules;
        if let Some((call, bidirectional)) = self.session.subscribe_stream_proxy(rules, request) {
            let answer = self.open_stream(&call, bidirectional, request).await?;
            let decided = self.session.authorize_subscribe_proxied(
                &self.shared.rules,
                request,
                &answer,
                Now::system(),
            );
            if decided.is_err() {
                self.close_stream(&request.channel);
            }
            return decided;
        }
        match self.session.subscribe_proxy(rules, request) {
            Some(call) => {
                let answer = self.ask_subscribe(&call, request).await?;
                self.session.authorize_subscribe_proxied(
                    &self.shared.rules,
                    request,
                    &answer,
                    Now::system(),
                )
            }
            None => {
                let jwks = rules.subscription_jwks();
                match self.token_keys(jwks, &request.token).await {
                    Ok(Some(keys)) => self.session.authorize_subscribe_with_keys(
                        &self.shared.rules,
                        request,
                        &keys,
                        Now::system(),
                    ),
                    Ok(None) => self.session.authorize_subscribe(rules, request, now),
                    Err(error) => Err(error.failure(Failure::SubscriptionToken)),
                }
            }
        }
    }

    /// Step 3: records the subscription in the session and the connection.
    pub(super) fn commit(&mut self, grant: &SubscribeGrant, sub: &Arc<LocalSub>) {
        self.session.add_subscription(grant);
        self.subs.insert(grant.channel.clone(), Arc::clone(sub));
    }

    /// Step 4, after the reply or push is queued: the buffered rest, live delivery, presence.
    pub(super) async fn activate(&mut self, sub: &Arc<LocalSub>) {
        match sub.go_live() {
            Ok(()) => self.presence_joined(&sub.channel),
            Err(PositionLost) => self.on_position_lost(sub).await,
        }
    }

    /// A subscription lost its position: a server-side one disconnects with 3010, a client
    /// one is unsubscribed with 2500 (the SDK resubscribes, recovering). Ignored when the
    /// subscription is no longer this connection's (already replaced or removed).
    pub(super) async fn on_position_lost(&mut self, sub: &Arc<LocalSub>) {
        let current = self
            .subs
            .get(&sub.channel)
            .is_some_and(|s| Arc::ptr_eq(s, sub));
        if !current {
            return;
        }
        if sub.flags.server_side {
            self.close(Disconnect::INSUFFICIENT_STATE);
            return;
        }
        let channel = sub.channel.clone();
        self.unregister(&channel).await;
        self.push(client::Push {
            channel,
            unsubscribe: Some(Unsubscribe::INSUFFICIENT_STATE.to_push()),
            ..Default::default()
        });
    }

    /// A client subscribe: decide, attach, position, reply, go live, join. Map types go
    /// through their phases instead ([`Connection::subscribe_map`]).
    pub(super) async fn subscribe_client(
        &mut self,
        id: u32,
        request: &client::SubscribeRequest,
        now: Now,
    ) {
        if (1..=3).contains(&request.r#type) {
            return self.subscribe_map(id, request, now).await;
        }
        if request.r#type == spindle_hub::shared_poll::RESULT_TYPE_SHARED_POLL {
            return self.subscribe_shared_poll(id, request, now).await;
        }
        let grant = match self.decide_subscribe(request, now).await {
            Ok(grant) => grant,
            Err(failure) => return self.fail(failure, id),
        };
        let sub = match self.attach(&grant, request.tf.clone()).await {
            Ok(sub) => sub,
            Err(failure) => return self.fail(failure, id),
        };
        // A subscription stream flows from now on: its publications buffer like any others
        // until the reply is out.
        if let Err(failure) = self.start_stream(&grant.channel).await {
            self.detach(&sub).await;
            return self.fail(failure, id);
        }
        let result = match self.position(&grant, &sub).await {
            Ok(result) => result,
            Err(refusal) => {
                self.detach(&sub).await;
                return self.refuse(refusal, id);
            }
        };
        self.commit(&grant, &sub);
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
}

/// A read of the stream top only.
pub(super) fn position_only() -> HistoryQuery {
    HistoryQuery {
        since: None,
        limit: Some(0),
        reverse: false,
    }
}

/// Appends the publications buffered while history was read that come after `top`
/// (deduplicated by offset); returns the new position. A gap or another epoch among them is a
/// lost position.
pub(super) fn merge_buffered(
    sub: &LocalSub,
    top: u64,
    epoch: &str,
    publications: &mut Vec<client::Publication>,
) -> Result<u64, PositionLost> {
    let mut position = top;
    for event in sub.take_buffered()? {
        let offset = event.publication.offset;
        if offset <= position {
            continue;
        }
        if offset != position + 1 || (!event.epoch.is_empty() && event.epoch != epoch) {
            return Err(PositionLost);
        }
        publications.push(event.publication.clone());
        position = offset;
    }
    Ok(position)
}

/// Recovered publications for a delta-negotiated client: the first in full, each next one a
/// fossil delta against the one before when that is smaller; data as JSON strings on JSON.
fn encode_deltas(format: Format, publications: &mut [client::Publication]) {
    let mut previous: Option<Bytes> = None;
    for publication in publications {
        let data = publication.data.clone();
        let patch = previous
            .as_ref()
            .and_then(|base| smaller_patch(base, &data));
        // A payload that cannot be a string stays as it is: encoding the reply then fails and
        // closes the connection with 3506, as for any non-JSON payload to a JSON client.
        match patch {
            Some(patch) => {
                if let Ok(wire) = wire_data(format, &patch) {
                    publication.data = wire;
                    publication.delta = true;
                }
            }
            None => {
                if let Ok(wire) = wire_data(format, &data) {
                    publication.data = wire;
                }
            }
        }
        previous = Some(data);
    }
}

impl LocalSub {
    /// Whether a publication passes the tags filter (always, without one).
    pub(crate) fn passes(&self, publication: &client::Publication) -> bool {
        self.filter()
            .is_none_or(|filter| tags_match(filter, &publication.tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovered_publications_become_a_delta_chain() {
        let data = [
            &br#"{"price":100,"ticker":"AAPL","exchange":"NASDAQ","note":"steady as she goes"}"#[..],
            br#"{"price":101,"ticker":"AAPL","exchange":"NASDAQ","note":"steady as she goes"}"#,
            br#"{"price":102,"ticker":"AAPL","exchange":"NASDAQ","note":"steady as she goes"}"#,
        ];
        for format in [Format::Json, Format::Protobuf] {
            let mut publications: Vec<client::Publication> = data
                .iter()
                .enumerate()
                .map(|(i, d)| client::Publication {
                    data: Bytes::copy_from_slice(d),
                    offset: i as u64 + 1,
                    ..Default::default()
                })
                .collect();
            encode_deltas(format, &mut publications);
            let deltas: Vec<bool> = publications.iter().map(|p| p.delta).collect();
            assert_eq!(deltas, [false, true, true]);
            // Decode as the SDK does.
            let raw = |p: &client::Publication| -> Vec<u8> {
                match format {
                    Format::Json => serde_json::from_slice::<String>(&p.data)
                        .unwrap()
                        .into_bytes(),
                    Format::Protobuf => p.data.to_vec(),
                }
            };
            let mut previous = raw(&publications[0]);
            assert_eq!(previous, data[0]);
            for (publication, expected) in publications.iter().zip(data).skip(1) {
                previous = spindle_hub::delta::apply(&previous, &raw(publication)).unwrap();
                assert_eq!(previous, expected);
            }
        }
    }
}
