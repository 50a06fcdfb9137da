//! Fan-out/fan-in: `FanOutFanInOrchestrator` schedules `ProcessTask` for
//! every task at once, then waits for all of them; results come back in
//! task order.
//!
//! Without input it processes `["Task1","Task2","Task3"]`; with
//! `{"count": N}` it processes `Task1` to `TaskN`.

use perdure_sdk::prelude::*;

#[derive(Debug, Default, Deserialize)]
struct FanOutInput {
    count: Option<u32>,
}

/// Tasks processed without a count.
const DEFAULT_COUNT: u32 = 3;

fn fan_out_fan_in(ctx: &OrchestrationContext, input: Option<FanOutInput>) -> Result<Vec<String>> {
    let count = input.and_then(|i| i.count).unwrap_or(DEFAULT_COUNT);
    let tasks = (1..=count)
        .map(|i| ctx.schedule_activity::<String>("ProcessTask", &format!("Task{i}")))
        .collect::<Result<Vec<_>>>()?;
    ctx.when_all(tasks)
}

fn process_task(task: String) -> Result<String> {
    Ok(format!("{task} completed"))
}

perdure_sdk::export_app! {
    Function::orchestrator("FanOutFanInOrchestrator", fan_out_fan_in),
    Function::activity("ProcessTask", process_task),
}
