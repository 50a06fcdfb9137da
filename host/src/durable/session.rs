//! One run of an orchestrator: answers its host calls from the journal while
//! replaying and live afterwards, buffers what it schedules, and commits an
//! episode whenever the orchestrator blocks or returns.
//!
//! Invariants:
//! - seq numbers count every journaled call from 0; a task's id is the seq
//!   of the call that scheduled it, so replays derive the same ids.
//! - A replayed call must match the recorded kind and request; otherwise
//!   the run fails with [`Fault::Nondeterminism`].
//! - Work is dispatched only after the episode that scheduled it commits,
//!   and an answer to an await is journaled before anything that follows
//!   it becomes visible, so a crash at any point replays consistently.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::mpsc;

use super::engine::{Shared, Signal};
use super::journal::{self, Call};
use super::model::{
    Episode, History, InboxBody, InboxMessage, InstanceId, InstanceRecord, JournalEntry,
    NewWorkItem, RuntimeStatus, StatusUpdate, TaskOutcome,
};
use super::upgrade::UpgradeRequest;
use crate::storage::StorageError;
use crate::time::now_ms;

/// Why a run stopped before the orchestrator returned. Carried out of the
/// guest as the error of the host call that stopped it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Fault {
    #[error(
        "nondeterminism at seq {seq}: the journal recorded `{recorded}` but the orchestrator now made `{new}`"
    )]
    Nondeterminism {
        seq: u64,
        recorded: String,
        new: String,
    },
    /// The orchestrator broke a rule of the API (e.g. awaited a task twice).
    #[error("{0}")]
    BadCall(String),
    /// Idle long enough to leave memory; its journal wakes it again.
    #[error("evicted while idle")]
    Evicted,
    /// The host is shutting down.
    #[error("the host is stopping")]
    Stopped,
    /// The instance was terminated while it ran.
    #[error("the instance was terminated")]
    Cancelled,
    /// The run stopped at a wait point so that the engine can try an
    /// upgrade (see `upgrade.rs`).
    #[error("stopped to upgrade")]
    Upgrading,
    /// A verification run answered every journaled call; the next call
    /// would be live.
    #[error("the journal replayed to its end")]
    ReplayComplete,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The bookkeeping of a scheduled task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Pending,
    Awaited,
}

pub(crate) struct Session {
    pub(crate) record: InstanceRecord,
    next_seq: u64,
    replay: VecDeque<JournalEntry>,
    pending: Vec<JournalEntry>,
    work: Vec<NewWorkItem>,
    tasks: HashMap<u64, TaskState>,
    /// Outcomes that arrived, with their arrival order.
    completions: HashMap<u64, (i64, TaskOutcome)>,
    seen: HashSet<i64>,
    custom_status: Option<String>,
    /// False until the first episode marked the instance Running.
    started: bool,
    /// While suspended, no await is answered; messages are kept.
    suspended: bool,
    cancelled: bool,
    /// An upgrade asked for; handled at the next wait point.
    upgrade: Option<UpgradeRequest>,
    /// A verification run: answers only from the journal, stops with
    /// [`Fault::ReplayComplete`] at its end, never commits.
    verify_only: bool,
    /// The orchestration's deterministic time (ms), shared with its WASI
    /// clocks.
    clock: Arc<AtomicI64>,
    mailbox: mpsc::UnboundedReceiver<Signal>,
    shared: Arc<Shared>,
    /// Why the run stopped early, once it has.
    fault: Option<Fault>,
}

impl Session {
    pub(crate) fn new(
        history: History,
        mailbox: mpsc::UnboundedReceiver<Signal>,
        shared: Arc<Shared>,
    ) -> Self {
        let History {
            record,
            journal,
            inbox,
        } = history;
        let started = record.status != RuntimeStatus::Pending;
        let suspended = record.status == RuntimeStatus::Suspended;
        let mut session = Self {
            suspended,
            cancelled: false,
            upgrade: None,
            verify_only: false,
            clock: Arc::new(AtomicI64::new(record.created_ms)),
            custom_status: record.custom_status.clone(),
            record,
            next_seq: 0,
            replay: journal.into(),
            pending: Vec::new(),
            work: Vec::new(),
            tasks: HashMap::new(),
            completions: HashMap::new(),
            seen: HashSet::new(),
            started,
            mailbox,
            shared,
            fault: None,
        };
        for message in inbox {
            session.merge(message);
        }
        session
    }

