//! The host side of the `orchestration` interface (the sandbox runs the
//! guest; the engine answers it): every call goes to the orchestrator's
//! [`Session`], which answers it from the journal or live.
//! A [`Fault`] stops the orchestrator (the call traps) and is kept in the
//! session for the engine to act on.

use super::{Fault, Session};
use crate::durable::journal::Answer;
use crate::model::FunctionKind;
use crate::sandbox::ToWit;
use crate::sandbox::bindings::perdure::functions::{orchestration, types};
use crate::sandbox::{InvocationState, Role, entity_id};
use perdure_records::RetryPolicy;

type Json = String;

fn to_wit(answer: Answer) -> Result<Json, types::Error> {
    answer.outcome.map_err(|e| e.to_wit())
}

fn retry_policy(options: &orchestration::TaskOptions) -> Option<RetryPolicy> {
    options.retry.as_ref().map(|r| RetryPolicy {
        max_attempts: r.max_attempts,
        first_retry_interval_ms: r.first_retry_interval,
        backoff_coefficient: r.backoff_coefficient,
        max_retry_interval_ms: r.max_retry_interval,
        retry_timeout_ms: r.retry_timeout,
    })
}

fn internal(message: &str) -> types::Error {
    types::Error {
        code: types::ErrorCode::Internal,
        message: message.into(),
        details: None,
    }
}

fn timed_out(name: &str, timeout_ms: u64) -> types::Error {
    types::Error {
        code: types::ErrorCode::Timeout,
        message: format!("no event {name} arrived within {timeout_ms} ms"),
        details: None,
    }
}

impl InvocationState {
    fn session(&mut self) -> wasmtime::Result<&mut Session> {
        if !matches!(self.role, Role::Orchestrator(_)) {
            return Err(self.unavailable("orchestration", FunctionKind::Orchestrator));
        }
        match &mut self.role {
            Role::Orchestrator(session) => session
                .as_any_mut()
                .downcast_mut::<Session>()
                .ok_or_else(|| {
                    wasmtime::Error::msg("an orchestrator's session is not the engine's")
                }),
            _ => Err(wasmtime::Error::msg("unreachable: role checked above")),
        }
    }

    /// Runs a call that does not block.
    fn answer<T>(
        &mut self,
        call: impl FnOnce(&mut Session) -> Result<T, Fault>,
    ) -> wasmtime::Result<T> {
        let session = self.session()?;
        call(session).map_err(|fault| session.fail(fault))
    }

    /// Awaits one task.
    async fn await_one(&mut self, task: u64) -> wasmtime::Result<Result<Json, types::Error>> {
        let mut outcomes = orchestration::Host::await_all(self, vec![task]).await?;
        Ok(outcomes
            .pop()
            .unwrap_or_else(|| Err(internal("await-all answered no outcome"))))
    }
}

impl orchestration::Host for InvocationState {
    async fn now(&mut self) -> wasmtime::Result<u64> {
        self.answer(Session::now)
    }

    async fn new_guid(&mut self) -> wasmtime::Result<String> {
        self.answer(Session::new_guid)
    }

    async fn is_replaying(&mut self) -> wasmtime::Result<bool> {
        self.answer(|s| Ok(s.is_replaying()))
    }

    async fn set_custom_status(&mut self, status: Option<Json>) -> wasmtime::Result<()> {
        self.answer(|s| s.set_custom_status(status))
    }

    async fn schedule_activity(
        &mut self,
        name: String,
        input: Json,
        options: orchestration::TaskOptions,
    ) -> wasmtime::Result<u64> {
        self.answer(|s| s.schedule_activity(name, input, retry_policy(&options).as_ref()))
    }

    async fn schedule_sub_orchestration(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: Json,
        options: orchestration::TaskOptions,
    ) -> wasmtime::Result<u64> {
        let retry = retry_policy(&options);
        self.answer(|s| s.schedule_sub_orchestration(name, instance_id, input, retry.as_ref()))
    }

    async fn schedule_timer(&mut self, fire_at: u64) -> wasmtime::Result<u64> {
        let fire_at = i64::try_from(fire_at).unwrap_or(i64::MAX);
        self.answer(|s| s.schedule_timer(fire_at))
    }

    async fn schedule_event_wait(&mut self, name: String) -> wasmtime::Result<u64> {
        self.answer(|s| s.schedule_event_wait(name))
    }

    async fn schedule_entity_call(
        &mut self,
        entity: types::EntityId,
        operation: String,
        input: Option<Json>,
    ) -> wasmtime::Result<u64> {
        // The WIT call returns a bare task id: a call that cannot be made
        // is a broken rule, and fails the instance.
        let entity = self.answer(|_| entity_id(&entity).map_err(|e| Fault::BadCall(e.message)))?;
        self.answer(|s| {
            s.schedule_entity_call(entity, operation, input)?
                .map_err(|e| Fault::BadCall(e.message))
        })
    }

