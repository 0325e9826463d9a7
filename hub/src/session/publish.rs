//! Client publish (docs/protocol.md §7.3 "Publish permission") and presence / history access
//! ("Presence/history").

use serde::de::IgnoredAny;
use spindle_proto::{client, proxy};

use super::grants::MapChange;
use super::proxy::{MapProxyAnswer, failure_of};
use super::{PublishGrant, Session, SessionRules};
use crate::config::{ChannelOptions, MapClientKey, PublicationDataFormat, SubscriptionType};
use crate::outcome::Failure;

/// `PublishRequest.type` of a map publication.
const PUBLISH_TYPE_MAP: i32 = 1;

impl Session {
    /// Decides a client publish.
    ///
    /// Order: channel name (empty 3501, unknown namespace 102, bad name 107) → publication type
    /// (a regular publish needs a stream channel, a map publish a map channel, else 107; a map
    /// publish is then decided by the map rules: [`Session::decide_map_publish`]) → data format (107) → publish proxy (108 here: see
    /// [`Session::authorize_publish_proxied`]) → any `subscribe_stream_proxy_enabled`
    /// namespace (108: Centrifugo's `OnPublish` passes a publication only into a bidirectional
    /// stream the client holds, which the edge does before asking here) → `allow_publish_for_client`,
    /// `allow_publish_for_subscriber`
    /// (with `allow_publish_for_anonymous` for anonymous users) or `client.insecure`, else 103.
    pub fn authorize_publish(
        &self,
        rules: &SessionRules,
        request: &client::PublishRequest,
    ) -> Result<PublishGrant, Failure> {
        self.decide_publish(rules, request, None)
    }

    /// Decides a client publish with the publish proxy's answer (asked because
    /// [`Session::publish_proxy`] said so): the checks of [`Session::authorize_publish`] up to
    /// the proxy, then the backend decides instead of the `allow_publish_*` rules. Its
    /// `disconnect` / `error` refuse; otherwise the publish goes ahead, with the result's
    /// `data` in place of the client's when it has one.
    pub fn authorize_publish_proxied(
        &self,
        rules: &SessionRules,
        request: &client::PublishRequest,
        response: &proxy::PublishResponse,
    ) -> Result<PublishGrant, Failure> {
        self.decide_publish(rules, request, Some(response))
    }

    fn decide_publish(
        &self,
        rules: &SessionRules,
        request: &client::PublishRequest,
        proxied: Option<&proxy::PublishResponse>,
    ) -> Result<PublishGrant, Failure> {
        self.require_connected()?;
        let channel = request.channel.as_str();
        let resolved = rules.resolver().resolve(channel)?;
        let options = resolved.options;
        match (request.r#type, options.subscription_type) {
            (0, SubscriptionType::Stream) => {}
            (PUBLISH_TYPE_MAP, _) if options.is_map() => {
                return self.decide_map_publish(rules, request, options, None);
            }
            _ => return Err(Failure::BadRequest),
        }
        if !data_fits(rules.data_format(options), &request.data) {
            return Err(Failure::BadRequest);
        }
        let subscription = self.subscriptions.get(channel);
        let info = match subscription {
            Some(subscription) => subscription.info.clone(),
            None => self.info.clone(),
        };
        if options.publish_proxy_enabled {
            let Some(response) = proxied else {
                return Err(Failure::NotAvailable);
            };
            if let Some(failure) = failure_of(response.error.as_ref(), response.disconnect.as_ref())
            {
                return Err(failure);
            }
            let result = response.result.clone().unwrap_or_default();
            let data = if result.data.is_empty() {
                request.data.to_vec()
            } else {
                result.data.to_vec()
            };
            return Ok(PublishGrant {
                channel: channel.to_owned(),
                data,
                info,
                backend: Some(result),
                map: None,
            });
        }
        if options.subscribe_stream_proxy_enabled {
            return Err(Failure::NotAvailable);
        }
        let flags = (
            options.allow_publish_for_client,
            options.allow_publish_for_subscriber,
            options.allow_publish_for_anonymous,
        );
        if !rules.access(flags, self.user(), subscription.is_some()) {
            return Err(Failure::PermissionDenied);
        }
        Ok(PublishGrant {
            channel: channel.to_owned(),
            data: request.data.to_vec(),
            info,
            backend: None,
            map: None,
        })
    }

