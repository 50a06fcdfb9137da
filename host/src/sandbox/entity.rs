//! Running entity operations: a batch of operations on one entity runs in
//! one instance of its app, one operation after another, each seeing the
//! state the previous one left. The `entity-context` calls an operation
//! makes are buffered per operation and kept only if it succeeds.
//!
//! An operation that traps (or runs out of time or memory) fails alone:
//! the instance is dropped and the next operation gets a fresh one.

use std::time::Instant;

use wasmtime::Store;

use super::bindings::FunctionApp;
use super::bindings::exports::perdure::functions::app::EntityRequest;
use super::bindings::perdure::functions::{entity_context, types};
use super::state::{Caller, InvocationState, Role};
use super::{AppCode, InvocationError, Sandbox};
use crate::model::FunctionKind;
use perdure_records::GuestError;
use perdure_records::{EntityId, EntityOpKind, EntitySend, NewEntityOp};
use perdure_records::{InstanceId, NewChild};

type Json = String;

/// One operation to run.
#[derive(Debug, Clone)]
pub struct OperationCall {
    pub operation: String,
    pub input: Option<String>,
}

/// How one operation ended: its result (or why it failed) and, if it
/// succeeded, what it sent.
#[derive(Debug)]
pub struct OperationOutcome {
    pub result: Result<Option<String>, InvocationError>,
    pub sends: Vec<EntitySend>,
}

/// What the operations of a batch ran: an outcome per operation, in order,
/// and the state after the last one. Fewer outcomes than operations means
/// the sandbox was full: the rest did not run.
#[derive(Debug)]
pub struct BatchOutcome {
    pub state: Option<String>,
    pub outcomes: Vec<OperationOutcome>,
}

impl Sandbox {
    /// Runs `calls` on `entity` (the function `entity.name` of `code`),
    /// starting from `state`.
    pub async fn run_entity_operations(
        &self,
        code: &AppCode,
        app: &str,
        entity: &EntityId,
        mut state: Option<String>,
        calls: Vec<OperationCall>,
    ) -> BatchOutcome {
        let mut outcomes = Vec::with_capacity(calls.len());
        let mut live: Option<(FunctionApp, Store<InvocationState>)> = None;
        let caller = Caller {
            app: app.into(),
            function: entity.name.as_str().into(),
            kind: FunctionKind::Entity,
        };
        for call in calls {
            let (app_instance, store) = match &mut live {
                Some(pair) => pair,
                None => {
                    let mut store = self
                        .store(caller.clone(), Role::Entity(Vec::new()), code.limits)
                        .await;
                    match self.instantiate(code, &mut store).await {
                        Ok(instance) => live.insert((instance, store)),
                        Err(e) => match super::classify(&store, code.limits, e) {
                            InvocationError::Overloaded => break,
                            error => {
                                outcomes.push(OperationOutcome {
                                    result: Err(error),
                                    sends: Vec::new(),
                                });
                                continue;
                            }
                        },
                    }
                }
            };
            let started = Instant::now();
            let data = store.data_mut();
            data.timed_out = false;
            data.resumed();
            let request = EntityRequest {
                key: entity.key.clone(),
                operation: call.operation,
                input: call.input,
                state: state.clone(),
            };
            let run = app_instance.perdure_functions_app().call_run_entity(
                &mut *store,
                &entity.name,
                &request,
            );
            let outcome = tokio::time::timeout(code.limits.timeout, run).await;
            let sends = match &mut store.data_mut().role {
                Role::Entity(sends) => std::mem::take(sends),
                _ => Vec::new(),
            };
            let result = match outcome {
                Ok(Ok(Ok(response))) => {
                    state = response.state;
                    Ok(response.output)
                }
                Ok(Ok(Err(error))) => Err(InvocationError::Guest(GuestError::from(error))),
                Ok(Err(trap)) => {
                    let error = super::classify(store, code.limits, trap);
                    end_live(&mut live).await;
                    Err(error)
                }
                Err(_elapsed) => {
                    end_live(&mut live).await;
                    Err(InvocationError::Timeout(code.limits.timeout))
                }
            };
            self.count(&caller, super::result_outcome(&result), started);
            let sends = if result.is_ok() { sends } else { Vec::new() };
            outcomes.push(OperationOutcome { result, sends });
        }
        end_live(&mut live).await;
        BatchOutcome { state, outcomes }
    }
}

impl InvocationState {
    fn entity_sends(&mut self) -> wasmtime::Result<&mut Vec<EntitySend>> {
        if !matches!(self.role, Role::Entity(_)) {
            return Err(self.unavailable("entity-context", FunctionKind::Entity));
        }
        match &mut self.role {
            Role::Entity(sends) => Ok(sends),
            _ => Err(wasmtime::Error::msg("unreachable: role checked above")),
        }
    }
}

impl entity_context::Host for InvocationState {
    async fn signal_entity(
        &mut self,
        entity: types::EntityId,
        operation: String,
        input: Option<Json>,
    ) -> wasmtime::Result<()> {
        let target = entity_id(&entity).map_err(|e| wasmtime::Error::msg(e.message))?;
        self.entity_sends()?.push(EntitySend::Signal(NewEntityOp {
            target,
            kind: EntityOpKind::Operation { operation, input },
            sender: None,
            reply_task: None,
        }));
        Ok(())
    }

    async fn start_orchestration(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: Json,
    ) -> wasmtime::Result<String> {
        self.entity_sends()?;
        if serde_json::from_str::<serde::de::IgnoredAny>(&input).is_err() {
            return Err(wasmtime::Error::msg(format!(
                "the input for orchestration {name} is not valid JSON"
            )));
        }
        let id = match instance_id {
            Some(id) => InstanceId::parse(&id).map_err(|e| wasmtime::Error::msg(e.to_string()))?,
            None => InstanceId::generate(),
        };
        let loaded = self
            .client
            .as_ref()
            .and_then(|engine| engine.loaded_orchestrator(&name))
            .ok_or_else(|| {
                wasmtime::Error::msg(format!("no orchestrator named {name} is loaded"))
            })?;
        let child = NewChild {
            task_id: None,
            id: id.clone(),
            name,
            app: loaded.app,
            digest: loaded.digest,
            input,
            retry: None,
        };
        self.entity_sends()?.push(EntitySend::Start {
            child,
            bytes: loaded.bytes,
        });
        Ok(id.to_string())
    }
}

/// Ends the batch's live instance, if any (see [`super::retire`]).
async fn end_live(live: &mut Option<(FunctionApp, Store<InvocationState>)>) {
    if let Some((_, store)) = live.take() {
        super::retire(store).await;
    }
}

/// A guest's entity id, validated.
pub(crate) fn entity_id(entity: &types::EntityId) -> Result<EntityId, GuestError> {
    EntityId::parse(&entity.name, &entity.key)
        .map_err(|e| GuestError::new("invalid-argument", e.to_string()))
}
