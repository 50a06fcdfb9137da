//! The host side of the `client` interface: HTTP and activity functions
//! start and manage orchestrations through the durable engine (the
//! sandbox holds it as the invocation's `client`, type-erased, so that it
//! does not depend on the engine).
//!
//! Every failure a caller can cause (bad id, bad JSON, unknown instance or
//! orchestrator, wrong state) is a typed `error` for the guest, never a
//! trap.

use std::sync::Arc;
use std::time::Duration;

use super::entities::SignalError;
use super::{Engine, PlainResponse, StartError};
use crate::sandbox::ToWit;
use crate::sandbox::bindings::perdure::functions::{client, types};
use crate::sandbox::{InvocationState, entity_id};
use perdure_records::{InstanceId, InstanceRecord, RuntimeStatus};
use perdure_storage::{ChangeOutcome, EventOutcome, StorageError};

type Json = String;
type ClientResult<T> = wasmtime::Result<Result<T, types::Error>>;

fn error(code: types::ErrorCode, message: impl Into<String>) -> types::Error {
    types::Error {
        code,
        message: message.into(),
        details: None,
    }
}

fn storage_error(e: StorageError) -> types::Error {
    error(types::ErrorCode::Internal, e.to_string())
}

fn parse_id(id: &str) -> Result<InstanceId, types::Error> {
    InstanceId::parse(id).map_err(|e| error(types::ErrorCode::InvalidArgument, e.to_string()))
}

fn change(id: &InstanceId, outcome: ChangeOutcome) -> Result<(), types::Error> {
    match outcome {
        ChangeOutcome::Done => Ok(()),
        ChangeOutcome::NotFound => Err(error(
            types::ErrorCode::NotFound,
            format!("no instance {id}"),
        )),
        ChangeOutcome::Finished(status) => Err(error(
            types::ErrorCode::FailedPrecondition,
            format!("instance {id} has already finished ({})", status.as_str()),
        )),
        ChangeOutcome::NotFinished(status) => Err(error(
            types::ErrorCode::FailedPrecondition,
            format!(
                "instance {id} has not finished ({}); terminate it first",
                status.as_str()
            ),
        )),
    }
}

/// Runs a management operation on one instance and reports its outcome.
async fn manage(
    engine: Result<Arc<Engine>, types::Error>,
    instance_id: &str,
    operation: impl AsyncFnOnce(&Engine, &InstanceId) -> Result<ChangeOutcome, StorageError>,
) -> Result<(), types::Error> {
    let engine = engine?;
    let id = parse_id(instance_id)?;
    let outcome = operation(&engine, &id).await.map_err(storage_error)?;
    change(&id, outcome)
}

fn runtime_status(status: RuntimeStatus) -> types::RuntimeStatus {
    match status {
        RuntimeStatus::Pending => types::RuntimeStatus::Pending,
        RuntimeStatus::Running => types::RuntimeStatus::Running,
        RuntimeStatus::Completed => types::RuntimeStatus::Completed,
        RuntimeStatus::Failed => types::RuntimeStatus::Failed,
        RuntimeStatus::Terminated => types::RuntimeStatus::Terminated,
        RuntimeStatus::Suspended => types::RuntimeStatus::Suspended,
        RuntimeStatus::ContinuedAsNew => types::RuntimeStatus::ContinuedAsNew,
    }
}

fn instance_status(record: InstanceRecord) -> types::InstanceStatus {
    types::InstanceStatus {
        name: record.name,
        instance_id: record.id.to_string(),
        runtime_status: runtime_status(record.status),
        input: Some(record.input),
        output: record.output,
        custom_status: record.custom_status,
        created_time: record.created_ms.max(0) as u64,
        last_updated_time: record.updated_ms.max(0) as u64,
        parent_instance_id: record.parent_id,
    }
}

