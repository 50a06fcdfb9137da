//! How host calls are written into the journal and read back: each call is
//! a kind and a canonical JSON request; results are JSON. A replayed call
//! must have the kind and request that were recorded at its seq.

use serde_json::{Value, json};

use perdure_records::EntityId;
use perdure_records::GuestError;
use perdure_records::{JournalEntry, TaskOutcome};

/// The journal kinds of the calls the engine answers.
pub mod kind {
    pub const NOW: &str = "now";
    pub const NEW_GUID: &str = "new-guid";
    pub const SET_CUSTOM_STATUS: &str = "set-custom-status";
    pub const SCHEDULE_ACTIVITY: &str = "schedule-activity";
    pub const AWAIT_ALL: &str = "await-all";
    pub const AWAIT_ANY: &str = "await-any";
    pub const CANCEL_TASK: &str = "cancel-task";
    pub const SCHEDULE_TIMER: &str = "schedule-timer";
    pub const SCHEDULE_EVENT_WAIT: &str = "schedule-event-wait";
    pub const SCHEDULE_SUB_ORCHESTRATION: &str = "schedule-sub-orchestration";
    pub const START_ORCHESTRATION: &str = "start-orchestration";
    pub const CONTINUE_AS_NEW: &str = "continue-as-new";
    pub const SCHEDULE_ENTITY_CALL: &str = "schedule-entity-call";
    pub const SIGNAL_ENTITY: &str = "signal-entity";
    pub const LOCK_ENTITIES: &str = "lock-entities";
    pub const UNLOCK_ENTITIES: &str = "unlock-entities";
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

    pub fn schedule_timer(fire_at_ms: i64) -> Self {
        Self::new(kind::SCHEDULE_TIMER, json!({ "fireAt": fire_at_ms }))
    }

    pub fn schedule_event_wait(name: &str) -> Self {
        Self::new(kind::SCHEDULE_EVENT_WAIT, json!({ "name": name }))
    }

    pub fn schedule_sub_orchestration(
        name: &str,
        instance_id: Option<&str>,
        input: &str,
        retry: Option<Value>,
    ) -> Self {
        Self::new(
            kind::SCHEDULE_SUB_ORCHESTRATION,
            json!({ "name": name, "instanceId": instance_id, "input": input, "retry": retry }),
        )
    }

    pub fn start_orchestration(name: &str, instance_id: Option<&str>, input: &str) -> Self {
        Self::new(
            kind::START_ORCHESTRATION,
            json!({ "name": name, "instanceId": instance_id, "input": input }),
        )
    }

    pub fn continue_as_new(input: &str, preserve_unprocessed_events: bool) -> Self {
        Self::new(
            kind::CONTINUE_AS_NEW,
            json!({ "input": input, "preserveUnprocessedEvents": preserve_unprocessed_events }),
        )
    }

    pub fn schedule_entity_call(entity: &EntityId, operation: &str, input: Option<&str>) -> Self {
        Self::new(
            kind::SCHEDULE_ENTITY_CALL,
            json!({ "name": entity.name, "key": entity.key, "operation": operation, "input": input }),
        )
    }

    pub fn signal_entity(entity: &EntityId, operation: &str, input: Option<&str>) -> Self {
        Self::new(
            kind::SIGNAL_ENTITY,
            json!({ "name": entity.name, "key": entity.key, "operation": operation, "input": input }),
        )
    }

    pub fn lock_entities(entities: &[EntityId]) -> Self {
        let ids: Vec<Value> = entities
            .iter()
            .map(|e| json!({ "name": e.name, "key": e.key }))
            .collect();
        Self::new(kind::LOCK_ENTITIES, json!({ "entities": ids }))
    }

