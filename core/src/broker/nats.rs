//! The NATS broker: PUB/SUB only (`broker.type: nats`). NATS keeps no streams, so this broker
//! assigns no offsets: publications are delivered without a position, whatever
//! `options.history` says, and idempotency keys and versions are not checked (as in
//! Centrifugo, history, recovery and presence need the memory or Redis engine).
//!
//! Subjects, under the configured prefix `P` (`broker.nats.prefix`):
//! - `P.client.<escaped channel>` carries a channel's publications, joins and leaves, in the
//!   same message format as the Redis broker (`p<offset>,<epoch>,<prev len>,<prev><pub>`,
//!   `j<info>`, `l<info>`).
//! - `P.control` carries cluster control messages (see `node::cluster`).
//!
//! Channel names are escaped so that any name is one valid subject tail, reversibly
//! ([`channel_subject`] / [`subject_channel`]): `%` becomes `%25`; bytes NATS subjects cannot
//! carry or that are not printable ASCII (whitespace, control bytes, bytes ≥ 0x7f) become
//! `%XX` (upper-case hex); the wildcards `*` and `>` become `%2A` and `%3E`; a `.` stays a
//! token separator unless it would make an empty token (first, last, or right after another
//! `.`), then it becomes `%2E`. The empty channel maps to `P.client` itself. Decoding turns
//! every `%XX` back into its byte, so distinct channels never share a subject.
//!
//! One subscription per channel, each drained by its own task in arrival order, so a
//! channel's messages reach the handler one at a time and in publish order (NATS keeps the
//! order of one publisher connection). [`Broker::subscribe`] returns once the server has
//! processed the subscription (a round trip on the same connection), so a publication made
//! after it, from any node, is delivered.

use super::redis::dispatch;
use super::{
    Broker, BrokerError, EventHandler, HistoryQuery, HistoryReadError, HistoryResult, JoinLeave,
    Publication, PublishOptions, PublishResult, StreamOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;
use prost::Message as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long [`Broker::subscribe`] waits for the server to confirm a subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to find NATS and under which subject prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// `nats://host:port` (`broker.nats.url`).
    pub url: String,
    /// Subject prefix (`broker.nats.prefix`).
    pub prefix: String,
    /// How long to wait for the first connection (`broker.nats.dial_timeout`).
    pub connect_timeout: Duration,
}