fn wit_response(response: PlainResponse) -> types::HttpResponse {
    types::HttpResponse {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

/// What the sandbox asks of the engine.
impl crate::sandbox::DurableClient for Engine {
    fn loaded_orchestrator(&self, name: &str) -> Option<crate::sandbox::LoadedOrchestrator> {
        Engine::loaded_orchestrator(self, name)
    }

    fn activity_traceparent<'a>(
        &'a self,
        info: &'a crate::sandbox::ActivityInfo,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(Engine::activity_traceparent(self, info))
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl InvocationState {
    /// The engine, or the typed error a guest gets without one.
    fn engine(&self) -> Result<Arc<Engine>, types::Error> {
        let engine = self
            .client
            .clone()
            .and_then(|client| client.into_any().downcast::<Engine>().ok());
        engine.ok_or_else(|| {
            let message = if self.caller.kind == crate::model::FunctionKind::Orchestrator {
                "orchestrators cannot use the durable client (its answers are not replayable); \
                 use the orchestration context instead"
            } else {
                "the durable client is not available in this host"
            };
            error(types::ErrorCode::FailedPrecondition, message)
        })
    }
}

impl client::Host for InvocationState {
    async fn start_new(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: Json,
    ) -> ClientResult<String> {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(e) => return Ok(Err(e)),
        };
        let id = match instance_id.as_deref().map(parse_id).transpose() {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let traceparent = self.traceparent.as_deref();
        Ok(
            match engine
                .start_new_traced(&name, id, input, None, traceparent)
                .await
            {
                Ok(id) => Ok(id.to_string()),
                Err(e) => Err(match &e {
                    StartError::UnknownOrchestrator(_) => {
                        error(types::ErrorCode::NotFound, e.to_string())
                    }
                    StartError::AlreadyRunning(..) => {
                        error(types::ErrorCode::AlreadyExists, e.to_string())
                    }
                    StartError::InvalidInput(_) => {
                        error(types::ErrorCode::InvalidArgument, e.to_string())
                    }
                    StartError::Storage(_) => error(types::ErrorCode::Internal, e.to_string()),
                }),
            },
        )
    }

    async fn get_status(
        &mut self,
        instance_id: String,
    ) -> ClientResult<Option<types::InstanceStatus>> {
        let engine = self.engine();
        let run = async move {
            let engine = engine?;
            let id = parse_id(&instance_id)?;
            let record = engine.status(&id).await.map_err(storage_error)?;
            Ok(record.map(instance_status))
        };
        Ok(run.await)
    }

    async fn raise_event(
        &mut self,
        instance_id: String,
        event_name: String,
        data: Json,
    ) -> ClientResult<()> {
        let engine = self.engine();
        let run = async move {
            let engine = engine?;
            let id = parse_id(&instance_id)?;
            perdure_records::check_event_name(&event_name)
                .map_err(|e| error(types::ErrorCode::InvalidArgument, e))?;
            serde_json::from_str::<serde::de::IgnoredAny>(&data).map_err(|e| {
                error(
                    types::ErrorCode::InvalidArgument,
                    format!("event data is not valid JSON: {e}"),
                )
            })?;
            match engine
                .raise_event(&id, event_name, data)
                .await
                .map_err(storage_error)?
            {
                EventOutcome::Delivered(_) => Ok(()),
                EventOutcome::NotFound => change(&id, ChangeOutcome::NotFound),
                EventOutcome::Finished(status) => change(&id, ChangeOutcome::Finished(status)),
            }
        };
        Ok(run.await)
    }

    async fn terminate(&mut self, instance_id: String, reason: String) -> ClientResult<()> {
        Ok(manage(self.engine(), &instance_id, async |engine, id| {
            engine.terminate(id, &reason).await
        })
        .await)
    }

    async fn suspend(&mut self, instance_id: String, _reason: String) -> ClientResult<()> {
        Ok(manage(self.engine(), &instance_id, async |engine, id| {
            engine.suspend(id).await
        })
        .await)
    }

    async fn resume(&mut self, instance_id: String, _reason: String) -> ClientResult<()> {
        Ok(manage(self.engine(), &instance_id, async |engine, id| {
            engine.resume(id).await
        })
        .await)
    }

    async fn purge(&mut self, instance_id: String) -> ClientResult<bool> {
        let engine = self.engine();
        let run = async move {
            let engine = engine?;
            let id = parse_id(&instance_id)?;
            match engine.purge(&id).await.map_err(storage_error)? {
                ChangeOutcome::NotFound => Ok(false),
                outcome => change(&id, outcome).map(|()| true),
            }
        };
        Ok(run.await)
    }

    async fn signal_entity(
        &mut self,
        entity: types::EntityId,
        operation: String,
        input: Option<Json>,
    ) -> ClientResult<()> {
        let engine = self.engine();
        let signal = async move {
            let engine = engine?;
            let id = entity_id(&entity).map_err(|e| e.to_wit())?;
            engine
                .signal_entity(id, &operation, input)
                .await
                .map_err(|e| {
                    let code = match &e {
                        SignalError::UnknownEntity(_) => types::ErrorCode::NotFound,
                        SignalError::UnknownOperation { .. } | SignalError::InvalidInput(_) => {
                            types::ErrorCode::InvalidArgument
                        }
                        SignalError::Storage(_) => types::ErrorCode::Internal,
                    };
                    error(code, e.to_string())
                })
        };
        Ok(signal.await)
    }

    async fn read_entity_state(&mut self, entity: types::EntityId) -> ClientResult<Option<Json>> {
        let engine = self.engine();
        let read = async move {
            let engine = engine?;
            let id = entity_id(&entity).map_err(|e| e.to_wit())?;
            let record = engine.entity(&id).await.map_err(storage_error)?;
            Ok(record.and_then(|r| r.state))
        };
        Ok(read.await)
    }

    async fn create_check_status_response(
        &mut self,
        base_url: String,
        instance_id: String,
    ) -> wasmtime::Result<types::HttpResponse> {
        let (engine, id) = self.instance_target(&instance_id)?;
        let urls = engine.management_urls(&base_url, &id);
        Ok(wit_response(PlainResponse::check_status(&urls)))
    }

    async fn wait_for_completion_or_create_check_status_response(
        &mut self,
        base_url: String,
        instance_id: String,
        timeout: u64,
    ) -> wasmtime::Result<types::HttpResponse> {
        let (engine, id) = self.instance_target(&instance_id)?;
        self.waiting();
        let waited = engine
            .wait_for_completion(&id, Duration::from_millis(timeout))
            .await;
        // The wait counts as waiting, not computing.
        self.resumed();
        Ok(wit_response(match waited {
            Ok(Some(record)) if record.status.is_finished() => {
                PlainResponse::output(record.output.as_deref())
            }
            _ => PlainResponse::check_status(&engine.management_urls(&base_url, &id)),
        }))
    }
}

impl InvocationState {
    /// The engine and a parsed instance id, for the calls that cannot
    /// return an error: a malformed id is the guest's bug there, and traps.
    fn instance_target(&self, instance_id: &str) -> wasmtime::Result<(Arc<Engine>, InstanceId)> {
        let engine = self.engine().map_err(|e| wasmtime::Error::msg(e.message))?;
        let id = parse_id(instance_id).map_err(|e| wasmtime::Error::msg(e.message))?;
        Ok((engine, id))
    }
}
