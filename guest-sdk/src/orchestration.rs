//! The orchestrator's side of durable execution: a context whose calls are
//! journaled by the host and replayed deterministically.
//!
//! Orchestrator code must be deterministic: take time from
//! [`OrchestrationContext::now`], ids from [`OrchestrationContext::new_guid`],
//! and do I/O only in activities.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::perdure::functions::orchestration as host;
use crate::bindings::perdure::functions::types as wit;
use crate::entity::EntityId;
use crate::error::{Error, Result};

/// How to retry a failed activity or sub-orchestration.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub first_retry_interval: Duration,
    pub backoff_coefficient: f64,
    pub max_retry_interval: Option<Duration>,
    pub retry_timeout: Option<Duration>,
}

impl RetryPolicy {
    /// `max_attempts` attempts, `first_retry_interval` apart, doubling.
    pub fn new(max_attempts: u32, first_retry_interval: Duration) -> Self {
        Self {
            max_attempts,
            first_retry_interval,
            backoff_coefficient: 2.0,
            max_retry_interval: None,
            retry_timeout: None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&RetryPolicy> for wit::RetryPolicy {
    fn from(p: &RetryPolicy) -> Self {
        Self {
            max_attempts: p.max_attempts,
            first_retry_interval: millis(p.first_retry_interval),
            backoff_coefficient: p.backoff_coefficient,
            max_retry_interval: p.max_retry_interval.map(millis),
            retry_timeout: p.retry_timeout.map(millis),
        }
    }
}

fn options(retry: Option<&RetryPolicy>) -> host::TaskOptions {
    host::TaskOptions {
        retry: retry.map(Into::into),
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::invalid_argument(format!("input: {e}")))
}

fn from_json<T: DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json)
        .map_err(|e| Error::invalid_argument(format!("unexpected result shape: {e}")))
}

/// Work scheduled but not awaited yet; its result is an `O`.
#[must_use = "a task does nothing unless awaited"]
#[derive(Debug, PartialEq, Eq)]
pub struct Task<O> {
    id: host::TaskId,
    _output: PhantomData<fn() -> O>,
}

impl<O> Task<O> {
    fn new(id: host::TaskId) -> Self {
        Self {
            id,
            _output: PhantomData,
        }
    }
}

/// The orchestrator's handle on its instance. Every call is journaled.
#[derive(Debug)]
pub struct OrchestrationContext {
    instance_id: String,
}

impl OrchestrationContext {
    pub(crate) fn new(instance_id: String) -> Self {
        Self { instance_id }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The deterministic current time (journaled).
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(host::now())
    }

    /// A deterministic new UUID.
    pub fn new_guid(&self) -> String {
        host::new_guid()
    }

    /// True while the host replays this orchestrator from its journal.
    pub fn is_replaying(&self) -> bool {
        host::is_replaying()
    }

    /// Sets the status shown by the status API.
    pub fn set_custom_status<T: Serialize + ?Sized>(&self, status: &T) -> Result<()> {
        host::set_custom_status(Some(&to_json(status)?));
        Ok(())
    }

    /// Calls an activity and waits for its output.
    pub fn call_activity<O: DeserializeOwned>(
        &self,
        name: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Result<O> {
        self.call_activity_with_retry(name, input, None)
    }

    /// Calls an activity with a retry policy.
    pub fn call_activity_with_retry<O: DeserializeOwned>(
        &self,
        name: &str,
        input: &(impl Serialize + ?Sized),
        retry: Option<&RetryPolicy>,
    ) -> Result<O> {
        let out = host::call_activity(name, &to_json(input)?, options(retry))?;
        from_json(&out)
    }

    /// Schedules an activity without waiting; await it with
    /// [`Self::when_all`] or [`Self::when_any`].
    pub fn schedule_activity<O: DeserializeOwned>(
        &self,
        name: &str,
        input: &(impl Serialize + ?Sized),
    ) -> Result<Task<O>> {
        Ok(Task::new(host::schedule_activity(
            name,
            &to_json(input)?,
            options(None),
        )))
    }

    /// Calls a sub-orchestration and waits for its output.
    pub fn call_sub_orchestrator<O: DeserializeOwned>(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: &(impl Serialize + ?Sized),
        retry: Option<&RetryPolicy>,
    ) -> Result<O> {
        let out =
            host::call_sub_orchestration(name, instance_id, &to_json(input)?, options(retry))?;
        from_json(&out)
    }

    /// Schedules a sub-orchestration without waiting.
    pub fn schedule_sub_orchestrator<O: DeserializeOwned>(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: &(impl Serialize + ?Sized),
    ) -> Result<Task<O>> {
        Ok(Task::new(host::schedule_sub_orchestration(
            name,
            instance_id,
            &to_json(input)?,
            options(None),
        )))
    }

    /// Waits on a durable timer until `fire_at`.
    pub fn create_timer(&self, fire_at: SystemTime) {
        host::create_timer(timestamp(fire_at));
    }

    /// Schedules a durable timer without waiting.
    pub fn schedule_timer(&self, fire_at: SystemTime) -> Task<()> {
        Task::new(host::schedule_timer(timestamp(fire_at)))
    }

    /// Waits for the external event `name` and returns its data.
    pub fn wait_for_event<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        from_json(&host::wait_for_event(name, None)?)
    }

