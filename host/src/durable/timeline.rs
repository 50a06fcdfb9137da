//! An instance's history as a timeline: one bar per task it scheduled
//! (activity, timer, sub-orchestration, event wait, entity call), from
//! when it was scheduled to when its answer arrived, with failed attempts
//! of retried tasks marked. The dashboard draws it and the traces export
//! it (one span per bar); tasks scheduled together (a fan-out) overlap in
//! time.
//!
//! Invariant: computed from the same [`History`] the replay reads, so the
//! picture shows what the journal holds, not what a log said.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::journal::{self, kind};
use perdure_records::{History, InboxBody};

/// One task of the timeline.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bar {
    /// The journal seq that scheduled it (its task id).
    pub seq: u64,
    /// `activity`, `timer`, `sub-orchestration`, `event` or `entity`.
    pub kind: &'static str,
    /// What it runs or waits for: the activity, orchestrator or event
    /// name, `entity@key.operation`, or `timer`.
    pub name: String,
    pub scheduled_ms: i64,
    /// When its answer arrived or it was cancelled; `None` while pending.
    pub ended_ms: Option<i64>,
    /// `completed`, `failed`, `cancelled` or `pending`.
    pub outcome: &'static str,
    /// Failed attempts of a retried task, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Retry>,
    /// A timer's due time; a sub-orchestration's instance id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    pub attempt: u32,
    pub failed_ms: i64,
    pub retry_at_ms: i64,
    pub error: String,
}

/// The timeline of an instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub instance_id: String,
    pub name: String,
    /// The app and the version (digest) the instance is pinned to.
    pub app: String,
    pub digest: String,
    pub status: &'static str,
    pub started_ms: i64,
    /// When it finished; `None` while it runs.
    pub ended_ms: Option<i64>,
    pub bars: Vec<Bar>,
}

/// The kind of bar a journal entry starts, if it schedules a task.
fn bar_kind(entry_kind: &str) -> Option<&'static str> {
    Some(match entry_kind {
        kind::SCHEDULE_ACTIVITY => "activity",
        kind::SCHEDULE_TIMER => "timer",
        kind::SCHEDULE_SUB_ORCHESTRATION => "sub-orchestration",
        kind::SCHEDULE_EVENT_WAIT => "event",
        kind::SCHEDULE_ENTITY_CALL => "entity",
        _ => return None,
    })
}

fn bar_name(kind: &str, request: &Value) -> String {
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_owned();
    match kind {
        "timer" => "timer".to_owned(),
        "entity" => format!("{}@{}.{}", text("name"), text("key"), text("operation")),
        _ => text("name"),
    }
}

fn bar_detail(kind: &str, request: &Value) -> Option<String> {
    match kind {
        "timer" => request["fireAt"]
            .as_i64()
            .map(|ms| format!("due {}", crate::time::rfc3339_ms(ms))),
        "sub-orchestration" => request["instanceId"].as_str().map(str::to_owned),
        _ => None,
    }
}

/// When each event wait was answered: from the awaits' recorded results,
/// the arrival of the event that answered each waiting task.
fn event_answers(history: &History) -> HashMap<u64, i64> {
    let mut answered = HashMap::new();
    for entry in &history.journal {
        let request: Value = serde_json::from_str(&entry.request).unwrap_or(Value::Null);
        let tasks: Vec<u64> = request["tasks"]
            .as_array()
            .map(|tasks| tasks.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let result = entry.result.as_deref().unwrap_or_default();
        let answers: Vec<(usize, journal::Answer)> = match entry.kind.as_str() {
            kind::AWAIT_ALL => journal::parse_await_all(result)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .collect(),
            kind::AWAIT_ANY => journal::parse_await_any(result).into_iter().collect(),
            _ => continue,
        };
        for (index, answer) in answers {
            if let (Some(task), Some(arrival)) = (tasks.get(index), answer.event) {
                answered.insert(*task, arrival);
            }
        }
    }
    answered
}

/// The timeline of `history`.
pub fn timeline(history: &History) -> Timeline {
    let record = &history.record;
    let arrivals: HashMap<i64, i64> = history.inbox.iter().map(|m| (m.arrival, m.at_ms)).collect();
    let mut completions: HashMap<u64, (i64, bool)> = HashMap::new();
    for message in &history.inbox {
        if let InboxBody::TaskCompleted { task_id, outcome } = &message.body {
            completions.insert(*task_id, (message.at_ms, outcome.is_ok()));
        }
    }
    for (task, arrival) in event_answers(history) {
        if let Some(at_ms) = arrivals.get(&arrival) {
            completions.entry(task).or_insert((*at_ms, true));
        }
    }
    let mut cancelled: HashMap<u64, i64> = HashMap::new();
    for entry in &history.journal {
        if entry.kind == kind::CANCEL_TASK
            && let Some(task) = serde_json::from_str::<Value>(&entry.request)
                .ok()
                .and_then(|r| r["task"].as_u64())
        {
            cancelled.insert(task, entry.at_ms);
        }
    }
    let mut retries: HashMap<u64, Vec<Retry>> = HashMap::new();
    for attempt in &history.attempts {
        retries.entry(attempt.task_id).or_default().push(Retry {
            attempt: attempt.attempt,
            failed_ms: attempt.failed_ms,
            retry_at_ms: attempt.retry_at_ms,
            error: attempt.error.message.clone(),
        });
    }
    let bars = history
        .journal
        .iter()
        .filter_map(|entry| {
            let kind = bar_kind(&entry.kind)?;
            let request: Value = serde_json::from_str(&entry.request).unwrap_or(Value::Null);
            // A cancelled task stays cancelled whatever arrives for it
            // later (the orchestrator no longer hears it).
            let (ended_ms, outcome) = match (cancelled.get(&entry.seq), completions.get(&entry.seq))
            {
                (Some(at), _) => (Some(*at), "cancelled"),
                (None, Some((at, true))) => (Some(*at), "completed"),
                (None, Some((at, false))) => (Some(*at), "failed"),
                (None, None) => (None, "pending"),
            };
            // An event raised before its wait answers it as it is scheduled.
            let ended_ms = ended_ms.map(|at| at.max(entry.at_ms));
            Some(Bar {
                seq: entry.seq,
                kind,
                name: bar_name(kind, &request),
                scheduled_ms: entry.at_ms,
                ended_ms,
                outcome,
                retries: retries.remove(&entry.seq).unwrap_or_default(),
                detail: bar_detail(kind, &request),
            })
        })
        .collect();
    Timeline {
        instance_id: record.id.to_string(),
        name: record.name.clone(),
        app: record.app.clone(),
        digest: record.digest.to_string(),
        status: record.status.as_str(),
        started_ms: record.started_ms,
        ended_ms: record.status.is_finished().then_some(record.updated_ms),
        bars,
    }
}
