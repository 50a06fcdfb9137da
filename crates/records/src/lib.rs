//! The durable records: what Perdure's storage keeps and its engine, HTTP
//! API and sandbox speak. Instance ids and statuses, journal entries,
//! inbox messages, work items, episodes, entity ids and messages, retry
//! policies and the typed error a function returns.
//!
//! Invariant: this crate is the leaf of the host's layering. It knows no
//! database, no wasmtime and no HTTP; everything above it (storage traits,
//! the SQLite and PostgreSQL backends, the sandbox, the engine) depends on
//! it, never the other way.

pub mod entity;
mod error;
pub mod instance;
mod name;
pub mod retry;
mod time;

pub use entity::*;
pub use error::GuestError;
pub use instance::*;
pub use name::is_plain_name;
pub use retry::{InvalidPolicy, RetryPolicy};
pub use time::now_ms;
