"""Human interaction: `PyDocumentApprovalOrchestrator` generates a
document, asks for approval and waits for the event `ApprovalEvent` (data
`{"approved": true|false}`) at most `timeoutSeconds` (default 72 hours).
Approved: finalized; rejected: archived; no answer in time: escalated.

Input `{"document": "Q3 report", "timeoutSeconds": N}`; output
`{"outcome": ..., "document": {...}, "result": ...}`, as the Rust example's.
"""

import perdure

bp = perdure.Blueprint()

DEFAULT_TIMEOUT_SECONDS = 72 * 3600


@bp.orchestrator(name="PyDocumentApprovalOrchestrator")
def approval(ctx: perdure.OrchestrationContext, request: dict) -> dict:
    document = ctx.call_activity("PyGenerateDocument", request["document"])
    ctx.call_activity("PyRequestApproval", document)
    timeout = request.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    ctx.set_custom_status({"waitingFor": "ApprovalEvent"})
    try:
        answer = ctx.wait_for_external_event("ApprovalEvent", timeout=timeout)
        outcome, step = (
            ("approved", "PyFinalizeDocument")
            if answer.get("approved")
            else ("rejected", "PyArchiveDocument")
        )
    except perdure.Error as e:
        if e.code != perdure.ErrorCode.TIMEOUT:
            raise
        outcome, step = "escalated", "PyEscalateApproval"
    ctx.set_custom_status({"outcome": outcome})
    result = ctx.call_activity(step, document)
    return {"outcome": outcome, "document": document, "result": result}


@bp.activity(name="PyGenerateDocument")
def generate(title: str) -> dict:
    return {"title": title, "id": f"doc-{perdure.activity_info().instance_id}"}


@bp.activity(name="PyRequestApproval")
def request_approval(document: dict) -> None:
    perdure.log.info(f"approval requested for {document['title']} ({document['id']})")


@bp.activity(name="PyFinalizeDocument")
def finalize(document: dict) -> str:
    return f"{document['title']} finalized"


@bp.activity(name="PyArchiveDocument")
def archive(document: dict) -> str:
    return f"{document['title']} archived"


@bp.activity(name="PyEscalateApproval")
def escalate(document: dict) -> str:
    perdure.log.warn(f"no answer for {document['title']}: escalated")
    return f"{document['title']} escalated to a manager"
