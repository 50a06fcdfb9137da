//! The async HTTP API pattern: `POST /api/process` starts
//! `LongRunningOrchestration` and answers at once with 202 Accepted, a
//! `Location` to poll and the management URLs; the client polls the status
//! URL until the work is done.
//!
//! The request body is the orchestration's input, e.g. `{"steps": 5}`
//! (default 3 steps).

use perdure_sdk::prelude::*;

#[derive(Debug, Default, Deserialize)]
struct Job {
    steps: Option<u32>,
}

const DEFAULT_STEPS: u32 = 3;

fn start_process(req: HttpRequest) -> Result<HttpResponse> {
    let input: Value = if req.body.is_empty() {
        json!({})
    } else {
        req.json()?
    };
    let client = DurableClient::new();
    let instance_id = client.start_new("LongRunningOrchestration", None, &input)?;
    perdure_sdk::log::info(&format!("started orchestration {instance_id}"));
    Ok(client.create_check_status_response(&req, &instance_id))
}

fn long_running(ctx: &OrchestrationContext, job: Option<Job>) -> Result<Value> {
    let steps = job.and_then(|j| j.steps).unwrap_or(DEFAULT_STEPS);
    let mut done = Vec::new();
    for step in 1..=steps {
        let result: String = ctx.call_activity("LongRunningStep", &step)?;
        ctx.set_custom_status(&json!({ "completedSteps": step, "totalSteps": steps }))?;
        done.push(result);
    }
    Ok(json!({ "steps": done }))
}

fn long_running_step(step: u32) -> Result<String> {
    Ok(format!("step {step} done"))
}

perdure_sdk::export_app! {
    Function::http("StartProcess", start_process)
        .route("process")
        .methods(["POST"])
        .auth(AuthLevel::Function),
    Function::orchestrator("LongRunningOrchestration", long_running),
    Function::activity("LongRunningStep", long_running_step),
}
