//! What the dashboard reads besides the durable API (master key): counts
//! of instances and queues (`/admin/stats`), an instance's timeline and
//! its guest log lines.

use http::StatusCode;
use serde_json::json;

use super::error::json_response;
use super::{ApiError, HttpContext, HttpResponse};
use crate::time::rfc3339_ms;
use perdure_records::{InstanceId, RuntimeStatus};

/// Log lines per page at most, and when `top` is not given.
const MAX_LOG_PAGE: usize = 1000;

fn unknown(id: &InstanceId) -> ApiError {
    ApiError::not_found(format!("no instance {id}"))
}

/// Instances by status, the queues, and what is in memory.
pub(super) async fn stats(ctx: &HttpContext) -> Result<HttpResponse, ApiError> {
    let sampled = super::metrics::sample(ctx).await?;
    let backlog = &sampled.backlog;
    let instances: serde_json::Map<String, serde_json::Value> = RuntimeStatus::ALL
        .into_iter()
        .map(|status| (status.as_str().to_owned(), json!(backlog.count(status))))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "instances": instances,
            "workItems": backlog.work_items,
            "oldestWorkItemAgeSeconds": sampled.oldest_work_item.map(|age| age.as_secs_f64()),
            "timersPending": backlog.timers,
            "entityMessagesQueued": backlog.entity_messages,
            "hotInstances": sampled.hot_instances,
            "apps": sampled.apps_loaded,
            "failedApps": sampled.load_failures,
        }),
    ))
}

/// The instance's tasks as bars (see `timeline.rs`).
pub(super) async fn timeline(ctx: &HttpContext, id: &str) -> Result<HttpResponse, ApiError> {
    let id = super::durable::parse_id(id)?;
    let history = ctx.engine.history(&id).await?.ok_or_else(|| unknown(&id))?;
    // Parsing and encoding a large history is work for a blocking thread.
    tokio::task::spawn_blocking(move || {
        json_response(
            StatusCode::OK,
            &crate::durable::timeline::timeline(&history),
        )
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the timeline task failed: {e}"),
        )
    })
}

/// The instance's guest log lines, oldest first: `after` (a line's id)
/// pages on, `top` lines at most.
pub(super) async fn logs(
    ctx: &HttpContext,
    id: &str,
    query: &[(String, String)],
) -> Result<HttpResponse, ApiError> {
    let id = super::durable::parse_id(id)?;
    let number = |name: &str| -> Result<Option<i64>, ApiError> {
        super::durable_views::param(query, name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{name} must be a non-negative integer, not {v:?}"
                    ))
                })
            })
            .transpose()
    };
    let after = number("after")?.unwrap_or(0);
    let top = number("top")?.map_or(MAX_LOG_PAGE, |n| (n as usize).clamp(1, MAX_LOG_PAGE));
    if ctx.engine.status(&id).await?.is_none() {
        return Err(unknown(&id));
    }
    let lines = ctx.engine.logs(&id, after, top).await?;
    let next = (lines.len() == top)
        .then(|| lines.last().map(|l| l.id))
        .flatten();
    let lines: Vec<_> = lines
        .iter()
        .map(|stored| {
            let line = &stored.line;
            json!({
                "id": stored.id,
                "time": rfc3339_ms(line.at_ms),
                "level": line.level,
                "function": line.function,
                "taskId": line.task_id,
                "attempt": line.attempt,
                "message": line.message,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "instanceId": id.as_str(), "lines": lines, "next": next }),
    ))
}
