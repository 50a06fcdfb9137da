//! What an activity knows about the call it serves.

use crate::bindings::perdure::functions::activity_context;

/// The call an activity serves. Activities run at least once: use
/// [`ActivityContext::idempotency_key`] to make side effects idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityContext {
    /// The activity function's name.
    pub name: String,
    /// The orchestration instance that scheduled the activity.
    pub instance_id: String,
    idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl ActivityContext {
    /// The context of the activity running now. Calling it outside an
    /// activity traps.
    pub fn current() -> Self {
        let info = activity_context::info();
        Self {
            name: info.name,
            instance_id: info.instance_id,
            idempotency_key: info.idempotency_key,
            attempt: info.attempt,
        }
    }

    /// Stable across retries and re-executions of the same scheduled call.
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
}
