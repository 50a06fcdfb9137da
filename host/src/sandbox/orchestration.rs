//! The host side of the `orchestration` interface: every call goes to the
//! orchestrator's [`Session`], which answers it from the journal or live.
//! A [`Fault`] stops the orchestrator (the call traps) and is kept in the
//! session for the engine to act on.

use super::bindings::perdure::functions::{orchestration, types};
use super::state::{InvocationState, Role};
use crate::durable::model::TaskOutcome;
use crate::durable::session::{Fault, Session};
use crate::model::FunctionKind;

type Json = String;

fn to_wit(outcome: TaskOutcome) -> Result<Json, types::Error> {
    outcome.map_err(|e| e.to_wit())
}

fn retry_json(options: &orchestration::TaskOptions) -> Option<serde_json::Value> {
    options.retry.as_ref().map(|r| {
        serde_json::json!({
            "maxAttempts": r.max_attempts,
            "firstRetryIntervalMs": r.first_retry_interval,
            "backoffCoefficient": r.backoff_coefficient,
            "maxRetryIntervalMs": r.max_retry_interval,
            "retryTimeoutMs": r.retry_timeout,
        })
    })
}

impl InvocationState {
    fn session(&mut self) -> wasmtime::Result<&mut Session> {
        if !matches!(self.role, Role::Orchestrator(_)) {
            return Err(self.unavailable("orchestration", FunctionKind::Orchestrator));
        }
        match &mut self.role {
            Role::Orchestrator(session) => Ok(session),
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

    /// A call this host version does not answer yet: the instance fails
    /// with a message that says so.
    fn not_yet<T>(&mut self, call: &str) -> wasmtime::Result<T> {
        self.answer(|_| {
            Err(Fault::BadCall(format!(
                "`{call}` is not supported by this host version yet"
            )))
        })
    }

    fn no_retry(&mut self, options: &orchestration::TaskOptions) -> wasmtime::Result<()> {
        if options.retry.is_some() {
            return self.not_yet("retry policies");
        }
        Ok(())
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
        self.no_retry(&options)?;
        self.answer(|s| s.schedule_activity(name, input, retry_json(&options)))
    }

    async fn schedule_sub_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
        _options: orchestration::TaskOptions,
    ) -> wasmtime::Result<u64> {
        self.not_yet("schedule-sub-orchestration")
    }

    async fn schedule_timer(&mut self, _fire_at: u64) -> wasmtime::Result<u64> {
        self.not_yet("schedule-timer")
    }

    async fn schedule_event_wait(&mut self, _name: String) -> wasmtime::Result<u64> {
        self.not_yet("schedule-event-wait")
    }

    async fn schedule_entity_call(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<u64> {
        self.not_yet("schedule-entity-call")
    }

    async fn await_all(
        &mut self,
        tasks: Vec<u64>,
    ) -> wasmtime::Result<Vec<Result<Json, types::Error>>> {
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
        let mut outcomes = self.await_all(vec![task]).await?;
        Ok(outcomes.pop().unwrap_or_else(|| {
            Err(types::Error {
                code: types::ErrorCode::Internal,
                message: "await-all answered no outcome".into(),
                details: None,
            })
        }))
    }

    async fn call_sub_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
        _options: orchestration::TaskOptions,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        self.not_yet("call-sub-orchestration")
    }

    async fn create_timer(&mut self, _fire_at: u64) -> wasmtime::Result<()> {
        self.not_yet("create-timer")
    }

    async fn wait_for_event(
        &mut self,
        _name: String,
        _timeout: Option<u64>,
    ) -> wasmtime::Result<Result<Json, types::Error>> {
        self.not_yet("wait-for-event")
    }

    async fn call_entity(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<Result<Option<Json>, types::Error>> {
        self.not_yet("call-entity")
    }

    async fn signal_entity(
        &mut self,
        _entity: types::EntityId,
        _operation: String,
        _input: Option<Json>,
    ) -> wasmtime::Result<()> {
        self.not_yet("signal-entity")
    }

    async fn lock_entities(
        &mut self,
        _entities: Vec<types::EntityId>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.not_yet("lock-entities")
    }

    async fn unlock_entities(&mut self) -> wasmtime::Result<()> {
        self.not_yet("unlock-entities")
    }

    async fn start_orchestration(
        &mut self,
        _name: String,
        _instance_id: Option<String>,
        _input: Json,
    ) -> wasmtime::Result<String> {
        self.not_yet("start-orchestration")
    }

    async fn continue_as_new(
        &mut self,
        _input: Json,
        _preserve_unprocessed_events: bool,
    ) -> wasmtime::Result<()> {
        self.not_yet("continue-as-new")
    }
}
