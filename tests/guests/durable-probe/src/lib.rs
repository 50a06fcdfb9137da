//! Orchestrations that exercise the durable engine in tests.
//!
//! - `SleepyChain` calls `Nap` `steps` times in sequence; each `Nap` sleeps
//!   `sleepMs` on the real clock and logs `nap executed <idempotency key>`,
//!   so a test can count executions across crashes.
//! - `HandlesFailure` calls `Fail` and turns its error into a result;
//!   `FailsUnhandled` lets the error fail the instance.
//! - `WaitForGate` waits (in its activity) until the test creates an
//!   instance with the given id.
//! - `LongJournal` makes N journaled calls, then calls an activity.
//! - `HelloSequence` calls `SayHello` for five cities (benchmarks).
//! - `waits.rs`: timers, events, retries and sub-orchestrations.
//! - `entities.rs`: calls, signals and locks on the `counter` example's
//!   entities.
//! - `Fetch` GETs a URL in its activity `FetchUrl` (outbound HTTP and
//!   HTTPS).
//! - `ChattyChain` logs a line before each of `steps` `Shout` calls and
//!   prints one when done; `Shout` prints what it says, so a test can
//!   check each line is stored once however often the instance replays.
//! - `ClockProbe` reads the time, a guid and a HashMap's order, which must
//!   be the same when the instance is replayed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use perdure_sdk::prelude::*;

mod entities;
mod waits;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chain {
    steps: u32,
    sleep_ms: u64,
}

fn sleepy_chain(ctx: &OrchestrationContext, chain: Chain) -> Result<u32> {
    let mut done = 0;
    for step in 0..chain.steps {
        let slept: u64 = ctx.call_activity("Nap", &json!({ "step": step, "ms": chain.sleep_ms }))?;
        if slept == chain.sleep_ms {
            done += 1;
        }
        ctx.set_custom_status(&json!({ "done": done }))?;
    }
    Ok(done)
}

#[derive(Deserialize)]
struct NapInput {
    ms: u64,
}

fn chatty_chain(ctx: &OrchestrationContext, steps: u32) -> Result<u32> {
    for step in 0..steps {
        perdure_sdk::log::info(&format!("step {step} starts"));
        let task = ctx.schedule_activity::<String>("Shout", &format!("step {step}"))?;
        // Between a scheduling call and the await that blocks on it.
        perdure_sdk::log::info(&format!("step {step} scheduled"));
        let _ = ctx.when_all(vec![task])?;
    }
    println!("chatty chain done after {steps} steps");
    Ok(steps)
}

fn shout(what: String) -> Result<String> {
    println!("shouting {what}");
    eprintln!("(to stderr) {what}");
    Ok(what.to_uppercase())
}

fn nap(input: NapInput) -> Result<u64> {
    std::thread::sleep(Duration::from_millis(input.ms));
    let ctx = ActivityContext::current();
    perdure_sdk::log::info(&format!(
        "nap executed {} attempt {}",
        ctx.idempotency_key(),
        ctx.attempt
    ));
    Ok(input.ms)
}

fn fail(reason: String) -> Result<String> {
    Err(Error::application(reason).with_details(json!({ "retryable": false })))
}

fn handles_failure(ctx: &OrchestrationContext, reason: String) -> Result<String> {
    match ctx.call_activity::<String>("Fail", &reason) {
        Ok(unexpected) => Ok(format!("unexpected success: {unexpected}")),
        Err(e) => Ok(format!("handled {:?}: {}", e.code, e.message)),
    }
}

fn fails_unhandled(ctx: &OrchestrationContext, reason: String) -> Result<String> {
    ctx.call_activity("Fail", &reason)
}

/// What an orchestrator sees of time, ids and hash seeds.
fn observe(ctx: &OrchestrationContext) -> Value {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let order: Vec<u32> = (0..16u32)
        .map(|i| (i, i))
        .collect::<HashMap<_, _>>()
        .into_keys()
        .collect();
    let now = ctx
        .now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({ "now": now, "wall": wall, "guid": ctx.new_guid(), "hashOrder": order })
}

