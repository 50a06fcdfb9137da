//! End-to-end tests: one binary, a file per feature. Each test starts a real
//! host on a loopback port, with real components built from
//! `examples-wasm/` and `tests/guests/`.

mod admin;
mod greet;
mod hot_reload;
mod restart;
mod sandbox;
