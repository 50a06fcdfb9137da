//! Perdure: a host for durable serverless functions written as WebAssembly
//! components. See ARCHITECTURE.md for the map of this crate.

pub mod cli;
pub mod config;
pub mod database;
pub mod durable;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod host;
mod http;
pub mod keys;
pub mod memory;
pub mod metrics;
pub mod model;
#[cfg(test)]
mod properties;
pub mod registry;
pub mod remote;
pub mod route;
pub mod sandbox;
pub mod settings;

mod time;
pub mod traces;
pub mod watcher;

pub use database::Database;
pub use host::{Host, HostConfig, StartError};
pub use http::HttpLimits;
pub use sandbox::SandboxLimits;
