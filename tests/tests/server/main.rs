//! Rust integration tests against the real `spindle` binary (`spindle serve -c <cfg> -p 0`).
//!
//! Every test starts its own server with the shared fixture config (`tests/fixtures/spindle.json`,
//! sometimes patched) and talks to it like a client or a backend would: WebSocket frames in JSON
//! or Protobuf, HTTP API requests. Scenarios that depend on the encoding run in both (`…::json`,
//! `…::protobuf`).
//!
//! The binary must be built first (`cargo build -p spindle --bin spindle`, or `SPINDLE_BIN`);
//! without it every test fails with "could not start spindle: …".
//!
//! Run: `cargo build -p spindle --bin spindle && cargo test -p spindle-tests --test server`.
//! `uni_grpc` tests speak gRPC with the generated tonic client (`spindle_proto::unistream`).
//! `SPINDLE_TEST_ECHO=1` echoes the server's stdout/stderr into the test output.

/// Defines `mod <name> { json, protobuf }` tests calling `async fn <name>(Format)`.
macro_rules! both_formats {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn json() {
                    super::$name(spindle_tests::Format::Json).await
                }

                #[tokio::test]
                async fn protobuf() {
                    super::$name(spindle_tests::Format::Protobuf).await
                }
            }
        )+
    };
}

mod api_control;
mod bad_input;
mod cli;
mod connect;
mod continuity;
mod emulation;
mod impairment;
mod jwks;
mod limits;
mod maps;
mod proxy;
mod proxy_tls;
mod pubsub;
mod redis_restart;
mod shared_poll;
mod slow_clients;
#[cfg(target_os = "linux")]
mod sockets;
mod split;
#[cfg(target_os = "linux")]
mod stalled_edge;
mod stream_proxy;
mod two_nodes;
mod uni_grpc;
mod unidirectional;
mod webtransport;

use spindle_tests::{Client, Format, OrFail, Server, fixture};

/// A server with the fixture config, or a panic saying why it could not start.
pub async fn start() -> Server {
    Server::start().await.or_fail()
}

/// A client of `user` connected with a fresh token.
pub async fn connected(server: &Server, format: Format, user: &str) -> (Client, String) {
    let (client, result) = Client::connect(&server.ws_url(), format, &fixture::token(user))
        .await
        .or_fail();
    (client, result.client)
}

/// The other encoding.
pub fn other(format: Format) -> Format {
    match format {
        Format::Json => Format::Protobuf,
        Format::Protobuf => Format::Json,
    }
}
