//! The load generator: many client connections speaking the real client protocol against a
//! real `spindle serve`, and the figures that come out of it.
//!
//! Owns: benchmark scenarios that print figures — `fanout` (deliveries per second, every
//! message delivered, end-to-end latency percentiles, server CPU and RSS) and `idle` (server
//! RSS and kernel socket memory per connection). Benchmarks are measurements, not timed tests;
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
//! - [`cli`]: arguments; [`server`]: start `spindle serve` with a temp config or attach by URL.
//! - [`client`]: one connection (connect, subscribe, count, pong); [`swarm`]: N of them.
//! - [`publisher`]: fixed-rate publishing over kept-alive API connections ([`http`]).
//! - [`payload`]: the payload format and the frame scanner.
//! - [`histogram`]: latency quantiles; [`procfs`]: CPU, RSS, socket memory, fd limit.
//! - [`fanout`], [`idle`]: the scenarios; [`report`]: the final table.

pub mod cli;
pub mod client;
pub mod fanout;
pub mod histogram;
pub mod http;
pub mod idle;
pub mod payload;
pub mod procfs;
pub mod publisher;
pub mod report;
pub mod server;
pub mod swarm;
