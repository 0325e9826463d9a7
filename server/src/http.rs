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
async fn serve_connection<I>(
    io: I,
    router: Router,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let guard = activity.begin();
            let router = router.clone();
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
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
