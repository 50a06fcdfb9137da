//! End-to-end tests: one binary, a file per feature. Each test starts a real
//! host on a loopback port, with real components built from
//! `examples-wasm/` and `tests/guests/`.

mod admin;
mod app_limits;
mod cli;
mod cluster;
mod crash;
mod crash_points;
mod dashboard;
mod database_urls;
mod deploy_api;
mod disk_full;
mod durable_api;
mod entities;
mod greet;
mod hostile_durable;
mod hot_reload;
mod leases;
mod metrics;
mod observe;
mod openapi;
mod orchestrations;
mod outbound;
mod overload;
mod patterns;
mod postgres_harness;
mod python;
mod read_only;
mod restart;
mod sandbox;
mod secrets;
mod settings;
mod shutdown;
mod storage;
mod timers;
mod traces;
mod versions;
