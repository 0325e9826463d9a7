//! History reads and removal: the namespace checks, then the broker.

use super::Node;
use crate::broker::{
    Broker, BrokerError, HistoryQuery, HistoryReadError, HistoryResult, ReadError, StreamOptions,
};
use crate::maps::{MapBroker, MapReadError, MapSettings};
use spindle_hub::channel::ChannelError;
use spindle_hub::codes::ClientError;
use spindle_hub::config::ChannelOptions;
use thiserror::Error;

/// Why a history read or removal was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// Empty, too long or badly formed name, or a namespace that does not exist.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The channel's namespace keeps no history (`history_size` / `history_ttl` unset).
    #[error("the channel's namespace keeps no history")]
    NotAvailable,
    /// `reverse` from offset 0, or a `since` epoch that is not the stream's.
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl From<HistoryReadError> for HistoryError {
    fn from(error: HistoryReadError) -> Self {
        match error {
            HistoryReadError::Read(read) => HistoryError::Read(read),
            HistoryReadError::Broker(broker) => HistoryError::Broker(broker),
        }
    }
}

impl HistoryError {
    /// The error a client (or the server API) sees: 102 unknown namespace, 107 bad name or
    /// reverse from 0, 108 no history, 112 unrecoverable position, 100 broker failure.
    pub fn client_error(&self) -> ClientError {
        match self {
            HistoryError::Channel(ChannelError::UnknownNamespace(_)) => {
                ClientError::UNKNOWN_CHANNEL
            }
            HistoryError::Channel(_) | HistoryError::Read(ReadError::ReverseFromZero) => {
                ClientError::BAD_REQUEST
            }
            HistoryError::NotAvailable => ClientError::NOT_AVAILABLE,
            HistoryError::Read(ReadError::Unrecoverable) => ClientError::UNRECOVERABLE_POSITION,
            HistoryError::Broker(_) => ClientError::INTERNAL,
        }
    }
}

impl Node {
    /// The stream options of a namespace: `None` when it keeps no history.
    pub(super) fn stream_options(&self, namespace: &ChannelOptions) -> Option<StreamOptions> {
        StreamOptions::for_channel(namespace, self.inner.config.channel.history_meta_ttl)
    }

    /// Reads `channel`'s history (docs/protocol.md §4.5, §6.2); for a map channel, its change
    /// stream (108 for an `ephemeral` map, which has none).
    ///
    /// Checks, in order: the channel name and namespace, that the namespace keeps history
    /// (108), then the broker's read rules (`reverse` from offset 0 → 107, a non-empty `since`
    /// epoch other than the stream's → 112). `query.limit` is not capped here: the edge caps
    /// client reads to `client.history_max_publication_limit`; the server API does not cap.
    pub async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
    ) -> Result<HistoryResult, HistoryError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        // A map channel's stream is its change stream: edges position, recover and repair
        // map subscriptions through the same reads.
        if let Some(settings) = MapSettings::for_channel(resolved.options) {
            if !settings.positioned() {
                return Err(HistoryError::NotAvailable);
            }
            return match self.inner.maps.stream(channel, settings, query).await {
                Ok(result) => Ok(result),
                Err(MapReadError::Read(read)) => Err(HistoryError::Read(read)),
                Err(MapReadError::Broker(broker)) => Err(HistoryError::Broker(broker)),
            };
        }
        let stream = self
            .stream_options(resolved.options)
            .ok_or(HistoryError::NotAvailable)?;
        Ok(self.inner.broker.history(channel, query, &stream).await?)
    }

    /// Removes `channel`'s history: its publications, offset and epoch. The next publication
    /// starts a new epoch at offset 1.
    pub async fn remove_history(&self, channel: &str) -> Result<(), HistoryError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        if self.stream_options(resolved.options).is_none() {
            return Err(HistoryError::NotAvailable);
        }
        Ok(self.inner.broker.remove_history(channel).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_errors_map_to_client_codes() {
        let table = [
            (
                HistoryError::Channel(ChannelError::UnknownNamespace("x".into())),
                102,
            ),
            (HistoryError::Channel(ChannelError::InvalidName), 107),
            (HistoryError::Read(ReadError::ReverseFromZero), 107),
            (HistoryError::NotAvailable, 108),
            (HistoryError::Read(ReadError::Unrecoverable), 112),
            (
                HistoryError::Broker(BrokerError::Unavailable("down".into())),
                100,
            ),
        ];
        for (error, code) in table {
            assert_eq!(error.client_error().code, code, "{error}");
        }
    }
}
