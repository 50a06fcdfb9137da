//! The entity routes under `/runtime/webhooks/durabletask/entities/`,
//! shaped like Azure Durable Functions' HTTP API. All need the master key.
//!
//! - `POST entities/{name}/{key}?op=NAME` (body: the input, optional JSON):
//!   queues a signal; 202.
//! - `GET entities/{name}/{key}`: the state as JSON; 404 if it has none.
//! - `GET entities/{name}[?top=N&fetchState=true]`: entities with state,
//!   in key order, paged with `x-ms-continuation-token`.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::durable::{continuation_token, json_body, no_route, top_param, with_continuation};
use super::durable_views::{flag, param};
use super::error::json_response;
use super::{ApiError, HttpContext, HttpResponse, query_pairs, require_master};
use crate::durable::entities::SignalError;
use perdure_records::EntityId;

pub(super) async fn handle(
    ctx: &HttpContext,
    req: Request<Incoming>,
    segments: &[&str],
    rest: &str,
) -> Result<HttpResponse, ApiError> {
    require_master(ctx, &req)?;
    let method = req.method().clone();
    match (&method, segments) {
        (&Method::POST, [name, key]) => signal(ctx, req, entity_id(name, key)?).await,
        (&Method::GET, [name, key]) => state(ctx, &entity_id(name, key)?).await,
        (&Method::GET, [name]) => list(ctx, req, name).await,
        _ => Err(no_route(&method, rest)),
    }
}

fn entity_id(name: &str, key: &str) -> Result<EntityId, ApiError> {
    EntityId::parse(name, key).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn signal(
    ctx: &HttpContext,
    req: Request<Incoming>,
    id: EntityId,
) -> Result<HttpResponse, ApiError> {
    let query = query_pairs(&req);
    let operation = param(&query, "op")
        .filter(|op| !op.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("name the operation in the `op` query parameter, e.g. ?op=add")
        })?;
    let input = json_body(ctx, req, "input").await?;
    let input = (input != "null").then_some(input);
    ctx.engine
        .signal_entity(id, operation, input)
        .await
        .map_err(|e| match e {
            SignalError::UnknownEntity(_) => ApiError::not_found(e.to_string()),
            SignalError::UnknownOperation { .. } | SignalError::InvalidInput(_) => {
                ApiError::bad_request(e.to_string())
            }
            SignalError::Storage(e) => e.into(),
        })?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

async fn state(ctx: &HttpContext, id: &EntityId) -> Result<HttpResponse, ApiError> {
    let state = ctx.engine.entity(id).await?.and_then(|record| record.state);
    let Some(state) = state else {
        return Err(ApiError::not_found(format!("entity {id} has no state")));
    };
    Ok(super::error::typed_response(
        StatusCode::OK,
        "application/json",
        state,
    ))
}

async fn list(
    ctx: &HttpContext,
    req: Request<Incoming>,
    name: &str,
) -> Result<HttpResponse, ApiError> {
    if !crate::model::is_plain_name(name) {
        return Err(ApiError::bad_request(format!(
            "entity name {name:?} is not valid: use 1-128 letters, digits, '_', '-' or '.'"
        )));
    }
    let query = query_pairs(&req);
    let fetch_state = flag(&query, "fetchState", false)?;
    let top = top_param(&query)?;
    let page = ctx
        .engine
        .list_entities(name, top, continuation_token(&req))
        .await?;
    let views: Vec<serde_json::Value> = page
        .entities
        .iter()
        .map(|e| {
            let mut view = json!({
                "entityId": { "name": e.id.name, "key": e.id.key },
                "lastOperationTime": crate::time::rfc3339_ms(e.last_op_ms),
            });
            if fetch_state {
                view["state"] = e
                    .state
                    .as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or(serde_json::Value::Null);
            }
            view
        })
        .collect();
    Ok(with_continuation(
        json_response(StatusCode::OK, &views),
        page.continuation,
    ))
}
