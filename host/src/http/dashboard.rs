//! The dashboard: a login form at `/`, then a single-page app (embedded
//! HTML, CSS and JavaScript, no build step) that reads the host's own API.
//!
//! Invariants:
//! - The master key is only ever sent in a POST body (the login form) and
//!   is never rendered or put in a URL. A login sets a session cookie
//!   (`HttpOnly`, `SameSite=Strict`, 12 hours) holding an expiry and its
//!   HMAC, bound to the master key (see `Keys::session_token`).
//! - The cookie authenticates API requests only together with the
//!   `x-perdure-dashboard` header, which a cross-site form or image cannot
//!   send: the cookie alone opens the dashboard's page, nothing else.
//! - Every page is served with a content security policy that allows only
//!   this origin's scripts and styles (no inline code, no CDN).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;

use super::error::typed_response;
use super::{ApiError, HttpContext, HttpResponse, read_body};
use crate::time::now_ms;

/// The session cookie's name.
const COOKIE: &str = "perdure_session";
/// The header that makes the cookie count for API requests.
pub(super) const DASHBOARD_HEADER: &str = "x-perdure-dashboard";
/// How long a login lasts.
const SESSION: Duration = Duration::from_secs(12 * 60 * 60);

/// The policy of the dashboard's pages.
pub(super) const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const INDEX: &str = include_str!("../../dashboard/index.html");
const LOGIN: &str = include_str!("../../dashboard/login.html");

/// The embedded assets, by file name under `/dashboard/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/app.js"),
    ),
    (
        "timeline.js",
        "text/javascript; charset=utf-8",
        include_str!("../../dashboard/timeline.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../dashboard/app.css"),
    ),
];

/// Failed logins answered per [`FAILURE_WINDOW`], from anyone; past them,
/// wrong keys get 429 until the window ends (the right key still logs in,
/// so the operator cannot be locked out).
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Counts failed logins in the current window.
#[derive(Debug, Default)]
pub(crate) struct LoginFailures(std::sync::Mutex<Option<(std::time::Instant, u32)>>);

impl LoginFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, u32)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a failed login; false once the window's failures are used
    /// up (counting and checking are one step).
    fn failed(&self) -> bool {
        let mut window = self.lock();
        match window.as_mut() {
            Some((since, failures)) if since.elapsed() < FAILURE_WINDOW => {
                *failures = failures.saturating_add(1);
                *failures <= MAX_FAILURES
            }
            _ => {
                *window = Some((std::time::Instant::now(), 1));
                true
            }
        }
    }
}

/// Where the login form's message goes.
const LOGIN_MESSAGE: &str = "<!--message-->";

/// True if the request carries a live session cookie; for API requests
/// (`api`), only with the dashboard header as well.
pub(super) fn has_session(ctx: &HttpContext, headers: &HeaderMap, api: bool) -> bool {
    if ctx.listener != super::Listener::Dashboard {
        // Only the dashboard's own origin honours its session.
        return false;
    }
    if api && !headers.contains_key(DASHBOARD_HEADER) {
        return false;
    }
    session_cookie(headers).is_some_and(|token| ctx.keys.is_session(token, now_ms()))
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// A `Cookie` header's value without the session cookie; `None` if
/// nothing else is left.
pub(super) fn without_session(cookies: &str) -> Option<String> {
    let kept: Vec<&str> = cookies
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name) != COOKIE)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

fn page(status: StatusCode, html: String) -> HttpResponse {
    let mut response = typed_response(status, "text/html; charset=utf-8", html);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn login_page(status: StatusCode, message: &str) -> HttpResponse {
    page(status, LOGIN.replace(LOGIN_MESSAGE, message))
}

fn redirect_home(cookie: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /`: the dashboard with a session, else the login form.
pub(super) fn home(ctx: &HttpContext, req: &Request<Incoming>) -> HttpResponse {
    if has_session(ctx, req.headers(), false) {
        page(StatusCode::OK, INDEX.to_owned())
    } else {
        login_page(StatusCode::OK, "")
    }
}

/// `POST /login`: a form with the master key; sets the session cookie.
pub(super) async fn login(
    ctx: &HttpContext,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let (parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, 4096, &ctx.limits).await?;
    let key = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "key")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if key.is_empty() || !ctx.keys.is_master(&key) {
        // The right key always passes, so nobody can lock the operator
        // out; past the window's failures, wrong ones get 429.
        if !ctx.login_failures.failed() {
            return Ok(login_page(
                StatusCode::TOO_MANY_REQUESTS,
                "<p class=\"error\" role=\"alert\">Too many failed logins; try again in a minute.</p>",
            ));
        }
        tracing::info!("dashboard login refused: not the master key");
        return Ok(login_page(
            StatusCode::UNAUTHORIZED,
            "<p class=\"error\" role=\"alert\">That is not the master key.</p>",
        ));
    }
    let expires = now_ms().saturating_add(SESSION.as_millis() as i64);
    let token = ctx.keys.session_token(expires);
    Ok(redirect_home(format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        SESSION.as_secs()
    )))
}

/// `POST /logout`: ends the sessions (when it comes with one) and clears
/// the cookie.
pub(super) fn logout(ctx: &HttpContext, req: &Request<Incoming>) -> HttpResponse {
    if has_session(ctx, req.headers(), false) {
        ctx.keys.end_sessions();
    }
    redirect_home(format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    ))
}

/// `GET /dashboard/{file}`: an embedded asset (code only, no data: served
/// without a session, so the login form has its styles).
pub(super) fn asset(file: &str) -> Result<HttpResponse, ApiError> {
    let (_, content_type, text) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found(format!("no dashboard asset {file}")))?;
    let mut response = typed_response(
        StatusCode::OK,
        content_type,
        Bytes::from_static(text.as_bytes()),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
