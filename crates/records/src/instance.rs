//! The durable engine's records: instance ids and statuses, journal
//! entries, inbox messages and work items. Storage reads and writes these;
//! the engine and the HTTP API speak them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::GuestError;

/// An orchestration instance id: 1 to 256 printable characters, none of
/// them `/`, `\\`, `?` or `#` (ids appear in URL paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

/// Why a string is not an instance id.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "instance id {0:?} is not valid: use 1-256 printable characters without '/', '\\', '?' or '#'"
)]
pub struct InstanceIdError(pub String);

/// `base` as seen from generation `generation` of an instance: `base`
/// itself in generation 0 (what hosts before generations derived), else
/// `base#gN`. `#` cannot occur in an instance id, so no other (id,
/// generation) pair gives the same text. Guid names, random seeds and
/// idempotency keys are built on it.
pub fn in_generation(base: &str, generation: u64) -> std::borrow::Cow<'_, str> {
    match generation {
        0 => std::borrow::Cow::Borrowed(base),
        n => std::borrow::Cow::Owned(format!("{base}#g{n}")),
    }
}

/// Longest event name accepted, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 256;

/// Checks an event name a client raises: 1 to [`MAX_EVENT_NAME_LEN`] bytes,
/// no control characters. Says what is wrong otherwise.
pub fn check_event_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the event name is empty".into());
    }
    if name.len() > MAX_EVENT_NAME_LEN {
        return Err(format!(
            "the event name is {} bytes; the limit is {MAX_EVENT_NAME_LEN}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the event name contains a control character".into());
    }
    Ok(())
}

impl InstanceId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, InstanceIdError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.chars()
                .all(|c| !c.is_control() && !matches!(c, '/' | '\\' | '?' | '#'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InstanceIdError(s.chars().take(300).collect()))
        }
    }

    /// A new random id (32 hex digits, as Azure's generated ids).
    pub fn generate() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut bytes = [0u8; 16];
        // Without the OS generator, clock and counter still give unique ids
        // within this host.
        if getrandom::fill(&mut bytes).is_err() {
            bytes[..8].copy_from_slice(&crate::now_ms().to_le_bytes());
            bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        Self(hex::encode(bytes))
    }

    /// The id of a child derived from this instance, its generation and a
    /// sequence number, so that a replay derives the same one and a later
    /// generation a different one: `parent:seq` in the first generation,
    /// `parent:gN:seq` in generation N.
    pub fn child(&self, generation: u64, seq: u64) -> Self {
        match generation {
            0 => Self(format!("{}:{seq}", self.0)),
            n => Self(format!("{}:g{n}:{seq}", self.0)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The runtime status of an instance, named as Azure's API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Terminated,
    Suspended,
    ContinuedAsNew,
}

impl RuntimeStatus {
    pub const ALL: [RuntimeStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Terminated,
        Self::Suspended,
        Self::ContinuedAsNew,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
            Self::Suspended => "Suspended",
            Self::ContinuedAsNew => "ContinuedAsNew",
        }
    }

    /// Parses a status name, ignoring case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
    }

    /// Completed, failed and terminated instances do nothing more.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }
}

/// An instance as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub id: InstanceId,
    /// The orchestrator function's name.
    pub name: String,
    /// The app (file stem) the orchestrator came from.
    pub app: String,
    /// The component version the instance is pinned to (hex sha256).
    pub digest: String,
    pub status: RuntimeStatus,
    /// JSON text.
    pub input: String,
    pub output: Option<String>,
    pub custom_status: Option<String>,
    pub parent_id: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the current generation started (creation, or the last
    /// continue-as-new); the orchestration clock starts here.
    pub started_ms: i64,
    /// 0 at creation, one more at each new generation (continue-as-new, or
    /// a failed child's restart). What the orchestrator derives (child
    /// ids, guids, random numbers) mixes it in, so generations differ.
    pub generation: u64,
}

/// One journaled host call: what was asked and what was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    /// The call's name, e.g. `schedule-activity`.
    pub kind: String,
    /// The call's arguments, as canonical JSON.
    pub request: String,
    /// The call's answer, as JSON (`None` for calls without one).
    pub result: Option<String>,
    pub at_ms: i64,
}

/// Everything replay needs: the instance, its journal and its inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub record: InstanceRecord,
    pub journal: Vec<JournalEntry>,
    pub inbox: Vec<InboxMessage>,
    /// Messages with an arrival at or below this belong to an earlier
    /// generation (before a continue-as-new) unless they are in `inbox`.
    pub arrival_floor: i64,
    /// Failed attempts of retrying tasks, for history views.
    pub attempts: Vec<TaskAttempt>,
}

impl History {
    /// The history of an instance just created as `record`: nothing in its
    /// journal, inbox or attempts (creating it deleted what an earlier
    /// instance with its id left), and no earlier generation's messages.
    pub fn of_new(record: InstanceRecord) -> Self {
        Self {
            record,
            journal: Vec::new(),
            inbox: Vec::new(),
            arrival_floor: 0,
            attempts: Vec::new(),
        }
    }
}

/// A failed attempt of a task that retries.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAttempt {
    pub task_id: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub error: GuestError,
    pub failed_ms: i64,
    /// When the next attempt is due.
    pub retry_at_ms: i64,
}

/// The outcome of a task (an activity, a timer, an event wait or a
/// sub-orchestration): JSON output or an error.
pub type TaskOutcome = Result<String, GuestError>;

