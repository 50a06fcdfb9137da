//! The admin API (master key only): loaded apps, health, function keys,
//! and moving instances to their app's current version.

use std::collections::BTreeMap;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::error::{empty, json_response};
use super::{ApiError, HttpContext, HttpResponse, read_body, require_master};
use serde_json::{Value, json};

use crate::durable::{UpgradeError, UpgradeOutcome};
use crate::keys::KeyError;
use crate::metrics::InvocationCounts;
use crate::model::FunctionDef;
use crate::sandbox::CacheOutcome;
use crate::time::rfc3339;

pub(super) async fn handle(
    ctx: &HttpContext,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    require_master(ctx, &req)?;
    let path = req.uri().path().trim_end_matches('/').to_owned();
    // Decoded as the durable routes' are, so an id reads the same in both.
    let segments = super::path_segments(path.split('/').skip(2));
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (method, segments.as_slice()) {
        (Method::GET, ["health"]) => Ok(health(ctx)),
        (Method::GET, ["functions"]) => Ok(functions(ctx)),
        (Method::GET, ["keys"]) => Ok(json_response(StatusCode::OK, &ctx.keys.list().await?)),
        (Method::POST, ["keys"]) => create_key(ctx, req).await,
        (Method::DELETE, ["keys", id]) => {
            if ctx.keys.revoke(id).await? {
                Ok(empty(StatusCode::NO_CONTENT))
            } else {
                Err(ApiError::not_found(format!("no function key with id {id}")))
            }
        }
        (Method::PUT, ["apps", name]) => deploy_component(ctx, name, req).await,
        (Method::PUT, ["apps", name, "config"]) => deploy_config(ctx, name, req).await,
        (Method::DELETE, ["apps", name]) => match ctx.registry.remove(name).await {
            Ok(true) => Ok(empty(StatusCode::NO_CONTENT)),
            Ok(false) => Err(ApiError::not_found(format!("no app {name} is deployed"))),
            Err(e) => Err(deploy_error(e)),
        },
        (Method::GET, ["stats"]) => super::observe::stats(ctx).await,
        (Method::GET, ["cluster"]) => cluster(ctx).await,
        (Method::GET, ["instances", id, "timeline"]) => super::observe::timeline(ctx, id).await,
        (Method::GET, ["instances", id, "logs"]) => {
            let query = super::query_pairs(&req);
            super::observe::logs(ctx, id, &query).await
        }
        (Method::POST, ["instances", id, "upgrade"]) => upgrade_one(ctx, id).await,
        (Method::POST, ["orchestrators", name, "upgrade"]) => upgrade_all(ctx, name).await,
        _ => Err(ApiError::not_found(format!("no admin route {path}"))),
    }
}

/// `GET /admin/cluster`: the hosts sharing the database, their partitions
/// and leased activities. On a database of its own (SQLite) the host is
/// alone: `shared` is false and the lists are empty.
async fn cluster(ctx: &HttpContext) -> Result<HttpResponse, ApiError> {
    let Some(status) = ctx.engine.cluster().await? else {
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "shared": false, "hosts": [], "partitions": [] }),
        ));
    };
    let time = crate::time::rfc3339_ms;
    let hosts: Vec<Value> = status
        .hosts
        .iter()
        .map(|h| {
            json!({
                "id": h.id,
                "address": h.address,
                "startedTime": time(h.started_ms),
                "lastHeartbeat": time(h.heartbeat_ms),
                "alive": h.alive,
                "partitions": h.partitions,
                "activitiesLeased": h.work_items,
                "thisHost": h.id == status.host_id,
            })
        })
        .collect();
    let partitions: Vec<Value> = status
        .partitions
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "owner": p.owner,
                "epoch": p.epoch,
                "leaseUntil": p.lease_until_ms.map(time),
                "expired": p.lease_until_ms.is_none_or(|until| until <= status.now_ms),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "shared": true,
            "thisHost": status.host_id,
            "leaseMs": status.lease_ms,
            "databaseTime": time(status.now_ms),
            "hosts": hosts,
            "partitions": partitions,
        }),
    ))
}

