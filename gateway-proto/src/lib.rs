//! Spindle's wire formats: bytes in, types out, and back.
//!
//! Owns: the `.proto` files (`proto/`) and their generated types for the client protocol
//! ([`client`], Centrifugo's `centrifugal.centrifuge.protocol`), the server API ([`api`],
//! `centrifugal.centrifugo.api`) and the edge↔core mesh ([`mesh`]); the JSON and Protobuf codecs
//! with Centrifugo's exact rules; frame batching; and a typed view of client commands
//! ([`Command`], [`Request`]) so the rest of the code never handles "exactly one of these optional
//! fields".
//!
//! Must not: do I/O, spawn tasks or read the clock. Decoding untrusted bytes never panics and
//! never allocates more than the frame it was given; every failure is a [`DecodeError`].
//!
//! Layout:
//! - [`Format`]: JSON or Protobuf, fixed for a connection's life.
//! - [`decode_commands`]: one client frame → an iterator of typed commands, in order.
//! - [`encode_reply`] / [`SharedReply`]: a reply in its on-the-wire form; a push for many
//!   receivers is encoded once per format and the `Bytes` shared.
//! - [`Batch`]: joins encoded messages into one transport frame by the protocol's rules.
//! - [`json`]: the helpers the generated types use for Centrifugo's JSON rules (see `build.rs`).
//! - [`api`], [`mesh`]: server API and mesh messages with their codecs.
//! - [`websocket`]: RFC 6455 framing, the server's side (the edge's own WebSocket).
//! - `fuzz`: the decoder harnesses shared by `fuzz/` (cargo fuzz) and the corpus replay test.

pub mod api;
#[doc(hidden)]
pub mod fuzz;
pub mod json;
pub mod mesh;
pub mod websocket;

mod batch;
mod command;
mod decode;
mod encode;
mod error;
mod format;

pub use batch::Batch;
pub use command::{Command, Request};
pub use decode::{CommandDecoder, decode_commands, decode_uni_connect};
pub use encode::{SharedReply, encode_reply};
pub use error::{DecodeError, EncodeError};
pub use format::Format;

/// The client protocol's messages (`client.proto`), with Centrifugo's JSON rules derived onto
/// every field by `build.rs`.
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod client {
    include!(concat!(
        env!("OUT_DIR"),
        "/centrifugal.centrifuge.protocol.rs"
    ));

    macro_rules! map_entry {
        ($entry:ident, $value:ident) => {
            impl crate::json::MapEntry for $entry {
                type Value = $value;
                fn key(&self) -> &str {
                    &self.key
                }
                fn value(&self) -> Option<&$value> {
                    self.value.as_ref()
                }
                fn from_parts(key: String, value: $value) -> Self {
                    $entry {
                        key,
                        value: Some(value),
                    }
                }
            }

            impl From<(String, $value)> for $entry {
                fn from((key, value): (String, $value)) -> Self {
                    $entry {
                        key,
                        value: Some(value),
                    }
                }
            }
        };
    }
    map_entry!(SubscribeResultEntry, SubscribeResult);
    map_entry!(ClientInfoEntry, ClientInfo);
}

/// Centrifugo's proxy protocol (`proxy.proto`, docs/protocol.md §8): what the core sends to the
/// application backend and reads back, as JSON (HTTP proxies, Centrifugo's JSON rules derived by
/// `build.rs`) or Protobuf (gRPC proxies).
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod proxy {
    include!(concat!(env!("OUT_DIR"), "/centrifugal.centrifugo.proxy.rs"));

    /// The `CentrifugoProxy` gRPC service (feature `grpc`): tonic client and server stubs over
    /// these messages, as Centrifugo's gRPC proxy backends implement it.
    #[cfg(feature = "grpc")]
    pub mod grpc {
        include!(concat!(
            env!("OUT_DIR"),
            "/grpc/centrifugal.centrifugo.proxy.rs"
        ));
    }
}

/// The uni_grpc service (`unistream.proto`, docs/protocol.md §1.7):
/// `centrifugal.centrifugo.unistream.CentrifugoUniStream/Consume`, tonic server and client
/// stubs whose messages are the client protocol's [`client::ConnectRequest`] and
/// [`client::Push`].
#[cfg(feature = "grpc")]
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod unistream {
    include!(concat!(
        env!("OUT_DIR"),
        "/centrifugal.centrifugo.unistream.rs"
    ));
}

/// The default client frame size limit (docs/protocol.md §1.2): 64 KiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 65536;