    pub(crate) fn id(&self) -> &InstanceId {
        &self.record.id
    }

    /// The clock the orchestrator's WASI wall and monotonic clocks read.
    pub(crate) fn clock(&self) -> Arc<AtomicI64> {
        self.clock.clone()
    }

    pub(crate) fn is_replaying(&self) -> bool {
        !self.replay.is_empty()
    }

    /// Records why the run stops; the returned error unwinds the guest.
    pub(crate) fn fail(&mut self, fault: Fault) -> wasmtime::Error {
        let error = wasmtime::Error::msg(fault.to_string());
        self.fault.get_or_insert(fault);
        error
    }

    /// A session that replays `history` against other code and commits
    /// nothing: the check an upgrade makes.
    pub(crate) fn verifier(history: History, shared: Arc<Shared>) -> Self {
        let (_closed, mailbox) = mpsc::unbounded_channel();
        let mut session = Self::new(history, mailbox, shared);
        session.verify_only = true;
        session
    }

    /// The pending upgrade request, taken.
    pub(crate) fn take_upgrade(&mut self) -> Option<UpgradeRequest> {
        self.upgrade.take()
    }

    /// True once a host call has stopped the guest (see [`Self::fail`]).
    pub(crate) fn stopped_by_host(&self) -> bool {
        self.fault.is_some()
    }

    pub(crate) fn take_fault(&mut self) -> Option<Fault> {
        self.fault.take()
    }

    pub(crate) fn into_mailbox(self) -> mpsc::UnboundedReceiver<Signal> {
        self.mailbox
    }

    fn take(&mut self, signal: Signal) {
        match signal {
            Signal::Message(message) => self.merge(message),
            Signal::Wake => {}
            Signal::Suspend(suspended) => self.suspended = suspended,
            Signal::Cancel => self.cancelled = true,
            Signal::Upgrade(request) => self.upgrade = Some(request),
        }
    }

    fn merge(&mut self, message: InboxMessage) {
        if !self.seen.insert(message.arrival) {
            return;
        }
        match message.body {
            InboxBody::TaskCompleted { task_id, outcome } => {
                self.completions.insert(task_id, (message.arrival, outcome));
            }
            // Event waits arrive with timers and events (a later issue);
            // events are kept in the inbox until then.
            InboxBody::Event { .. } => {}
        }
    }

    /// Matches `call` against the journal. `Some(result)` while replaying;
    /// `None` once live (the caller answers and calls [`Self::record`]).
    fn replayed(&mut self, call: &Call) -> Result<Option<Option<String>>, Fault> {
        let seq = self.next_seq;
        let Some(entry) = self.replay.pop_front() else {
            if self.verify_only {
                return Err(Fault::ReplayComplete);
            }
            return Ok(None);
        };
        if entry.seq != seq || !call.matches(&entry) {
            return Err(Fault::Nondeterminism {
                seq,
                recorded: journal::describe_entry(&entry),
                new: call.describe(),
            });
        }
        self.next_seq += 1;
        self.clock.fetch_max(entry.at_ms, Ordering::Relaxed);
        Ok(Some(entry.result))
    }

    fn record(&mut self, call: Call, result: Option<String>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push(JournalEntry {
            seq,
            kind: call.kind.to_owned(),
            request: call.request,
            result,
            at_ms: self.clock.load(Ordering::Relaxed),
        });
        seq
    }

    fn corrupt(&self, call: &Call) -> Fault {
        Fault::BadCall(format!(
            "the journal's result for `{}` at seq {} does not parse",
            call.describe(),
            self.next_seq.saturating_sub(1)
        ))
    }

