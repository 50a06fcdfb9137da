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

mod awaits;
mod entities;
mod host_calls;
mod schedule;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::mpsc;

use super::engine::{Shared, Signal};
use super::journal::{self, Call};
use super::upgrade::UpgradeRequest;
use crate::sandbox::InstanceLog;
use crate::time::now_ms;
use perdure_records::{
    ContinueAsNew, Episode, History, InboxBody, InboxMessage, InstanceId, InstanceRecord,
    JournalEntry, NewChild, NewTimer, NewWorkItem, RuntimeStatus, StatusUpdate, TaskOutcome,
};
use perdure_records::{EntityId, NewEntityOp};
use perdure_storage::StorageError;

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
    /// Awaited or cancelled: its result is not asked for again.
    Awaited,
}

/// What a task is, where that changes how it is cancelled or answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskKind {
    /// An activity or a sub-orchestration: answered by a completion.
    Work,
    /// A durable timer due at this time (ms): answered by a completion;
    /// cancelling deletes it.
    Timer(i64),
    /// An event wait: answered by binding an event (see `awaits.rs`).
    EventWait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    state: TaskState,
    kind: TaskKind,
}

/// What this episode scheduled, committed when the orchestrator blocks.
#[derive(Default)]
struct Scheduled {
    entries: Vec<JournalEntry>,
    work: Vec<NewWorkItem>,
    timers: Vec<NewTimer>,
    cancelled_timers: Vec<u64>,
    children: Vec<NewChild>,
    /// The bytes of the children's versions, stored before the commit.
    child_code: Vec<(String, Arc<[u8]>)>,
    completions: Vec<(u64, TaskOutcome)>,
    entity_ops: Vec<NewEntityOp>,
}

impl Scheduled {
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.work.is_empty()
            && self.timers.is_empty()
            && self.cancelled_timers.is_empty()
            && self.children.is_empty()
            && self.completions.is_empty()
            && self.entity_ops.is_empty()
    }
}

