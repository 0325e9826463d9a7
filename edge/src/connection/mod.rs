//! One task per connection: read a frame, decode its commands, let the session decide, act, and
//! queue replies; between frames, wake for the session's timers and for control commands from
//! the API. A second task (the writer) owns the socket's sink.
//!
//! Generic over any `Stream<Item = Incoming>` / `Sink<Outgoing>`, so the WebSocket handler and
//! tests without sockets share it.
//!
//! Closing: whoever decides (this task, a broadcast finding the queue full, the API, shutdown)
//! closes the [`Outbox`]; this task then leaves its loop, removes the connection from the local
//! hub (and the core's interest), lets the writer send the close frame, and waits up to 5 s for
//! the client's close before dropping the socket.

mod api;
mod commands;
mod jwks;
mod map;
mod presence;
mod proxy;
mod query;
mod shared_poll;
mod stream_proxy;
mod subscribe;
mod uni;

use crate::clock::SystemNow;
use crate::handle::{ClientId, ConnectionHandle, MAILBOX_CAPACITY, Mail};
use crate::socket::{Incoming, Outgoing};
use crate::subscription::LocalSub;
use crate::writer::{CLOSE_WAIT, Outbox, run_writer};
use crate::{Shared, Transport};
use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use spindle_hub::codes::Disconnect;
use spindle_hub::outcome::{Failure, Outcome};
use spindle_hub::registry::Removed;
use spindle_hub::session::{Now, Session};
use spindle_proto::{Format, client, encode_reply};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The close a message over the size limit gets (SDKs treat 1009 as terminal).
const MESSAGE_TOO_BIG: Disconnect = Disconnect {
    code: 1009,
    reason: Cow::Borrowed("message size limit"),
};

/// The close a transport-level violation gets (RFC 6455 §7.4.1), with the code the transport
/// named.
fn transport_violation(code: u16) -> Disconnect {
    let reason = match code {
        1007 => "invalid payload data",
        _ => "protocol error",
    };
    Disconnect {
        code: u32::from(code),
        reason: Cow::Borrowed(reason),
    }
}

/// How a connection was opened.
#[derive(Clone, Debug)]
pub(crate) struct Setup {
    pub format: Format,
    pub transport: Transport,
    /// Native WebSocket pings instead of application pings.
    pub native_ping: bool,
    /// The `client.user_id_http_header` value of the upgrade request, if configured and sent.
    pub header_user: Option<String>,
    /// The session id of an emulation transport (HTTP-stream, SSE): reported with the node id
    /// in the connect result and the key `/emulation` requests name.
    pub session: Option<String>,
    /// Set for a unidirectional transport: receives the code of a refused connect (for
    /// `connect_code_to_http_response`).
    pub uni: Option<Arc<OnceLock<u32>>>,
    /// The client's HTTP request headers some proxy forwards (`http_headers` of any proxy;
    /// lower-case names), made by [`client_headers`]; empty when no proxy forwards any.
    pub headers: Arc<BTreeMap<String, String>>,
}

/// The request headers named by any proxy's `http_headers` (kept per connection for proxy
/// calls; each proxy's own list is applied by the core).
pub(crate) fn client_headers(
    config: &spindle_hub::config::Config,
    headers: &axum::http::HeaderMap,
) -> Arc<BTreeMap<String, String>> {
    let lists = config.all_proxies().flat_map(|p| p.http_headers.iter());
    let mut kept = BTreeMap::new();
    for name in lists {
        if let Some(value) = headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
            kept.insert(name.to_ascii_lowercase(), value.to_owned());
        }
    }
    Arc::new(kept)
}

/// Serves one connection until it closes.
pub(crate) async fn serve<S, K>(shared: Arc<Shared>, setup: Setup, stream: S, sink: K)
where
    S: Stream<Item = Incoming> + Unpin + Send,
    K: Sink<Outgoing> + Unpin + Send + 'static,
{
    let outbox = Arc::new(Outbox::new(setup.format, shared.limits.queue_max_size));
    let writer = tokio::spawn(run_writer(
        Arc::clone(&outbox),
        sink,
        shared.limits.write_timeout,
    ));
    serve_with(shared, setup, stream, outbox, writer).await;
}

/// Serves a connection whose `outbox` writes to its socket itself (`crate::ws`), `stream`
/// made from the outbox (the reader answers pings through it).
pub(crate) async fn serve_socket<S>(
    shared: Arc<Shared>,
    setup: Setup,
    outbox: Arc<Outbox>,
    stream: impl FnOnce(Arc<Outbox>) -> S,
) where
    S: Stream<Item = Incoming> + Unpin + Send,
{
    let writer = tokio::spawn(crate::ws::run_socket_writer(
        Arc::clone(&outbox),
        shared.limits.write_timeout,
    ));
    let stream = stream(Arc::clone(&outbox));
    serve_with(shared, setup, stream, outbox, writer).await;
}

