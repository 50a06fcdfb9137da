//! Orchestrations that use the entities of the `counter` example.
//!
//! - `CallEntity` calls one operation and returns `{"ok": result}` or
//!   `{"error": {code, message}}`.
//! - `SignalThenCall` signals `add` `times` times on a counter, then calls
//!   `get`: signals from one sender arrive in order, so the call sees them
//!   all.
//! - `LockTwice` locks, then tries to lock again and to call an entity it
//!   did not lock; returns both errors' codes.

use perdure_sdk::prelude::*;

#[derive(Deserialize)]
pub struct Call {
    name: String,
    key: String,
    op: String,
    input: Option<Value>,
}

pub fn call_entity(ctx: &OrchestrationContext, call: Call) -> Result<Value> {
    let id = EntityId::new(&call.name, &call.key);
    Ok(
        match ctx.call_entity::<Value>(&id, &call.op, call.input.as_ref()) {
            Ok(result) => json!({ "ok": result }),
            Err(e) => json!({ "error": { "code": format!("{:?}", e.code), "message": e.message } }),
        },
    )
}

#[derive(Deserialize)]
pub struct Signals {
    key: String,
    times: u32,
}

pub fn signal_then_call(ctx: &OrchestrationContext, signals: Signals) -> Result<Value> {
    let id = EntityId::new("Counter", &signals.key);
    for _ in 0..signals.times {
        ctx.signal_entity(&id, "add", Some(&1))?;
    }
    let count: Option<i64> = ctx.call_entity(&id, "get", None::<&()>)?;
    Ok(json!(count))
}

pub fn lock_twice(ctx: &OrchestrationContext, key: String) -> Result<Value> {
    let a = EntityId::new("Counter", &key);
    let b = EntityId::new("Counter", format!("{key}-other"));
    ctx.lock_entities(std::slice::from_ref(&a))?;
    let relock = ctx.lock_entities(std::slice::from_ref(&b)).err();
    let outside = ctx.call_entity::<i64>(&b, "get", None::<&()>).err();
    let inside = ctx.call_entity::<i64>(&a, "add", Some(&2))?;
    ctx.unlock_entities();
    Ok(json!({
        "relock": relock.map(|e| format!("{:?}", e.code)),
        "outside": outside.map(|e| format!("{:?}", e.code)),
        "inside": inside,
    }))
}
