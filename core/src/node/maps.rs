//! Map channels (docs/protocol.md §2.10): the namespace checks every map operation passes
//! (server API and client alike), then the map storage.

use super::Node;
use crate::broker::{HistoryQuery, HistoryResult, Publication, ReadError, StreamPosition};
use crate::maps::{
    KeyMode, MapBroker, MapError, MapReadError, MapSettings, MapState, MapUpdate, MapWrite,
    MapWriteError, StateQuery,
};
use spindle_hub::channel::ChannelError;
use spindle_hub::codes::ClientError;
use spindle_hub::config::ChannelOptions;
use spindle_hub::map::{CursorError, decode_cursor};
use spindle_proto::client::ClientInfo;
use thiserror::Error;

/// Why a map operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MapCallError {
    /// Empty, too long or badly formed name, or a namespace that does not exist.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The channel's namespace is not a map type (or has no `map.mode`).
    #[error("the channel's subscription type is not a map")]
    NotMap,
    #[error("key required")]
    EmptyKey,
    #[error(transparent)]
    Cursor(#[from] CursorError),
    #[error(transparent)]
    Write(#[from] MapError),
    #[error(transparent)]
    Read(#[from] MapReadError),
}

impl MapCallError {
    /// The error a client (or the server API) sees: 102 unknown namespace, 112 a position
    /// the map no longer has, 100 storage failure or full, 107 otherwise.
    pub fn client_error(&self) -> ClientError {
        match self {
            MapCallError::Channel(ChannelError::UnknownNamespace(_)) => {
                ClientError::UNKNOWN_CHANNEL
            }
            MapCallError::Read(MapReadError::Read(ReadError::Unrecoverable)) => {
                ClientError::UNRECOVERABLE_POSITION
            }
            MapCallError::Read(MapReadError::Broker(_))
            | MapCallError::Write(MapError::Broker(_))
            | MapCallError::Write(MapError::Write(
                MapWriteError::TooManyChannels | MapWriteError::TooManyKeys,
            )) => ClientError::INTERNAL,
            MapCallError::Channel(_)
            | MapCallError::NotMap
            | MapCallError::EmptyKey
            | MapCallError::Cursor(_)
            | MapCallError::Read(MapReadError::Read(ReadError::ReverseFromZero))
            | MapCallError::Write(MapError::Write(MapWriteError::VersionWithoutStream)) => {
                ClientError::BAD_REQUEST
            }
        }
    }
}

/// A map publish besides its key and payload (server API `map_publish`, client publish).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapPublishOptions {
    pub key_mode: KeyMode,
    pub idempotency_key: String,
    pub version: u64,
    pub version_epoch: String,
    /// Send the change to delta-negotiated subscribers as a fossil delta against the key's
    /// previous value (also on for every publish with the namespace's `delta_publish`).
    pub delta: bool,
}

/// A state read: `cursor` from the previous page (`""` = first), `limit` (`None` = all,
/// `Some(0)` = position only), one `key`, or a `revision` the reader holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapStateRead {
    pub cursor: String,
    pub limit: Option<usize>,
    pub key: Option<String>,
    pub revision: Option<StreamPosition>,
}

/// Connections that joined or refreshed a channel (`present`) and those that left it
/// (`gone`, by client id), for the map channels it feeds.
pub(super) struct MapPresenceChange<P, G> {
    pub present: P,
    pub gone: G,
}

