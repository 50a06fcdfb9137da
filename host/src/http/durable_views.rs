//! JSON views of durable instances for the management API, shaped like
//! Azure Durable Functions' (`runtimeStatus`, `createdTime`,
//! `historyEvents` with `EventType`, ...), and the parsing of its query
//! parameters.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::ApiError;
use crate::durable::journal;
use crate::time::rfc3339_ms;
use perdure_records::{
    History, InboxBody, InboxMessage, InstanceFilter, InstanceRecord, JournalEntry, RuntimeStatus,
};

/// JSON text as stored, as a value; text that does not parse (it always
/// should) is shown as a string rather than lost.
pub(super) fn json_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn optional_json(text: Option<&str>) -> Value {
    text.map(json_value).unwrap_or(Value::Null)
}

/// What the status route shows.
#[derive(Debug, Clone, Copy)]
pub(super) struct StatusOptions {
    pub(super) show_input: bool,
    pub(super) show_history: bool,
    pub(super) show_history_output: bool,
}

/// `{name, instanceId, runtimeStatus, input, customStatus, output,
/// createdTime, lastUpdatedTime}`.
pub(super) fn status_view(record: &InstanceRecord, show_input: bool) -> Value {
    let mut view = Map::new();
    view.insert("name".into(), json!(record.name));
    view.insert("instanceId".into(), json!(record.id));
    view.insert("runtimeStatus".into(), json!(record.status.as_str()));
    if show_input {
        view.insert("input".into(), json_value(&record.input));
    }
    view.insert(
        "customStatus".into(),
        optional_json(record.custom_status.as_deref()),
    );
    view.insert("output".into(), optional_json(record.output.as_deref()));
    view.insert("createdTime".into(), json!(rfc3339_ms(record.created_ms)));
    view.insert(
        "lastUpdatedTime".into(),
        json!(rfc3339_ms(record.updated_ms)),
    );
    if let Some(parent) = &record.parent_id {
        view.insert("parentInstanceId".into(), json!(parent));
    }
    Value::Object(view)
}

/// One inbox message as a history event; `scheduled_by` is the journal
/// kind of the call that scheduled a completed task.
fn inbox_event(message: &InboxMessage, scheduled_by: Option<&str>, with_output: bool) -> Value {
    let mut event = match &message.body {
        InboxBody::TaskCompleted { task_id, outcome } => {
            let event_type = match (scheduled_by, outcome.is_ok()) {
                (Some(journal::kind::SCHEDULE_TIMER), _) => "TimerFired",
                (Some(journal::kind::SCHEDULE_SUB_ORCHESTRATION), true) => {
                    "SubOrchestrationInstanceCompleted"
                }
                (Some(journal::kind::SCHEDULE_SUB_ORCHESTRATION), false) => {
                    "SubOrchestrationInstanceFailed"
                }
                (_, true) => "TaskCompleted",
                (_, false) => "TaskFailed",
            };
            let mut event = json!({ "EventType": event_type, "TaskScheduledId": task_id });
            if with_output {
                match outcome {
                    Ok(output) => event["Result"] = json_value(output),
                    Err(error) => event["Failure"] = json!(error),
                }
            }
            event
        }
        InboxBody::Event { name, data } => {
            let mut event = json!({ "EventType": "EventRaised", "Name": name });
            if with_output {
                event["Input"] = json_value(data);
            }
            event
        }
    };
    event["Timestamp"] = json!(rfc3339_ms(message.at_ms));
    event
}

/// The history event of a journaled call, if it has one.
fn call_event(entry: &JournalEntry, request: &Value) -> Option<Value> {
    let at = rfc3339_ms(entry.at_ms);
    Some(match entry.kind.as_str() {
        journal::kind::SCHEDULE_ACTIVITY => json!({
            "EventType": "TaskScheduled", "Timestamp": at,
            "Name": request["name"], "TaskScheduledId": entry.seq,
        }),
        journal::kind::SCHEDULE_TIMER => json!({
            "EventType": "TimerCreated", "Timestamp": at,
            "FireAt": request["fireAt"].as_i64().map(rfc3339_ms), "TaskScheduledId": entry.seq,
        }),
        journal::kind::SCHEDULE_SUB_ORCHESTRATION => json!({
            "EventType": "SubOrchestrationInstanceCreated", "Timestamp": at,
            "Name": request["name"], "InstanceId": request["instanceId"],
            "TaskScheduledId": entry.seq,
        }),
        journal::kind::START_ORCHESTRATION => json!({
            "EventType": "OrchestrationStarted", "Timestamp": at,
            "Name": request["name"], "InstanceId": entry.result,
        }),
        journal::kind::CONTINUE_AS_NEW => json!({ "EventType": "ContinueAsNew", "Timestamp": at }),
        _ => return None,
    })
}