fn health(ctx: &HttpContext) -> HttpResponse {
    let snapshot = ctx.registry.snapshot();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ready",
            "apps": snapshot.apps.len(),
            "failedApps": snapshot.failures.len(),
        }),
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppView<'a> {
    name: &'a str,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loaded_time: Option<String>,
    /// `hit` if the compiled code came from the cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    compiled_code: Option<CacheOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_ms: Option<f64>,
    functions: &'a [FunctionDef],
    /// Invocations of each function since the host started, by outcome.
    invocations: BTreeMap<&'a str, InvocationCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<ErrorView<'a>>,
}

#[derive(Serialize)]
struct ErrorView<'a> {
    message: &'a str,
    time: String,
}

fn functions(ctx: &HttpContext) -> HttpResponse {
    let snapshot = ctx.registry.snapshot();
    let mut names: Vec<&String> = snapshot
        .apps
        .keys()
        .chain(snapshot.failures.keys())
        .collect();
    names.sort();
    names.dedup();
    let apps: Vec<AppView<'_>> = names
        .into_iter()
        .map(|name| {
            let app = snapshot.apps.get(name);
            let failure = snapshot.failures.get(name);
            let functions = app
                .map(|a| a.description.functions.as_slice())
                .unwrap_or(&[]);
            let invocations = functions
                .iter()
                .map(|f| {
                    let counts = ctx.metrics.invocation_counts(name, &f.name, f.kind);
                    (f.name.as_str(), counts)
                })
                .collect();
            AppView {
                name,
                file: app
                    .map(|a| &a.path)
                    .or(failure.map(|f| &f.path))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                digest: app.map(|a| a.digest.to_string()),
                loaded_time: app.map(|a| rfc3339(a.loaded_at)),
                compiled_code: app.map(|a| a.cache),
                load_ms: app.map(|a| a.load_ms),
                functions,
                invocations,
                last_error: failure.map(|f| ErrorView {
                    message: &f.error,
                    time: rfc3339(f.at),
                }),
            }
        })
        .collect();
    json_response(StatusCode::OK, &serde_json::json!({ "apps": apps }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    #[serde(default)]
    function: Option<String>,
}

#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    info: crate::keys::KeyInfo,
    /// Shown once; only its hash is stored.
    key: String,
}

/// Largest `NAME.toml` accepted.
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// `PUT /admin/apps/{name}`: the body is the component.
async fn deploy_component(
    ctx: &HttpContext,
    name: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = crate::registry::MAX_COMPONENT_BYTES as usize;
    let body = read_body(body, &parts.headers, limit, &ctx.limits).await?;
    let outcome = ctx.registry.deploy(name, Some(body.to_vec()), None).await;
    deployed(ctx, name, outcome)
}

/// `PUT /admin/apps/{name}/config`: the body is the app's `NAME.toml`; an
/// empty body removes it.
async fn deploy_config(
    ctx: &HttpContext,
    name: &str,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, MAX_CONFIG_BYTES, &ctx.limits).await?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the configuration is not UTF-8 text"))?;
    let config = (!text.trim().is_empty()).then_some(text);
    let outcome = ctx.registry.deploy(name, None, Some(config)).await;
    deployed(ctx, name, outcome)
}

/// The answer to a deployment: the app as loaded, or why nothing changed.
fn deployed(
    ctx: &HttpContext,
    name: &str,
    outcome: Result<crate::registry::SyncOutcome, crate::registry::DeployError>,
) -> Result<HttpResponse, ApiError> {
    outcome.map_err(deploy_error)?;
    let snapshot = ctx.registry.snapshot();
    let app = snapshot
        .apps
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("app {name} is not loaded")))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "name": name,
            "digest": app.digest.to_string(),
            "functions": app.description.functions.iter().map(|f| &f.name).collect::<Vec<_>>(),
        }),
    ))
}