/// Something that reached an instance from outside, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage {
    /// Position in the database-wide arrival order.
    pub arrival: i64,
    /// When it arrived (ms since the epoch); for history views only.
    pub at_ms: i64,
    pub body: InboxBody,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InboxBody {
    /// A scheduled task finished.
    TaskCompleted { task_id: u64, outcome: TaskOutcome },
    /// An external event was raised.
    Event { name: String, data: String },
}

/// An activity to run: the call it answers and what to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub id: i64,
    pub instance_id: InstanceId,
    /// The sequence number of the scheduling call.
    pub task_id: u64,
    pub app: String,
    pub digest: String,
    /// The activity function's name.
    pub name: String,
    pub input: String,
    /// 1 for the first attempt; re-runs after a lost lease count up.
    pub attempt: u32,
    /// The generation of the instance that scheduled it.
    pub generation: u64,
}

impl WorkItem {
    /// Stable across re-executions of the same call, and different for the
    /// same call in another generation: `instance:seq`, then
    /// `instance#gN:seq` (`#` cannot occur in an instance id).
    pub fn idempotency_key(&self) -> String {
        let instance = in_generation(self.instance_id.as_str(), self.generation);
        format!("{instance}:{}", self.task_id)
    }
}

/// An activity a committing episode schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkItem {
    pub task_id: u64,
    pub name: String,
    pub input: String,
    /// The retry policy (JSON, see [`super::retry::RetryPolicy`]).
    pub retry: Option<String>,
}

/// A durable timer a committing episode schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTimer {
    pub task_id: u64,
    pub fire_at_ms: i64,
}

/// An orchestration a committing episode starts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChild {
    /// The parent's task that awaits the child; `None` for a fire-and-forget
    /// start.
    pub task_id: Option<u64>,
    pub id: InstanceId,
    pub name: String,
    pub app: String,
    pub digest: String,
    pub input: String,
    /// The retry policy of the parent's task (JSON).
    pub retry: Option<String>,
}

/// How an instance starts its next generation (continue-as-new).
#[derive(Debug, Clone, PartialEq)]
pub struct ContinueAsNew {
    pub input: String,
    /// Events to drop from the inbox: those consumed, and with
    /// preserve-unprocessed-events off, every event the run saw.
    pub dropped_events: Vec<i64>,
}

/// How an instance's row changes at the end of an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub status: RuntimeStatus,
    pub output: Option<String>,
    pub custom_status: Option<String>,
}

/// What one episode of an orchestrator commits together: the journal
/// entries it made, the activities it scheduled, and its new status.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub instance_id: InstanceId,
    pub entries: Vec<JournalEntry>,
    pub work: Vec<NewWorkItem>,
    pub timers: Vec<NewTimer>,
    /// Tasks whose pending timers are deleted.
    pub cancelled_timers: Vec<u64>,
    pub children: Vec<NewChild>,
    /// Messages to entities (calls, signals, locks, unlocks), in order.
    pub entity_ops: Vec<crate::entity::NewEntityOp>,
    /// Tasks answered at once (e.g. a sub-orchestration that names no
    /// loaded orchestrator): stored in the inbox like any completion.
    pub completions: Vec<(u64, TaskOutcome)>,
    /// Set when the run ended with continue-as-new.
    pub continue_as_new: Option<ContinueAsNew>,
    pub status: StatusUpdate,
    /// How long the dispatched work items are leased to this host.
    pub lease_ms: i64,
    /// What the orchestrator logged live in this episode: stored with it,
    /// so a line exists exactly when the run that logged it is journaled
    /// (a replay suppresses it, a lost episode's run logs it again).
    pub logs: Vec<LogLine>,
}

/// A line an instance's orchestrator or one of its activities logged
/// (the `logging` interface, stdout or stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at_ms: i64,
    /// `trace` to `error`, or `stdout`/`stderr`.
    pub level: &'static str,
    /// The orchestrator or activity that logged it.
    pub function: String,
    /// The activity's task (its journal seq); `None` for the orchestrator.
    pub task_id: Option<u64>,
    pub attempt: Option<u32>,
    pub message: String,
}

/// A stored [`LogLine`] with its position (`id` grows with every line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLogLine {
    pub id: i64,
    pub line: LogLine,
}

/// Which instances a query selects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFilter {
    /// Empty means any status.
    pub statuses: Vec<RuntimeStatus>,
    pub created_from_ms: Option<i64>,
    pub created_to_ms: Option<i64>,
    pub id_prefix: Option<String>,
    /// The orchestrator's name, exactly.
    pub name: Option<String>,
}

/// One page of a listing and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePage {
    pub instances: Vec<InstanceRecord>,
    /// Opaque; pass it back to get the next page.
    pub continuation: Option<String>,
}

/// What a storage write set in motion, for the engine to act on: work to
/// dispatch, messages to deliver, instances to wake or stop.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Work items leased to this host.
    pub work: Vec<WorkItem>,
    pub messages: Vec<(InstanceId, InboxMessage)>,
    /// Instances that have new work (e.g. created children).
    pub wake: Vec<InstanceId>,
    /// Instances that were terminated.
    pub cancelled: Vec<InstanceId>,
    /// The earliest timer the write created, if any.
    pub next_timer_ms: Option<i64>,
    /// Entities with new messages (or released locks) to process.
    pub entities: Vec<crate::entity::EntityId>,
}

impl Effects {
    pub fn timer(&mut self, fire_at_ms: i64) {
        self.next_timer_ms = Some(self.next_timer_ms.map_or(fire_at_ms, |t| t.min(fire_at_ms)));
    }
}
