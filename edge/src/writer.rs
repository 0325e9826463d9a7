//! The per-connection writer: a bounded byte queue and the task draining it.
//!
//! Anyone may queue an encoded message for a connection ([`Outbox::push`]): its own task
//! (replies), the inbox task (publications for thousands of subscribers), control commands.
//! Pushing never waits. When the bytes waiting would pass `client.queue_max_size`, the queue is
//! dropped and the connection is closed with 3008 `slow`; the broadcast that found it full moves
//! on to the next subscriber.
//!
//! One writer task per connection owns the socket's sink. Each time it wakes it takes
//! everything queued and writes it as ONE transport frame ([`Batch::framed`]: JSON joined by
//! `\n`, Protobuf concatenated). A write that does not finish within `websocket.write_timeout`
//! ends the connection with 3009. A close request is written as a close frame after what was
//! queued before it (except for `slow`, whose queue is the problem).
//!
//! On a plain-TCP WebSocket ([`Outbox::with_socket`], `crate::ws`) the outbox holds the
//! socket's write half and frames messages itself: a push that finds the connection idle
//! (nothing queued, no write in flight) writes its frame at once from the pushing task — one
//! `writev` with the frame header, no task wake-up, no copy — and only what the socket does not
//! take at once goes through the writer task ([`crate::ws::run_socket_writer`]). Every write
//! happens under the queue's lock or while the writer owns the socket (`writing`), so frames
//! never interleave and keep the order they were pushed in.
//!
//! Corking ([`cork`]): while the fan-out pass handles several events that were already
//! waiting (it is behind), pushes only queue and the connections they touched are flushed at
//! the end of the pass, each with one write of everything queued for it, joined by the
//! protocol's rules. One event at a time (the usual case at low rates) is written at once;
//! under load the writes per delivery fall with the backlog.

use crate::socket::Outgoing;
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Sink, SinkExt};
use spindle_hub::codes::Disconnect;
use spindle_proto::websocket as frame;
use spindle_proto::{Batch, Format};
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, watch};

/// How long a close frame may take to reach the client; the same as the wait for its close.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A connection's queue of encoded messages waiting for its writer.
#[derive(Debug)]
pub struct Outbox {
    format: Format,
    limit: usize,
    state: Mutex<State>,
    wake_writer: Notify,
    closed: watch::Sender<bool>,
    /// A plain-TCP WebSocket's write half: messages are framed here and written directly.
    socket: Option<OwnedWriteHalf>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    ping: bool,
    close: Option<Disconnect>,
    /// Socket mode: the writer task is writing (pushes queue instead of writing).
    writing: bool,
    /// Socket mode: the rest of a frame the socket took only part of; it goes first.
    partial: Option<Bytes>,
    /// Socket mode: framed control frames (pongs, the echo of a client's close).
    controls: Vec<Bytes>,
    /// Socket mode: registered for the flush at the end of the current cork.
    corked: bool,
}

impl State {
    /// Socket mode: only messages are waiting (no write in flight, no partial frame, no
    /// control frame, no ping), so they may go out at once as one frame.
    fn is_idle_but_queued(&self) -> bool {
        !self.writing && !self.ping && self.partial.is_none() && self.controls.is_empty()
    }

    /// Socket mode: nothing is waiting or being written, so a frame may go out at once.
    fn is_idle(&self) -> bool {
        !self.writing
            && !self.ping
            && self.queue.is_empty()
            && self.partial.is_none()
            && self.controls.is_empty()
    }
}

/// What the writer task of a socket-mode outbox does next.
#[derive(Debug, PartialEq)]
pub(crate) enum SocketNext {
    /// These framed bytes; the socket belongs to the writer until [`Outbox::written`].
    Write(Bytes),
    /// The close, what is owed before its frame (the rest of a partial frame and control
    /// frames) and the queued messages as a frame (none for `slow`).
    Close(Disconnect, Bytes),
}

/// What a direct write did.
enum Direct {
    All,
    /// The socket took part: the rest of the frame.
    Part(Bytes),
    WouldBlock,
    Failed,
}

