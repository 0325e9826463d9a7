//! Shared-poll subscriptions of one connection (docs/shared-poll.md): subscribe (type 4),
//! track and untrack (`sub_refresh` of type 1 / 2), expired signatures, and giving keys back
//! when the subscription ends. The keys' values and the core's side live in
//! [`crate::shared_poll`].

use super::Connection;
use crate::clock::SystemNow as _;
use crate::shared_poll::{self, Tracks};
use crate::subscription::LocalSub;
use spindle_hub::outcome::Failure;
use spindle_hub::session::Now;
use spindle_hub::shared_poll::{TYPE_TRACK, TYPE_UNTRACK};
use spindle_proto::{EncodeError, client};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

fn lock(sub: &LocalSub) -> Option<MutexGuard<'_, Tracks>> {
    sub.tracks()
        .map(|tracks| tracks.lock().unwrap_or_else(PoisonError::into_inner))
}

impl Connection {
    /// A client subscribe of type 4: decided like any subscribe, into the local hub (the
    /// core's interest in the channel carries the key events), the channel's epoch from the
    /// core, the reply; keys come with tracks.
    pub(super) async fn subscribe_shared_poll(
        &mut self,
        id: u32,
        request: &client::SubscribeRequest,
        now: Now,
    ) {
        let grant = match self.decide_subscribe(request, now).await {
            Ok(grant) => grant,
            Err(failure) => return self.fail(failure, id),
        };
        let sub = match self.attach(&grant, None).await {
            Ok(sub) => sub,
            Err(failure) => return self.fail(failure, id),
        };
        let link = self.shared.link();
        let epoch = match self.shared.shared_poll.sync(&link, &grant.channel).await {
            Ok(epoch) => epoch,
            Err(failed) => {
                self.detach(&sub).await;
                return self.fail(failed.into(), id);
            }
        };
        self.commit(&grant, &sub);
        if !self.presence_stored(&grant.channel).await {
            return;
        }
        self.send(&client::Reply {
            id,
            subscribe: Some(client::SubscribeResult {
                epoch,
                ..grant.result.clone()
            }),
            ..Default::default()
        });
        self.activate(&sub).await;
    }

    /// Whether a `sub_refresh` is a track or untrack of a shared-poll subscription (anything
    /// else is a token refresh).
    pub(super) fn is_track(&self, request: &client::SubRefreshRequest) -> bool {
        matches!(request.r#type, TYPE_TRACK | TYPE_UNTRACK)
            && self.session.shared_poll_of(&request.channel).is_some()
    }

    /// A track or untrack; the reply (or error) is sent here.
    pub(super) async fn track(&mut self, id: u32, request: &client::SubRefreshRequest, now: Now) {
        let outcome = if request.r#type == TYPE_TRACK {
            self.track_keys(id, request, now).await
        } else {
            self.untrack_keys(id, request).await
        };
        if let Err(failure) = outcome {
            self.fail(failure, id);
        }
        self.track_deadline = self.next_track_expiry();
    }