    /// Decides a client map publish or removal with the map publish / remove proxy's answer
    /// (asked because [`Session::publish_proxy`] said so): the checks of
    /// [`Session::authorize_publish`] up to the proxy, then the backend decides. Its
    /// `disconnect` / `error` refuse; otherwise the write goes ahead with the result's `key`
    /// (else the client's, which must not be empty: 107), its `data` (else the client's) and
    /// its options (`tags`, `key_mode`, `idempotency_key`, `delta`, `version`).
    pub fn authorize_map_publish_proxied(
        &self,
        rules: &SessionRules,
        request: &client::PublishRequest,
        answer: &MapProxyAnswer,
    ) -> Result<PublishGrant, Failure> {
        self.require_connected()?;
        let resolved = rules.resolver().resolve(&request.channel)?;
        if request.r#type != PUBLISH_TYPE_MAP || !resolved.options.is_map() {
            return Err(Failure::BadRequest);
        }
        self.decide_map_publish(rules, request, resolved.options, Some(answer))
    }

    /// A map publish or removal (docs/protocol.md §2.10): the map proxies, when enabled, decide
    /// (`proxied`; without an answer 108) → else `map.allow_publish_*` / `map.allow_remove_*`
    /// (anonymous users need `*_anonymous`) or `client.insecure`, else 103 → the key: the
    /// client id or user id with `map.client_key` (an anonymous user 103), otherwise the
    /// client's, which must not be empty (107). The payload is not checked against
    /// `publication_data_format` (as Centrifugo).
    fn decide_map_publish(
        &self,
        rules: &SessionRules,
        request: &client::PublishRequest,
        options: &ChannelOptions,
        proxied: Option<&MapProxyAnswer>,
    ) -> Result<PublishGrant, Failure> {
        let map = &options.map;
        let (proxy_enabled, flags) = if request.removed {
            let flags = (
                map.allow_remove_for_client,
                map.allow_remove_for_subscriber,
                map.allow_remove_for_anonymous,
            );
            (map.remove_proxy_enabled, flags)
        } else {
            let flags = (
                map.allow_publish_for_client,
                map.allow_publish_for_subscriber,
                map.allow_publish_for_anonymous,
            );
            (map.publish_proxy_enabled, flags)
        };
        let subscription = self.subscriptions.get(&request.channel);
        let info = match subscription {
            Some(subscription) => subscription.info.clone(),
            None => self.info.clone(),
        };
        if proxy_enabled {
            let answer = proxied.ok_or(Failure::NotAvailable)?;
            let change = map_change_proxied(request, answer)?;
            let data = match answer {
                MapProxyAnswer::Publish(response) => response
                    .result
                    .as_ref()
                    .map(|r| r.data.to_vec())
                    .filter(|data| !data.is_empty())
                    .unwrap_or_else(|| request.data.to_vec()),
                MapProxyAnswer::Remove(_) => Vec::new(),
            };
            return Ok(PublishGrant {
                channel: request.channel.clone(),
                data,
                info,
                backend: None,
                map: Some(change),
            });
        }
        if !rules.access(flags, self.user(), subscription.is_some()) {
            return Err(Failure::PermissionDenied);
        }
        let key = match map.client_key {
            MapClientKey::ClientId => self.client_id.clone(),
            MapClientKey::UserId if self.user().is_empty() => {
                return Err(Failure::PermissionDenied);
            }
            MapClientKey::UserId => self.user().to_owned(),
            MapClientKey::Unset if request.key.is_empty() => return Err(Failure::BadRequest),
            MapClientKey::Unset => request.key.clone(),
        };
        Ok(PublishGrant {
            channel: request.channel.clone(),
            data: if request.removed {
                Vec::new()
            } else {
                request.data.to_vec()
            },
            info,
            backend: None,
            map: Some(MapChange {
                key,
                removed: request.removed,
                ..MapChange::default()
            }),
        })
    }

    /// Access to a channel's presence (`presence` and `presence_stats`): the channel's options
    /// when allowed. Unknown namespace 102, bad name 107, presence off 108, not allowed by
    /// `allow_presence_for_*` (or insecure) 103.
    pub fn authorize_presence<'r>(
        &self,
        rules: &'r SessionRules,
        channel: &str,
    ) -> Result<&'r ChannelOptions, Failure> {
        self.require_connected()?;
        let options = rules.resolver().resolve(channel)?.options;
        if !options.presence {
            return Err(Failure::NotAvailable);
        }
        if !rules.presence_access(
            options,
            self.user(),
            self.subscriptions.contains_key(channel),
        ) {
            return Err(Failure::PermissionDenied);
        }
        Ok(options)
    }

    /// Access to a channel's history: the channel's options when allowed. Unknown namespace
    /// 102, bad name 107, no history (`history_size` and `history_ttl`) 108, not allowed by
    /// `allow_history_for_*` (or insecure) 103.
    pub fn authorize_history<'r>(
        &self,
        rules: &'r SessionRules,
        channel: &str,
    ) -> Result<&'r ChannelOptions, Failure> {
        self.require_connected()?;
        let options = rules.resolver().resolve(channel)?.options;
        if !options.has_history() {
            return Err(Failure::NotAvailable);
        }
        if !rules.history_access(
            options,
            self.user(),
            self.subscriptions.contains_key(channel),
        ) {
            return Err(Failure::PermissionDenied);
        }
        Ok(options)
    }
}