/// What [`Outbox::push`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The queue would pass its limit: the connection is now closing with 3008.
    Overflow,
    /// The connection is already closing; the message was dropped.
    Closed,
}

/// What the writer does next.
#[derive(Debug, PartialEq)]
enum Next {
    /// Everything queued, as one frame.
    Write(Bytes),
    Ping,
    /// The close, and the frame of what was queued before it, if anything.
    Close(Disconnect, Option<Bytes>),
}

impl Outbox {
    /// An empty queue holding at most `limit` bytes (at least 1).
    pub fn new(format: Format, limit: usize) -> Self {
        Outbox {
            format,
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            wake_writer: Notify::new(),
            closed: watch::channel(false).0,
            socket: None,
        }
    }

    /// An outbox that frames messages as WebSocket frames and writes them to `socket`
    /// itself (`crate::ws`); its writer task is [`crate::ws::run_socket_writer`].
    pub fn with_socket(format: Format, limit: usize, socket: OwnedWriteHalf) -> Self {
        Outbox {
            socket: Some(socket),
            ..Outbox::new(format, limit)
        }
    }

    /// The WebSocket opcode of this outbox's messages.
    fn opcode(&self) -> u8 {
        match self.format {
            Format::Json => frame::OP_TEXT,
            Format::Protobuf => frame::OP_BINARY,
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one encoded message (already in its per-message wire form). Never waits. In
    /// socket mode a message that finds the connection idle is written at once (`Queued`), or
    /// at the end of the cork when one is in progress on this thread.
    pub fn push(self: &Arc<Self>, message: Bytes) -> Pushed {
        let mut state = self.lock();
        if state.close.is_some() {
            return Pushed::Closed;
        }
        if self.socket.is_some() && !state.writing && (state.corked || cork::register(self)) {
            state.corked = true;
            return self.enqueue(state, message, false);
        }
        if let Some(socket) = &self.socket
            && state.is_idle()
            && cork::take_direct_write()
        {
            match write_now(socket, self.opcode(), &message) {
                Direct::All => return Pushed::Queued,
                Direct::Part(rest) => {
                    state.bytes += rest.len();
                    state.partial = Some(rest);
                    drop(state);
                    self.wake_writer.notify_one();
                    return Pushed::Queued;
                }
                Direct::WouldBlock => {}
                Direct::Failed => {
                    state.close = Some(Disconnect::WRITE_ERROR);
                    drop(state);
                    self.wake_writer.notify_one();
                    self.closed.send_replace(true);
                    return Pushed::Closed;
                }
            }
        }
        self.enqueue(state, message, true)
    }

    /// Queues `message` under `state`, waking the writer if `wake`; over the limit the
    /// connection closes with 3008.
    fn enqueue(&self, mut state: MutexGuard<'_, State>, message: Bytes, wake: bool) -> Pushed {
        if state.bytes.saturating_add(message.len()) > self.limit {
            state.queue.clear();
            state.bytes = 0;
            state.close = Some(Disconnect::SLOW);
            drop(state);
            self.wake_writer.notify_one();
            self.closed.send_replace(true);
            return Pushed::Overflow;
        }
        state.bytes += message.len();
        state.queue.push_back(message);
        drop(state);
        if wake {
            self.wake_writer.notify_one();
        }
        Pushed::Queued
    }

    /// Socket mode, at the end of a cork: writes everything queued as one frame if the socket
    /// takes it now; what it does not take goes to the writer task.
    fn flush_corked(&self) {
        let mut state = self.lock();
        state.corked = false;
        let Some(socket) = &self.socket else {
            return;
        };
        if state.close.is_some() || !state.is_idle_but_queued() || !cork::take_direct_write() {
            drop(state);
            self.wake_writer.notify_one();
            return;
        }
        let Some(frame) = self.take_frame(&mut state) else {
            return;
        };
        match write_now(socket, self.opcode(), &frame) {
            Direct::All => {}
            Direct::Part(rest) => {
                state.bytes += rest.len();
                state.partial = Some(rest);
                drop(state);
                self.wake_writer.notify_one();
            }
            Direct::WouldBlock => {
                state.bytes += frame.len();
                state.queue.push_front(frame);
                drop(state);
                self.wake_writer.notify_one();
            }
            Direct::Failed => {
                state.close = Some(Disconnect::WRITE_ERROR);
                drop(state);
                self.wake_writer.notify_one();
                self.closed.send_replace(true);
            }
        }
    }

    /// Socket mode: queues a framed control frame (a pong, a close echo) for the writer task.
    pub(crate) fn control(&self, framed: Bytes) {
        let mut state = self.lock();
        state.controls.push(framed);
        drop(state);
        self.wake_writer.notify_one();
    }

    /// The socket of a socket-mode outbox.
    pub(crate) fn socket(&self) -> Option<&OwnedWriteHalf> {
        self.socket.as_ref()
    }

    /// Socket mode: the writer task finished its write; pushes may write directly again.
    pub(crate) fn written(&self) {
        self.lock().writing = false;
    }

    /// Socket mode: what the writer task writes next, framed.
    pub(crate) async fn next_socket(&self) -> SocketNext {
        loop {
            {
                let mut state = self.lock();
                let mut out = BytesMut::new();
                if let Some(partial) = state.partial.take() {
                    out.extend_from_slice(&partial);
                }
                for control in state.controls.drain(..) {
                    out.extend_from_slice(&control);
                }
                if let Some(disconnect) = state.close.clone() {
                    let frame = self.take_frame(&mut state);
                    if disconnect.code != Disconnect::SLOW.code
                        && disconnect.code != Disconnect::CONNECTION_CLOSED.code
                        && let Some(frame) = frame
                    {
                        self.extend_framed(&mut out, &frame);
                    }
                    return SocketNext::Close(disconnect, out.freeze());
                }
                if std::mem::take(&mut state.ping) {
                    out.extend_from_slice(&frame::frame(frame::OP_PING, &[]));
                }
                if let Some(frame) = self.take_frame(&mut state) {
                    self.extend_framed(&mut out, &frame);
                }
                if !out.is_empty() {
                    state.writing = true;
                    return SocketNext::Write(out.freeze());
                }
            }
            self.wake_writer.notified().await;
        }
    }

    /// Appends `payload` as one data frame of this outbox's opcode.
    fn extend_framed(&self, out: &mut BytesMut, payload: &[u8]) {
        let (head, used) = frame::header(self.opcode(), payload.len());
        out.reserve(used + payload.len());
        out.extend_from_slice(&head[..used]);
        out.extend_from_slice(payload);
    }

    /// Asks the writer to send a native WebSocket ping.
    pub fn ping(&self) {
        let mut state = self.lock();
        if state.close.is_none() {
            state.ping = true;
            drop(state);
            self.wake_writer.notify_one();
        }
    }

    /// Closes the connection with `disconnect` after what is already queued. The first close
    /// wins; returns whether this one did.
    pub fn close(&self, disconnect: Disconnect) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return false;
        }
        state.close = Some(disconnect);
        drop(state);
        self.wake_writer.notify_one();
        self.closed.send_replace(true);
        true
    }

