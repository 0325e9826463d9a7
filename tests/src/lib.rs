//! Multi-process integration tests: real `spindle` processes on 127.0.0.1, real official SDKs
//! (`tests/sdk/js`, `tests/sdk/python`), real brokers, fault tests.
//!
//! Owns: helpers that start processes on port 0 and wait for them; the tests themselves live in
//! `tests/tests/`.
//!
//! Must not: be a dependency of any production crate.
