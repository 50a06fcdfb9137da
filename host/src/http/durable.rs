//! The durable management API under `/runtime/webhooks/durabletask/`,
//! shaped like Azure Durable Functions' HTTP API.
//!
//! Starting, listing and bulk purging need the master key. The routes of
//! one instance also accept that instance's own key, which is what the
//! URLs of a check-status payload carry.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::durable_views::{
    StatusOptions, flag, history_view, instance_filter, param, seconds, status_view,
};
use super::error::json_response;
use super::{
    ApiError, HttpContext, HttpResponse, presented_key, query_pairs, read_body, require_master,
};
use crate::durable::urls::RETRY_AFTER_SECS;
use crate::durable::{PlainResponse, StartError};
use perdure_records::{InstanceId, InstanceRecord};
use perdure_storage::{ChangeOutcome, EventOutcome};

/// Instances per page of the list route when `top` is not given, and at
/// most.
const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 1000;

/// Event payloads and inputs larger than this are refused: they are stored
/// in every replay's working set.
const MAX_INPUT_BYTES: usize = 1 << 20;

/// Longest `timeout` a start request may wait.
const MAX_WAIT: Duration = Duration::from_secs(300);

pub(super) async fn handle(
    ctx: &HttpContext,
    req: Request<Incoming>,
    rest: &str,
) -> Result<HttpResponse, ApiError> {
    let segments = super::path_segments(rest.trim_matches('/').split('/'));
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["orchestrators", name]) => start(ctx, req, name, None).await,
        (&Method::POST, ["orchestrators", name, id]) => start(ctx, req, name, Some(id)).await,
        (&Method::GET, ["instances"]) => list(ctx, req).await,
        (&Method::DELETE, ["instances"]) => purge_many(ctx, req).await,
        (_, ["entities", entity @ ..]) => super::entities::handle(ctx, req, entity, rest).await,
        (_, ["instances", id, ..]) => {
            let id = parse_id(id)?;
            let query = query_pairs(&req);
            authorize_instance(ctx, req.headers(), &query, &id)?;
            match (&method, &segments[2..]) {
                (&Method::GET, []) => status(ctx, req.headers(), &query, &id).await,
                (&Method::DELETE, []) => purge(ctx, &id).await,
                (&Method::POST, ["raiseEvent", event]) => raise_event(ctx, req, &id, event).await,
                (&Method::POST, ["terminate"]) => {
                    let reason = param(&query, "reason").unwrap_or_default();
                    changed(&id, ctx.engine.terminate(&id, reason).await?)
                }
                (&Method::POST, ["suspend"]) => changed(&id, ctx.engine.suspend(&id).await?),
                (&Method::POST, ["resume"]) => changed(&id, ctx.engine.resume(&id).await?),
                (&Method::POST, ["restart"]) => restart(ctx, req.headers(), &query, &id).await,
                _ => Err(no_route(&method, rest)),
            }
        }
        _ => Err(no_route(&method, rest)),
    }
}

pub(super) fn no_route(method: &Method, rest: &str) -> ApiError {
    ApiError::not_found(format!(
        "no durable route {method} {}/{rest}; see the README's HTTP API",
        crate::durable::BASE_PATH
    ))
}

