"""Fan-out/fan-in: `PyFanOutFanInOrchestrator` schedules `PyProcessTask`
for every task at once, then waits for all of them; results come back in
task order. Without input it processes `Task1`..`Task3`; with
`{"count": N}`, `Task1`..`TaskN`."""

import perdure

bp = perdure.Blueprint()


@bp.orchestrator(name="PyFanOutFanInOrchestrator")
def fan_out_fan_in(ctx: perdure.OrchestrationContext, request: dict | None) -> list:
    count = (request or {}).get("count") or 3
    tasks = [ctx.schedule_activity("PyProcessTask", f"Task{i}") for i in range(1, count + 1)]
    return ctx.when_all(tasks)


@bp.activity(name="PyProcessTask")
def process_task(task: str) -> str:
    return f"{task} completed"