/// A connection's task, whichever way its writes go (`writer` drains `outbox`).
async fn serve_with<S>(
    shared: Arc<Shared>,
    setup: Setup,
    mut stream: S,
    outbox: Arc<Outbox>,
    writer: tokio::task::JoinHandle<()>,
) where
    S: Stream<Item = Incoming> + Unpin + Send,
{
    let _live = LiveTask::new(&shared);
    let client = ClientId::generate();
    let (mailbox_tx, mut mailbox) = mpsc::channel(MAILBOX_CAPACITY);
    let handle = ConnectionHandle::new(client.clone(), Arc::clone(&outbox), mailbox_tx);
    shared.hub.open(handle.clone());
    if shared.shutting_down.load(Ordering::Acquire) {
        outbox.close(Disconnect::SHUTDOWN);
    }
    let now = Now::system();
    let mut session = Session::new(&shared.rules, client.to_string(), setup.format, now);
    if let Some(user) = setup.header_user.clone() {
        session = session.with_header_user(user);
    }
    if let Some(id) = setup.session.clone() {
        session = session.with_session_id(id.clone());
        if setup.uni.is_none() {
            shared.emulation_open(id, handle.clone());
        }
    }
    tracing::debug!(client = %client, transport = setup.transport.name(), format = setup.format.as_str(), "connection opened");
    let mut connection = Connection {
        shared,
        setup,
        client,
        handle,
        outbox,
        session,
        last_read: now.mono,
        subs: HashMap::new(),
        joined: HashSet::new(),
        presence: presence::PresenceQueue::default(),
        emulated_headers: BTreeMap::new(),
        map_loading: HashMap::new(),
        track_deadline: None,
        streams: HashMap::new(),
    };
    connection.run(&mut stream, &mut mailbox).await;
    let disconnect = Box::pin(connection.finish()).await;
    if let Some(id) = &connection.setup.session
        && connection.setup.uni.is_none()
    {
        connection.shared.emulation_closed(id);
    }
    tracing::debug!(client = %connection.client, code = disconnect.code, reason = %disconnect.reason, "connection closed");

    // The writer sends what was queued and the close frame; then the client's close is
    // awaited (reading until the stream ends), all within CLOSE_WAIT.
    let writer_abort = writer.abort_handle();
    let wait_for_client = async {
        let _ = writer.await;
        // Reading lets the transport flush its reply to a client's close; an error (even one
        // the transport would repeat without waiting, like an oversize message) ends it.
        while let Some(item) = stream.next().await {
            if matches!(
                item,
                Incoming::Failed | Incoming::TooBig | Incoming::Violation(_)
            ) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, wait_for_client).await;
    writer_abort.abort();
}

/// Counts a running connection task for [`crate::Edge::wait_drained`], however it ends.
struct LiveTask(Arc<Shared>);

impl LiveTask {
    fn new(shared: &Arc<Shared>) -> LiveTask {
        shared.live_tasks.fetch_add(1, Ordering::AcqRel);
        LiveTask(Arc::clone(shared))
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        self.0.live_tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What woke a connection's task.
enum Event {
    Incoming(Option<Incoming>),
    Mail(Mail),
    Timer,
}

/// One connection's state in its task.
struct Connection {
    shared: Arc<Shared>,
    setup: Setup,
    client: ClientId,
    handle: ConnectionHandle,
    outbox: Arc<Outbox>,
    session: Session,
    /// When the client last sent anything (native-ping read deadline).
    last_read: Instant,
    /// This connection's subscriptions in the local hub, by channel.
    subs: HashMap<String, Arc<LocalSub>>,
    /// Channels whose presence entry was stored or join announced (a leave goes only for those).
    joined: HashSet<String>,
    /// This connection's presence requests, in order.
    presence: presence::PresenceQueue,
    /// `ConnectRequest.headers` (lower-case names), for the proxies' `emulated_headers`.
    emulated_headers: BTreeMap<String, String>,
    /// Map subscriptions between their first page and going live, by channel.
    map_loading: HashMap<String, map::MapLoading>,
    /// When the earliest shared-poll track signature (plus its extra delay) runs out.
    track_deadline: Option<Instant>,
    /// Subscription streams this connection opened, by channel.
    streams: HashMap<String, stream_proxy::OpenStream>,
}

impl Connection {
    /// Waits for the next thing to do and does it, until the connection closes.
    ///
    /// Only the wait lives in this future; handling is boxed, so an idle connection holds a
    /// small future instead of the largest command handler's state (idle memory per
    /// connection, docs/benchmarks.md figure 3).
    async fn run<S>(&mut self, stream: &mut S, mailbox: &mut mpsc::Receiver<Mail>)
    where
        S: Stream<Item = Incoming> + Unpin,
    {
        while self.outbox.closing().is_none() {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            ));
            let outbox = Arc::clone(&self.outbox);
            let event = tokio::select! {
                biased;
                () = outbox.wait_closed() => continue,
                item = stream.next() => Event::Incoming(item),
                Some(mail) = mailbox.recv() => Event::Mail(mail),
                () = sleep, if deadline.is_some() => Event::Timer,
            };
            Box::pin(self.on_event(event)).await;
        }
    }

    async fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(item) => self.on_incoming(item).await,
            Event::Mail(Mail::Control(control)) => self.on_control(*control).await,
            Event::Mail(Mail::PositionLost(sub)) => self.on_position_lost(&sub).await,
            Event::Mail(Mail::Frame(frame)) => self.on_frame(frame).await,
            Event::Timer => self.on_timer().await,
        }
    }

    async fn on_incoming(&mut self, item: Option<Incoming>) {
        self.last_read = Instant::now();
        match item {
            Some(Incoming::Data(frame)) if self.setup.uni.is_some() => {
                self.on_uni_frame(frame).await;
            }
            Some(Incoming::Data(frame)) => self.on_frame(frame).await,
            Some(Incoming::Activity) => {}
            Some(Incoming::TooBig) => self.close(MESSAGE_TOO_BIG),
            Some(Incoming::Violation(code)) => self.close(transport_violation(code)),
            Some(Incoming::Close | Incoming::Failed) | None => {
                self.close(Disconnect::CONNECTION_CLOSED);
            }
        }
    }

    /// The earlier of the session's next deadline and the native-ping read deadline.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.session.next_deadline(),
            self.read_deadline(),
            self.track_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// With native pings, a connected client must send something (a pong at least) within
    /// `ping_interval + pong_timeout`.
    fn read_deadline(&self) -> Option<Instant> {
        (self.setup.native_ping && self.session.is_connected()).then(|| {
            self.last_read + self.shared.limits.ping_interval + self.shared.limits.pong_timeout
        })
    }

    /// Closes the connection (the first close wins) and the session.
    fn close(&mut self, disconnect: Disconnect) {
        self.session.close();
        self.outbox.close(disconnect);
    }

    /// A failure as the client sees it: an error reply to command `id`, or a disconnect.
    fn fail(&mut self, failure: Failure, id: u32) {
        match failure.outcome() {
            Outcome::Error(error) if self.setup.uni.is_some() => self.fail_uni(&error),
            Outcome::Error(error) => {
                let reply = client::Reply {
                    id,
                    error: Some((&error).into()),
                    ..Default::default()
                };
                self.send(&reply);
            }
            Outcome::Disconnect(disconnect) => self.close(disconnect),
        }
    }

    /// Encodes and queues a reply or push; a payload this client cannot receive (non-JSON to
    /// a JSON client) closes it with 3506.
    fn send(&mut self, reply: &client::Reply) {
        match encode_reply(self.setup.format, reply) {
            Ok(bytes) => {
                self.handle.push(bytes);
            }
            Err(error) => {
                let failure = Failure::Encode(error);
                if let Outcome::Disconnect(disconnect) = failure.outcome() {
                    self.close(disconnect);
                }
            }
        }
    }

    fn push(&mut self, push: client::Push) {
        self.send(&client::Reply {
            push: Some(push),
            ..Default::default()
        });
    }

    /// Drops a subscription from the session and the local hub, and leaves its presence.
    /// Returns whether there was one.
    async fn unregister(&mut self, channel: &str) -> bool {
        let record = self.session.remove_subscription(channel);
        let had = record.is_some();
        if let Some(sub) = self.subs.remove(channel) {
            sub.close();
            self.release_tracks(&sub);
            self.close_stream(channel);
            self.leave_hub(channel).await;
            if let Some(record) = record {
                self.presence_left(&record, true).await;
            }
        }
        had
    }

    /// Removes this connection from a channel of the local hub, telling the core when it was
    /// the channel's last subscriber.
    async fn leave_hub(&mut self, channel: &str) {
        if self.shared.hub.unsubscribe(channel, &self.client) == Removed::LastInChannel {
            self.shared.interest.touch(channel);
        }
    }

    /// Leaves the local hub and every presence; returns why the connection closed.
    async fn finish(&mut self) -> Disconnect {
        self.session.close();
        let subs: Vec<(String, Arc<LocalSub>)> = self.subs.drain().collect();
        for (channel, sub) in &subs {
            sub.close();
            self.release_tracks(sub);
            self.close_stream(channel);
            if self.shared.hub.unsubscribe(channel, &self.client) == Removed::LastInChannel {
                self.shared.interest.touch(channel);
            }
        }
        self.shared.hub.closed(&self.client);
        let records: Vec<_> = self.session.subscriptions().cloned().collect();
        for record in &records {
            self.presence_left(record, false).await;
        }
        self.outbox
            .closing()
            .unwrap_or(Disconnect::CONNECTION_CLOSED)
    }
}

/// The encoded server ping: the empty reply (`{}` / a lone `0x00`).
fn ping_bytes(format: Format) -> Bytes {
    match format {
        Format::Json => Bytes::from_static(b"{}"),
        Format::Protobuf => Bytes::from_static(&[0]),
    }
}

#[cfg(test)]
mod tests;
