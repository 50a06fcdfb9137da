//! The HTTP server: user functions under `/api/`, the durable management
//! API under `/runtime/webhooks/durabletask/`, the admin API under
//! `/admin/`.
//!
//! Invariants: only this module knows hyper; every error becomes a JSON
//! response in [`error::ApiError::into_response`]; request bodies are read
//! through a size limit; slow clients are cut off by a header timeout.

mod admin;
mod api_routes;
mod dashboard;
mod durable;
mod durable_views;
mod entities;
mod error;
mod metrics;
mod observe;
#[cfg(test)]
mod properties;
mod triggers;

/// The HTTP layer's parsers, for the fuzz targets (`fuzzing` feature).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing {
    /// Looks a request up in the host's route table, decodes its path's
    /// segments and a `Cookie` header without the session.
    pub(crate) fn request_line(method: &str, path: &str, cookie: &str) {
        let _ = super::api_routes::lookup(method, path);
        let _ = super::path_segments(path.split('/'));
        let _ = super::dashboard::without_session(cookie);
    }
}

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::keys::Keys;
use crate::registry::Registry;
pub(crate) use error::{ApiError, HttpResponse};

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers.
    pub header_timeout: Duration,
    /// Time a client has to send its request body; a slow client gets 408
    /// instead of holding the connection.
    pub body_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Connections served at once; one past this gets a 503 with
    /// `Retry-After` and is closed, so connection state stays bounded.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

/// Which of the host's listeners a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// User functions (`/api/`) and the host's API, with keys.
    Api,
    /// The dashboard and the host's API, which also take its session.
    /// User functions are not served here, so no page they serve shares
    /// the dashboard's origin.
    Dashboard,
}

/// What every request handler can reach.
pub(crate) struct HttpContext {
    pub(crate) registry: Arc<Registry>,
    pub(crate) engine: Arc<crate::durable::Engine>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) limits: HttpLimits,
    pub(crate) local_addr: SocketAddr,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// `/metrics` needs no key.
    pub(crate) metrics_open: bool,
    pub(crate) listener: Listener,
    /// Where the dashboard is served, if it is.
    pub(crate) dashboard_addr: Option<SocketAddr>,
    /// The dashboard's failed logins.
    pub(crate) login_failures: dashboard::LoginFailures,
}

impl HttpContext {
    /// The same context for the dashboard's listener at `addr`.
    pub(crate) fn for_dashboard(&self, addr: SocketAddr) -> Self {
        Self {
            registry: self.registry.clone(),
            engine: self.engine.clone(),
            keys: self.keys.clone(),
            limits: self.limits.clone(),
            local_addr: addr,
            metrics: self.metrics.clone(),
            metrics_open: self.metrics_open,
            listener: Listener::Dashboard,
            dashboard_addr: Some(addr),
            login_failures: dashboard::LoginFailures::default(),
        }
    }
}

/// Accepts connections until `shutdown` turns true, then gives in-flight
/// requests [`HttpLimits::shutdown_grace`] to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    ctx: Arc<HttpContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.header_timeout);
    let mut refusing = builder.clone();
    refusing.keep_alive(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(
        ctx.limits.max_connections.max(1),
    ));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Over the limit: one answer, then the connection closes.
                    let conn = refusing.serve_connection(TokioIo::new(stream), service_fn(refuse));
                    tokio::spawn(graceful.watch(conn));
                    continue;
                };
                let ctx = ctx.clone();
                let service = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(ctx, req).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended: {e}");
                    }
                    drop(slot);
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let grace = ctx.limits.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {grace:?}; closing them");
    }
}

/// The answer on a connection past [`HttpLimits::max_connections`].
async fn refuse(_req: Request<Incoming>) -> Result<HttpResponse, Infallible> {
    Ok(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "the host is serving as many connections as it allows; retry shortly",
    )
    .with_header(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    )
    .into_response())
}

/// The `route` label of requests no route takes (bounded: never the path).
const UNMATCHED: &str = "unmatched";

