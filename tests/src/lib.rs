//! Multi-process integration tests: real `spindle` processes on 127.0.0.1, real official SDKs
//! (`tests/sdk/js`, `tests/sdk/python`), real brokers, fault tests.
//!
//! Owns: helpers that start processes on port 0 and wait for them; the tests themselves live in
//! `tests/tests/` (Rust, against the binary) and `tests/sdk/` (the official SDKs, driven by
//! `tests/sdk/run.sh`). All suites share one server configuration,
//! `tests/fixtures/spindle.json`.
//!
//! Must not: be a dependency of any production crate; reimplement server logic (the tests speak
//! the wire protocol and the HTTP API only, like a client or a backend would).
//!
//! Layout:
//! - [`fixture`]: the shared config, its secret and API key, JSON merging for per-test patches,
//!   HS256 tokens ([`fixture::token`]), unique channel names, where the binary is.
//! - [`server`]: [`Server`] — writes a config into a temp dir, runs `spindle serve -c <cfg> -p 0`,
//!   waits (20 s) for the one stdout line `spindle: listening on <ip>:<port>`, offers
//!   [`Server::ws_url`], [`Server::api`] (with the API key), [`Server::stop`] (SIGTERM, wait)
//!   and kills the process on drop. Every failure to start says `could not start spindle` and
//!   carries the process's stderr.
//! - [`client`]: [`Client`] — a minimal protocol client over tokio-tungstenite speaking JSON or
//!   Protobuf (via `spindle_proto`'s generated types): connect, subscribe, publish, read the
//!   next reply / push / close with a timeout, answer server pings.
//! - [`backend`]: [`backend::Backend`] — an in-process application backend answering every
//!   proxy kind (HTTP proxy protocol), including slow, HTTP 500, `error` and `disconnect`
//!   answers.
//! - [`grpc_backend`]: [`grpc_backend::GrpcBackend`] — the same as a gRPC proxy backend
//!   (Centrifugo's `CentrifugoProxy` service, tonic).
//! - [`keys`]: [`keys::KeyServer`] — an identity provider serving JWK sets (rotatable, every
//!   request counted) and RS256 signing with two test keys.
//! - [`tls_front`]: [`tls_front::TlsFront`] — TLS in front of a test backend (fixture
//!   certificate signed by a test CA), for HTTPS and gRPC-over-TLS proxies.
//! - [`h3_status`]: the `:status` a WebTransport server answers an extended CONNECT with
//!   (wtransport's own client hides it).
//! - [`http`]: a tiny HTTP/1.1 client over a tokio `TcpStream` (the API, `/health`, plain GETs).
//! - [`impair`]: [`impair::Proxy`] — a seeded UDP proxy between an edge and a core that
//!   delays, loses, duplicates, reorders, blackholes, stalls one way and rebinds ports, set at
//!   run time through [`impair::Control`], per direction, with counters.
//! - [`sockets`]: the socket options of the server's end of a connection, read from outside
//!   (`pidfd_getfd`).
//!
//! Locating the binary: `SPINDLE_BIN` if set, else `<target dir>/debug/spindle` where the
//! target dir is `CARGO_TARGET_DIR` (relative paths are taken from the workspace root) or
//! `<workspace>/target`. Build it first with `cargo build -p spindle --bin spindle`; these tests
//! never build it themselves and fail (never skip) when it is missing.

pub mod backend;
pub mod client;
pub mod fixture;
pub mod gaps;
pub mod grpc_backend;
pub mod h3_status;
pub mod http;
pub mod impair;
pub mod keys;
pub mod server;
#[cfg(target_os = "linux")]
pub mod sockets;
pub mod split;
pub mod tls_front;

pub use client::{Client, CloseInfo, Event};
pub use server::{Server, ServerOptions, TempDir};
pub use spindle_proto::Format;
pub use spindle_proto::client as proto;
pub use split::{Split, SplitOptions};
pub use tokio_tungstenite::tungstenite;

use std::fmt;

/// A failed step of a test helper, with a message meant for the test's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The result of a helper.
pub type Result<T> = std::result::Result<T, Error>;

/// Unwraps a helper's result, panicking with the error's `Display` (multi-line messages, such
/// as the server's stderr in a start failure, stay readable in test output).
pub trait OrFail<T> {
    /// The value, or a panic with the error message.
    fn or_fail(self) -> T;
}

impl<T> OrFail<T> for Result<T> {
    #[track_caller]
    fn or_fail(self) -> T {
        match self {
            Ok(value) => value,
            Err(error) => panic!("{error}"),
        }
    }
}

/// Default wait for a reply, a push or a close.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