impl Node {
    /// Feeds the map channels a subscription in `channel` feeds (Centrifugo's map presence):
    /// `<map_clients_presence_channel_prefix><channel>` gets one entry per connection (key:
    /// client id, `info` the connection's), removed when it leaves; `<map_users_...><channel>`
    /// one per user (anonymous ones left out), never removed but by its `key_ttl`, so a user's
    /// quick reconnect or second tab changes nothing; with `map.remove_client_on_unsubscribe`
    /// the map itself loses the entry keyed by a leaving client. Entries are written only when
    /// absent (a present one has its TTL extended): refreshes cost no stream change. Failures
    /// are logged; presence itself goes on.
    pub(super) async fn feed_map_presence<'a>(
        &self,
        channel: &str,
        options: &ChannelOptions,
        change: MapPresenceChange<
            impl Iterator<Item = &'a ClientInfo>,
            impl Iterator<Item = &'a str>,
        >,
    ) {
        let prefixed = |prefix: &str| (!prefix.is_empty()).then(|| format!("{prefix}{channel}"));
        let clients = prefixed(&options.map_clients_presence_channel_prefix);
        let users = prefixed(&options.map_users_presence_channel_prefix);
        let own = options.is_map() && options.map.remove_client_on_unsubscribe;
        for info in change.present {
            if let Some(clients) = &clients {
                let entry = Publication {
                    info: Some(info.clone()),
                    ..Publication::default()
                };
                self.map_presence_write(clients, &info.client, Some(entry))
                    .await;
            }
            if let Some(users) = &users
                && !info.user.is_empty()
            {
                self.map_presence_write(users, &info.user, Some(Publication::default()))
                    .await;
            }
        }
        for client in change.gone {
            if let Some(clients) = &clients {
                self.map_presence_write(clients, client, None).await;
            }
            if own {
                self.map_presence_write(channel, client, None).await;
            }
        }
    }

    async fn map_presence_write(&self, channel: &str, key: &str, entry: Option<Publication>) {
        let settings = match self.map_settings(channel) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::warn!(channel, %error, "map presence channel");
                return;
            }
        };
        let write = MapWrite {
            key,
            publication: entry.map(|mut entry| {
                entry.time = super::publish::unix_ms();
                entry
            }),
            key_mode: KeyMode::IfNew,
            refresh_ttl_on_suppress: true,
            ..MapWrite::default()
        };
        if let Err(error) = self.inner.maps.write(channel, settings, write).await {
            tracing::warn!(channel, key, %error, "map presence not written");
        }
    }

    /// The map settings of `channel`'s namespace.
    pub fn map_settings(&self, channel: &str) -> Result<MapSettings, MapCallError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        MapSettings::for_channel(resolved.options).ok_or(MapCallError::NotMap)
    }

    /// Sets `key` in map `channel` to `publication` (data, publisher info, tags).
    pub async fn map_publish(
        &self,
        channel: &str,
        key: &str,
        mut publication: Publication,
        options: &MapPublishOptions,
    ) -> Result<MapUpdate, MapCallError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        let settings = MapSettings::for_channel(resolved.options).ok_or(MapCallError::NotMap)?;
        if key.is_empty() {
            return Err(MapCallError::EmptyKey);
        }
        publication.time = super::publish::unix_ms();
        let write = MapWrite {
            key,
            publication: Some(publication),
            key_mode: options.key_mode,
            idempotency_key: &options.idempotency_key,
            version: options.version,
            version_epoch: &options.version_epoch,
            want_prev: options.delta || resolved.options.delta_publish,
            ..MapWrite::default()
        };
        Ok(self.inner.maps.write(channel, settings, write).await?)
    }

    /// Removes `key` from map `channel` (suppressed with `key_not_found` when absent).
    pub async fn map_remove(
        &self,
        channel: &str,
        key: &str,
        idempotency_key: &str,
    ) -> Result<MapUpdate, MapCallError> {
        let settings = self.map_settings(channel)?;
        if key.is_empty() {
            return Err(MapCallError::EmptyKey);
        }
        let write = MapWrite {
            key,
            idempotency_key,
            ..MapWrite::default()
        };
        Ok(self.inner.maps.write(channel, settings, write).await?)
    }

    /// A page of `channel`'s state. A cursor made for another channel is 107; a revision
    /// from another epoch 112.
    pub async fn map_state(
        &self,
        channel: &str,
        read: &MapStateRead,
    ) -> Result<MapState, MapCallError> {
        let settings = self.map_settings(channel)?;
        let query = StateQuery {
            after: decode_cursor(channel, &read.cursor)?,
            limit: read.limit,
            key: read.key.as_deref(),
            revision: read.revision.as_ref(),
        };
        Ok(self.inner.maps.state(channel, settings, query).await?)
    }

    /// Reads `channel`'s change stream (an `ephemeral` map has none: position only).
    pub async fn map_stream(
        &self,
        channel: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryResult, MapCallError> {
        let settings = self.map_settings(channel)?;
        Ok(self.inner.maps.stream(channel, settings, query).await?)
    }

    /// Entries in map `channel`.
    pub async fn map_stats(&self, channel: &str) -> Result<usize, MapCallError> {
        self.map_settings(channel)?;
        self.inner
            .maps
            .stats(channel)
            .await
            .map_err(|error| MapCallError::Write(error.into()))
    }

    /// Forgets map `channel`: its subscribers resynchronize from a new epoch.
    pub async fn map_clear(&self, channel: &str) -> Result<(), MapCallError> {
        self.map_settings(channel)?;
        self.inner
            .maps
            .clear(channel)
            .await
            .map_err(|error| MapCallError::Write(error.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::BrokerError;

    #[test]
    fn map_errors_map_to_client_codes() {
        let table = [
            (
                MapCallError::Channel(ChannelError::UnknownNamespace("x".into())),
                102,
            ),
            (MapCallError::Channel(ChannelError::InvalidName), 107),
            (MapCallError::NotMap, 107),
            (MapCallError::EmptyKey, 107),
            (MapCallError::Cursor(CursorError), 107),
            (
                MapCallError::Read(MapReadError::Read(ReadError::Unrecoverable)),
                112,
            ),
            (
                MapCallError::Write(MapError::Write(MapWriteError::TooManyKeys)),
                100,
            ),
            (
                MapCallError::Write(MapError::Write(MapWriteError::VersionWithoutStream)),
                107,
            ),
            (
                MapCallError::Write(MapError::Broker(BrokerError::Unavailable("x".into()))),
                100,
            ),
        ];
        for (error, code) in table {
            assert_eq!(error.client_error().code, code, "{error}");
        }
    }
}
