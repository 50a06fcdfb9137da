//! The human interaction pattern: `DocumentApprovalOrchestrator` generates
//! a document, asks for approval, and waits for the external event
//! `ApprovalEvent` (data `{"approved": true|false}`) at most
//! `timeoutSeconds` (default 72 hours; fractions allowed). Approved: the
//! document is finalized; rejected: archived; no answer in time: escalated.
//!
//! Input: `{"document": "Q3 report", "timeoutSeconds": N}`. Output:
//! `{"outcome": "approved"|"rejected"|"escalated", "document": ...}`.
//!
//! Raise the event with
//! `POST /runtime/webhooks/durabletask/instances/{id}/raiseEvent/ApprovalEvent`
//! (body `{"approved": true}`), or from a client function.

use std::time::Duration;

use perdure_sdk::prelude::*;

const DEFAULT_TIMEOUT_SECONDS: f64 = 72.0 * 3600.0;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    document: String,
    timeout_seconds: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct ApprovalEvent {
    approved: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    title: String,
    id: String,
}

fn approval(ctx: &OrchestrationContext, request: Request) -> Result<Value> {
    let document: Document = ctx.call_activity("GenerateDocument", &request.document)?;
    ctx.call_activity::<()>("RequestApproval", &document)?;
    let seconds = request.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    let timeout = Duration::try_from_secs_f64(seconds)
        .map_err(|e| Error::invalid_argument(format!("timeoutSeconds: {e}")))?;
    ctx.set_custom_status(&json!({ "waitingFor": "ApprovalEvent" }))?;
    let answer = ctx.wait_for_event_with_timeout::<ApprovalEvent>("ApprovalEvent", timeout)?;
    let (outcome, step) = match answer {
        Some(ApprovalEvent { approved: true }) => ("approved", "FinalizeDocument"),
        Some(ApprovalEvent { approved: false }) => ("rejected", "ArchiveDocument"),
        None => ("escalated", "EscalateApproval"),
    };
    ctx.set_custom_status(&json!({ "outcome": outcome }))?;
    let result: String = ctx.call_activity(step, &document)?;
    Ok(json!({ "outcome": outcome, "document": document, "result": result }))
}

fn generate(title: String) -> Result<Document> {
    let ctx = ActivityContext::current();
    Ok(Document {
        id: format!("doc-{}", ctx.instance_id),
        title,
    })
}

fn request_approval(document: Document) -> Result<()> {
    perdure_sdk::log::info(&format!("approval requested for {} ({})", document.title, document.id));
    Ok(())
}

fn finalize(document: Document) -> Result<String> {
    Ok(format!("{} finalized", document.title))
}

fn archive(document: Document) -> Result<String> {
    Ok(format!("{} archived", document.title))
}

fn escalate(document: Document) -> Result<String> {
    perdure_sdk::log::warn(&format!("no answer for {}: escalated", document.title));
    Ok(format!("{} escalated to a manager", document.title))
}

perdure_sdk::export_app! {
    Function::orchestrator("DocumentApprovalOrchestrator", approval),
    Function::activity("GenerateDocument", generate),
    Function::activity("RequestApproval", request_approval),
    Function::activity("FinalizeDocument", finalize),
    Function::activity("ArchiveDocument", archive),
    Function::activity("EscalateApproval", escalate),
}
