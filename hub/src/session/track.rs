//! A client's track and untrack (`sub_refresh` of type 1 / 2 on a shared-poll subscription),
//! decided as Centrifugo's `handleTrack` / `handleUntrack` and its `OnTrack` handler do.

use std::collections::HashMap;

use spindle_proto::client;

use super::{Now, Session, SessionRules};
use crate::channel::ChannelError;
use crate::outcome::Failure;
use crate::shared_poll::signature::{self, SignatureTimes};
use crate::shared_poll::{SIGNATURE_GRACE_SECS, SharedPollSettings};

/// One key a track adds (or re-tracks), with the version the client already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedItem {
    pub key: String,
    /// 0 = the client holds nothing for it.
    pub version: u64,
    /// When its signature expires (unix seconds); `None` = never.
    pub expires_at: Option<i64>,
}

/// A track the session allows: the edge registers `items`, then drops `untrack` (keys the
/// client stopped tracking since the signatures were made), and answers with `result` plus the
/// values it holds that are newer than the client's.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackGrant {
    pub channel: String,
    /// Each key once; a key in several batches takes the last batch's version and expiry.
    pub items: Vec<TrackedItem>,
    pub untrack: Vec<String>,
    /// `expires` / `ttl`: the earliest expiry among the batches (the SDK asks for new
    /// signatures then).
    pub result: client::SubRefreshResult,
}

/// An untrack the session allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrackGrant {
    pub channel: String,
    pub keys: Vec<String>,
}

impl Session {
    /// The shared-poll settings of a subscription of this connection, when it is one.
    pub fn shared_poll_of(&self, channel: &str) -> Option<&SharedPollSettings> {
        self.subscriptions
            .get(channel)
            .and_then(|s| s.shared_poll.as_ref())
    }

    /// Decides a track. `tracked` says whether the subscription tracks a key already, `count`
    /// how many it tracks.
    ///
    /// Order: empty channel (3501) → not subscribed (103) → no batch, or batches without keys
    /// (107) → over `max_keys_per_connection` counting distinct new keys minus the inline
    /// untracks (106) → no `shared_poll.hmac_secret_key` (100) → each batch's signature: not
    /// made for this user, channel and keys with the current key — or with the previous key
    /// while it is valid and the signature was issued before `hmac_previous_secret_key_valid_until`
    /// — (103), expired more than 5 s ago (109).
    pub fn authorize_track(
        &self,
        rules: &SessionRules,
        request: &client::SubRefreshRequest,
        tracked: impl Fn(&str) -> bool,
        count: usize,
        now: Now,
    ) -> Result<TrackGrant, Failure> {
        self.require_connected()?;
        let channel = request.channel.as_str();
        let settings = self.keyed_subscription(channel)?;
        // Deduplicated, last batch wins (as Centrifugo).
        let mut items: Vec<TrackedItem> = Vec::new();
        let mut index: HashMap<&str, (usize, usize)> = HashMap::new();
        for (batch_index, batch) in request.track.iter().enumerate() {
            for item in &batch.items {
                let tracked_item = TrackedItem {
                    key: item.key.clone(),
                    version: item.version,
                    expires_at: None,
                };
                match index.get(item.key.as_str()) {
                    Some(&(at, _)) => {
                        items[at] = tracked_item;
                        index.insert(&item.key, (at, batch_index));
                    }
                    None => {
                        index.insert(&item.key, (items.len(), batch_index));
                        items.push(tracked_item);
                    }
                }
            }
        }
        if items.is_empty() {
            return Err(Failure::BadRequest);
        }
        let untrack: Vec<&str> = request.untrack.iter().map(String::as_str).collect();
        let new = items
            .iter()
            .filter(|i| !tracked(&i.key) && !untrack.contains(&i.key.as_str()))
            .count();
        let freed = request
            .untrack
            .iter()
            .filter(|k| tracked(k.as_str()))
            .count();
        if (count + new).saturating_sub(freed) > settings.max_keys_per_connection {
            return Err(Failure::TrackedKeyLimit);
        }
        let keys = &rules.shared_poll;
        if keys.secret.is_empty() {
            return Err(Failure::Internal);
        }
        let mut expiries = Vec::with_capacity(request.track.len());
        for batch in &request.track {
            let batch_keys: Vec<&str> = batch.items.iter().map(|i| i.key.as_str()).collect();
            let times = verify_batch(keys, channel, self.user(), &batch_keys, &batch.signature)?;
            if times.expires_at > 0 && times.expires_at + SIGNATURE_GRACE_SECS < now.unix_secs() {
                return Err(Failure::TrackSignatureExpired);
            }
            expiries.push((times.expires_at > 0).then_some(times.expires_at));
        }
        for item in &mut items {
            let (_, batch) = index[item.key.as_str()];
            item.expires_at = expiries[batch];
        }
        let earliest = expiries.iter().flatten().min().copied();
        let result = client::SubRefreshResult {
            expires: earliest.is_some(),
            ttl: earliest.map_or(0, |at| {
                u32::try_from((at - now.unix_secs()).max(0)).unwrap_or(u32::MAX)
            }),
            ..Default::default()
        };
        Ok(TrackGrant {
            channel: channel.to_owned(),
            items,
            untrack: request.untrack.clone(),
            result,
        })
    }

    /// Decides an untrack: empty channel (3501) → not subscribed (103) → no keys (107). Keys the
    /// subscription does not track are ignored by the edge.
    pub fn authorize_untrack(
        &self,
        request: &client::SubRefreshRequest,
    ) -> Result<UntrackGrant, Failure> {
        self.require_connected()?;
        let channel = request.channel.as_str();
        self.keyed_subscription(channel)?;
        if request.untrack.is_empty() {
            return Err(Failure::BadRequest);
        }
        Ok(UntrackGrant {
            channel: channel.to_owned(),
            keys: request.untrack.clone(),
        })
    }

    fn keyed_subscription(&self, channel: &str) -> Result<&SharedPollSettings, Failure> {
        if channel.is_empty() {
            return Err(ChannelError::Empty.into());
        }
        self.shared_poll_of(channel)
            .ok_or(Failure::PermissionDenied)
    }
}

/// The HMAC keys of the top-level `shared_poll` section (never printed).
#[derive(Clone, Default)]
pub struct TrackKeysConfig {
    pub(crate) secret: String,
    pub(crate) previous: String,
    /// Unix seconds; 0 = the previous key has no end.
    pub(crate) previous_valid_until: i64,
}

impl std::fmt::Debug for TrackKeysConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackKeysConfig")
            .field("secret_set", &!self.secret.is_empty())
            .field("previous_set", &!self.previous.is_empty())
            .field("previous_valid_until", &self.previous_valid_until)
            .finish()
    }
}

fn verify_batch(
    keys: &TrackKeysConfig,
    channel: &str,
    user: &str,
    batch_keys: &[&str],
    signature: &str,
) -> Result<SignatureTimes, Failure> {
    if let Some(times) = signature::verify(&keys.secret, channel, user, batch_keys, signature) {
        return Ok(times);
    }
    if keys.previous.is_empty() {
        return Err(Failure::TrackSignatureInvalid);
    }
    let issued_after_rotation = signature::times(signature)
        .is_some_and(|t| keys.previous_valid_until > 0 && t.issued_at > keys.previous_valid_until);
    if issued_after_rotation {
        return Err(Failure::TrackSignatureInvalid);
    }
    signature::verify(&keys.previous, channel, user, batch_keys, signature)
        .ok_or(Failure::TrackSignatureInvalid)
}
