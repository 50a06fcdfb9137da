//! `GET /metrics`: the host's metrics in Prometheus text format. Needs the
//! master key unless the host was started with `--metrics-open`.

use http::Request;
use hyper::body::Incoming;

use super::{ApiError, HttpContext, HttpResponse, require_master};
use crate::metrics::{CONTENT_TYPE, Sampled};
use crate::time::now_ms;

/// The figures read at request time: the database's backlog, the loaded
/// apps and what is in memory (for `/metrics` and `/admin/stats`).
pub(super) async fn sample(ctx: &HttpContext) -> Result<Sampled, ApiError> {
    let backlog = ctx.engine.backlog().await?;
    let snapshot = ctx.registry.snapshot();
    let oldest_work_item = backlog
        .oldest_work_item_ms
        .map(|created| std::time::Duration::from_millis((now_ms() - created).max(0) as u64));
    Ok(Sampled {
        backlog,
        oldest_work_item,
        apps_loaded: snapshot.apps.len() as u64,
        load_failures: snapshot.failures.len() as u64,
        hot_instances: ctx.engine.hot_instances() as u64,
        placement: ctx.engine.placement_counters(),
    })
}

pub(super) async fn handle(
    ctx: &HttpContext,
    req: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if !ctx.metrics_open {
        require_master(ctx, req)?;
    }
    let sampled = sample(ctx).await?;
    let text = ctx.metrics.render(&sampled);
    Ok(super::error::typed_response(
        http::StatusCode::OK,
        CONTENT_TYPE,
        text,
    ))
}
