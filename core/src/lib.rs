//! The core: shared and durable state.
//!
//! Owns: the node, the `Broker` / `PresenceManager` / map storage traits and their memory, Redis,
//! NATS and PostgreSQL implementations, proxies to the application backend (HTTP and gRPC), the
//! server API (HTTP and gRPC), async consumers and the mesh server side.
//!
//! Must not: hold client sockets. Edges hold them and talk to the core by messages.
//!
//! Layout: empty until the `spindle serve` issue adds the memory broker and the HTTP API.
