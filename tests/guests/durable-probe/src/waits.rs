//! Orchestrations that exercise timers, events, retries and
//! sub-orchestrations.
//!
//! - `RetryFlaky` calls `Flaky` with a retry policy; `Flaky` fails its first
//!   `failTimes` attempts.
//! - `Parent` calls `Child` as a sub-orchestration; `Child` fails on demand.
//! - `Sleeper` waits on a durable timer `delayMs` after its start.
//! - `CollectEvents` waits for `count` events named `name` in a row.
//! - `EventOrTimer` waits for event `Go` with a timeout (benchmarks).
//! - `ParentOfWaiter` starts `WaitsForever` (which waits for an event that
//!   never comes) as a child, for terminate tests.
//! - `Generations` continues as new a few times, starting a child and taking
//!   a guid in each generation.

use std::time::{Duration, UNIX_EPOCH};

use perdure_sdk::prelude::*;

fn error_json(e: &Error) -> Value {
    json!({ "code": format!("{:?}", e.code), "message": e.message })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryInput {
    fail_times: u32,
    max_attempts: u32,
    first_retry_ms: u64,
    #[serde(default)]
    backoff: Option<f64>,
}

pub fn retry_flaky(ctx: &OrchestrationContext, input: RetryInput) -> Result<Value> {
    let mut policy = RetryPolicy::new(input.max_attempts, Duration::from_millis(input.first_retry_ms));
    policy.backoff_coefficient = input.backoff.unwrap_or(2.0);
    let fail_times = json!({ "failTimes": input.fail_times });
    Ok(match ctx.call_activity_with_retry::<u32>("Flaky", &fail_times, Some(&policy)) {
        Ok(attempt) => json!({ "succeededOnAttempt": attempt }),
        Err(e) => json!({ "error": error_json(&e) }),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlakyInput {
    fail_times: u32,
}

pub fn flaky(input: FlakyInput) -> Result<u32> {
    let attempt = ActivityContext::current().attempt;
    if attempt <= input.fail_times {
        return Err(Error::application(format!("attempt {attempt} failed on purpose")));
    }
    Ok(attempt)
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentInput {
    fail: bool,
    #[serde(default)]
    child_id: Option<String>,
}

pub fn parent(ctx: &OrchestrationContext, input: ParentInput) -> Result<Value> {
    let child = json!({ "fail": input.fail });
    Ok(
        match ctx.call_sub_orchestrator::<String>("Child", input.child_id.as_deref(), &child, None) {
            Ok(output) => json!({ "child": output }),
            Err(e) => json!({ "childError": error_json(&e) }),
        },
    )
}

#[derive(Deserialize)]
pub struct ChildInput {
    fail: bool,
}

pub fn child(ctx: &OrchestrationContext, input: ChildInput) -> Result<String> {
    let _: Value = ctx.call_activity("Echo", &"from the child")?;
    if input.fail {
        return Err(Error::application("the child failed on purpose"));
    }
    Ok("child done".into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleeperInput {
    delay_ms: u64,
}

/// Returns the time the timer was set for (ms since the epoch).
pub fn sleeper(ctx: &OrchestrationContext, input: SleeperInput) -> Result<u64> {
    let due = ctx.now() + Duration::from_millis(input.delay_ms);
    ctx.create_timer(due);
    Ok(due
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

#[derive(Deserialize)]
pub struct CollectInput {
    name: String,
    count: u32,
}

pub fn collect_events(ctx: &OrchestrationContext, input: CollectInput) -> Result<Vec<Value>> {
    (0..input.count)
        .map(|_| ctx.wait_for_event::<Value>(&input.name))
        .collect()
}

pub fn waits_forever(ctx: &OrchestrationContext, _input: Value) -> Result<Value> {
    ctx.wait_for_event("Never")
}

pub fn parent_of_waiter(ctx: &OrchestrationContext, child_id: String) -> Result<Value> {
    ctx.call_sub_orchestrator("WaitsForever", Some(&child_id), &json!(null), None)
}

/// Waits for event `Go` at most `timeoutMs`; returns its data or
/// `"timed out"` (benchmarks: many instances waiting on a timer or an
/// event).
pub fn event_or_timer(ctx: &OrchestrationContext, timeout_ms: u64) -> Result<Value> {
    Ok(ctx
        .wait_for_event_with_timeout::<Value>("Go", Duration::from_millis(timeout_ms))?
        .unwrap_or_else(|| json!("timed out")))
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationsInput {
    generations: u32,
    #[serde(default)]
    guids: Vec<String>,
    #[serde(default)]
    children: Vec<String>,
}

/// Each generation takes a guid and starts a `WaitsForever` child with a
/// derived id, then continues as new until `generations` ran; returns
/// every guid and child id, which must all differ.
pub fn generations(ctx: &OrchestrationContext, mut input: GenerationsInput) -> Result<Value> {
    input.guids.push(ctx.new_guid());
    let child = ctx.start_orchestration("WaitsForever", None, &json!(null))?;
    input.children.push(child);
    if (input.guids.len() as u32) < input.generations {
        ctx.continue_as_new(&input, false)?;
        return Ok(Value::Null);
    }
    Ok(json!({ "guids": input.guids, "children": input.children }))
}