/// Observes, hands the observation to an activity (its input is journaled,
/// so a replay that observed anything else fails as nondeterministic), and
/// observes again.
fn clock_probe(ctx: &OrchestrationContext, _input: Value) -> Result<Value> {
    let before = observe(ctx);
    let echoed: Value = ctx.call_activity("Echo", &before)?;
    let after = observe(ctx);
    Ok(json!({ "before": before, "echoed": echoed, "after": after }))
}

fn echo(value: Value) -> Result<Value> {
    Ok(value)
}

/// `count` journaled calls, then one activity: a long journal to replay
/// when the activity's result wakes an evicted instance.
fn long_journal(ctx: &OrchestrationContext, count: u32) -> Result<u32> {
    for _ in 0..count {
        ctx.new_guid();
    }
    let _: Value = ctx.call_activity("Echo", &count)?;
    Ok(count)
}

/// Waits on `GateStep` until an instance with id `gate` exists.
fn wait_for_gate(ctx: &OrchestrationContext, gate: String) -> Result<String> {
    ctx.call_activity("GateStep", &gate)
}

fn gate_step(gate: String) -> Result<String> {
    let client = DurableClient::new();
    while client.get_status(&gate)?.is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok("opened".into())
}

/// The classic hello sequence: five activities in a row.
fn hello_sequence(ctx: &OrchestrationContext, _input: Value) -> Result<Vec<String>> {
    ["Tokyo", "Seattle", "London", "Paris", "Cairo"]
        .iter()
        .map(|city| ctx.call_activity("SayHello", city))
        .collect()
}

fn say_hello(city: String) -> Result<String> {
    Ok(format!("Hello {city}!"))
}

/// `FetchUrl` GETs a URL through the host's outbound HTTP.
fn fetch(ctx: &OrchestrationContext, url: String) -> Result<Value> {
    ctx.call_activity("FetchUrl", &url)
}

fn fetch_url(url: String) -> Result<Value> {
    let response = perdure_sdk::outbound::get(&url)?;
    Ok(json!({ "status": response.status, "body": response.text() }))
}

perdure_sdk::export_app! {
    Function::orchestrator("HelloSequence", hello_sequence),
    Function::orchestrator("LongJournal", long_journal),
    Function::orchestrator("WaitForGate", wait_for_gate),
    Function::activity("GateStep", gate_step),
    Function::activity("SayHello", say_hello),
    Function::orchestrator("SleepyChain", sleepy_chain),
    Function::orchestrator("ChattyChain", chatty_chain),
    Function::activity("Shout", shout),
    Function::activity("Nap", nap),
    Function::activity("Fail", fail),
    Function::orchestrator("HandlesFailure", handles_failure),
    Function::orchestrator("FailsUnhandled", fails_unhandled),
    Function::orchestrator("ClockProbe", clock_probe),
    Function::activity("Echo", echo),
    Function::orchestrator("RetryFlaky", waits::retry_flaky),
    Function::activity("Flaky", waits::flaky),
    Function::orchestrator("Parent", waits::parent),
    Function::orchestrator("Child", waits::child),
    Function::orchestrator("Sleeper", waits::sleeper),
    Function::orchestrator("CollectEvents", waits::collect_events),
    Function::orchestrator("WaitsForever", waits::waits_forever),
    Function::orchestrator("ParentOfWaiter", waits::parent_of_waiter),
    Function::orchestrator("EventOrTimer", waits::event_or_timer),
    Function::orchestrator("Generations", waits::generations),
    Function::orchestrator("Fetch", fetch),
    Function::activity("FetchUrl", fetch_url),
    Function::orchestrator("CallEntity", entities::call_entity),
    Function::orchestrator("SignalThenCall", entities::signal_then_call),
    Function::orchestrator("LockTwice", entities::lock_twice),
}