/// The arrivals of the events an await's recorded result consumed.
fn consumed_events(entry: &JournalEntry) -> Vec<i64> {
    let result = entry.result.as_deref().unwrap_or_default();
    let answers = match entry.kind.as_str() {
        journal::kind::AWAIT_ALL => journal::parse_await_all(result).unwrap_or_default(),
        journal::kind::AWAIT_ANY => journal::parse_await_any(result)
            .map(|(_, answer)| vec![answer])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    answers.into_iter().filter_map(|a| a.event).collect()
}

/// The instance's history as events in causal order: the start, then the
/// journal in sequence (a retrying task's failed attempts right after it
/// was scheduled), each completion or event placed just before the await
/// that consumed it; completions and events not consumed yet follow in
/// arrival order, and the end closes a finished instance.
pub(super) fn history_view(history: &History, with_output: bool) -> Vec<Value> {
    let History {
        record,
        journal: entries,
        inbox,
        attempts,
        ..
    } = history;
    let mut events = Vec::new();
    let mut started = json!({
        "EventType": "ExecutionStarted",
        "Timestamp": rfc3339_ms(record.started_ms),
        "FunctionName": record.name,
    });
    if with_output {
        started["Input"] = json_value(&record.input);
    }
    events.push(started);
    let scheduled_by: HashMap<u64, &str> =
        entries.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    let kind_of = |m: &InboxMessage| match &m.body {
        InboxBody::TaskCompleted { task_id, .. } => scheduled_by.get(task_id).copied(),
        InboxBody::Event { .. } => None,
    };
    let mut pending: Vec<Option<&InboxMessage>> = inbox.iter().map(Some).collect();
    for entry in entries {
        let request = json_value(&entry.request);
        if let Some(event) = call_event(entry, &request) {
            events.push(event);
        }
        for attempt in attempts.iter().filter(|a| a.task_id == entry.seq) {
            let mut retry = json!({
                "EventType": "TaskRetrying",
                "Timestamp": rfc3339_ms(attempt.failed_ms),
                "TaskScheduledId": attempt.task_id,
                "Attempt": attempt.attempt,
                "NextAttemptAt": rfc3339_ms(attempt.retry_at_ms),
            });
            if with_output {
                retry["Failure"] = json!(attempt.error);
            }
            events.push(retry);
        }
        if matches!(
            entry.kind.as_str(),
            journal::kind::AWAIT_ALL | journal::kind::AWAIT_ANY
        ) {
            let awaited: Vec<u64> = request["tasks"]
                .as_array()
                .map(|tasks| tasks.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let events_taken = consumed_events(entry);
            for slot in &mut pending {
                let consumed = match slot {
                    Some(InboxMessage {
                        body: InboxBody::TaskCompleted { task_id, .. },
                        ..
                    }) => awaited.contains(task_id),
                    Some(InboxMessage {
                        arrival,
                        body: InboxBody::Event { .. },
                        ..
                    }) => events_taken.contains(arrival),
                    None => false,
                };
                if consumed && let Some(message) = slot.take() {
                    events.push(inbox_event(message, kind_of(message), with_output));
                }
            }
        }
    }
    events.extend(
        pending
            .into_iter()
            .flatten()
            .map(|m| inbox_event(m, kind_of(m), with_output)),
    );
    if record.status.is_finished() {
        let mut end = json!({
            "EventType": "ExecutionCompleted",
            "OrchestrationStatus": record.status.as_str(),
            "Timestamp": rfc3339_ms(record.updated_ms),
        });
        if with_output {
            end["Result"] = optional_json(record.output.as_deref());
        }
        events.push(end);
    }
    events
}

/// A boolean query parameter (`true`/`false`, any case); absent is
/// `default`.
pub(super) fn flag(
    query: &[(String, String)],
    name: &str,
    default: bool,
) -> Result<bool, ApiError> {
    match param(query, name) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "{name} must be true or false, not {v:?}"
        ))),
    }
}

pub(super) fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A timestamp such as `2026-01-31T12:00:00Z`, as ms since the epoch.
fn time_param(query: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    let Some(text) = param(query, name) else {
        return Ok(None);
    };
    let time = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).map_err(|e| {
        ApiError::bad_request(format!(
            "{name} must be an ISO 8601 UTC time such as 2026-01-31T12:00:00Z, not {text:?}: {e}"
        ))
    })?;
    let ms = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Ok(Some(ms))
}

/// The filter of the list and bulk purge routes: `runtimeStatus=a,b`,
/// `createdTimeFrom`, `createdTimeTo`, `instanceIdPrefix`, and `name` (the
/// orchestrator's, exactly; not in Azure's API).
pub(super) fn instance_filter(query: &[(String, String)]) -> Result<InstanceFilter, ApiError> {
    let mut statuses = Vec::new();
    if let Some(list) = param(query, "runtimeStatus") {
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let status = RuntimeStatus::parse(name).ok_or_else(|| {
                let known: Vec<&str> = RuntimeStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_request(format!(
                    "unknown runtimeStatus {name:?}; use {}",
                    known.join(", ")
                ))
            })?;
            statuses.push(status);
        }
    }
    Ok(InstanceFilter {
        statuses,
        created_from_ms: time_param(query, "createdTimeFrom")?,
        created_to_ms: time_param(query, "createdTimeTo")?,
        id_prefix: param(query, "instanceIdPrefix").map(str::to_owned),
        name: param(query, "name")
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
    })
}

/// A non-negative number of seconds (fractions allowed), as the `timeout`
/// parameter takes.
pub(super) fn seconds(query: &[(String, String)], name: &str) -> Result<Option<f64>, ApiError> {
    param(query, name)
        .map(|v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("{name} must be a number of seconds, not {v:?}"))
                })
        })
        .transpose()
}