pub(crate) struct Session {
    pub(crate) record: InstanceRecord,
    next_seq: u64,
    replay: VecDeque<JournalEntry>,
    scheduled: Scheduled,
    tasks: HashMap<u64, Task>,
    /// Outcomes that arrived, with their arrival order.
    completions: HashMap<u64, (i64, TaskOutcome)>,
    /// Events not consumed yet, by arrival: (name, data).
    events: BTreeMap<i64, (String, String)>,
    /// Pending event waits in schedule order, with the event name.
    event_waits: BTreeMap<u64, String>,
    /// Events consumed by this generation, by arrival.
    consumed_events: Vec<i64>,
    seen: HashSet<i64>,
    /// Messages at or below this arrival that were not in the loaded inbox
    /// belong to an earlier generation and are ignored.
    arrival_floor: i64,
    /// Set by continue-as-new: the next generation's input and whether
    /// unconsumed events carry over.
    continue_as: Option<(String, bool)>,
    custom_status: Option<String>,
    /// The entities of the current critical section (held or being
    /// locked), sorted.
    locks: Option<Vec<EntityId>>,
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
    /// What the orchestrator logs live; stored with the next episode.
    log: Arc<InstanceLog>,
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
            arrival_floor,
            attempts: _,
        } = history;
        let started = record.status != RuntimeStatus::Pending;
        let suspended = record.status == RuntimeStatus::Suspended;
        let mut session = Self {
            suspended,
            cancelled: false,
            upgrade: None,
            verify_only: false,
            clock: Arc::new(AtomicI64::new(record.started_ms)),
            log: Arc::new(InstanceLog::new(&record.name, None)),
            custom_status: record.custom_status.clone(),
            record,
            next_seq: 0,
            replay: journal.into(),
            scheduled: Scheduled::default(),
            tasks: HashMap::new(),
            completions: HashMap::new(),
            events: BTreeMap::new(),
            event_waits: BTreeMap::new(),
            consumed_events: Vec::new(),
            seen: HashSet::new(),
            // Set after the loaded inbox is merged.
            arrival_floor: i64::MIN,
            continue_as: None,
            locks: None,
            started,
            mailbox,
            shared,
            fault: None,
        };
        for message in inbox {
            session.merge(message);
        }
        session.arrival_floor = arrival_floor;
        session.log.set_replaying(!session.replay.is_empty());
        session
    }

    /// Where the orchestrator's log lines are kept until the next commit.
    pub(crate) fn log(&self) -> &Arc<InstanceLog> {
        &self.log
    }

    pub(crate) fn id(&self) -> &InstanceId {
        &self.record.id
    }

    /// The clock the orchestrator's WASI wall and monotonic clocks read.
    pub(crate) fn clock(&self) -> Arc<AtomicI64> {
        self.clock.clone()
    }

    /// True until the orchestrator makes a call the journal lacks (see
    /// [`Self::replayed`]): what it does before that, it did before.
    pub(crate) fn is_replaying(&self) -> bool {
        self.log.replaying()
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
    fn stopped_by_host_(&self) -> bool {
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
            Signal::Message(message) => self.merge(*message),
            Signal::Wake => {}
            Signal::Suspend(suspended) => self.suspended = suspended,
            Signal::Cancel => self.cancelled = true,
            Signal::Upgrade(request) => self.upgrade = Some(request),
        }
    }

    fn merge(&mut self, message: InboxMessage) {
        if message.arrival <= self.arrival_floor || !self.seen.insert(message.arrival) {
            return;
        }
        match message.body {
            InboxBody::TaskCompleted { task_id, outcome } => {
                self.completions.insert(task_id, (message.arrival, outcome));
            }
            InboxBody::Event { name, data } => {
                self.events.insert(message.arrival, (name, data));
            }
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
            // The first call the journal lacks. What the orchestrator
            // logged since the last recorded call was committed with that
            // call's episode (commits happen only at blocking calls and at
            // the end), so only what it logs from here on is new.
            self.log.set_replaying(false);
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
        self.scheduled.entries.push(JournalEntry {
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
        let guid = journal::derived_guid(
            self.record.id.as_str(),
            self.record.generation,
            self.next_seq,
        );
        self.record(call, Some(guid.clone()));
        Ok(guid)
    }

    pub(crate) fn set_custom_status(&mut self, status: Option<String>) -> Result<(), Fault> {
        let size = status.as_ref().map_or(0, String::len);
        let limit = self.shared.registry().sandbox().limits().max_output_bytes;
        if size > limit {
            return Err(Fault::BadCall(format!(
                "the custom status of {size} bytes is larger than the limit of {limit} bytes"
            )));
        }
        let call = Call::set_custom_status(status.as_deref());
        if self.replayed(&call)?.is_none() {
            self.record(call, None);
        }
        self.custom_status = status;
        Ok(())
    }

    /// True if every task can take long: event waits (people, other
    /// systems) and timers not due soon. A session waiting only on those
    /// gives its slot away at once when another session needs one.
    fn waits_long(&self, tasks: &[u64]) -> bool {
        let soon = self.clock.load(Ordering::Relaxed).max(now_ms())
            + i64::try_from(super::engine::PRESSURE_MIN_IDLE.as_millis()).unwrap_or(i64::MAX);
        tasks
            .iter()
            .all(|t| match self.tasks.get(t).map(|t| t.kind) {
                Some(TaskKind::EventWait) => true,
                Some(TaskKind::Timer(due)) => due > soon,
                _ => false,
            })
    }

    /// Waits until `ready` has an answer: commits what this episode did,
    /// then takes inbox messages until one makes the answer known, or
    /// leaves memory if idle (see [`Shared::try_evict`]). `long` says the
    /// answer is not expected soon (see [`Self::waits_long`]).
    async fn wait<T>(
        &mut self,
        long: bool,
        ready: impl Fn(&Self) -> Option<T>,
    ) -> Result<T, Fault> {
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
                () = shared.slot_wanted(long) => {
                    if shared.try_evict(&self.record.id, &mut self.mailbox) {
                        return Err(Fault::Evicted);
                    }
                    shared.pass_on_pressure();
                }
            }
        }
    }

    /// How the run ends when the orchestrator returned `output`: completed,
    /// or continued as new if it asked to be.
    pub(crate) fn returned(&self, output: String) -> (RuntimeStatus, String) {
        match &self.continue_as {
            Some((input, _)) => (RuntimeStatus::ContinuedAsNew, input.clone()),
            None => (RuntimeStatus::Completed, output),
        }
    }

    /// Commits the episode so far. `end` is the final status and output
    /// when the orchestrator returned or failed; for
    /// [`RuntimeStatus::ContinuedAsNew`] the output is the next input.
    pub(crate) async fn commit(
        &mut self,
        end: Option<(RuntimeStatus, String)>,
    ) -> Result<(), Fault> {
        let logs = self.log.take();
        if self.scheduled.is_empty() && logs.is_empty() && self.started && end.is_none() {
            return Ok(());
        }
        for (digest, bytes) in std::mem::take(&mut self.scheduled.child_code) {
            self.shared.keep_version(digest, bytes).await?;
        }
        let finishing = end.as_ref().is_some_and(|(status, _)| status.is_finished());
        // How this generation ended, for its trace.
        let ended = end.as_ref().map(|(status, output)| {
            let error = (*status == RuntimeStatus::Failed).then(|| output.clone());
            (*status, error)
        });
        let mut continue_as_new = None;
        let (status, output) = match end {
            Some((RuntimeStatus::ContinuedAsNew, input)) => {
                let preserve = self.continue_as.as_ref().is_some_and(|(_, p)| *p);
                let mut dropped_events = self.consumed_events.clone();
                if !preserve {
                    dropped_events.extend(self.events.keys());
                }
                continue_as_new = Some(ContinueAsNew {
                    input,
                    dropped_events,
                });
                (RuntimeStatus::ContinuedAsNew, None)
            }
            Some((status, output)) => (status, Some(output)),
            None => (RuntimeStatus::Running, None),
        };
        // Continuing as new replaces the journal: its trace reads it first.
        let continued_history = match &ended {
            Some((RuntimeStatus::ContinuedAsNew, _)) if self.shared.traces().enabled() => self
                .shared
                .storage()
                .history(&self.record.id)
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        let scheduled = std::mem::take(&mut self.scheduled);
        let episode = Episode {
            instance_id: self.record.id.clone(),
            entries: scheduled.entries,
            work: scheduled.work,
            timers: scheduled.timers,
            cancelled_timers: scheduled.cancelled_timers,
            children: scheduled.children,
            completions: scheduled.completions,
            entity_ops: scheduled.entity_ops,
            continue_as_new,
            status: StatusUpdate {
                status,
                output,
                custom_status: self.custom_status.clone(),
            },
            lease_ms: self.shared.lease_ms(),
            logs,
        };
        let effects = self.shared.storage().commit_episode(episode).await?;
        self.started = true;
        self.shared.apply(effects);
        if finishing {
            self.shared.announce_finished();
        }
        if let Some((status, error)) = ended {
            let record = &self.record;
            self.shared
                .trace_instance(crate::durable::spans::GenerationEnd {
                    id: record.id.clone(),
                    generation: record.generation,
                    name: record.name.clone(),
                    started_ms: record.started_ms,
                    status,
                    error,
                    history: continued_history,
                });
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

impl Session {
    /// Runs the orchestrator from the start in `sandbox`, this session
    /// answering its durable calls; returns the session with the outcome.
    pub(crate) async fn run_in(
        self,
        sandbox: &crate::sandbox::Sandbox,
        code: &crate::sandbox::AppCode,
    ) -> (
        Result<Result<String, perdure_records::GuestError>, crate::sandbox::InvocationError>,
        Option<Session>,
    ) {
        let caller = crate::sandbox::Caller {
            app: self.record.app.as_str().into(),
            function: self.record.name.as_str().into(),
            kind: crate::model::FunctionKind::Orchestrator,
        };
        let input = self.record.input.clone();
        sandbox.run_orchestrator(code, caller, input, self).await
    }
}

/// What the sandbox sees of a session: it runs the guest, and the host
/// calls (`host_calls.rs`) reach the session again by downcasting.
impl crate::sandbox::OrchestratorSession for Session {
    fn instance_id(&self) -> &str {
        self.id().as_str()
    }

    fn generation(&self) -> u64 {
        self.record.generation
    }

    fn log(&self) -> &Arc<crate::sandbox::InstanceLog> {
        Session::log(self)
    }

    fn clock(&self) -> Arc<AtomicI64> {
        Session::clock(self)
    }

    fn stopped_by_host(&self) -> bool {
        self.stopped_by_host_()
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}
