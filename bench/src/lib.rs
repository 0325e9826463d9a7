//! The load generator: many client connections speaking the real client protocol against a
//! real `spindle serve` (or a core and its edges), and the figures that come out of it.
//!
//! Owns: benchmark scenarios that print figures — `fanout` (deliveries per second, every
//! message delivered, end-to-end latency percentiles, server CPU and RSS), `idle` (server
//! RSS and kernel socket memory per connection), `history-publish` (publishes/s into channels
//! with history through the single and batch API, every offset checked and read back) and
//! `reconnect-storm` (time until N clients that dropped at once have recovered what they
//! missed, every recovered publication checked) and `map-sync` (time from a map subscription's
//! first page to its LIVE reply, every key checked) and `shared-poll` (backend refresh calls
//! and keys per interval for C clients tracking the same K keys). Benchmarks are measurements, not timed tests;
//! results and how to reproduce them live in `docs/benchmarks.md`; `bench/scripts/figures.sh`
//! runs the documented figures, each once the machine is quiet.
//!
//! Must not: be used by the server at run time; reimplement server logic (it speaks the wire
//! protocol and the HTTP API only, like a client or a backend would).
//!
//! Staying out of the way: the generator usually shares the machine with the server, so the
//! hot path is lean — one tokio runtime, one task per connection, no decoding of publications
//! (a stamp is found by scanning the frame, [`payload`]), one atomic histogram for latency
//! ([`histogram`]), buffers reused by the publisher ([`http`], [`publisher`]).
//!
//! Layout:
//! - [`cli`]: arguments; [`server`]: start a server process with a temp config or attach by
//!   URL; [`deployment`]: `spindle serve`, or a core and edges (`--split N`).
//! - [`client`]: one connection (connect, subscribe, count, pong); [`swarm`]: N of them.
//! - [`publisher`]: fixed-rate publishing over kept-alive API connections ([`http`]).
//! - [`api_publish`]: publishing with every reply checked ([`api_replies`]) into a [`ledger`]
//!   of offsets per channel; [`history_check`]: the history read back against it.
//! - [`payload`]: the payload format and the frame scanner.
//! - [`histogram`]: latency quantiles; [`procfs`]: CPU, RSS, socket memory, fd limit;
//!   [`resources`]: before/after samples and their report rows, per-second progress.
//! - [`fanout`], [`idle`], [`history_publish`], [`reconnect_storm`] (its clients:
//!   [`storm_client`], its verdict: [`storm_check`]), [`map_sync`]: the scenarios; [`report`]:
//!   the table.

pub mod api_publish;
pub mod api_replies;
pub mod cli;
pub mod client;
pub mod compare;
pub mod deployment;
pub mod fanout;
pub mod histogram;
pub mod history_check;
pub mod history_publish;
pub mod http;
pub mod idle;
pub mod ledger;
pub mod map_sync;
pub mod nats;
pub mod payload;
pub mod peers;
pub mod procfs;
pub mod publisher;
pub mod reconnect_storm;
pub mod report;
pub mod resources;
pub mod server;
pub mod shared_poll;
pub mod storm_check;
pub mod storm_client;
pub mod swarm;
pub mod wire;