    /// Why the connection is closing, once it is.
    pub fn closing(&self) -> Option<Disconnect> {
        self.lock().close.clone()
    }

    /// Waits until the connection is closing.
    pub async fn wait_closed(&self) {
        let mut receiver = self.closed.subscribe();
        // The sender lives in `self`, so this only ends when the flag is set.
        let _ = receiver.wait_for(|closed| *closed).await;
    }

    /// Takes every queued message (tests look at what a connection would be sent).
    #[cfg(test)]
    pub(crate) fn drain(&self) -> Vec<Bytes> {
        let mut state = self.lock();
        state.bytes = 0;
        state.queue.drain(..).collect()
    }

    /// Bytes waiting for the writer.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    async fn next(&self) -> Next {
        loop {
            {
                let mut state = self.lock();
                if let Some(disconnect) = state.close.clone() {
                    return Next::Close(disconnect, self.take_frame(&mut state));
                }
                if let Some(frame) = self.take_frame(&mut state) {
                    return Next::Write(frame);
                }
                if std::mem::take(&mut state.ping) {
                    return Next::Ping;
                }
            }
            self.wake_writer.notified().await;
        }
    }

    /// Everything queued as one frame, the queue emptied (it keeps its capacity). One message
    /// is its own frame in both formats: no copy. Several are joined under the lock, into a
    /// buffer sized once: the copy is bounded by `client.queue_max_size`, and this runs once
    /// per write, so it costs less than the allocation of a list to copy outside the lock.
    fn take_frame(&self, state: &mut State) -> Option<Bytes> {
        let bytes = std::mem::take(&mut state.bytes);
        match state.queue.len() {
            0 => None,
            1 => state.queue.pop_front(),
            n => {
                let mut batch = Batch::framed_with_capacity(self.format, bytes + n);
                for message in state.queue.drain(..) {
                    batch.push(&message);
                }
                Some(batch.take())
            }
        }
    }
}