/// Whether a payload fits a `publication_data_format`: `""` any non-empty bytes, `json` valid
/// JSON, `json_object` a JSON object, `binary` anything (empty too).
pub(crate) fn data_fits(format: PublicationDataFormat, data: &[u8]) -> bool {
    match format {
        PublicationDataFormat::Any => !data.is_empty(),
        PublicationDataFormat::Binary => true,
        PublicationDataFormat::Json => is_json(data),
        PublicationDataFormat::JsonObject => {
            is_json(data) && data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        }
    }
}

fn is_json(data: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(data).is_ok()
}

/// The map write the map proxy's answer makes of a client's map publish or removal.
fn map_change_proxied(
    request: &client::PublishRequest,
    answer: &MapProxyAnswer,
) -> Result<MapChange, Failure> {
    let (error, disconnect) = match answer {
        MapProxyAnswer::Publish(r) => (r.error.as_ref(), r.disconnect.as_ref()),
        MapProxyAnswer::Remove(r) => (r.error.as_ref(), r.disconnect.as_ref()),
    };
    if let Some(failure) = failure_of(error, disconnect) {
        return Err(failure);
    }
    let mut change = match answer {
        MapProxyAnswer::Publish(response) => {
            let result = response.result.clone().unwrap_or_default();
            MapChange {
                key: result.key,
                removed: false,
                tags: result.tags,
                key_mode: result.key_mode,
                idempotency_key: result.idempotency_key,
                delta: result.delta,
                version: result.version,
                version_epoch: result.version_epoch,
            }
        }
        MapProxyAnswer::Remove(response) => {
            let result = response.result.clone().unwrap_or_default();
            MapChange {
                key: result.key,
                removed: true,
                tags: result.tags,
                idempotency_key: result.idempotency_key,
                ..MapChange::default()
            }
        }
    };
    if change.key.is_empty() {
        change.key.clone_from(&request.key);
    }
    if change.key.is_empty() {
        return Err(Failure::BadRequest);
    }
    Ok(change)
}
