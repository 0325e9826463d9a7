//! One channel's poller: every `refresh_interval` it asks the backend for every tracked key
//! (in batches of `refresh_batch_size`), and at once for cold keys; what changed goes to the
//! edges tracking it. It stops `shutdown_delay` after the channel's last key went.

use super::{Entry, PollChannel, SharedPolls, State, lock};
use bytes::Bytes;
use spindle_hub::shared_poll::REFRESH_CALL_TIMEOUT;
use spindle_mesh::mesh::channel_event::Kind;
use spindle_proto::{client, proxy};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Events a change of state produced: (edges, event kind, prev_data, prev_version).
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    pub events: Vec<(Vec<u64>, Kind, Bytes, u64)>,
}

impl Outgoing {
    /// `key` now holds `data` at `version`: its trackers hear of it, with the previous value
    /// as a delta base (the core's own, or the backend's `prev_data`).
    pub fn change(
        &mut self,
        key: &str,
        entry: &mut Entry,
        version: u64,
        data: Bytes,
        backend_prev: Option<Bytes>,
    ) {
        let (prev_data, prev_version) = match (entry.data.take(), backend_prev) {
            (Some(prev), _) => (prev, entry.version),
            (None, Some(prev)) if !prev.is_empty() => (prev, entry.version),
            _ => (Bytes::new(), 0),
        };
        entry.version = version;
        entry.data = Some(data.clone());
        let publication = client::Publication {
            key: key.to_owned(),
            data,
            version,
            ..Default::default()
        };
        self.events.push((
            entry.edges.iter().copied().collect(),
            Kind::Publication(publication),
            prev_data,
            prev_version,
        ));
    }

    fn removal(&mut self, key: &str, entry: &Entry) {
        let publication = client::Publication {
            key: key.to_owned(),
            removed: true,
            ..Default::default()
        };
        self.events.push((
            entry.edges.iter().copied().collect(),
            Kind::Publication(publication),
            Bytes::new(),
            0,
        ));
    }
}

/// Versioned mode: the backend's `epoch` replaces the channel's. Versions from before mean
/// nothing now: every value is dropped and every edge with the channel is told, so its
/// subscribers start over (2500) and track again.
pub(super) fn flip_epoch(state: &mut State, epoch: &str, out: &mut Outgoing) {
    if state.epoch == epoch {
        return;
    }
    // Even from "" (the first epoch the backend gives): subscribers were told "" and the SDK
    // resets its versions only when an epoch it knew changes, so it must hear this one (as
    // Centrifugo, one resubscribe).
    state.epoch = epoch.to_owned();
    state.parked.clear();
    for entry in state.entries.values_mut() {
        entry.version = 0;
        entry.data = None;
        entry.fresh = false;
    }
    let edges: Vec<u64> = state.seqs.keys().copied().collect();
    if !edges.is_empty() {
        out.events.push((
            edges,
            Kind::SharedPollEpoch(epoch.to_owned()),
            Bytes::new(),
            0,
        ));
    }
}

/// Runs until the channel has had no key for `shutdown_delay`.
pub(super) async fn run(polls: SharedPolls, channel: Arc<PollChannel>) {
    let interval = channel.settings.refresh_interval;
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let idle_until = lock(&channel.state)
            .idle_since
            .map(|since| since + channel.settings.shutdown_delay);
        if idle_until.is_some_and(|at| at <= Instant::now()) && polls.close_if_idle(&channel) {
            return;
        }
        let wake_at = match idle_until {
            Some(at) => next.min(tokio::time::Instant::from_std(at)),
            None => next,
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {
                if tokio::time::Instant::now() >= next {
                    let started = tokio::time::Instant::now();
                    let keys = due_keys(&channel);
                    polls.poll(&channel, keys).await;
                    // Period-based: a slow backend shortens the wait, never stacks calls.
                    next = (started + interval).max(tokio::time::Instant::now());
                }
            }
            () = channel.wake.notified() => {
                let cold: Vec<String> = std::mem::take(&mut lock(&channel.state).cold)
                    .into_iter()
                    .collect();
                polls.poll(&channel, cold).await;
            }
        }
    }
}

/// The keys a timed poll asks for: all, except those `shared_poll_publish` just wrote. Parked
/// values older than `shutdown_delay` go.
fn due_keys(channel: &PollChannel) -> Vec<String> {
    let mut state = lock(&channel.state);
    let delay = channel.settings.shutdown_delay;
    state
        .parked
        .retain(|_, parked| parked.since.elapsed() < delay);
    let mut keys = Vec::with_capacity(state.entries.len());
    for (key, entry) in &mut state.entries {
        if std::mem::take(&mut entry.fresh) {
            continue;
        }
        keys.push(key.clone());
    }
    keys.sort_unstable();
    keys
}