/// Corking: on this thread, between [`cork::begin`] and [`cork::Cork::flush`], socket-mode
/// pushes queue and register their outbox; the flush writes each once.
pub mod cork {
    use super::Outbox;
    use std::cell::{Cell, RefCell};
    use std::sync::Arc;

    thread_local! {
        static CORKED: RefCell<Option<Vec<Arc<Outbox>>>> = const { RefCell::new(None) };
        /// Direct writes left to the fan-out pass running on this thread (`usize::MAX`
        /// outside a pass).
        static DIRECT_WRITES: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    /// A fan-out pass on this thread, allowed `budget` direct writes: past it, pushes queue
    /// and wake their writer tasks, which run between other tasks. A pass to a great many
    /// connections then does not hold the thread for all their writes (the API and the other
    /// lanes wait meanwhile), and what queues behind it is batched.
    #[derive(Debug)]
    #[must_use = "the budget holds until the pass is dropped"]
    pub struct Pass(());

    /// Starts a pass with `budget` direct writes.
    pub fn pass(budget: usize) -> Pass {
        DIRECT_WRITES.with(|left| left.set(budget));
        Pass(())
    }

    impl Drop for Pass {
        fn drop(&mut self) {
            DIRECT_WRITES.with(|left| left.set(usize::MAX));
        }
    }

    /// Whether a direct write may happen now (and counts it).
    pub(super) fn take_direct_write() -> bool {
        DIRECT_WRITES.with(|left| match left.get() {
            0 => false,
            usize::MAX => true,
            n => {
                left.set(n - 1);
                true
            }
        })
    }

    /// A cork in progress on this thread; it must not be held across an `.await` (the task
    /// could move to another thread): begin, push synchronously, flush.
    #[derive(Debug)]
    #[must_use = "a cork writes nothing until it is flushed"]
    pub struct Cork(());

    /// Starts corking on this thread (a cork already in progress is kept).
    pub fn begin() -> Cork {
        CORKED.with(|corked| {
            corked.borrow_mut().get_or_insert_with(Vec::new);
        });
        Cork(())
    }

    /// Registers `outbox` for the flush; false when no cork is in progress.
    pub(super) fn register(outbox: &Arc<Outbox>) -> bool {
        CORKED.with(|corked| match corked.borrow_mut().as_mut() {
            Some(list) => {
                list.push(Arc::clone(outbox));
                true
            }
            None => false,
        })
    }

    impl Cork {
        /// Ends the cork: every outbox pushed to during it writes what it queued.
        pub fn flush(self) {
            let list = CORKED.with(|corked| corked.borrow_mut().take());
            for outbox in list.into_iter().flatten() {
                outbox.flush_corked();
            }
        }
    }

    impl Drop for Cork {
        fn drop(&mut self) {
            // Flushed or not, the thread is not corked any more (a forgotten flush leaves the
            // messages to the writer task, which the flush would have woken).
            if let Some(list) = CORKED.with(|corked| corked.borrow_mut().take()) {
                for outbox in list {
                    outbox.flush_corked();
                }
            }
        }
    }
}

/// Writes `message` as one frame of `opcode` to `socket` if the socket takes it now.
fn write_now(socket: &OwnedWriteHalf, opcode: u8, message: &[u8]) -> Direct {
    let (head, used) = frame::header(opcode, message.len());
    let total = used + message.len();
    match socket.try_write_vectored(&[IoSlice::new(&head[..used]), IoSlice::new(message)]) {
        Ok(n) if n == total => Direct::All,
        Ok(n) => {
            let mut rest = BytesMut::with_capacity(total - n);
            if n < used {
                rest.extend_from_slice(&head[n..used]);
                rest.extend_from_slice(message);
            } else {
                rest.extend_from_slice(&message[n - used..]);
            }
            Direct::Part(rest.freeze())
        }
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => Direct::WouldBlock,
        Err(_) => Direct::Failed,
    }
}

/// Drains `outbox` into `sink` until the connection closes. Returns once the close frame is
/// written (or could not be).
pub async fn run_writer<K>(outbox: std::sync::Arc<Outbox>, mut sink: K, write_timeout: Duration)
where
    K: Sink<Outgoing> + Unpin,
{
    loop {
        match outbox.next().await {
            Next::Write(frame) => {
                if !send(&mut sink, Outgoing::Frame(frame), write_timeout).await {
                    outbox.close(Disconnect::WRITE_ERROR);
                    return;
                }
            }
            Next::Ping => {
                if !send(&mut sink, Outgoing::Ping, write_timeout).await {
                    outbox.close(Disconnect::WRITE_ERROR);
                    return;
                }
            }
            Next::Close(disconnect, rest) => {
                let code = disconnect.code;
                if code == Disconnect::WRITE_ERROR.code
                    || code == Disconnect::CONNECTION_CLOSED.code
                {
                    // Nothing more can or should be written.
                    return;
                }
                if let Some(frame) = rest.filter(|_| code != Disconnect::SLOW.code)
                    && !send(&mut sink, Outgoing::Frame(frame), write_timeout).await
                {
                    return;
                }
                let close = Outgoing::Close {
                    code: u16::try_from(code).unwrap_or(3000),
                    reason: disconnect.reason.into_owned(),
                };
                send(&mut sink, close, CLOSE_WAIT).await;
                return;
            }
        }
    }
}

/// Writes one item within `limit`. Most writes complete at once (the socket has room), so the
/// timer is armed only for one that has to wait: a timer per frame is a measurable share of a
/// fan-out's CPU.
async fn send<K: Sink<Outgoing> + Unpin>(sink: &mut K, item: Outgoing, limit: Duration) -> bool {
    let mut sending = sink.send(item);
    if let Some(done) = (&mut sending).now_or_never() {
        return done.is_ok();
    }
    matches!(tokio::time::timeout(limit, sending).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::sink;
    use std::sync::Arc;
    use tokio::sync::mpsc;

    fn channel_sink(
        capacity: usize,
    ) -> (
        impl Sink<Outgoing, Error = mpsc::error::SendError<Outgoing>> + Unpin,
        mpsc::Receiver<Outgoing>,
    ) {
        let (tx, rx) = mpsc::channel(capacity);
        let sink = Box::pin(sink::unfold(tx, |tx, item: Outgoing| async move {
            tx.send(item).await?;
            Ok::<_, mpsc::error::SendError<Outgoing>>(tx)
        }));
        (sink, rx)
    }

    #[tokio::test]
    async fn everything_queued_goes_out_as_one_frame() {
        let outbox = Arc::new(Outbox::new(Format::Json, 1024));
        for message in [&b"{\"a\":1}"[..], b"{}", b"{\"b\":2}"] {
            assert_eq!(outbox.push(Bytes::copy_from_slice(message)), Pushed::Queued);
        }
        let (sink, mut frames) = channel_sink(8);
        let writer = tokio::spawn(run_writer(outbox.clone(), sink, Duration::from_secs(1)));
        assert_eq!(
            frames.recv().await,
            Some(Outgoing::Frame(Bytes::from_static(
                b"{\"a\":1}\n{}\n{\"b\":2}"
            )))
        );
        outbox.push(Bytes::from_static(b"{\"c\":3}"));
        assert_eq!(
            frames.recv().await,
            Some(Outgoing::Frame(Bytes::from_static(b"{\"c\":3}")))
        );
        outbox.push(Bytes::from_static(b"{\"last\":true}"));
        outbox.close(Disconnect::BAD_REQUEST);
        writer.await.unwrap();
        // The message queued before the close still goes out, then the close frame.
        let mut rest = Vec::new();
        while let Some(item) = frames.recv().await {
            rest.push(item);
        }
        let close = Outgoing::Close {
            code: 3501,
            reason: "bad request".into(),
        };
        let last = Outgoing::Frame(Bytes::from_static(b"{\"last\":true}"));
        assert_eq!(rest, [last, close]);
    }

    #[tokio::test]
    async fn protobuf_messages_concatenate() {
        let outbox = Arc::new(Outbox::new(Format::Protobuf, 1024));
        outbox.push(Bytes::from_static(&[0]));
        outbox.push(Bytes::from_static(&[2, 8, 1]));
        let (sink, mut frames) = channel_sink(8);
        tokio::spawn(run_writer(outbox.clone(), sink, Duration::from_secs(1)));
        assert_eq!(
            frames.recv().await,
            Some(Outgoing::Frame(Bytes::from_static(&[0, 2, 8, 1])))
        );
    }

    #[tokio::test]
    async fn overflow_closes_with_slow_and_never_blocks_the_pusher() {
        let outbox = Arc::new(Outbox::new(Format::Json, 100));
        // A sink that never accepts anything: the client stopped reading.
        let stuck = Box::pin(sink::unfold((), |(), _item: Outgoing| async move {
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(())
        }));
        let writer = tokio::spawn(run_writer(outbox.clone(), stuck, Duration::from_secs(60)));
        let message = Bytes::from(vec![b'1'; 30]);
        // Pushing is synchronous: this loop finishing at all is the "never blocks" part.
        let mut results = Vec::new();
        for _ in 0..20 {
            results.push(outbox.push(message.clone()));
            tokio::task::yield_now().await;
        }
        assert!(results.contains(&Pushed::Overflow), "{results:?}");
        assert_eq!(results.last(), Some(&Pushed::Closed));
        assert_eq!(outbox.closing(), Some(Disconnect::SLOW));
        assert_eq!(outbox.queued_bytes(), 0);
        tokio::time::timeout(Duration::from_secs(1), outbox.wait_closed())
            .await
            .unwrap();
        writer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_write_ends_with_write_error() {
        let outbox = Arc::new(Outbox::new(Format::Json, 1000));
        let stuck = Box::pin(sink::unfold((), |(), _item: Outgoing| async move {
            std::future::pending::<()>().await;
            Ok::<_, std::convert::Infallible>(())
        }));
        outbox.push(Bytes::from_static(b"{}"));
        run_writer(outbox.clone(), stuck, Duration::from_secs(1)).await;
        assert_eq!(outbox.closing(), Some(Disconnect::WRITE_ERROR));
    }

    #[tokio::test]
    async fn slow_drops_the_queue_and_still_sends_the_close_frame() {
        let outbox = Arc::new(Outbox::new(Format::Json, 10));
        outbox.push(Bytes::from_static(b"12345678"));
        assert_eq!(outbox.push(Bytes::from_static(b"123")), Pushed::Overflow);
        let (sink, mut frames) = channel_sink(8);
        run_writer(outbox.clone(), sink, Duration::from_secs(1)).await;
        assert_eq!(
            frames.recv().await,
            Some(Outgoing::Close {
                code: 3008,
                reason: "slow".into()
            })
        );
        assert_eq!(frames.recv().await, None);
    }

    #[tokio::test]
    async fn pings_are_native_frames() {
        let outbox = Arc::new(Outbox::new(Format::Json, 10));
        let (sink, mut frames) = channel_sink(8);
        tokio::spawn(run_writer(outbox.clone(), sink, Duration::from_secs(1)));
        outbox.ping();
        assert_eq!(frames.recv().await, Some(Outgoing::Ping));
    }
}
