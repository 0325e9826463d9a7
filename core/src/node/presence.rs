//! Presence reads and the presence updates edges send: the namespace checks, then the presence
//! manager, and join / leave messages through the broker.

use super::Node;
use super::maps::MapPresenceChange;
use crate::broker::{Broker, BrokerError, JoinLeave};
use crate::presence::{PresenceManager, PresenceStats, PresenceStoreError};
use spindle_hub::channel::ChannelError;
use spindle_hub::codes::ClientError;
use spindle_mesh::mesh;
use spindle_proto::client::ClientInfo;
use std::collections::{BTreeMap, HashSet};
use thiserror::Error;

/// Why a presence read or update was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PresenceError {
    /// Empty, too long or badly formed name, or a namespace that does not exist.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The channel's namespace keeps no presence.
    #[error("the channel's namespace keeps no presence")]
    NotAvailable,
    #[error(transparent)]
    Store(#[from] PresenceStoreError),
    /// A join or leave message could not be published.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl PresenceError {
    /// The error a client (or the server API) sees: 102 unknown namespace, 107 bad name, 108
    /// no presence, 100 storage or broker failure.
    pub fn client_error(&self) -> ClientError {
        match self {
            PresenceError::Channel(ChannelError::UnknownNamespace(_)) => {
                ClientError::UNKNOWN_CHANNEL
            }
            PresenceError::Channel(_) => ClientError::BAD_REQUEST,
            PresenceError::NotAvailable => ClientError::NOT_AVAILABLE,
            PresenceError::Store(_) | PresenceError::Broker(_) => ClientError::INTERNAL,
        }
    }
}

impl Node {
    fn presence_channel(&self, channel: &str) -> Result<(), PresenceError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        if !resolved.options.presence {
            return Err(PresenceError::NotAvailable);
        }
        Ok(())
    }

    /// The clients present in `channel` (client id → info). 108 when the namespace has no
    /// `presence`.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, PresenceError> {
        self.presence_channel(channel)?;
        Ok(self.inner.presence.presence(channel).await?)
    }

    /// Clients and distinct users (anonymous counting as one) present in `channel`. 108 when
    /// the namespace has no `presence`.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, PresenceError> {
        self.presence_channel(channel)?;
        Ok(self.inner.presence.presence_stats(channel).await?)
    }

    /// Applies an edge's presence update for one channel, in this order:
    /// 1. `joined`: stored (namespace `presence`) and, with `emit_join_leave`, published as
    ///    joins; `announced`: published as joins (with `emit_join_leave`), never stored;
    /// 2. `refreshed` (infos): stored again, without joins; `refreshed_client_ids`: their
    ///    entries extended (an id without a live entry is ignored);
    /// 3. `left` (infos) and `left_client_ids`: removed and, with `emit_join_leave`, published
    ///    as leaves — with the info given in `left`, else with the stored info (an id with
    ///    neither gets no leave message); a client listed in both leaves once.
    ///
    /// Joins and leaves reach every edge with interest in the channel, in order with the
    /// channel's publications. A namespace without `presence` stores nothing; its joins and
    /// leaves are still published when asked for.
    pub async fn update_presence(&self, update: mesh::PresenceUpdate) -> Result<(), PresenceError> {
        let mesh::PresenceUpdate {
            channel,
            joined,
            left_client_ids,
            refreshed_client_ids,
            emit_join_leave,
            left,
            refreshed,
            announced,
        } = update;
        let resolved = self.inner.resolver.resolve(&channel)?;
        if resolved.options.feeds_map_presence() {
            let change = MapPresenceChange {
                present: joined.iter().chain(&refreshed).chain(&announced),
                gone: left
                    .iter()
                    .map(|info| info.client.as_str())
                    .chain(left_client_ids.iter().map(String::as_str)),
            };
            self.feed_map_presence(&channel, resolved.options, change)
                .await;
        }
        let store = resolved.options.presence;
        let manager = &self.inner.presence;
        let broker = &self.inner.broker;
        for info in joined {
            if store {
                manager.add_presence(&channel, info.clone()).await?;
            }
            if emit_join_leave {
                broker
                    .publish_join_leave(&channel, JoinLeave::Join(info))
                    .await?;
            }
        }
        if emit_join_leave {
            for info in announced {
                broker
                    .publish_join_leave(&channel, JoinLeave::Join(info))
                    .await?;
            }
        }
        if store {
            for info in refreshed {
                manager.add_presence(&channel, info).await?;
            }
            for client in &refreshed_client_ids {
                manager.refresh_presence(&channel, client).await?;
            }
        }
        let mut gone = HashSet::new();
        for info in left {
            if store {
                manager.remove_presence(&channel, &info.client).await?;
            }
            gone.insert(info.client.clone());
            if emit_join_leave {
                broker
                    .publish_join_leave(&channel, JoinLeave::Leave(info))
                    .await?;
            }
        }
        for client in left_client_ids {
            if !gone.insert(client.clone()) {
                continue;
            }
            let stored = match store {
                true => manager.remove_presence(&channel, &client).await?,
                false => None,
            };
            if emit_join_leave && let Some(info) = stored {
                broker
                    .publish_join_leave(&channel, JoinLeave::Leave(info))
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_errors_map_to_client_codes() {
        let table = [
            (
                PresenceError::Channel(ChannelError::UnknownNamespace("x".into())),
                102,
            ),
            (PresenceError::Channel(ChannelError::Empty), 107),
            (PresenceError::NotAvailable, 108),
            (
                PresenceError::Store(PresenceStoreError::Unavailable("down".into())),
                100,
            ),
            (
                PresenceError::Broker(BrokerError::Unavailable("down".into())),
                100,
            ),
        ];
        for (error, code) in table {
            assert_eq!(error.client_error().code, code, "{error}");
        }
    }
}