fn deploy_error(e: crate::registry::DeployError) -> ApiError {
    use crate::registry::DeployError;
    match e {
        DeployError::File(message) if message.starts_with("no app ") => {
            ApiError::not_found(message)
        }
        DeployError::File(message) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        }
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-app",
            format!("not deployed, the previous version (if any) keeps serving: {other}"),
        ),
    }
}

async fn create_key(ctx: &HttpContext, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, 64 * 1024, &ctx.limits).await?;
    let new: NewKey = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "expected a JSON body like {{\"name\":\"ci\",\"function\":\"GreetFunction\"}} (function optional): {e}"
        ))
    })?;
    match ctx.keys.create(&new.name, new.function).await {
        Ok((info, key)) => Ok(json_response(
            StatusCode::CREATED,
            &CreatedKey { info, key },
        )),
        Err(e @ (KeyError::BadName | KeyError::BadFunction)) => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(KeyError::Storage(e)) => Err(e.into()),
    }
}

/// The outcome of one upgrade as JSON, and the status it is answered with.
fn upgrade_view(id: &str, result: Result<UpgradeOutcome, UpgradeError>) -> (StatusCode, Value) {
    match result {
        Ok(UpgradeOutcome::Upgraded { from, to }) => (
            StatusCode::OK,
            json!({ "instanceId": id, "upgraded": true, "fromDigest": from, "toDigest": to }),
        ),
        Ok(UpgradeOutcome::AlreadyCurrent { digest }) => (
            StatusCode::OK,
            json!({ "instanceId": id, "upgraded": false, "digest": digest,
                    "reason": "the instance already runs on the current version" }),
        ),
        Err(e) => {
            let (status, code, details) = match &e {
                UpgradeError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", None),
                UpgradeError::Finished(..) => (StatusCode::GONE, "failed-precondition", None),
                UpgradeError::Nondeterminism { seq, recorded, new } => (
                    StatusCode::CONFLICT,
                    "nondeterminism",
                    Some(json!({ "seq": seq, "recorded": recorded, "new": new })),
                ),
                UpgradeError::NoCurrentVersion(_) | UpgradeError::Failed(_) => {
                    (StatusCode::CONFLICT, "failed-precondition", None)
                }
                UpgradeError::Interrupted | UpgradeError::Storage(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None)
                }
            };
            let mut error = json!({ "code": code, "message": e.to_string() });
            if let Some(details) = details {
                error["details"] = details;
            }
            (
                status,
                json!({ "instanceId": id, "upgraded": false, "error": error }),
            )
        }
    }
}

/// `POST /admin/instances/{id}/upgrade`.
async fn upgrade_one(ctx: &HttpContext, id: &str) -> Result<HttpResponse, ApiError> {
    let instance = super::durable::parse_id(id)?;
    let (status, view) = upgrade_view(id, ctx.engine.upgrade(&instance).await);
    Ok(json_response(status, &view))
}

/// `POST /admin/orchestrators/{name}/upgrade`: every unfinished instance
/// of the orchestrator, one by one; each is upgraded or refused on its own.
async fn upgrade_all(ctx: &HttpContext, name: &str) -> Result<HttpResponse, ApiError> {
    if !crate::model::is_plain_name(name) {
        return Err(ApiError::bad_request(format!(
            "{name:?} is not an orchestrator name: 1-128 letters, digits, '_', '-' or '.'"
        )));
    }
    let ids = ctx.engine.unfinished_of(name).await?;
    let mut upgraded = Vec::new();
    let mut unchanged = Vec::new();
    let mut refused = Vec::new();
    for id in ids {
        let result = ctx.engine.upgrade(&id).await;
        let outcome = result.clone();
        let (_, view) = upgrade_view(id.as_str(), result);
        match outcome {
            Ok(UpgradeOutcome::Upgraded { .. }) => upgraded.push(view),
            Ok(UpgradeOutcome::AlreadyCurrent { .. }) => unchanged.push(view),
            // Finished meanwhile: nothing to move.
            Err(UpgradeError::Finished(..) | UpgradeError::NotFound(_)) => {}
            Err(_) => refused.push(view),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "orchestrator": name, "upgraded": upgraded, "unchanged": unchanged, "refused": refused }),
    ))
}