    async fn track_keys(
        &mut self,
        id: u32,
        request: &client::SubRefreshRequest,
        now: Now,
    ) -> Result<(), Failure> {
        let sub = self.subs.get(&request.channel).cloned();
        let grant = {
            let tracks = sub.as_deref().and_then(lock);
            let tracked = |key: &str| tracks.as_ref().is_some_and(|t| t.contains(key));
            let count = tracks.as_ref().map_or(0, |t| t.len());
            self.session
                .authorize_track(&self.shared.rules, request, tracked, count, now)?
        };
        let sub = sub.ok_or(Failure::PermissionDenied)?;
        let channel = grant.channel.as_str();
        let keys = Arc::clone(&self.shared.shared_poll);
        // Upstream first: the keys new to this subscription count once more here, and the core
        // hears of those new to the edge; the answer brings the values it holds.
        let new = lock(&sub)
            .map(|t| shared_poll::new_keys(&t, &grant.items))
            .unwrap_or_default();
        let generation = keys.acquire(channel, &new);
        if let Err(failed) = keys.sync(&self.shared.link(), channel).await {
            keys.release(generation, channel, &new);
            self.sync_later(channel);
            return Err(failed.into());
        }
        let format = self.setup.format;
        let delta = sub.flags.delta;
        let Some(mut tracks) = lock(&sub) else {
            return Err(Failure::Internal);
        };
        let registered = shared_poll::register(
            &mut tracks,
            &grant.items,
            |key| keys.held(channel, key),
            delta,
            format,
        );
        let registered = match registered {
            Ok(registered) => registered,
            Err(EncodeError::PayloadNotJson) => {
                drop(tracks);
                return Err(Failure::Encode(EncodeError::PayloadNotJson));
            }
        };
        let mut untracked = tracks.untrack(&grant.untrack);
        // Queued under the subscription's lock: events of these keys come after it, and the
        // removals of keys revoked while the track was on its way right after it.
        self.send(&client::Reply {
            id,
            sub_refresh: Some(client::SubRefreshResult {
                items: registered.items,
                ..grant.result.clone()
            }),
            ..Default::default()
        });
        for key in &registered.removed {
            self.push(client::Push {
                channel: channel.to_owned(),
                r#pub: Some(client::Publication {
                    key: key.clone(),
                    removed: true,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        drop(tracks);
        untracked.extend(registered.removed.into_iter().filter(|k| new.contains(k)));
        if keys.release(generation, channel, &untracked) {
            self.sync_later(channel);
        }
        Ok(())
    }

    async fn untrack_keys(
        &mut self,
        id: u32,
        request: &client::SubRefreshRequest,
    ) -> Result<(), Failure> {
        let grant = self.session.authorize_untrack(request)?;
        let untracked = match self.subs.get(&grant.channel).and_then(|s| lock(s)) {
            Some(mut tracks) => tracks.untrack(&grant.keys),
            None => Vec::new(),
        };
        self.give_back(&grant.channel, &untracked);
        self.send(&client::Reply {
            id,
            sub_refresh: Some(client::SubRefreshResult::default()),
            ..Default::default()
        });
        Ok(())
    }

    /// The subscription ends (unsubscribe, lost, connection closing): its keys are given back.
    pub(super) fn release_tracks(&mut self, sub: &LocalSub) {
        let Some(keys) = lock(sub).map(|mut t| t.close()) else {
            return;
        };
        let shared_poll = &self.shared.shared_poll;
        // Given back, told to the core and, without subscribers left, forgotten here.
        shared_poll.release(shared_poll.generation(), &sub.channel, &keys);
        self.sync_later(&sub.channel);
    }

    /// One tracker fewer of `keys`; the core is told later if it must be.
    fn give_back(&self, channel: &str, keys: &[String]) {
        let shared_poll = &self.shared.shared_poll;
        if !keys.is_empty() && shared_poll.release(shared_poll.generation(), channel, keys) {
            self.sync_later(channel);
        }
    }

    /// Tells the core about `channel` in the background (untracks: nobody waits for them);
    /// a channel left without subscribers here is then forgotten.
    fn sync_later(&self, channel: &str) {
        let shared = Arc::clone(&self.shared);
        let channel = channel.to_owned();
        tokio::spawn(async move {
            let _ = shared.shared_poll.sync(&shared.link(), &channel).await;
            if !shared.hub.has_subscribers(&channel) {
                shared.shared_poll.forget_idle(&channel);
            }
        });
    }

    /// When the earliest tracked key's signature runs out, plus the namespace's
    /// `track_expired_extra_delay` (time for the SDK to bring a new one).
    fn next_track_expiry(&self) -> Option<Instant> {
        let now = Now::system();
        self.subs
            .values()
            .filter_map(|sub| {
                let settings = self.session.shared_poll_of(&sub.channel)?;
                let at = lock(sub)?.earliest_expiry()?;
                let left = (at - now.unix_secs()).max(0);
                let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
                Some(now.mono + left + settings.track_expired_extra_delay)
            })
            .min()
    }

    /// Drops the keys whose signature ran out more than `track_expired_extra_delay` ago,
    /// silently (as Centrifugo: the SDK refreshes signatures before that).
    pub(super) fn expire_tracks(&mut self) {
        if self.track_deadline.is_none_or(|at| at > Instant::now()) {
            return;
        }
        let now = Now::system().unix_secs();
        let expired: Vec<(String, Vec<String>)> = self
            .subs
            .values()
            .filter_map(|sub| {
                let settings = self.session.shared_poll_of(&sub.channel)?;
                let extra =
                    i64::try_from(settings.track_expired_extra_delay.as_secs()).unwrap_or(0);
                let keys = lock(sub)?.expire(now - extra);
                Some((sub.channel.clone(), keys))
            })
            .collect();
        for (channel, keys) in expired {
            if !keys.is_empty() {
                tracing::debug!(channel, keys = keys.len(), "tracked keys expired");
            }
            self.give_back(&channel, &keys);
        }
        self.track_deadline = self.next_track_expiry();
    }
}
