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

use crate::socket::Outgoing;
use bytes::Bytes;
use futures_util::{FutureExt, Sink, SinkExt};
use spindle_hub::codes::Disconnect;
use spindle_proto::{Batch, Format};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
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
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Bytes>,
    bytes: usize,
    ping: bool,
    close: Option<Disconnect>,
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
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one encoded message (already in its per-message wire form). Never waits.
    pub fn push(&self, message: Bytes) -> Pushed {
        let mut state = self.lock();
        if state.close.is_some() {
            return Pushed::Closed;
        }
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
        self.wake_writer.notify_one();
        Pushed::Queued
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