async fn handle(ctx: Arc<HttpContext>, req: Request<Incoming>) -> HttpResponse {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut route = Cow::Borrowed(UNMATCHED);
    let result = if let Some(rest) = path.strip_prefix("/api/") {
        if ctx.listener == Listener::Dashboard {
            Err(ApiError::not_found(format!(
                "user functions are not served on the dashboard's address; call /api/{rest} on the host's API address"
            )))
        } else {
            let rest = rest.to_owned();
            triggers::handle(&ctx, req, &rest, &mut route).await
        }
    } else if let Err(refused) = api_route(&method, &path, &mut route) {
        Err(refused)
    } else if path == "/openapi.json" {
        Ok(openapi())
    } else if path == "/metrics" {
        metrics::handle(&ctx, &req).await
    } else if let Some(page) = dashboard_route(&path) {
        match (ctx.listener, ctx.dashboard_addr) {
            (Listener::Api, Some(at)) => Err(ApiError::not_found(format!(
                "the dashboard is served on its own address: http://{at}{path}"
            ))),
            (Listener::Api, None) => Err(ApiError::not_found(
                "this host serves no dashboard (--dashboard-listen off)",
            )),
            (Listener::Dashboard, _) => match page {
                "" => Ok(dashboard::home(&ctx, &req)),
                "/login" => dashboard::login(&ctx, req).await,
                "/logout" => Ok(dashboard::logout(&ctx, &req)),
                file => dashboard::asset(file.trim_start_matches("/dashboard/")),
            },
        }
    } else if let Some(rest) = path
        .strip_prefix(crate::durable::BASE_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        let rest = rest.to_owned();
        durable::handle(&ctx, req, &rest).await
    } else if path.starts_with("/admin/") {
        admin::handle(&ctx, req).await
    } else {
        // Not reached while the table and the dispatch above agree.
        Err(no_route(&path))
    };
    let mut response = result.unwrap_or_else(ApiError::into_response);
    if !path.starts_with("/api/") {
        secure_headers(response.headers_mut());
    }
    ctx.metrics.http_request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The dashboard's part of a path (`""` for the page at `/`), if it is
/// one of the dashboard's.
fn dashboard_route(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    (matches!(trimmed, "" | "/login" | "/logout") || trimmed.starts_with("/dashboard/"))
        .then_some(trimmed)
}

/// Headers on every response of the host's own routes: a content security
/// policy (the dashboard's pages may load this origin's scripts and
/// styles; anything else may load nothing), no MIME sniffing, no framing,
/// no referrer.
fn secure_headers(headers: &mut HeaderMap) {
    let html = headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let policy = if html {
        dashboard::PAGE_POLICY
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    let fixed = [
        ("content-security-policy", policy),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ];
    for (name, value) in fixed {
        headers
            .entry(name)
            .or_insert(http::HeaderValue::from_static(value));
    }
}

/// Refuses a request outside `/api/` that no route of the host's API
/// takes (see `api_routes.rs`); sets `route` to the template that takes
/// it.
fn api_route(
    method: &http::Method,
    path: &str,
    route: &mut Cow<'static, str>,
) -> Result<(), ApiError> {
    match api_routes::lookup(method.as_str(), path) {
        api_routes::Lookup::Found(template) => {
            *route = Cow::Borrowed(template);
            Ok(())
        }
        api_routes::Lookup::NotFound => Err(no_route(path)),
        api_routes::Lookup::MethodNotAllowed(allowed) => {
            Err(method_not_allowed(path, method.as_str(), &allowed))
        }
    }
}

/// 404 for a path outside `/api/` that the host's API does not have.
fn no_route(path: &str) -> ApiError {
    ApiError::not_found(format!(
        "no route {path}; user functions live under /api/, the host's API is described at /openapi.json"
    ))
}

/// 405 for `path`, with the methods it takes in `Allow`.
pub(crate) fn method_not_allowed(
    path: &str,
    method: &str,
    allowed: &[impl AsRef<str>],
) -> ApiError {
    let allow = allowed
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    let mut error = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{path} does not accept {method}; it accepts {allow}"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&allow) {
        error = error.with_header(http::header::ALLOW, value);
    }
    error
}

/// The OpenAPI document of the host's API; public (it describes no app).
fn openapi() -> HttpResponse {
    error::typed_response(
        StatusCode::OK,
        "application/json",
        Bytes::from_static(api_routes::OPENAPI.as_bytes()),
    )
}

/// Percent-decoded path segments (`%2F` in an id stays inside it).
pub(crate) fn path_segments<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<String> {
    raw.map(|s| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    })
    .collect()
}

/// The key a request presents: the `x-functions-key` header, or the `code`
/// query parameter. An empty key is no key.
pub(crate) fn presented_key(headers: &HeaderMap, query: &[(String, String)]) -> Option<String> {
    headers
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.clone())
        })
        .filter(|k| !k.is_empty())
}

/// Decoded query parameters.
pub(crate) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// Reads a request body, refusing more than `limit` bytes with 413 and a
/// body slower than `limits.body_timeout` with 408.
pub(crate) async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    limits: &HttpLimits,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(limits.body_timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                format!(
                    "the request body did not arrive within {:?}",
                    limits.body_timeout
                ),
            )
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        ))),
    }
}

/// True if the request is the dashboard's, with a live session: as good
/// as the master key.
pub(crate) fn dashboard_session(ctx: &HttpContext, headers: &HeaderMap) -> bool {
    dashboard::has_session(ctx, headers, true)
}

/// Requires the master key (or the dashboard's session).
pub(crate) fn require_master(ctx: &HttpContext, req: &Request<Incoming>) -> Result<(), ApiError> {
    if dashboard_session(ctx, req.headers()) {
        return Ok(());
    }
    let query = query_pairs(req);
    match presented_key(req.headers(), &query) {
        Some(key) if ctx.keys.is_master(&key) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the key is not the master key")),
        None => Err(ApiError::unauthorized(
            "this route needs the master key in the x-functions-key header or the code query parameter",
        )),
    }
}