impl NatsOptions {
    /// The options of a `broker.nats` section.
    pub fn from_config(nats: &spindle_hub::config::Nats) -> NatsOptions {
        NatsOptions {
            url: nats.url.clone(),
            prefix: nats.prefix.clone(),
            connect_timeout: nats.dial_timeout.as_std().max(Duration::from_millis(100)),
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(error.to_string())
}

/// The subject carrying `channel` under `prefix` (see the module docs).
pub fn channel_subject(prefix: &str, channel: &str) -> String {
    let mut subject = format!("{prefix}.client");
    if channel.is_empty() {
        return subject;
    }
    subject.push('.');
    let bytes = channel.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let empty_token =
            b == b'.' && (i == 0 || i + 1 == bytes.len() || bytes.get(i - 1) == Some(&b'.'));
        if b == b'%' || b == b'*' || b == b'>' || b <= b' ' || b >= 0x7f || empty_token {
            subject.push_str(&format!("%{b:02X}"));
        } else {
            subject.push(char::from(b));
        }
    }
    subject
}

/// The channel a subject made by [`channel_subject`] carries; `None` for any other subject.
pub fn subject_channel(prefix: &str, subject: &str) -> Option<String> {
    let base = format!("{prefix}.client");
    let rest = subject.strip_prefix(base.as_str())?;
    if rest.is_empty() {
        return Some(String::new());
    }
    let escaped = rest.strip_prefix('.')?.as_bytes();
    let mut out = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        if escaped[i] == b'%' {
            let hex = std::str::from_utf8(escaped.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(escaped[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A broker on a NATS server (see the module docs).
pub struct NatsBroker {
    client: async_nats::Client,
    prefix: Arc<str>,
    handler: Arc<dyn EventHandler>,
    /// Channel → the task draining its subscription (aborting it drops the subscription,
    /// which unsubscribes).
    subscriptions: Mutex<HashMap<String, JoinHandle<()>>>,
    control: Option<JoinHandle<()>>,
    url: String,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        if let Some(control) = &self.control {
            control.abort();
        }
        for task in self.subs().values() {
            task.abort();
        }
    }
}

impl NatsBroker {
    /// `Err` while the connection to NATS is down.
    pub fn health(&self) -> Result<(), String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(format!("nats {}: {state}", self.url)),
        }
    }

    /// Connects and starts delivering to `handler`; with `control`, also subscribes
    /// `P.control` and hands its messages there (dropped, with a warning, when that queue is
    /// full). Fails with a clear message when NATS does not answer within the connect timeout.
    /// Must be called inside a Tokio runtime.
    pub async fn connect(
        options: &NatsOptions,
        handler: Arc<dyn EventHandler>,
        control: Option<mpsc::Sender<Bytes>>,
    ) -> Result<NatsBroker, BrokerError> {
        let cannot = |e: &dyn std::fmt::Display| {
            unavailable(format!("cannot connect to nats at {}: {e}", options.url))
        };
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(options.connect_timeout)
            .retry_on_initial_connect()
            .connect(options.url.as_str());
        let wait = options.connect_timeout + Duration::from_millis(500);
        let client = match tokio::time::timeout(wait, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(cannot(&e)),
            Err(_) => return Err(cannot(&format!("no answer within {wait:?}"))),
        };
        // `retry_on_initial_connect` returns at once: prove the connection with a round trip.
        tokio::time::timeout(wait, round_trip(&client))
            .await
            .map_err(|_| cannot(&format!("no answer within {wait:?}")))?
            .map_err(|e| cannot(&e))?;
        let control = match control {
            None => None,
            Some(queue) => {
                let subject = format!("{}.control", options.prefix);
                let mut subscriber = client.subscribe(subject).await.map_err(unavailable)?;
                round_trip(&client).await?;
                Some(tokio::spawn(async move {
                    while let Some(message) = subscriber.next().await {
                        if queue.try_send(message.payload).is_err() {
                            tracing::warn!("control queue full or closed: control message dropped");
                        }
                    }
                }))
            }
        };
        Ok(NatsBroker {
            client,
            prefix: options.prefix.as_str().into(),
            handler,
            subscriptions: Mutex::new(HashMap::new()),
            control,
            url: options.url.clone(),
        })
    }

    fn subs(&self) -> std::sync::MutexGuard<'_, HashMap<String, JoinHandle<()>>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn publish_raw(&self, subject: String, payload: Bytes) -> Result<(), BrokerError> {
        self.client
            .publish(subject, payload)
            .await
            .map_err(unavailable)?;
        self.client.flush().await.map_err(unavailable)
    }

    /// Publishes a cluster control message on `P.control`.
    pub async fn publish_control(&self, payload: Bytes) -> Result<(), BrokerError> {
        self.publish_raw(format!("{}.control", self.prefix), payload)
            .await
    }
}

/// Returns once the server has processed everything this connection sent before: a message
/// to a fresh inbox on the same connection comes back after them.
async fn round_trip(client: &async_nats::Client) -> Result<(), BrokerError> {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await.map_err(unavailable)?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(unavailable)?;
    client.flush().await.map_err(unavailable)?;
    match tokio::time::timeout(SUBSCRIBE_TIMEOUT, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(unavailable("nats connection closed")),
        Err(_) => Err(unavailable("nats did not answer in time")),
    }
}

fn encode_publication(publication: &Publication) -> Vec<u8> {
    let body = spindle_proto::client::Publication {
        data: publication.data.clone(),
        info: publication.info.clone(),
        tags: publication.tags.clone(),
        time: publication.time,
        ..Default::default()
    }
    .encode_to_vec();
    let mut payload = b"p0,,0,".to_vec();
    payload.extend_from_slice(&body);
    payload
}

impl Broker for NatsBroker {
    async fn publish(
        &self,
        channel: &str,
        publication: Publication,
        _options: &PublishOptions,
    ) -> Result<PublishResult, BrokerError> {
        let payload = encode_publication(&publication);
        self.publish_raw(channel_subject(&self.prefix, channel), payload.into())
            .await?;
        Ok(PublishResult::default())
    }

    async fn publish_join_leave(&self, channel: &str, event: JoinLeave) -> Result<(), BrokerError> {
        let (kind, info) = match &event {
            JoinLeave::Join(info) => (b'j', info),
            JoinLeave::Leave(info) => (b'l', info),
        };
        let mut payload = vec![kind];
        info.encode(&mut payload).map_err(unavailable)?;
        self.publish_raw(channel_subject(&self.prefix, channel), payload.into())
            .await
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        if self.subs().contains_key(channel) {
            return Ok(());
        }
        let mut subscriber = self
            .client
            .subscribe(channel_subject(&self.prefix, channel))
            .await
            .map_err(unavailable)?;
        let handler = self.handler.clone();
        let name = channel.to_owned();
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                if dispatch(handler.as_ref(), &name, &message.payload).is_none() {
                    tracing::warn!(channel = name, "undecodable nats broker message");
                }
            }
        });
        let loser = {
            let mut subs = self.subs();
            if subs.contains_key(channel) {
                Some(task)
            } else {
                subs.insert(channel.to_owned(), task);
                None
            }
        };
        if let Some(task) = loser {
            // Another subscribe of the same channel won; keep its subscription only.
            task.abort();
            return Ok(());
        }
        round_trip(&self.client).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        if let Some(task) = self.subs().remove(channel) {
            task.abort();
        }
        Ok(())
    }

    /// NATS keeps no streams: every read fails (use the memory or Redis engine for history).
    async fn history(
        &self,
        _channel: &str,
        _query: &HistoryQuery,
        _stream: &StreamOptions,
    ) -> Result<HistoryResult, HistoryReadError> {
        Err(unavailable("the nats broker keeps no history").into())
    }

    /// Nothing to forget: NATS keeps no streams.
    async fn remove_history(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_escape_what_nats_cannot_carry_and_round_trip() {
        let cases = [
            ("news", "p.client.news"),
            ("chat:a", "p.client.chat:a"),
            ("a.b", "p.client.a.b"),
            ("a..b", "p.client.a.%2Eb"),
            (".a.", "p.client.%2Ea%2E"),
            ("a b*c>d", "p.client.a%20b%2Ac%3Ed"),
            ("100%", "p.client.100%25"),
            ("é", "p.client.%C3%A9"),
            ("tab\t", "p.client.tab%09"),
            ("", "p.client"),
        ];
        for (channel, subject) in cases {
            assert_eq!(channel_subject("p", channel), subject, "{channel:?}");
            assert_eq!(
                subject_channel("p", subject).as_deref(),
                Some(channel),
                "{subject}"
            );
            let tokens: Vec<&str> = subject.split('.').collect();
            assert!(tokens.iter().all(|t| !t.is_empty()), "{subject}");
            assert!(!subject.contains([' ', '*', '>']), "{subject}");
        }
        assert_eq!(subject_channel("p", "p.control"), None);
        assert_eq!(subject_channel("p", "p.client.%2"), None);
        // A literal "%2E" in a channel name stays apart from an escaped ".".
        assert_ne!(channel_subject("p", "a%2Eb"), channel_subject("p", "a..b"));
    }
}