impl SharedPolls {
    /// Stops the channel if it is still idle: out of the map, closed for late requests.
    fn close_if_idle(&self, channel: &Arc<PollChannel>) -> bool {
        let mut channels = lock(&self.inner.channels);
        let mut state = lock(&channel.state);
        let idle = state
            .idle_since
            .is_some_and(|since| since + channel.settings.shutdown_delay <= Instant::now());
        if !idle || !state.entries.is_empty() {
            return false;
        }
        state.closed = true;
        if channels
            .get(&channel.name)
            .is_some_and(|c| Arc::ptr_eq(c, channel))
        {
            channels.remove(&channel.name);
        }
        true
    }

    /// Asks the backend for `keys` (those still tracked), batch by batch, and applies each
    /// answer.
    async fn poll(&self, channel: &PollChannel, keys: Vec<String>) {
        for batch in keys.chunks(channel.settings.refresh_batch_size.max(1)) {
            let items: Vec<proxy::SharedPollRefreshItem> = {
                let state = lock(&channel.state);
                batch
                    .iter()
                    .filter_map(|key| {
                        let entry = state.entries.get(key)?;
                        Some(proxy::SharedPollRefreshItem {
                            key: key.clone(),
                            version: if channel.settings.versioned {
                                entry.version
                            } else {
                                0
                            },
                        })
                    })
                    .collect()
            };
            if items.is_empty() {
                continue;
            }
            let Some(result) = self.call(channel, items).await else {
                continue;
            };
            let mut out = Outgoing::default();
            let mut state = lock(&channel.state);
            self.apply_answer(channel, &mut state, result, &mut out);
            let woke = self.note_idle(&mut state);
            drop(state);
            if woke {
                channel.wake.notify_one();
            }
            self.send(channel, out);
        }
        self.repay(channel);
    }

    async fn call(
        &self,
        channel: &PollChannel,
        items: Vec<proxy::SharedPollRefreshItem>,
    ) -> Option<proxy::SharedPollRefreshResult> {
        let counters = &self.inner.counters;
        let _permit = self.inner.calls.acquire().await.ok()?;
        counters.calls.fetch_add(1, Ordering::Relaxed);
        counters
            .keys_polled
            .fetch_add(items.len() as u64, Ordering::Relaxed);
        let request = proxy::SharedPollRefreshRequest {
            channel: channel.name.clone(),
            items,
        };
        let call = self
            .inner
            .proxies
            .shared_poll_refresh(&channel.settings.proxy_name, request);
        let response = match tokio::time::timeout(REFRESH_CALL_TIMEOUT, call).await {
            Ok(response) => response,
            Err(_) => proxy::SharedPollRefreshResponse {
                error: Some(crate::proxy::internal_error()),
                ..Default::default()
            },
        };
        if let Some(error) = response.error {
            counters.failed_calls.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                channel = channel.name,
                code = error.code,
                message = error.message,
                "shared poll refresh failed: keys wait for the next interval"
            );
            return None;
        }
        Some(response.result.unwrap_or_default())
    }

    /// What one backend answer changes: removals, and values that are new (versioned: a
    /// higher version; versionless: other data, numbered from the core's counter).
    fn apply_answer(
        &self,
        channel: &PollChannel,
        state: &mut State,
        result: proxy::SharedPollRefreshResult,
        out: &mut Outgoing,
    ) {
        let versioned = channel.settings.versioned;
        if versioned {
            flip_epoch(state, &result.epoch, out);
        }
        for item in result.items {
            if item.removed {
                if let Some(entry) = state.entries.remove(&item.key) {
                    state.cold.remove(&item.key);
                    out.removal(&item.key, &entry);
                }
                continue;
            }
            let Some(entry) = state.entries.get_mut(&item.key) else {
                continue;
            };
            if versioned {
                if item.version > entry.version {
                    let prev = (!item.prev_data.is_empty()).then_some(item.prev_data);
                    out.change(&item.key, entry, item.version, item.data, prev);
                }
            } else if entry.data.as_ref() != Some(&item.data) {
                let version = self.next_version();
                out.change(&item.key, entry, version, item.data, None);
            }
        }
    }
}
