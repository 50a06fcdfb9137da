//! The durable engine: orchestration instances that survive crashes,
//! restarts and evictions because every host call they make is journaled
//! and replayed.

pub mod model;