    pub fn unlock_entities() -> Self {
        Self::new(kind::UNLOCK_ENTITIES, json!({}))
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

/// How an awaited task ended: its outcome and, for an event wait, the
/// arrival of the event it consumed (so a replay consumes the same one).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub outcome: TaskOutcome,
    pub event: Option<i64>,
}

impl From<TaskOutcome> for Answer {
    fn from(outcome: TaskOutcome) -> Self {
        Self {
            outcome,
            event: None,
        }
    }
}

/// An answer as JSON: `{"ok": <output text>}` or `{"error": {...}}`, with
/// `"event": <arrival>` for a consumed event.
pub fn answer_to_value(answer: &Answer) -> Value {
    let mut value = match &answer.outcome {
        Ok(output) => json!({ "ok": output }),
        Err(e) => json!({ "error": e }),
    };
    if let Some(arrival) = answer.event {
        value["event"] = json!(arrival);
    }
    value
}

/// Reads back [`answer_to_value`]; `None` if `value` is not one.
pub fn answer_from_value(value: &Value) -> Option<Answer> {
    let event = value.get("event").and_then(Value::as_i64);
    let outcome = if let Some(ok) = value.get("ok").and_then(Value::as_str) {
        Ok(ok.to_owned())
    } else {
        Err(GuestError::from_stored(&value.get("error")?.to_string()))
    };
    Some(Answer { outcome, event })
}

/// The recorded result of `await-all`: one answer per task.
pub fn await_all_result(answers: &[Answer]) -> String {
    Value::Array(answers.iter().map(answer_to_value).collect()).to_string()
}

pub fn parse_await_all(result: &str) -> Option<Vec<Answer>> {
    let value: Value = serde_json::from_str(result).ok()?;
    value.as_array()?.iter().map(answer_from_value).collect()
}

/// The recorded result of `await-any`: the winner's index and answer.
pub fn await_any_result(index: usize, answer: &Answer) -> String {
    json!({ "index": index, "outcome": answer_to_value(answer) }).to_string()
}

pub fn parse_await_any(result: &str) -> Option<(usize, Answer)> {
    let value: Value = serde_json::from_str(result).ok()?;
    let index = usize::try_from(value.get("index")?.as_u64()?).ok()?;
    Some((index, answer_from_value(value.get("outcome")?)?))
}

/// A UUID derived from an instance id, its generation and a sequence number
/// (same inputs, same UUID), shaped as a version 5 UUID.
pub fn derived_guid(instance: &str, generation: u64, seq: u64) -> String {
    use sha2::{Digest as _, Sha256};
    let instance = perdure_records::in_generation(instance, generation);
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
    fn answers_round_trip() {
        let answers = vec![
            Answer::from(Ok("\"Task1 completed\"".to_owned())),
            Answer::from(Err(GuestError::new("application", "declined"))),
            Answer {
                outcome: Ok("{\"approved\":true}".to_owned()),
                event: Some(42),
            },
        ];
        let text = await_all_result(&answers);
        assert_eq!(parse_await_all(&text), Some(answers.clone()));
        let any = await_any_result(2, &answers[2]);
        assert_eq!(parse_await_any(&any), Some((2, answers[2].clone())));
    }

    #[test]
    fn guids_are_derived_and_distinct() -> anyhow::Result<()> {
        let a = derived_guid("i", 0, 1);
        assert_eq!(a, derived_guid("i", 0, 1));
        assert_ne!(a, derived_guid("i", 0, 2));
        assert_ne!(a, derived_guid("j", 0, 1));
        assert_ne!(a, derived_guid("i", 1, 1));
        // Generation 0 derives exactly what hosts before generations did
        // (sha256 of "perdure-guid:i:1"), so their journals replay alike.
        assert_eq!(a, "55172535-b9f0-5e4a-80fa-9685809068dc");
        use perdure_records::InstanceId;
        assert_eq!(InstanceId::parse("p")?.child(0, 5).as_str(), "p:5");
        assert_eq!(InstanceId::parse("p")?.child(2, 5).as_str(), "p:g2:5");
        use perdure_records::in_generation;
        assert_eq!(in_generation("i", 0), "i");
        assert_eq!(in_generation("i", 2), "i#g2");
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "5");
        Ok(())
    }

    #[test]
    fn requests_are_canonical() {
        let a = Call::schedule_activity("A", "{\"x\":1}", None);
        let b = Call::schedule_activity("A", "{\"x\":1}", None);
        assert_eq!(a, b);
        assert_ne!(a, Call::schedule_activity("B", "{\"x\":1}", None));
    }
}
