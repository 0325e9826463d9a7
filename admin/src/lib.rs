//! The embedded admin web UI and its endpoints (`/admin/init`, `/admin/auth`, `/admin/api`).
//!
//! Owns: the static UI assets and the admin HTTP handlers.
//!
//! Must not: reach into edge or core internals; it uses the same server API as any backend.
//!
//! Layout: empty until the admin issue.
