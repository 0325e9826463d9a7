//! Shared-poll at the node: edges' track / untrack requests and `shared_poll_publish` (see
//! [`crate::shared_poll`] for the pollers).

use super::Node;
use bytes::Bytes;
use spindle_hub::channel::ChannelError;
use spindle_hub::codes::ClientError;
use spindle_hub::config::SubscriptionType;
use spindle_hub::shared_poll::SharedPollSettings;
use spindle_mesh::mesh;
use thiserror::Error;

/// Why a shared-poll request or publish was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SharedPollError {
    /// Empty, too long or badly formed name, or a namespace that does not exist.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The channel's namespace is not `shared_poll`.
    #[error("the channel's subscription type is not shared_poll")]
    NotSharedPoll,
    /// `shared_poll.publish_enabled` is off.
    #[error("shared_poll.publish_enabled is off for the channel")]
    PublishDisabled,
}

impl SharedPollError {
    /// 102 unknown namespace, 108 publish not enabled, 107 otherwise (as Centrifugo's API).
    pub fn client_error(&self) -> ClientError {
        match self {
            SharedPollError::Channel(ChannelError::UnknownNamespace(_)) => {
                ClientError::UNKNOWN_CHANNEL
            }
            SharedPollError::PublishDisabled => ClientError::NOT_AVAILABLE,
            SharedPollError::Channel(_) | SharedPollError::NotSharedPoll => {
                ClientError::BAD_REQUEST
            }
        }
    }
}

impl Node {
    fn shared_poll_settings(&self, channel: &str) -> Result<SharedPollSettings, SharedPollError> {
        let resolved = self.inner.resolver.resolve(channel)?;
        if resolved.options.subscription_type != SubscriptionType::SharedPoll {
            return Err(SharedPollError::NotSharedPoll);
        }
        SharedPollSettings::for_channel(resolved.options).ok_or(SharedPollError::NotSharedPoll)
    }

    /// An edge's track / untrack (attachment `serial`).
    pub(super) fn shared_poll_request(
        &self,
        serial: u64,
        request: &mesh::SharedPollRequest,
    ) -> Result<mesh::SharedPollResult, SharedPollError> {
        let settings = self.shared_poll_settings(&request.channel)?;
        Ok(self.inner.shared_polls.apply(serial, request, &settings))
    }

    /// `shared_poll_publish`: applied here and on every other node of the broker. Needs
    /// `shared_poll.publish_enabled` (which needs `versioned` mode).
    pub async fn shared_poll_publish(
        &self,
        channel: &str,
        key: &str,
        version: u64,
        epoch: &str,
        data: Bytes,
    ) -> Result<(), SharedPollError> {
        let settings = self.shared_poll_settings(channel)?;
        if !settings.publish_enabled {
            return Err(SharedPollError::PublishDisabled);
        }
        let message = spindle_proto::api::SharedPollPublishRequest {
            channel: channel.to_owned(),
            key: key.to_owned(),
            data: data.clone(),
            version,
            epoch: epoch.to_owned(),
            ..Default::default()
        };
        self.inner
            .shared_polls
            .publish(channel, key, version, epoch, data);
        // Best effort like every cross-node message: a lost one leaves the other nodes to
        // their next poll of the key.
        let _ = self.broadcast_shared_poll(&message).await;
        Ok(())
    }

    /// Backend calls and keys polled so far, for metrics and the benchmark.
    pub fn shared_poll_counters(&self) -> &crate::shared_poll::Counters {
        self.inner.shared_polls.counters()
    }

    /// Shared-poll channels with a running poller, and the keys they track.
    pub fn shared_poll_sizes(&self) -> (usize, usize) {
        self.inner.shared_polls.sizes()
    }
}
