//! The pure domain of Spindle.
//!
//! Owns: channel names and namespace resolution, channel options, error / disconnect /
//! unsubscribe codes and the one mapping from internal outcomes to them, the subscription
//! registry used for fan-out, JWT claim verification, the client session state machine,
//! history streams and presence sets. The configuration (and glob patterns) live in the
//! `spindle-config` crate below this one and are re-exported here as [`config`] and [`glob`].
//!
//! Must not: open sockets, spawn tasks, read the clock (`Instant::now`, `SystemTime::now`) or the
//! environment. Time, environment variables and file contents are passed in as arguments, so
//! every rule here is tested without sleeping or touching the machine. CI fails if this crate
//! gains tokio, mio, quinn or hyper as a normal dependency.
//!
//! Layout:
//! - [`codes`]: error, disconnect and unsubscribe codes with their reconnect semantics.
//! - [`channel`]: channel names → namespace, private and user-limited rules.
//! - [`glob`]: glob patterns (`client.allowed_origins`, the `channels` filter); `spindle-config`.
//! - [`outcome`]: the one mapping from internal failures to error replies and disconnects.
//! - [`registry`]: channel → subscribers for fan-out, sharded, snapshot-on-read.
//! - [`config`]: the configuration tree with Centrifugo v6 key names, and loading it from
//!   JSON / YAML / TOML text, environment variables and flags; the `spindle-config` crate.
//! - [`jwt`]: connection and subscription token claims, verified as a pure function of
//!   (token, keys, now).
//! - [`session`]: one connection's protocol state machine: command order, connect, subscribe,
//!   publish, refresh and timer rules, driven with an explicit `Now`.
//! - [`history`]: channel streams (offsets, epochs, retention by size and time, idempotency,
//!   versions), history reads and the recovery decision, with time and randomness passed in.
//! - [`map`]: map channels — keyed state, change stream, key expiry, state pages — and the
//!   settings a namespace's `map` section resolves to.
//! - [`shared_poll`]: shared-poll channels: settings, track signatures, track / untrack
//!   decisions.
//! - [`presence`]: presence sets per channel with TTL expiry and client / user counts.
//! - [`metrics`]: the Prometheus text format each role's `/metrics` is written in.

pub mod channel;
pub mod codes;
/// The configuration tree, loading and role views: the `spindle-config` crate.
pub use spindle_config as config;
/// Glob patterns (`client.allowed_origins`, the `channels` filter): from `spindle-config`.
pub use spindle_config::glob;
pub mod delta;
pub mod history;
pub mod jwt;
pub mod map;
pub mod metrics;
pub mod outcome;
pub mod presence;
pub mod registry;
pub mod session;
pub mod shared_poll;

/// The server version string sent in connect results: `"<crate version> spindle"` (never
/// empty; SDK test suites rely on a non-empty `version`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " spindle");
