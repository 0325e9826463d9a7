//! The load generator: many client connections speaking the real client protocol.
//!
//! Owns: benchmark scenarios that print figures (connections, messages per second, latency
//! percentiles). Benchmarks are measurements, not timed tests.
//!
//! Must not: be used by the server at run time.
//!
//! Layout: empty until the first bench scenario.
