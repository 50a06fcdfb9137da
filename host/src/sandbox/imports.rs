//! The host side of the small interfaces a function app imports:
//! `logging` (every function kind) and `activity-context`. A call from the
//! wrong kind of function traps with a message that says so.
//! `orchestration` lives in `orchestration.rs`, `entity-context` in
//! `entity.rs`, `client` in `client.rs`.

use super::bindings::perdure::functions::{activity_context, logging, types};
use super::state::{InvocationState, Role};
use crate::model::FunctionKind;

impl InvocationState {
    /// The trap for a durable call that this caller may not make, or that
    /// this host cannot answer yet.
    pub(crate) fn unavailable(&self, interface: &str, kind: FunctionKind) -> wasmtime::Error {
        if self.caller.kind != kind {
            wasmtime::Error::msg(format!(
                "`{interface}` calls are only available inside {kind:?} functions; {} is a {:?} function",
                self.caller.function, self.caller.kind
            ))
        } else {
            wasmtime::Error::msg(format!(
                "`{interface}` calls are not supported by this host version"
            ))
        }
    }
}

impl types::Host for InvocationState {}

impl logging::Host for InvocationState {
    async fn log(&mut self, level: logging::Level, message: String) -> wasmtime::Result<()> {
        if let Some(log) = &self.instance_log {
            // An orchestrator replaying logged this line on an earlier run.
            if log.replaying() {
                return Ok(());
            }
            let name = match level {
                logging::Level::Trace => "trace",
                logging::Level::Debug => "debug",
                logging::Level::Info => "info",
                logging::Level::Warn => "warn",
                logging::Level::Error => "error",
            };
            log.push(name, &message);
        }
        let app = &*self.caller.app;
        let function = &*self.caller.function;
        match level {
            logging::Level::Trace => tracing::trace!(target: "guest", app, function, "{message}"),
            logging::Level::Debug => tracing::debug!(target: "guest", app, function, "{message}"),
            logging::Level::Info => tracing::info!(target: "guest", app, function, "{message}"),
            logging::Level::Warn => tracing::warn!(target: "guest", app, function, "{message}"),
            logging::Level::Error => tracing::error!(target: "guest", app, function, "{message}"),
        }
        Ok(())
    }
}

impl activity_context::Host for InvocationState {
    async fn info(&mut self) -> wasmtime::Result<activity_context::ActivityInfo> {
        match &self.role {
            Role::Activity(info) => Ok(activity_context::ActivityInfo {
                name: info.name.clone(),
                instance_id: info.instance_id.clone(),
                idempotency_key: info.idempotency_key.clone(),
                attempt: info.attempt,
            }),
            _ => Err(self.unavailable("activity-context", FunctionKind::Activity)),
        }
    }
}
