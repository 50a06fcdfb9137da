//! The host side of the interfaces a function app imports.
//!
//! `logging` works for every function kind. The durable interfaces
//! (`orchestration`, `activity-context`, `entity-context`, `client`) are
//! checked against the caller's kind: a call from the wrong kind of function
//! traps with a message that says so. The durable engine that answers them
//! for the right kinds is not part of this host version yet; until it is,
//! those calls trap (or, for the client, return a typed `failed-precondition`
//! error) with a message that says so.

use super::bindings::perdure::functions::{
    activity_context, client, entity_context, logging, orchestration, types,
};
use super::state::InvocationState;
use crate::model::FunctionKind;

type Json = String;

impl InvocationState {
    /// The trap for a durable call that this caller may not make, or that
    /// this host cannot answer yet.
    fn unavailable(&self, interface: &str, kind: FunctionKind) -> wasmtime::Error {
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

    fn orchestration<T>(&self) -> wasmtime::Result<T> {
        Err(self.unavailable("orchestration", FunctionKind::Orchestrator))
    }

    fn client_error<T>(&self) -> wasmtime::Result<Result<T, types::Error>> {
        Ok(Err(types::Error {
            code: types::ErrorCode::FailedPrecondition,
            message: "the durable client is not supported by this host version".into(),
            details: None,
        }))
    }
}

impl types::Host for InvocationState {}

impl logging::Host for InvocationState {
    async fn log(&mut self, level: logging::Level, message: String) -> wasmtime::Result<()> {
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
        Err(self.unavailable("activity-context", FunctionKind::Activity))
    }
}

impl entity_context::Host for InvocationState {
    async fn signal_entity(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<()> {
        Err(self.unavailable("entity-context", FunctionKind::Entity))
    }

    async fn start_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
    ) -> wasmtime::Result<String> {
        Err(self.unavailable("entity-context", FunctionKind::Entity))
    }
}

impl orchestration::Host for InvocationState {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.orchestration()
    }

    async fn new_guid(&mut self) -> wasmtime::Result<String> {
        self.orchestration()
    }

    async fn is_replaying(&mut self) -> wasmtime::Result<bool> {
        self.orchestration()
    }

    async fn set_custom_status(&mut self, _status: Option<Json>) -> wasmtime::Result<()> {
        self.orchestration()
    }

    async fn schedule_activity(
        &mut self,
        _name: String,
        _input: Json,
        _options: orchestration::TaskOptions,
    ) -> wasmtime::Result<u64> {
        self.orchestration()
    }

    async fn schedule_sub_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
        _options: orchestration::TaskOptions,
    ) -> wasmtime::Result<u64> {
        self.orchestration()
    }

    async fn schedule_timer(&mut self, _fire_at: u64) -> wasmtime::Result<u64> {
        self.orchestration()
    }

    async fn schedule_event_wait(&mut self, _name: String) -> wasmtime::Result<u64> {
        self.orchestration()
    }

    async fn schedule_entity_call(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<u64> {
        self.orchestration()
    }

    async fn await_all(
        &mut self,
        _tasks: Vec<u64>,
    ) -> wasmtime::Result<Vec<Result<Json, types::Error>>> {
        self.orchestration()
    }

    async fn await_any(
        &mut self,
        _tasks: Vec<u64>,
    ) -> wasmtime::Result<(u32, Result<Json, types::Error>)> {
        self.orchestration()
    }

    async fn cancel_task(&mut self, _task: u64) -> wasmtime::Result<()> {
        self.orchestration()
    }

    async fn call_activity(
        &mut self,
        _name: String,
        _input: Json,
        _options: orchestration::TaskOptions,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        self.orchestration()
    }

    async fn call_sub_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
        _options: orchestration::TaskOptions,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        self.orchestration()
    }

    async fn create_timer(&mut self, _fire_at: u64) -> wasmtime::Result<()> {
        self.orchestration()
    }

    async fn wait_for_event(
        &mut self,
        _name: String,
        _timeout: Option<u64>,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        self.orchestration()
    }

    async fn call_entity(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<Result<Option<Json>, types::Error>> {
        self.orchestration()
    }

    async fn signal_entity(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<()> {
        self.orchestration()
    }

    async fn lock_entities(
        &mut self,
        _entities: Vec<types::EntityId>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.orchestration()
    }

    async fn unlock_entities(&mut self) -> wasmtime::Result<()> {
        self.orchestration()
    }

    async fn start_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
    ) -> wasmtime::Result<String> {
        self.orchestration()
    }

    async fn continue_as_new(
        &mut self,
        _input: Json,
        _preserve_unprocessed_events: bool,
    ) -> wasmtime::Result<()> {
        self.orchestration()
    }
}

impl client::Host for InvocationState {
    async fn start_new(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
    ) -> wasmtime::Result<Result<String, types::Error>> {
        self.client_error()
    }

    async fn get_status(
        &mut self,
        _instance_id: String,
    ) -> wasmtime::Result<Result<Option<types::InstanceStatus>, types::Error>> {
        self.client_error()
    }

    async fn raise_event(
        &mut self,
        _instance_id: String,
        _event_name: String,
        _data: Json,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.client_error()
    }

    async fn terminate(
        &mut self,
        _instance_id: String,
        _reason: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.client_error()
    }

    async fn suspend(
        &mut self,
        _instance_id: String,
        _reason: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.client_error()
    }

    async fn resume(
        &mut self,
        _instance_id: String,
        _reason: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.client_error()
    }

    async fn purge(
        &mut self,
        _instance_id: String,
    ) -> wasmtime::Result<Result<bool, types::Error>> {
        self.client_error()
    }

    async fn signal_entity(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.client_error()
    }

    async fn read_entity_state(
        &mut self,
        _entity: types::EntityId,
    ) -> wasmtime::Result<Result<Option<Json>, types::Error>> {
        self.client_error()
    }

    async fn create_check_status_response(
        &mut self,
        _base_url: String,
        _instance_id: String,
    ) -> wasmtime::Result<types::HttpResponse> {
        Err(wasmtime::Error::msg(
            "the durable client is not supported by this host version",
        ))
    }

    async fn wait_for_completion_or_create_check_status_response(
        &mut self,
        _base_url: String,
        _instance_id: String,
        _timeout: u64,
    ) -> wasmtime::Result<types::HttpResponse> {
        Err(wasmtime::Error::msg(
            "the durable client is not supported by this host version",
        ))
    }
}