/// An instance id from a path, or 400.
pub(super) fn parse_id(id: &str) -> Result<InstanceId, ApiError> {
    InstanceId::parse(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The master key or the instance's own key.
fn authorize_instance(
    ctx: &HttpContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    id: &InstanceId,
) -> Result<(), ApiError> {
    if super::dashboard_session(ctx, headers) {
        return Ok(());
    }
    match presented_key(headers, query) {
        Some(key) if ctx.engine.authorizes(&key, id.as_str()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized(format!(
            "the key is neither the master key nor the key of instance {id}"
        ))),
        None => Err(ApiError::unauthorized(
            "this route needs the master key or the instance's key (the `code` of its status URL)",
        )),
    }
}

/// A JSON body as text: empty is `null`; anything else must parse.
pub(super) async fn json_body(
    ctx: &HttpContext,
    req: Request<Incoming>,
    what: &str,
) -> Result<String, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = ctx.limits.max_body_bytes.min(MAX_INPUT_BYTES);
    let body = read_body(body, &parts.headers, limit, &ctx.limits).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("null".to_owned());
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not UTF-8: {e}")))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| ApiError::bad_request(format!("the {what} is not valid JSON: {e}")))?;
    Ok(text.to_owned())
}

fn base_url(ctx: &HttpContext, headers: &HeaderMap) -> String {
    super::triggers::base_url(headers, ctx)
}

fn plain(response: PlainResponse) -> HttpResponse {
    let mut out = Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

async fn start(
    ctx: &HttpContext,
    req: Request<Incoming>,
    name: &str,
    id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    require_master(ctx, &req)?;
    let id = id.map(parse_id).transpose()?;
    let query = query_pairs(&req);
    let timeout = seconds(&query, "timeout")?;
    // Accepted for compatibility; completion is awaited, not polled.
    seconds(&query, "pollingInterval")?;
    let base = base_url(ctx, req.headers());
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let input = json_body(ctx, req, "input").await?;
    let id = ctx
        .engine
        .start_new_traced(name, id, input, None, traceparent.as_deref())
        .await
        .map_err(|e| match e {
            StartError::UnknownOrchestrator(_) | StartError::InvalidInput(_) => {
                ApiError::bad_request(e.to_string())
            }
            StartError::AlreadyRunning(..) => {
                ApiError::new(StatusCode::CONFLICT, "already-exists", e.to_string())
            }
            StartError::Storage(e) => e.into(),
        })?;
    tracing::debug!(instance = %id, orchestrator = name, "started");
    if let Some(timeout) = timeout {
        let wait = Duration::from_secs_f64(timeout).min(MAX_WAIT);
        if let Some(record) = ctx.engine.wait_for_completion(&id, wait).await?
            && record.status.is_finished()
        {
            return Ok(plain(PlainResponse::output(record.output.as_deref())));
        }
    }
    Ok(plain(PlainResponse::check_status(
        &ctx.engine.management_urls(&base, &id),
    )))
}

async fn status(
    ctx: &HttpContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    id: &InstanceId,
) -> Result<HttpResponse, ApiError> {
    let options = StatusOptions {
        show_input: flag(query, "showInput", true)?,
        show_history: flag(query, "showHistory", false)?,
        show_history_output: flag(query, "showHistoryOutput", false)?,
    };
    let error_on_failure = flag(query, "returnInternalServerErrorOnFailure", false)?;
    let (record, view) = if options.show_history {
        let Some(history) = ctx.engine.history(id).await? else {
            return Err(unknown(id));
        };
        let mut view = status_view(&history.record, options.show_input);
        view["historyEvents"] = json!(history_view(&history, options.show_history_output));
        (history.record, view)
    } else {
        let record = ctx.engine.status(id).await?.ok_or_else(|| unknown(id))?;
        let view = status_view(&record, options.show_input);
        (record, view)
    };
    let code = if !record.status.is_finished() {
        StatusCode::ACCEPTED
    } else if error_on_failure && record.status != perdure_records::RuntimeStatus::Completed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let mut response = json_response(code, &view);
    if code == StatusCode::ACCEPTED {
        let urls = ctx.engine.management_urls(&base_url(ctx, headers), id);
        if let Ok(location) = HeaderValue::from_str(&urls.status_query_get_uri) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    Ok(response)
}

fn unknown(id: &InstanceId) -> ApiError {
    ApiError::not_found(format!("no instance {id}"))
}

/// 202 for a change made; 404 unknown; 410 finished.
fn changed(id: &InstanceId, outcome: ChangeOutcome) -> Result<HttpResponse, ApiError> {
    match outcome {
        ChangeOutcome::Done => Ok(super::error::empty(StatusCode::ACCEPTED)),
        ChangeOutcome::NotFound => Err(unknown(id)),
        ChangeOutcome::Finished(status) => Err(gone(id, status)),
        ChangeOutcome::NotFinished(status) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "failed-precondition",
            format!(
                "instance {id} is {}; terminate it before purging its history",
                status.as_str()
            ),
        )),
    }
}

fn gone(id: &InstanceId, status: perdure_records::RuntimeStatus) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "failed-precondition",
        format!("instance {id} has already finished ({})", status.as_str()),
    )
}

