//! How host calls are written into the journal and read back: each call is
//! a kind and a canonical JSON request; results are JSON. A replayed call
//! must have the kind and request that were recorded at its seq.

use serde_json::{Value, json};

use super::model::{JournalEntry, TaskOutcome};
use crate::sandbox::GuestError;

/// The journal kinds of the calls the engine answers.
pub mod kind {
    pub const NOW: &str = "now";
    pub const NEW_GUID: &str = "new-guid";
    pub const SET_CUSTOM_STATUS: &str = "set-custom-status";
    pub const SCHEDULE_ACTIVITY: &str = "schedule-activity";
    pub const AWAIT_ALL: &str = "await-all";
    pub const AWAIT_ANY: &str = "await-any";
    pub const CANCEL_TASK: &str = "cancel-task";
}

/// A call an orchestrator makes, before it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub kind: &'static str,
    /// Canonical JSON (object keys sorted).
    pub request: String,
}

impl Call {
    pub fn new(kind: &'static str, request: Value) -> Self {
        Self {
            kind,
            request: request.to_string(),
        }
    }

    pub fn now() -> Self {
        Self::new(kind::NOW, json!({}))
    }

    pub fn new_guid() -> Self {
        Self::new(kind::NEW_GUID, json!({}))
    }

    pub fn set_custom_status(status: Option<&str>) -> Self {
        Self::new(kind::SET_CUSTOM_STATUS, json!({ "status": status }))
    }

    pub fn schedule_activity(name: &str, input: &str, retry: Option<Value>) -> Self {
        Self::new(
            kind::SCHEDULE_ACTIVITY,
            json!({ "name": name, "input": input, "retry": retry }),
        )
    }

    pub fn await_all(tasks: &[u64]) -> Self {
        Self::new(kind::AWAIT_ALL, json!({ "tasks": tasks }))
    }

    pub fn await_any(tasks: &[u64]) -> Self {
        Self::new(kind::AWAIT_ANY, json!({ "tasks": tasks }))
    }

    pub fn cancel_task(task: u64) -> Self {
        Self::new(kind::CANCEL_TASK, json!({ "task": task }))
    }

    /// How the call reads in a nondeterminism report.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.request)
    }

    /// True if `entry` records this call.
    pub fn matches(&self, entry: &JournalEntry) -> bool {
        entry.kind == self.kind && entry.request == self.request
    }
}

/// How a recorded entry reads in a nondeterminism report.
pub fn describe_entry(entry: &JournalEntry) -> String {
    format!("{} {}", entry.kind, entry.request)
}

/// A task outcome as JSON: `{"ok": <output text>}` or `{"error": {...}}`.
pub fn outcome_to_value(outcome: &TaskOutcome) -> Value {
    match outcome {
        Ok(output) => json!({ "ok": output }),
        Err(e) => json!({ "error": e }),
    }
}

/// Reads back [`outcome_to_value`]; `None` if `value` is not one.
pub fn outcome_from_value(value: &Value) -> Option<TaskOutcome> {
    if let Some(ok) = value.get("ok").and_then(Value::as_str) {
        return Some(Ok(ok.to_owned()));
    }
    value
        .get("error")
        .map(|e| Err(GuestError::from_stored(&e.to_string())))
}

/// The recorded result of `await-all`: one outcome per task.
pub fn await_all_result(outcomes: &[TaskOutcome]) -> String {
    Value::Array(outcomes.iter().map(outcome_to_value).collect()).to_string()
}

pub fn parse_await_all(result: &str) -> Option<Vec<TaskOutcome>> {
    let value: Value = serde_json::from_str(result).ok()?;
    value.as_array()?.iter().map(outcome_from_value).collect()
}

/// The recorded result of `await-any`: the winner's index and outcome.
pub fn await_any_result(index: usize, outcome: &TaskOutcome) -> String {
    json!({ "index": index, "outcome": outcome_to_value(outcome) }).to_string()
}

pub fn parse_await_any(result: &str) -> Option<(usize, TaskOutcome)> {
    let value: Value = serde_json::from_str(result).ok()?;
    let index = usize::try_from(value.get("index")?.as_u64()?).ok()?;
    Some((index, outcome_from_value(value.get("outcome")?)?))
}

/// A UUID derived from an instance id and a sequence number (same inputs,
/// same UUID), shaped as a version 5 UUID.
pub fn derived_guid(instance: &str, seq: u64) -> String {
    use sha2::{Digest as _, Sha256};
    let hash = Sha256::digest(format!("perdure-guid:{instance}:{seq}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        let outcomes = vec![
            Ok("\"Task1 completed\"".to_owned()),
            Err(GuestError::new("application", "declined")),
        ];
        let text = await_all_result(&outcomes);
        assert_eq!(parse_await_all(&text), Some(outcomes.clone()));
        let any = await_any_result(1, &outcomes[1]);
        assert_eq!(parse_await_any(&any), Some((1, outcomes[1].clone())));
    }

    #[test]
    fn guids_are_derived_and_distinct() {
        let a = derived_guid("i", 1);
        assert_eq!(a, derived_guid("i", 1));
        assert_ne!(a, derived_guid("i", 2));
        assert_ne!(a, derived_guid("j", 1));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
    }

    #[test]
    fn requests_are_canonical() {
        let a = Call::schedule_activity("A", "{\"x\":1}", None);
        let b = Call::schedule_activity("A", "{\"x\":1}", None);
        assert_eq!(a, b);
        assert_ne!(a, Call::schedule_activity("B", "{\"x\":1}", None));
    }
}
