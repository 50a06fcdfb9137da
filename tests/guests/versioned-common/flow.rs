// The app behind versioned-v1, -v2 and -v3, included by each crate's
// lib.rs after it defines `VERSION` and `FIRST_STEP`. v2 differs from v1
// only in its output (a compatible change); v3 calls another activity
// first (an incompatible one).
//
// `StepA` and `StepC` wait until an instance with the id in their input
// exists: a gate the test opens by starting `Gate` with that id.

use perdure_sdk::prelude::*;

#[derive(Deserialize)]
struct FlowInput {
    gate: String,
}

fn versioned_flow(ctx: &OrchestrationContext, input: FlowInput) -> Result<String> {
    let first: String = ctx.call_activity(FIRST_STEP, &input.gate)?;
    let second: String = ctx.call_activity("StepB", &())?;
    Ok(format!("{VERSION}: {first} {second}"))
}

fn wait_for_gate(gate: &str) -> Result<()> {
    let client = DurableClient::new();
    while client.get_status(gate)?.is_none() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

fn step_a(gate: String) -> Result<String> {
    wait_for_gate(&gate)?;
    Ok("a".into())
}

fn step_c(gate: String) -> Result<String> {
    wait_for_gate(&gate)?;
    Ok("c".into())
}

fn step_b(_input: Value) -> Result<String> {
    Ok("b".into())
}

fn gate(_ctx: &OrchestrationContext, _input: Value) -> Result<()> {
    Ok(())
}

perdure_sdk::export_app! {
    Function::orchestrator("VersionedFlow", versioned_flow),
    Function::orchestrator("Gate", gate),
    Function::activity("StepA", step_a),
    Function::activity("StepB", step_b),
    Function::activity("StepC", step_c),
}