async fn raise_event(
    ctx: &HttpContext,
    req: Request<Incoming>,
    id: &InstanceId,
    event: &str,
) -> Result<HttpResponse, ApiError> {
    perdure_records::check_event_name(event).map_err(ApiError::bad_request)?;
    let data = json_body(ctx, req, "event data").await?;
    match ctx.engine.raise_event(id, event.to_owned(), data).await? {
        EventOutcome::Delivered(_) => Ok(super::error::empty(StatusCode::ACCEPTED)),
        EventOutcome::NotFound => Err(unknown(id)),
        EventOutcome::Finished(status) => Err(gone(id, status)),
    }
}

async fn purge(ctx: &HttpContext, id: &InstanceId) -> Result<HttpResponse, ApiError> {
    changed(id, ctx.engine.purge(id).await?)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "instancesDeleted": 1 }),
    ))
}

async fn restart(
    ctx: &HttpContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    id: &InstanceId,
) -> Result<HttpResponse, ApiError> {
    let new_id = flag(query, "restartWithNewInstanceId", true)?;
    let record: InstanceRecord = ctx.engine.status(id).await?.ok_or_else(|| unknown(id))?;
    let target = if new_id { None } else { Some(id.clone()) };
    let started = ctx
        .engine
        .start_new(&record.name, target, record.input, None)
        .await
        .map_err(|e| match e {
            StartError::AlreadyRunning(..) => ApiError::new(
                StatusCode::CONFLICT,
                "failed-precondition",
                format!("{e}; terminate it first, or restart with restartWithNewInstanceId=true"),
            ),
            StartError::UnknownOrchestrator(_) | StartError::InvalidInput(_) => {
                ApiError::new(StatusCode::CONFLICT, "failed-precondition", e.to_string())
            }
            StartError::Storage(e) => e.into(),
        })?;
    Ok(plain(PlainResponse::check_status(
        &ctx.engine
            .management_urls(&base_url(ctx, headers), &started),
    )))
}

/// The page size a listing asks for with `top`.
pub(super) fn top_param(query: &[(String, String)]) -> Result<usize, ApiError> {
    match param(query, "top") {
        None => Ok(DEFAULT_TOP),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "top must be a number from 1 to {MAX_TOP}, not {v:?}"
                ))
            }),
    }
}

/// Where a listing continues: the `x-ms-continuation-token` header of the
/// previous page's answer.
pub(super) fn continuation_token(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("x-ms-continuation-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Sets the `x-ms-continuation-token` header of a page.
pub(super) fn with_continuation(mut response: HttpResponse, token: Option<String>) -> HttpResponse {
    if let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&token)
    {
        response
            .headers_mut()
            .insert("x-ms-continuation-token", value);
    }
    response
}

async fn list(ctx: &HttpContext, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    require_master(ctx, &req)?;
    let query = query_pairs(&req);
    let filter = instance_filter(&query)?;
    let show_input = flag(&query, "showInput", false)?;
    let top = top_param(&query)?;
    let page = ctx
        .engine
        .list(filter, top, continuation_token(&req))
        .await?;
    let views: Vec<serde_json::Value> = page
        .instances
        .iter()
        .map(|r| status_view(r, show_input))
        .collect();
    Ok(with_continuation(
        json_response(StatusCode::OK, &views),
        page.continuation,
    ))
}

async fn purge_many(ctx: &HttpContext, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    require_master(ctx, &req)?;
    let filter = instance_filter(&query_pairs(&req))?;
    if filter.created_from_ms.is_none() {
        return Err(ApiError::bad_request(
            "a bulk purge needs createdTimeFrom (e.g. createdTimeFrom=1970-01-01T00:00:00Z to purge everything finished)",
        ));
    }
    let deleted = ctx.engine.purge_many(filter).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "instancesDeleted": deleted }),
    ))
}
