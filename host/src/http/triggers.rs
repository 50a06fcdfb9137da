//! HTTP-triggered user functions under `/api/{route}`: routing, auth level,
//! body limit, and the call into the sandbox.
//!
//! The key a caller presents (`x-functions-key` header or `code` query
//! parameter) is stripped from the request the function sees.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{ApiError, HttpContext, HttpResponse, presented_key, query_pairs, read_body};
use crate::model::{AuthLevel, FunctionKind};
use crate::registry::RouteMatch;
use crate::sandbox::bindings::types;
use crate::sandbox::{Caller, InvocationError};

pub(super) async fn handle(
    ctx: &HttpContext,
    req: Request<Incoming>,
    rest: &str,
    route: &mut Cow<'static, str>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = ctx.registry.snapshot();
    let method = req.method().as_str().to_owned();
    let (app, function, params) = match snapshot.route(&method, rest) {
        RouteMatch::Found {
            app,
            function,
            params,
        } => {
            if let Some(trigger) = &function.http {
                *route = Cow::Owned(format!("/api/{}", trigger.route));
            }
            (app, function, params)
        }
        RouteMatch::NotFound => {
            return Err(ApiError::not_found(format!(
                "no function answers /api/{rest}"
            )));
        }
        RouteMatch::MethodNotAllowed { allowed } => {
            return Err(super::method_not_allowed(
                &format!("/api/{rest}"),
                &method,
                &allowed,
            ));
        }
    };
    let level = function
        .http
        .as_ref()
        .map(|t| t.auth_level)
        .unwrap_or(AuthLevel::Admin);
    let mut query = query_pairs(&req);
    let key = presented_key(req.headers(), &query);
    if !ctx.keys.authorizes(key.as_deref(), &function.name, level) {
        let needs = match level {
            AuthLevel::Admin => "the master key",
            _ => "a function key or the master key",
        };
        let message = if key.is_some() {
            format!(
                "the key presented is not valid for {}; it needs {needs}",
                function.name
            )
        } else {
            format!(
                "{} needs {needs} in the x-functions-key header or the code query parameter",
                function.name
            )
        };
        return Err(ApiError::unauthorized(message));
    }
    query.retain(|(k, _)| k != "code");

    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, ctx.limits.max_body_bytes, &ctx.limits).await?;
    // After the body: a slow client does not hold one of the app's slots.
    let _permit = app.try_invocation_permit().map_err(|full| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "resource-exhausted",
            format!(
                "app {} is running as many invocations as its [limits] max_concurrency of {} allows; retry shortly",
                app.name, full.limit
            ),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
    })?;
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "x-functions-key")
        .filter_map(|(name, value)| {
            let value = value.to_str().ok()?;
            if name == header::COOKIE {
                // The dashboard's session is the host's, never a guest's.
                let value = super::dashboard::without_session(value)?;
                return Some((name.as_str().to_owned(), value));
            }
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    let request = types::HttpRequest {
        method,
        path: parts.uri.path().to_owned(),
        query,
        params,
        headers,
        body: body.to_vec(),
        base_url: base_url(&parts.headers, ctx),
    };
    let caller = Caller {
        app: app.name.as_str().into(),
        function: function.name.as_str().into(),
        kind: FunctionKind::Http,
    };
    match ctx
        .registry
        .sandbox()
        .handle_http(&app.code, caller, request)
        .await
    {
        Ok(response) => guest_response(&function.name, response),
        Err(e) => Err(invocation_error(&function.name, e)),
    }
}

/// The URL the client used to reach us, for links in responses. Only a
/// plain host[:port] from the `Host` header is trusted; anything else falls
/// back to the listening address.
pub(super) fn base_url(headers: &http::HeaderMap, ctx: &HttpContext) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    match host {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", ctx.local_addr),
    }
}

fn guest_response(function: &str, response: types::HttpResponse) -> Result<HttpResponse, ApiError> {
    let invalid = |what: String| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid-response",
            format!("function {function} returned an invalid response: {what}"),
        )
    };
    // 1xx answers would change the protocol of the connection under us.
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| !s.is_informational())
        .ok_or_else(|| invalid(format!("status {}", response.status)))?;
    let mut out = Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = status;
    for (name, value) in response.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("header name {name:?}")))?;
        if is_connection_header(&header_name) {
            // Framing and connection management are the server's: a guest
            // that set them could desynchronise the client's connection.
            tracing::debug!(function, header = %header_name, "dropped a connection-level header");
            continue;
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| invalid(format!("value of header {name}")))?;
        out.headers_mut().append(header_name, header_value);
    }
    Ok(out)
}

/// Headers that describe the connection or the message framing rather than
/// the response (RFC 9110 section 7.6.1, plus the framing headers).
fn is_connection_header(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    [
        CONNECTION,
        CONTENT_LENGTH,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ]
    .contains(name)
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// How a failed invocation is answered. Traps, timeouts and memory blow-ups
/// are 500s; a full sandbox is a 503 to retry; an error the function
/// returned keeps its meaning.
pub(super) fn invocation_error(function: &str, e: InvocationError) -> ApiError {
    let details = serde_json::json!({ "function": function });
    match e {
        InvocationError::Trapped(message) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "trapped",
            format!("function {function} trapped: {message}"),
        )
        .with_details(details),
        InvocationError::Timeout(limit) => {
            tracing::warn!(function, ?limit, "invocation timed out");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "timeout",
                format!(
                    "function {function} ran longer than its limit of {limit:?} and was stopped"
                ),
            )
            .with_details(details)
        }
        InvocationError::MemoryExhausted(limit) => {
            tracing::warn!(function, limit, "invocation hit its memory limit");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "resource-exhausted",
                format!(
                    "function {function} exceeded its memory limit of {} MiB and was stopped",
                    limit >> 20
                ),
            )
            .with_details(details)
        }
        InvocationError::OutputTooLarge { .. } => {
            tracing::warn!(function, "{e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "resource-exhausted",
                format!("function {function}: {e}"),
            )
            .with_details(details)
        }
        InvocationError::Overloaded => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "every sandbox slot is busy; retry shortly",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        InvocationError::Guest(error) => {
            let status = match error.code {
                "invalid-argument" => StatusCode::BAD_REQUEST,
                "not-found" => StatusCode::NOT_FOUND,
                "already-exists" | "failed-precondition" => StatusCode::CONFLICT,
                "permission-denied" => StatusCode::FORBIDDEN,
                "resource-exhausted" => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut api = ApiError::new(status, error.code, error.message);
            api.details = error.details;
            api
        }
    }
}