    /// Waits for the external event `name` at most `timeout`; `Ok(None)`
    /// if it did not come in time.
    pub fn wait_for_event_with_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Option<T>> {
        match host::wait_for_event(name, Some(millis(timeout))) {
            Ok(data) => from_json(&data).map(Some),
            Err(e) if e.code == wit::ErrorCode::Timeout => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts waiting for the external event `name` without blocking.
    pub fn schedule_event_wait<T: DeserializeOwned>(&self, name: &str) -> Task<T> {
        Task::new(host::schedule_event_wait(name))
    }

    /// Waits for every task; outputs in task order. Fails with the first
    /// failure in task order once all have finished.
    pub fn when_all<O: DeserializeOwned>(&self, tasks: Vec<Task<O>>) -> Result<Vec<O>> {
        self.when_all_settled(tasks).into_iter().collect()
    }

    /// Waits for every task and returns each outcome.
    pub fn when_all_settled<O: DeserializeOwned>(&self, tasks: Vec<Task<O>>) -> Vec<Result<O>> {
        let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
        host::await_all(&ids)
            .into_iter()
            .map(|r| r.map_err(Error::from).and_then(|json| from_json(&json)))
            .collect()
    }

    /// Waits for the first task to finish; returns its index in `tasks`
    /// and its outcome. The other tasks stay pending.
    pub fn when_any<O: DeserializeOwned>(&self, tasks: &[Task<O>]) -> (usize, Result<O>) {
        let ids: Vec<_> = tasks.iter().map(|t| t.id).collect();
        let (index, result) = host::await_any(&ids);
        (
            index as usize,
            result
                .map_err(Error::from)
                .and_then(|json| from_json(&json)),
        )
    }

    /// Cancels a pending timer or event wait.
    pub fn cancel<O>(&self, task: Task<O>) {
        host::cancel_task(task.id);
    }

    /// Calls an entity operation and waits for its result.
    pub fn call_entity<O: DeserializeOwned>(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Option<O>> {
        let input = input.map(to_json).transpose()?;
        match host::call_entity(&entity.into(), operation, input.as_deref())? {
            Some(json) => from_json(&json).map(Some),
            None => Ok(None),
        }
    }

    /// Sends a one-way operation to an entity.
    pub fn signal_entity(
        &self,
        entity: &EntityId,
        operation: &str,
        input: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<()> {
        let input = input.map(to_json).transpose()?;
        host::signal_entity(&entity.into(), operation, input.as_deref());
        Ok(())
    }

    /// Locks entities for a critical section until [`Self::unlock_entities`]
    /// or the end of the orchestration.
    pub fn lock_entities(&self, entities: &[EntityId]) -> Result<()> {
        let ids: Vec<wit::EntityId> = entities.iter().map(Into::into).collect();
        host::lock_entities(&ids).map_err(Error::from)
    }

    pub fn unlock_entities(&self) {
        host::unlock_entities();
    }

    /// Starts another orchestration without waiting for it.
    pub fn start_orchestration(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: &(impl Serialize + ?Sized),
    ) -> Result<String> {
        Ok(host::start_orchestration(
            name,
            instance_id,
            &to_json(input)?,
        ))
    }

    /// Restarts the orchestration with `input` once this run returns.
    pub fn continue_as_new(
        &self,
        input: &(impl Serialize + ?Sized),
        preserve_unprocessed_events: bool,
    ) -> Result<()> {
        host::continue_as_new(&to_json(input)?, preserve_unprocessed_events);
        Ok(())
    }
}

fn timestamp(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis).unwrap_or(0)
}