    async fn await_all(
        &mut self,
        tasks: Vec<u64>,
    ) -> wasmtime::Result<Vec<Result<Json, types::Error>>> {
        self.waiting();
        let session = self.session()?;
        let outcomes = session.await_all(&tasks).await;
        let outcomes = outcomes.map_err(|fault| session.fail(fault))?;
        self.resumed();
        Ok(outcomes.into_iter().map(to_wit).collect())
    }

    async fn await_any(
        &mut self,
        tasks: Vec<u64>,
    ) -> wasmtime::Result<(u32, Result<Json, types::Error>)> {
        self.waiting();
        let session = self.session()?;
        let answer = session.await_any(&tasks).await;
        let (index, outcome) = answer.map_err(|fault| session.fail(fault))?;
        self.resumed();
        Ok((u32::try_from(index).unwrap_or(u32::MAX), to_wit(outcome)))
    }

    async fn cancel_task(&mut self, task: u64) -> wasmtime::Result<()> {
        self.answer(|s| s.cancel_task(task))
    }

    async fn call_activity(
        &mut self,
        name: String,
        input: Json,
        options: orchestration::TaskOptions,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        let task = self.schedule_activity(name, input, options).await?;
        self.await_one(task).await
    }

    async fn call_sub_orchestration(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: Json,
        options: orchestration::TaskOptions,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        let task = self
            .schedule_sub_orchestration(name, instance_id, input, options)
            .await?;
        self.await_one(task).await
    }

    async fn create_timer(&mut self, fire_at: u64) -> wasmtime::Result<()> {
        let task = self.schedule_timer(fire_at).await?;
        self.await_one(task)
            .await?
            .map_err(|e| wasmtime::Error::msg(format!("a timer cannot fail: {}", e.message)))?;
        Ok(())
    }

    /// A wait with a timeout is a race between the event and a timer; the
    /// loser is cancelled.
    async fn wait_for_event(
        &mut self,
        name: String,
        timeout: Option<u64>,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        let wait = self.schedule_event_wait(name.clone()).await?;
        let Some(timeout_ms) = timeout else {
            return self.await_one(wait).await;
        };
        let timer = self.answer(|s| s.schedule_timer_in(timeout_ms))?;
        let (winner, outcome) = orchestration::Host::await_any(self, vec![wait, timer]).await?;
        if winner == 0 {
            self.cancel_task(timer).await?;
            Ok(outcome)
        } else {
            self.cancel_task(wait).await?;
            Ok(Err(timed_out(&name, timeout_ms)))
        }
    }

    async fn call_entity(
        &mut self,
        entity: types::EntityId,
        operation: String,
        input: Option<Json>,
    ) -> wasmtime::Result<Result<Option<Json>, types::Error>> {
        let entity = match entity_id(&entity) {
            Ok(entity) => entity,
            Err(e) => return Ok(Err(e.to_wit())),
        };
        let task = match self.answer(|s| s.schedule_entity_call(entity, operation, input))? {
            Ok(task) => task,
            Err(e) => return Ok(Err(e.to_wit())),
        };
        Ok(self
            .await_one(task)
            .await?
            .map(|json| (json != "null").then_some(json)))
    }

    async fn signal_entity(
        &mut self,
        entity: types::EntityId,
        operation: String,
        input: Option<Json>,
    ) -> wasmtime::Result<()> {
        let entity = self.answer(|_| entity_id(&entity).map_err(|e| Fault::BadCall(e.message)))?;
        self.answer(|s| s.signal_entity(entity, operation, input))
    }

    async fn lock_entities(
        &mut self,
        entities: Vec<types::EntityId>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let ids = match entities
            .iter()
            .map(entity_id)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(ids) => ids,
            Err(e) => return Ok(Err(e.to_wit())),
        };
        let task = match self.answer(|s| s.lock_entities(ids))? {
            Ok(Some(task)) => task,
            Ok(None) => return Ok(Ok(())),
            Err(e) => return Ok(Err(e.to_wit())),
        };
        match self.await_one(task).await? {
            Ok(_) => Ok(Ok(())),
            Err(e) => {
                self.answer(|s| {
                    s.lock_failed();
                    Ok(())
                })?;
                Ok(Err(e))
            }
        }
    }

    async fn unlock_entities(&mut self) -> wasmtime::Result<()> {
        self.answer(Session::unlock_entities)
    }

    async fn start_orchestration(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: Json,
    ) -> wasmtime::Result<String> {
        self.answer(|s| s.start_orchestration(name, instance_id, input))
    }

    async fn continue_as_new(
        &mut self,
        input: Json,
        preserve_unprocessed_events: bool,
    ) -> wasmtime::Result<()> {
        self.answer(|s| s.continue_as_new(input, preserve_unprocessed_events))
    }
}