    pub(crate) fn now(&mut self) -> Result<u64, Fault> {
        let call = Call::now();
        if let Some(result) = self.replayed(&call)? {
            return result
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| self.corrupt(&call));
        }
        let now = self.clock.load(Ordering::Relaxed).max(0) as u64;
        self.record(call, Some(now.to_string()));
        Ok(now)
    }

    pub(crate) fn new_guid(&mut self) -> Result<String, Fault> {
        let call = Call::new_guid();
        if let Some(result) = self.replayed(&call)? {
            return result.ok_or_else(|| self.corrupt(&call));
        }
        let guid = journal::derived_guid(self.record.id.as_str(), self.next_seq);
        self.record(call, Some(guid.clone()));
        Ok(guid)
    }

    pub(crate) fn set_custom_status(&mut self, status: Option<String>) -> Result<(), Fault> {
        let call = Call::set_custom_status(status.as_deref());
        if self.replayed(&call)?.is_none() {
            self.record(call, None);
        }
        self.custom_status = status;
        Ok(())
    }

    pub(crate) fn schedule_activity(
        &mut self,
        name: String,
        input: String,
        retry: Option<serde_json::Value>,
    ) -> Result<u64, Fault> {
        let call = Call::schedule_activity(&name, &input, retry);
        let task = match self.replayed(&call)? {
            Some(_) => self.next_seq - 1,
            None => {
                let task = self.record(call, None);
                self.work.push(NewWorkItem {
                    task_id: task,
                    name,
                    input,
                });
                task
            }
        };
        self.tasks.insert(task, TaskState::Pending);
        Ok(task)
    }

    fn check_awaitable(&self, tasks: &[u64]) -> Result<(), Fault> {
        let mut distinct = HashSet::new();
        for task in tasks {
            match self.tasks.get(task) {
                Some(TaskState::Pending) if distinct.insert(*task) => {}
                Some(TaskState::Pending) => {
                    return Err(Fault::BadCall(format!(
                        "task {task} is awaited twice in one call"
                    )));
                }
                Some(TaskState::Awaited) => {
                    return Err(Fault::BadCall(format!("task {task} was awaited already")));
                }
                None => return Err(Fault::BadCall(format!("no task {task} was scheduled"))),
            }
        }
        Ok(())
    }

    pub(crate) async fn await_all(&mut self, tasks: &[u64]) -> Result<Vec<TaskOutcome>, Fault> {
        self.check_awaitable(tasks)?;
        let call = Call::await_all(tasks);
        let outcomes = match self.replayed(&call)? {
            Some(result) => result
                .as_deref()
                .and_then(journal::parse_await_all)
                .filter(|o| o.len() == tasks.len())
                .ok_or_else(|| self.corrupt(&call))?,
            None => {
                let outcomes = self
                    .wait(|s| {
                        tasks
                            .iter()
                            .map(|t| s.completions.get(t).map(|(_, o)| o.clone()))
                            .collect::<Option<Vec<_>>>()
                    })
                    .await?;
                self.record(call, Some(journal::await_all_result(&outcomes)));
                outcomes
            }
        };
        for task in tasks {
            self.tasks.insert(*task, TaskState::Awaited);
        }
        Ok(outcomes)
    }

    pub(crate) async fn await_any(&mut self, tasks: &[u64]) -> Result<(usize, TaskOutcome), Fault> {
        if tasks.is_empty() {
            return Err(Fault::BadCall("await-any needs at least one task".into()));
        }
        self.check_awaitable(tasks)?;
        let call = Call::await_any(tasks);
        let (index, outcome) = match self.replayed(&call)? {
            Some(result) => result
                .as_deref()
                .and_then(journal::parse_await_any)
                .filter(|(i, _)| *i < tasks.len())
                .ok_or_else(|| self.corrupt(&call))?,
            None => {
                let (index, outcome) = self
                    .wait(|s| {
                        // The earliest arrival wins, so the answer does not
                        // depend on the order notifications were read in.
                        tasks
                            .iter()
                            .enumerate()
                            .filter_map(|(i, t)| s.completions.get(t).map(|(a, o)| (*a, i, o)))
                            .min_by_key(|(arrival, _, _)| *arrival)
                            .map(|(_, i, o)| (i, o.clone()))
                    })
                    .await?;
                self.record(call, Some(journal::await_any_result(index, &outcome)));
                (index, outcome)
            }
        };
        self.tasks.insert(tasks[index], TaskState::Awaited);
        Ok((index, outcome))
    }

    /// Discards a task's result when it arrives (activities cannot be
    /// recalled once dispatched).
    pub(crate) fn cancel_task(&mut self, task: u64) -> Result<(), Fault> {
        let call = Call::cancel_task(task);
        if self.replayed(&call)?.is_none() {
            self.record(call, None);
        }
        if self.tasks.contains_key(&task) {
            self.tasks.insert(task, TaskState::Awaited);
        }
        Ok(())
    }

    /// Waits until `ready` has an answer: commits what this episode did,
    /// then takes inbox messages until one makes the answer known, or
    /// leaves memory if idle (see [`Shared::try_evict`]).
    async fn wait<T>(&mut self, ready: impl Fn(&Self) -> Option<T>) -> Result<T, Fault> {
        loop {
            while let Ok(signal) = self.mailbox.try_recv() {
                self.take(signal);
            }
            if self.cancelled {
                return Err(Fault::Cancelled);
            }
            if self.upgrade.is_some() {
                // Everything so far is committed and no one else runs this
                // instance: the one safe place to switch versions.
                self.commit(None).await?;
                return Err(Fault::Upgrading);
            }
            if !self.suspended
                && let Some(answer) = ready(self)
            {
                self.clock.fetch_max(now_ms(), Ordering::Relaxed);
                return Ok(answer);
            }
            self.commit(None).await?;
            let shared = self.shared.clone();
            // With no idle time allowed, a waiting instance leaves at once
            // (unless a message is already there).
            if shared.idle_limit().is_zero() && shared.try_evict(&self.record.id, &mut self.mailbox)
            {
                return Err(Fault::Evicted);
            }
            tokio::select! {
                signal = self.mailbox.recv() => match signal {
                    Some(signal) => self.take(signal),
                    None => return Err(Fault::Stopped),
                },
                () = tokio::time::sleep(shared.idle_limit()) => {
                    if shared.try_evict(&self.record.id, &mut self.mailbox) {
                        return Err(Fault::Evicted);
                    }
                }
                () = shared.slot_wanted() => {
                    if shared.try_evict(&self.record.id, &mut self.mailbox) {
                        return Err(Fault::Evicted);
                    }
                    shared.pass_on_pressure();
                }
            }
        }
    }

    /// Commits the episode so far. `end` is the final status and output
    /// when the orchestrator returned or failed.
    pub(crate) async fn commit(
        &mut self,
        end: Option<(RuntimeStatus, String)>,
    ) -> Result<(), Fault> {
        let nothing_new = self.pending.is_empty() && self.work.is_empty();
        if nothing_new && self.started && end.is_none() {
            return Ok(());
        }
        let finishing = end.as_ref().is_some_and(|(status, _)| status.is_finished());
        let (status, output) = match end {
            Some((status, output)) => (status, Some(output)),
            None => (RuntimeStatus::Running, None),
        };
        let episode = Episode {
            instance_id: self.record.id.clone(),
            entries: std::mem::take(&mut self.pending),
            work: std::mem::take(&mut self.work),
            status: StatusUpdate {
                status,
                output,
                custom_status: self.custom_status.clone(),
            },
            lease_ms: self.shared.lease_ms(),
        };
        let items = self.shared.storage().commit_episode(episode).await?;
        self.started = true;
        self.shared.dispatch(items);
        if finishing {
            self.shared.announce_finished();
        }
        Ok(())
    }

    /// Checks, when the orchestrator returned, that it made every call the
    /// journal recorded.
    pub(crate) fn finish_replay(&self) -> Result<(), Fault> {
        match self.replay.front() {
            None => Ok(()),
            Some(entry) => Err(Fault::Nondeterminism {
                seq: entry.seq,
                recorded: journal::describe_entry(entry),
                new: "the orchestrator returned".into(),
            }),
        }
    }
}
