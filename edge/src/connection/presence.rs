//! A connection's presence at the core (docs/protocol.md §2.9, docs/architecture.md §4).
//!
//! Joins and leaves are requests, applied at the core one at a time in the order this
//! connection made them ([`PresenceQueue`]): nothing relies on the control stream and the
//! request streams keeping each other's order, which QUIC does not. As in Centrifugo, the entry
//! is stored before the subscribe reply and removed before the unsubscribe reply, so a presence
//! read after either reply sees it; the join message goes once the subscription is live, so a
//! subscriber asking for its own join (`push_join_leave`) gets it after the reply. The periodic
//! refresh of every local entry stays on the control stream (`crate::presence`).

use super::Connection;
use crate::deadline;
use spindle_hub::codes::Disconnect;
use spindle_hub::session::Subscription;
use spindle_mesh::{EdgeLink, RequestError};
use spindle_proto::mesh::{self, request};
use tokio::task::JoinHandle;

/// The presence requests of one connection, in order: each starts when the one before it was
/// answered (or failed).
#[derive(Default)]
pub(super) struct PresenceQueue {
    /// The last request sent without waiting for its answer.
    tail: Option<JoinHandle<()>>,
}

/// Why a presence update was not applied.
#[derive(Debug, thiserror::Error)]
pub(super) enum PresenceUpdateError {
    #[error("the core link: {0}")]
    Link(#[from] RequestError),
    #[error("the core refused it: {code} {message}")]
    Refused { code: u32, message: String },
}

impl PresenceQueue {
    /// Applies `update` after every earlier one, and waits for it.
    async fn apply(
        &mut self,
        link: EdgeLink,
        update: mesh::PresenceUpdate,
    ) -> Result<(), PresenceUpdateError> {
        if let Some(tail) = self.tail.take() {
            // A failed predecessor was logged by its own task; its order is all that counts.
            let _ = tail.await;
        }
        send(&link, update).await
    }

    /// Applies `update` after every earlier one, without waiting (a failure is logged).
    fn enqueue(&mut self, link: EdgeLink, update: mesh::PresenceUpdate) {
        let previous = self.tail.take();
        self.tail = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let channel = update.channel.clone();
            if let Err(error) = send(&link, update).await {
                tracing::warn!(%channel, %error, "presence update not applied");
            }
        }));
    }
}

async fn send(link: &EdgeLink, update: mesh::PresenceUpdate) -> Result<(), PresenceUpdateError> {
    let kind = request::Kind::PresenceUpdate(update);
    let response = link.request(Some(kind), deadline::CORE).await?;
    match response.error {
        Some(error) => Err(PresenceUpdateError::Refused {
            code: error.code,
            message: error.message,
        }),
        None => Ok(()),
    }
}

impl Connection {
    /// Stores the presence entry of a subscription just committed, before its reply. `false`
    /// when that failed: the connection is closed with 3004, as Centrifugo does.
    pub(super) async fn presence_stored(&mut self, channel: &str) -> bool {
        let Some(record) = self.session.subscription(channel) else {
            return true;
        };
        if !record.options.presence && !record.options.map_presence {
            return true;
        }
        if record.options.map_presence
            && let Some(sub) = self.subs.get(channel)
        {
            sub.set_presence_info(record.info.clone());
        }
        let update = mesh::PresenceUpdate {
            channel: channel.to_owned(),
            joined: vec![record.info.clone()],
            ..Default::default()
        };
        self.joined.insert(channel.to_owned());
        match self.presence.apply(self.shared.link(), update).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(client = %self.client, %channel, %error, "presence not stored");
                self.close(Disconnect::SERVER_ERROR);
                false
            }
        }
    }

    /// The join message of a subscription just made live (its entry is already stored).
    pub(super) fn presence_joined(&mut self, channel: &str) {
        let Some(record) = self.session.subscription(channel) else {
            return;
        };
        if !record.options.emit_join_leave {
            return;
        }
        let update = mesh::PresenceUpdate {
            channel: channel.to_owned(),
            announced: vec![record.info.clone()],
            emit_join_leave: true,
            ..Default::default()
        };
        self.joined.insert(channel.to_owned());
        self.presence.enqueue(self.shared.link(), update);
    }

    /// The presence leave of a subscription that joined: removed (and announced) before the
    /// caller answers when `wait` (an unsubscribe reply follows), else in the background (the
    /// connection is closing).
    pub(super) async fn presence_left(&mut self, record: &Subscription, wait: bool) {
        if !self.joined.remove(&record.channel) {
            return;
        }
        // With its info: namespaces without presence store none to announce the leave with.
        let update = mesh::PresenceUpdate {
            channel: record.channel.clone(),
            left: vec![record.info.clone()],
            emit_join_leave: record.options.emit_join_leave,
            ..Default::default()
        };
        if !wait {
            self.presence.enqueue(self.shared.link(), update);
            return;
        }
        if let Err(error) = self.presence.apply(self.shared.link(), update).await {
            // The entry expires with the presence TTL: no refresh names it any more.
            let channel = &record.channel;
            tracing::warn!(client = %self.client, %channel, %error, "presence leave not applied");
        }
    }
}
