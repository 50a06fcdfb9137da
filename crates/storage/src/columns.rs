//! How the records map to the columns every backend stores them in: the
//! encodings both backends share, so that a row means the same on SQLite
//! and on PostgreSQL.

use perdure_records::{
    EntityId, EntityOpKind, GuestError, RetryPolicy, RuntimeStatus, TaskOutcome,
};

/// An entity message's kind as its columns: `kind`, `operation`,
/// `input` and `locks` (the rest of a lock's entities, as JSON pairs).
pub fn kind_columns(
    kind: &EntityOpKind,
) -> (&'static str, Option<&str>, Option<&str>, Option<String>) {
    match kind {
        EntityOpKind::Operation { operation, input } => {
            ("op", Some(operation), input.as_deref(), None)
        }
        EntityOpKind::Lock { rest } => {
            let pairs: Vec<(&str, &str)> = rest
                .iter()
                .map(|e| (e.name.as_str(), e.key.as_str()))
                .collect();
            ("lock", None, None, serde_json::to_string(&pairs).ok())
        }
        EntityOpKind::Unlock => ("unlock", None, None, None),
    }
}

/// An entity message's kind read back from its columns; `None` for a
/// row that is not one.
pub fn kind_from_columns(
    kind: &str,
    operation: Option<String>,
    input: Option<String>,
    locks: Option<String>,
) -> Option<EntityOpKind> {
    match kind {
        "op" => Some(EntityOpKind::Operation {
            operation: operation?,
            input,
        }),
        "lock" => {
            let pairs: Vec<(String, String)> = serde_json::from_str(locks.as_deref()?).ok()?;
            let rest = pairs
                .iter()
                .map(|(name, key)| EntityId::parse(name, key).ok())
                .collect::<Option<Vec<_>>>()?;
            Some(EntityOpKind::Lock { rest })
        }
        "unlock" => Some(EntityOpKind::Unlock),
        _ => None,
    }
}

/// A task outcome as the inbox stores it: `ok`, and the output or the
/// error's JSON.
pub fn outcome_columns(outcome: &TaskOutcome) -> (bool, String) {
    match outcome {
        Ok(json) => (true, json.clone()),
        Err(e) => (
            false,
            serde_json::to_string(e).unwrap_or_else(|_| "{}".to_owned()),
        ),
    }
}

/// When a failed attempt is retried: the stored policy, the number of
/// failures so far (this one included) and when the first attempt started.
pub fn retry_delay(policy: Option<&str>, failures: u32, first_ms: i64, now: i64) -> Option<i64> {
    policy
        .and_then(RetryPolicy::from_json)
        .and_then(|p| p.next_delay(failures, first_ms, now))
}

/// The error a parent's task gets from a child that did not complete.
pub fn child_error(
    id: &str,
    name: &str,
    status: RuntimeStatus,
    output: Option<&str>,
) -> GuestError {
    if status == RuntimeStatus::Terminated {
        return GuestError::new(
            "cancelled",
            format!("sub-orchestration {name} ({id}) was terminated"),
        );
    }
    let inner = output.map(GuestError::from_stored);
    let mut error = inner.unwrap_or_else(|| GuestError::new("internal", "no error recorded"));
    error.message = format!("sub-orchestration {name} ({id}) failed: {}", error.message);
    error
}

/// The static name of a stored level (unknown ones read as `info`).
pub fn level_name(level: &str) -> &'static str {
    [
        "trace", "debug", "info", "warn", "error", "stdout", "stderr",
    ]
    .into_iter()
    .find(|l| *l == level)
    .unwrap_or("info")
}
