//! Calls that schedule work without waiting: activities, timers, event
//! waits, sub-orchestrations, fire-and-forget starts, cancellation and
//! continue-as-new. Each is journaled; what it schedules is committed with
//! the episode (see [`Session::commit`]), never while replaying.

use std::sync::atomic::Ordering;

use super::{Fault, Session, Task, TaskKind, TaskState};
use crate::durable::engine::LoadedOrchestrator as Orchestrator;
use crate::durable::journal::Call;
use perdure_records::GuestError;
use perdure_records::RetryPolicy;
use perdure_records::{InstanceId, NewChild, NewTimer, NewWorkItem};

fn policy_value(retry: Option<&RetryPolicy>) -> Result<Option<serde_json::Value>, Fault> {
    let Some(policy) = retry else {
        return Ok(None);
    };
    policy
        .validate()
        .map_err(|e| Fault::BadCall(e.to_string()))?;
    Ok(serde_json::to_value(policy).ok())
}

impl Session {
    pub(super) fn track(&mut self, task: u64, kind: TaskKind) -> u64 {
        self.tasks.insert(
            task,
            Task {
                state: TaskState::Pending,
                kind,
            },
        );
        task
    }

    /// The orchestrator `name` as currently loaded.
    fn orchestrator(&self, name: &str) -> Option<Orchestrator> {
        self.shared.loaded_orchestrator(name)
    }

    pub(crate) fn schedule_activity(
        &mut self,
        name: String,
        input: String,
        retry: Option<&RetryPolicy>,
    ) -> Result<u64, Fault> {
        let call = Call::schedule_activity(&name, &input, policy_value(retry)?);
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => {
                let task = self.record(call, None);
                self.scheduled.work.push(NewWorkItem {
                    task_id: task,
                    name,
                    input,
                    retry: retry.map(RetryPolicy::to_json),
                });
                task
            }
        };
        Ok(self.track(task, TaskKind::Work))
    }

    /// A durable timer that completes (with `null`) at `fire_at_ms`.
    pub(crate) fn schedule_timer(&mut self, fire_at_ms: i64) -> Result<u64, Fault> {
        let call = Call::schedule_timer(fire_at_ms);
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => {
                let task = self.record(call, None);
                self.scheduled.timers.push(NewTimer {
                    task_id: task,
                    fire_at_ms,
                });
                task
            }
        };
        Ok(self.track(task, TaskKind::Timer(fire_at_ms)))
    }

    /// A durable timer `delay_ms` after the orchestration's current time.
    pub(crate) fn schedule_timer_in(&mut self, delay_ms: u64) -> Result<u64, Fault> {
        let now = self.clock.load(Ordering::Relaxed);
        let delay = i64::try_from(delay_ms).unwrap_or(i64::MAX);
        self.schedule_timer(now.saturating_add(delay))
    }

    pub(crate) fn schedule_event_wait(&mut self, name: String) -> Result<u64, Fault> {
        let call = Call::schedule_event_wait(&name);
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => self.record(call, None),
        };
        self.event_waits.insert(task, name);
        Ok(self.track(task, TaskKind::EventWait))
    }

    /// The id of a child started at the current seq.
    fn child_id(&self, instance_id: Option<&str>) -> Result<InstanceId, Fault> {
        match instance_id {
            Some(id) => InstanceId::parse(id).map_err(|e| Fault::BadCall(e.to_string())),
            None => Ok(self.record.id.child(self.record.generation, self.next_seq)),
        }
    }

    fn new_child(
        &mut self,
        task_id: Option<u64>,
        id: InstanceId,
        name: String,
        input: String,
        retry: Option<&RetryPolicy>,
        code: Orchestrator,
    ) {
        self.scheduled
            .child_code
            .push((code.digest.clone(), code.bytes));
        self.scheduled.children.push(NewChild {
            task_id,
            id,
            name,
            app: code.app,
            digest: code.digest,
            input,
            retry: retry.map(RetryPolicy::to_json),
        });
    }

    pub(crate) fn schedule_sub_orchestration(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: String,
        retry: Option<&RetryPolicy>,
    ) -> Result<u64, Fault> {
        let call = Call::schedule_sub_orchestration(
            &name,
            instance_id.as_deref(),
            &input,
            policy_value(retry)?,
        );
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => {
                let id = self.child_id(instance_id.as_deref())?;
                let task = self.record(call, None);
                match self.orchestrator(&name) {
                    Some(code) => self.new_child(Some(task), id, name, input, retry, code),
                    None => self.scheduled.completions.push((
                        task,
                        Err(GuestError::new(
                            "not-found",
                            format!("no orchestrator named {name} is loaded"),
                        )),
                    )),
                }
                task
            }
        };
        Ok(self.track(task, TaskKind::Work))
    }

    /// Starts an orchestration that runs on its own; returns its id.
    pub(crate) fn start_orchestration(
        &mut self,
        name: String,
        instance_id: Option<String>,
        input: String,
    ) -> Result<String, Fault> {
        let call = Call::start_orchestration(&name, instance_id.as_deref(), &input);
        if let Some(result) = self.replayed(&call)? {
            return result.ok_or_else(|| self.corrupt(&call));
        }
        let id = self.child_id(instance_id.as_deref())?;
        let code = self
            .orchestrator(&name)
            .ok_or_else(|| Fault::BadCall(format!("no orchestrator named {name} is loaded")))?;
        self.record(call, Some(id.to_string()));
        self.new_child(None, id.clone(), name, input, None, code);
        Ok(id.to_string())
    }

    /// Stops waiting for a task. A pending timer is deleted and an event
    /// wait consumes nothing; the result of an activity or
    /// sub-orchestration (which cannot be recalled) is discarded.
    pub(crate) fn cancel_task(&mut self, task: u64) -> Result<(), Fault> {
        let call = Call::cancel_task(task);
        let live = self.replayed(&call)?.is_none();
        if live {
            self.record(call, None);
        }
        let Some(entry) = self.tasks.get_mut(&task) else {
            return Ok(());
        };
        if entry.state == TaskState::Pending {
            match entry.kind {
                TaskKind::Timer(_) if live => self.scheduled.cancelled_timers.push(task),
                TaskKind::EventWait => {
                    self.event_waits.remove(&task);
                }
                _ => {}
            }
        }
        entry.state = TaskState::Awaited;
        Ok(())
    }

    /// Asks for a new generation with `input` once the orchestrator
    /// returns.
    pub(crate) fn continue_as_new(
        &mut self,
        input: String,
        preserve_events: bool,
    ) -> Result<(), Fault> {
        let call = Call::continue_as_new(&input, preserve_events);
        if self.replayed(&call)?.is_none() {
            self.record(call, None);
        }
        self.continue_as = Some((input, preserve_events));
        Ok(())
    }
}
