//! The accept loop of every HTTP listener (main, internal, HTTPS): hyper with the limits a
//! public server needs, which `axum::serve` does not set.
//!
//! - A connection must finish its first request's headers within [`HEADER_READ_TIMEOUT`] (a
//!   silent client, or one that drips header bytes, is closed); HTTP/1 applies the same limit
//!   to the wait for each later request on a kept-alive connection.
//! - An HTTP/2 connection with no request in flight for [`IDLE_TIMEOUT`] is told to go away.
//! - At most [`pending_limit`] connections may be waiting for their first request at once; a
//!   new connection beyond it closes the oldest of them ([`crate::pending`]), so silent clients
//!   cannot take every descriptor, and a client that sends its request at once still gets in.
//!   TLS handshakes in progress are bounded the same way (`crate::tls`).
//!
//! Centrifugo (Go's `http.Server`) closes such connections after 10 s (headers) and 30 s (idle).
//! A connection leaves all of this once it is upgraded (WebSocket) or streams a response body
//! (HTTP-stream, SSE): those have their own ping and write deadlines in the edge.

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::pending::{Oldest, Pending};

/// Marks a request that arrived on a plain TCP connection (no TLS): its upgrade can be taken
/// down to the socket (`hyper::upgrade::Upgraded::downcast` to `TokioIo<TcpStream>`), which
/// the edge's WebSocket transport writes to directly.
#[derive(Clone, Copy, Debug)]
pub struct PlainTcp;

/// How long a connection may take to send a request's headers (the first one, and each later
/// one on an HTTP/1 keep-alive connection).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/2 connection may stay open with no request in flight.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections that may wait for their first request at once: a quarter of the descriptor
/// limit (the rest are for clients that did send one, brokers and the mesh), between 16 and
/// 4,096.
pub fn pending_limit() -> usize {
    let descriptors = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(descriptors / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 4096)
}

/// Where accepted connections come from: a plain TCP listener or the TLS one (already past its
/// handshake).
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<Self::Io> {
        let (mut tcp, _) = tokio::net::TcpListener::accept(self).await?;
        crate::no_delay(&mut tcp);
        Ok(tcp)
    }
}

/// Serves `router` on connections from `listener` until `shutdown` resolves, then stops
/// accepting, asks every connection to finish gracefully, and returns once they have.
pub async fn serve<L: Accept>(
    mut listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut waiting = Oldest::new(pending_limit());
    let (stop_tx, stop) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let io = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(io) => io,
                Err(error) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let activity = Activity::new();
        waiting.admit(&activity);
        tokio::spawn(serve_connection(io, router.clone(), activity, stop.clone()));
    }
    let _ = stop_tx.send(true);
    // Every connection task holds a receiver: all have finished once the channel is closed.
    drop(stop);
    stop_tx.closed().await;
}

/// One connection: hyper (HTTP/1 with upgrades, HTTP/2), watched for the deadlines above.
///
/// A plain TCP connection that does not open with the HTTP/2 preface is served by hyper's
/// HTTP/1 connection directly (not the auto-detecting one, which wraps the socket in a type
/// of its own): its upgrades then yield the bare `TcpStream`, and its requests carry
/// [`PlainTcp`].
async fn serve_connection<I>(
    io: I,
    router: Router,
    activity: Arc<Activity>,
    stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http1_over_tcp = match (&io as &dyn std::any::Any).downcast_ref::<tokio::net::TcpStream>() {
        Some(tcp) => {
            let opening = tokio::select! {
                opening = opens_with_http2_preface(tcp) => opening,
                () = activity.evict.notified() => return,
                () = tokio::time::sleep(HEADER_READ_TIMEOUT) => return,
            };
            match opening {
                Ok(http2) => !http2,
                Err(_) => return,
            }
        }
        None => false,
    };
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let guard = activity.begin();
            let router = router.clone();
            if http1_over_tcp {
                request.extensions_mut().insert(PlainTcp);
            }
            async move {
                let response = router.oneshot(request.map(Body::new)).await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }))
            }
        })
    };
    if http1_over_tcp {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        drive(connection, &activity, stop).await;
    } else {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        drive(connection, &activity, stop).await;
    }
}

/// Whether a plain TCP connection opens with HTTP/2's preface (cleartext HTTP/2 with prior
/// knowledge), found by peeking: nothing is consumed.
async fn opens_with_http2_preface(tcp: &tokio::net::TcpStream) -> std::io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut opening = [0u8; PREFACE.len()];
    loop {
        let n = tcp.peek(&mut opening).await?;
        if n == 0 || !PREFACE.starts_with(&opening[..n]) {
            return Ok(false);
        }
        if n == PREFACE.len() {
            return Ok(true);
        }
        // Only part of the preface has arrived (rare: it is sent in one write); peeking again
        // at once would return the same bytes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A served connection that can be asked to finish gracefully.
trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    Self: Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, E> Graceful for auto::UpgradeableConnection<'_, I, S, E>
where
    Self: Future,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

/// Runs `connection` to its end, applying the deadlines and the stop signal.
async fn drive<C, E>(connection: C, activity: &Activity, mut stop: watch::Receiver<bool>)
where
    C: Graceful<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
                return;
            }
            () = activity.evict.notified(), if !activity.seen_request() => return,
            () = tokio::time::sleep_until(deadline), if !stopping => {
                if activity.expired(Instant::now()) {
                    if activity.seen_request() {
                        connection.as_mut().graceful_shutdown();
                        stopping = true;
                    } else {
                        tracing::debug!("no request headers within {HEADER_READ_TIMEOUT:?}: closing");
                        return;
                    }
                }
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() || *stop.borrow() {
                    connection.as_mut().graceful_shutdown();
                    stopping = true;
                }
            }
        }
    }
}

/// What a connection is doing, for its deadlines: requests in flight (a request counts until
/// its response body is finished or dropped), when it last became idle, whether it has sent a
/// request yet, and the signal that closes it while it has not.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    seen_request: AtomicBool,
    evict: Notify,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            seen_request: AtomicBool::new(false),
            evict: Notify::new(),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.seen_request.store(true, Ordering::Release);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    fn seen_request(&self) -> bool {
        self.seen_request.load(Ordering::Acquire)
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the connection may go without a request in flight: until its first request's
    /// headers, then between requests.
    fn limit(&self) -> Duration {
        if self.seen_request() {
            IDLE_TIMEOUT
        } else {
            HEADER_READ_TIMEOUT
        }
    }

    /// When to look again: the end of the allowed wait; with a request in flight, one period
    /// from now (its end restarts the idle clock).
    fn deadline(&self) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + self.limit()
        } else {
            self.idle_since() + self.limit()
        }
    }

    /// Whether the connection has been without a request for longer than it may be.
    fn expired(&self, now: Instant) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && now >= self.idle_since() + self.limit()
    }
}

impl Pending for Activity {
    fn still_pending(&self) -> bool {
        !self.seen_request()
    }

    fn evict(&self) {
        tracing::debug!("too many connections without a request: closing the oldest");
        self.evict.notify_one();
    }
}

/// One request in flight; its drop makes the connection idle again when it was the last.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self
                .0
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
    }
}

/// A response body that keeps its request counted as in flight until it is finished or dropped
/// (an SSE or HTTP-stream response lives as long as its client).
struct Tracked {
    body: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
