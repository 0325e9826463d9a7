//! Publishing: the checks every publication passes (server API and client publish alike), then
//! the broker.

use super::Node;
use crate::broker::{Broker, Publication, PublishOptions, PublishResult};
use bytes::Bytes;
use serde::de::IgnoredAny;
use spindle_hub::channel::ChannelError;
use spindle_hub::codes::ClientError;
use spindle_hub::config::{PublicationDataFormat, SubscriptionType};
use spindle_proto::client::ClientInfo;
use std::sync::atomic::Ordering;
use thiserror::Error;

use crate::broker::BrokerError;

/// Why a publication was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// Empty, too long or badly formed name, or a namespace that does not exist.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The channel's namespace is a map or shared-poll namespace (they have their own methods).
    #[error("the channel's subscription type is not stream")]
    NotStream,
    /// The payload does not fit the channel's `publication_data_format`.
    #[error("data does not fit publication_data_format: {0}")]
    BadData(&'static str),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl PublishError {
    /// The error a client (or the server API) sees: 102 for an unknown namespace, 100 when the
    /// broker failed, 107 otherwise.
    pub fn client_error(&self) -> ClientError {
        match self {
            PublishError::Channel(ChannelError::UnknownNamespace(_)) => {
                ClientError::UNKNOWN_CHANNEL
            }
            PublishError::Channel(_) | PublishError::NotStream | PublishError::BadData(_) => {
                ClientError::BAD_REQUEST
            }
            PublishError::Broker(_) => ClientError::INTERNAL,
        }
    }
}

/// Checks a payload against a `publication_data_format`.
pub(crate) fn check_data(data: &[u8], format: PublicationDataFormat) -> Result<(), PublishError> {
    let is_json = || serde_json::from_slice::<IgnoredAny>(data).is_ok();
    match format {
        PublicationDataFormat::Any if data.is_empty() => {
            Err(PublishError::BadData("data required"))
        }
        PublicationDataFormat::Any | PublicationDataFormat::Binary => Ok(()),
        PublicationDataFormat::Json if is_json() => Ok(()),
        PublicationDataFormat::Json => Err(PublishError::BadData("data must be JSON")),
        PublicationDataFormat::JsonObject if is_json() && first_significant(data) == Some(b'{') => {
            Ok(())
        }
        PublicationDataFormat::JsonObject => {
            Err(PublishError::BadData("data must be a JSON object"))
        }
    }
}

/// The wall clock in unix milliseconds, stamped on every publication so edges can tell how late
/// it reaches them (`client.channel_position_max_time_lag`). 0 when the clock is before 1970:
/// such a publication is never considered late.
pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn first_significant(data: &[u8]) -> Option<u8> {
    data.iter().copied().find(|b| !b.is_ascii_whitespace())
}

impl Node {
    /// Publishes `data` into `channel`.
    ///
    /// Checks, in order: the channel name and its namespace, that the namespace is a stream
    /// namespace, the data against `publication_data_format` (the namespace's, else
    /// `channel.publication_data_format`). A namespace with `delta_publish` makes every
    /// publication delta-capable; the namespace's history options become `options.history`.
    /// `options.tags` become the publication's tags. On success the broker has appended the
    /// publication to the channel's stream (when it keeps history) and handed it to every edge
    /// with interest, in order per channel — unless `suppressed` says it was a repeated
    /// idempotency key or a stale version (then nothing was delivered).
    pub async fn publish(
        &self,
        channel: &str,
        data: Bytes,
        info: Option<ClientInfo>,
        mut options: PublishOptions,
    ) -> Result<PublishResult, PublishError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        let namespace = resolved.options;
        if namespace.subscription_type != SubscriptionType::Stream {
            return Err(PublishError::NotStream);
        }
        let format = match namespace.publication_data_format {
            PublicationDataFormat::Any => self.inner.config.channel.publication_data_format,
            format => format,
        };
        check_data(&data, format)?;
        options.delta |= namespace.delta_publish;
        options.history = self.stream_options(namespace);
        let publication = Publication {
            data,
            info,
            tags: std::mem::take(&mut options.tags),
            time: unix_ms(),
            ..Publication::default()
        };
        let result = self
            .inner
            .broker
            .publish(channel, publication, &options)
            .await?;
        let counters = &self.inner.edges.counters;
        match result.suppressed {
            None => counters.publications.fetch_add(1, Ordering::Relaxed),
            Some(_) => counters.suppressed.fetch_add(1, Ordering::Relaxed),
        };
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_formats() {
        use PublicationDataFormat::*;
        let table: &[(&str, PublicationDataFormat, bool)] = &[
            ("", Any, false),
            ("x", Any, true),
            ("", Binary, true),
            ("\u{1}", Binary, true),
            ("{\"a\":1}", Json, true),
            ("42", Json, true),
            ("", Json, false),
            ("{nope", Json, false),
            (" {\"a\":1}", JsonObject, true),
            ("[1]", JsonObject, false),
            ("\"s\"", JsonObject, false),
            ("{", JsonObject, false),
        ];
        for &(data, format, ok) in table {
            assert_eq!(
                check_data(data.as_bytes(), format).is_ok(),
                ok,
                "{data:?} as {format:?}"
            );
        }
    }

    #[test]
    fn publish_errors_map_to_client_codes() {
        let table = [
            (
                PublishError::Channel(ChannelError::UnknownNamespace("x".into())),
                102,
            ),
            (PublishError::Channel(ChannelError::Empty), 107),
            (PublishError::Channel(ChannelError::InvalidName), 107),
            (PublishError::NotStream, 107),
            (PublishError::BadData("data required"), 107),
            (
                PublishError::Broker(BrokerError::Unavailable("down".into())),
                100,
            ),
        ];
        for (error, code) in table {
            assert_eq!(error.client_error().code, code, "{error}");
        }
    }
}
