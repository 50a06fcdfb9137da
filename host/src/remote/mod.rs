//! `perdure`'s client commands (`start`, `status`, `list`, `raise`,
//! `entity`, `apps`, ...): they drive a running host over its public HTTP
//! API and nothing else, so they work against any host they can reach.
//!
//! This file is the HTTP side: [`Remote`] sends one request at a time and
//! turns every answer that is not a success into a [`RemoteError`], which
//! knows its exit code. The key travels only in the `x-functions-key`
//! header: it is never put in a URL, printed or logged. `args.rs` holds the
//! command line, `commands.rs` and its siblings what each command does,
//! `table.rs` the aligned text output, `exit.rs` the exit codes.

pub mod args;
mod commands;
mod entities;
pub mod exit;
mod instances;
mod table;
mod wait;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use args::Paging;
pub use args::RemoteCommand;
pub use commands::run;

/// The header the key is sent in (the host also reads `code=` from the
/// query, which this client never uses: URLs end up in logs).
const KEY_HEADER: &str = "x-functions-key";

/// Where a listing continues, in answers and in the next request.
const CONTINUATION_HEADER: &str = "x-ms-continuation-token";

/// How long a connection may take to open: a host that does not answer a
/// SYN is as unreachable as one that refuses it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request may take. The API's requests are short (status
/// reads, queued changes); waiting for an instance is a loop of them.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer read. The host bounds what it stores (outputs at
/// `max_output_bytes`, pages at 1000 rows); this bounds what a wrong URL
/// can make the client buffer.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The largest page the host's list routes give (their `top` limit).
const MAX_PAGE: usize = 1000;

/// A connection to one host's API.
pub struct Remote {
    /// `scheme://authority[/prefix]`, without a trailing slash.
    base: String,
    /// Never shown: `Debug` leaves it out.
    key: Option<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// Why a request got no successful answer. Each variant names what the
/// user can do about it; [`RemoteError::exit_code`] maps it for scripts.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// `--url` is not `http(s)://host[:port][/prefix]`.
    #[error("--url {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    /// The TLS client could not be built (no usable protocol versions).
    #[error("cannot set up TLS for https: {0}")]
    Tls(String),
    /// No answer: refused, unknown name, failed handshake, timed out.
    #[error("cannot reach the host at {url}: {message}")]
    Unreachable { url: String, message: String },
    /// The host answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiFailure),
    /// A success answer that is not what the API documents (a wrong
    /// `--url` that reaches some other server, usually).
    #[error("the host's answer to {path} is not what the API documents: {what}")]
    Unexpected { path: String, what: String },
}

impl RemoteError {
    /// The exit code a script sees for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadUrl { .. } => exit::USAGE,
            Self::Api(failure) => exit::for_http_status(failure.status),
            Self::Tls(_) | Self::Unreachable { .. } | Self::Unexpected { .. } => exit::ERROR,
        }
    }
}

/// An error answer: the host's `{"error": {"code", "message", "details"?}}`,
/// or the status and the start of the body when it is not in that shape.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
pub struct ApiFailure {
    pub status: u16,
    pub code: Option<String>,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiFailure {
    fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        let error = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").cloned());
        let message = error
            .as_ref()
            .and_then(|e| e["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(200).collect();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text
                }
            });
        Self {
            status: status.as_u16(),
            code: error
                .as_ref()
                .and_then(|e| e["code"].as_str())
                .map(str::to_owned),
            message,
            details: error.and_then(|e| e.get("details").cloned()),
        }
    }
}

/// A successful answer, fully read.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The path it answered, for messages.
    path: String,
    continuation: Option<String>,
    body: Bytes,
}

impl Answer {
    /// The body as JSON; an empty body (202 Accepted) is `null`.
    pub(crate) fn json(&self) -> Result<Value, RemoteError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| RemoteError::Unexpected {
            path: self.path.clone(),
            what: format!("the body is not JSON ({e})"),
        })
    }

    /// The body as the API returned it, for `--json`: exactly one JSON
    /// document (`null` for an empty body).
    pub(crate) fn raw_json(&self) -> Result<String, RemoteError> {
        self.json()?;
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        Ok(if text.is_empty() { "null" } else { text }.to_owned())
    }

    pub(crate) fn unexpected(&self, what: impl Into<String>) -> RemoteError {
        RemoteError::Unexpected {
            path: self.path.clone(),
            what: what.into(),
        }
    }
}

/// Every item of a paged listing, up to a limit.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) items: Vec<Value>,
    /// True if the host has more past the limit.
    pub(crate) more: bool,
}

impl Remote {
    /// A client for the host at `url`, sending `key` (if any, and not
    /// empty) with every request. Makes no connection yet.
    pub fn new(url: &str, key: Option<String>) -> Result<Self, RemoteError> {
        let base = base_url(url)?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // The TLS layer takes https URLs; plain http passes through.
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            base,
            key: key.filter(|k| !k.is_empty()),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends `method path` (`path` starts with `/` and is already
    /// percent-encoded) with `body` as JSON, and `continuation` as the
    /// listing's continuation token. Any status but 2xx is an error.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        continuation: Option<&str>,
    ) -> Result<Answer, RemoteError> {
        let url = format!("{}{path}", self.base);
        let uri: Uri = url.parse().map_err(|e| RemoteError::BadUrl {
            url: url.clone(),
            reason: format!("{e}"),
        })?;
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = &self.key {
            request = request.header(KEY_HEADER, key);
        }
        if let Some(token) = continuation {
            request = request.header(CONTINUATION_HEADER, token);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            // Only a key or token that is not a valid header value gets here.
            .map_err(|e| RemoteError::BadUrl {
                url: url.clone(),
                reason: format!("the request cannot be sent: {e}"),
            })?;
        let unreachable = |message: String| RemoteError::Unreachable {
            url: self.base.clone(),
            message,
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| unreachable(chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, RemoteError>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
            })??;
        if !parts.status.is_success() {
            return Err(ApiFailure::from_answer(parts.status, &body).into());
        }
        let continuation = parts
            .headers
            .get(CONTINUATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        Ok(Answer {
            path: path.to_owned(),
            continuation,
            body,
        })
    }

    /// Every item of the listing at `path` (whose answers are JSON arrays
    /// paged with a continuation token), following the token until the end
    /// or until `paging.top` items, asking for at most `paging.page_size`
    /// (up to the host's 1000) at a time. `query` is the encoded filter,
    /// without `top`.
    pub(crate) async fn list_all(
        &self,
        path: &str,
        query: &str,
        paging: Paging,
    ) -> Result<Listing, RemoteError> {
        let limit = paging.top.map(|n| n as usize);
        let page_size = (paging.page_size as usize).clamp(1, MAX_PAGE);
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let wanted = limit.map_or(page_size, |l| l.saturating_sub(items.len()));
            let top = wanted.clamp(1, page_size);
            let separator = if query.is_empty() { "" } else { "&" };
            let page_path = format!("{path}?{query}{separator}top={top}");
            let answer = self
                .send(Method::GET, &page_path, None, token.as_deref())
                .await?;
            let Value::Array(page) = answer.json()? else {
                return Err(answer.unexpected("a listing that is not a JSON array"));
            };
            let empty = page.is_empty();
            items.extend(page);
            token = answer.continuation;
            let full = limit.is_some_and(|l| items.len() >= l);
            // An empty page that still continues would loop forever.
            if token.is_none() || full || empty {
                break;
            }
        }
        if let Some(limit) = limit {
            items.truncate(limit);
        }
        Ok(Listing {
            items,
            more: token.is_some(),
        })
    }
}

/// `url` checked and without its trailing slash.
fn base_url(url: &str) -> Result<String, RemoteError> {
    let bad = |reason: &str| RemoteError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("it is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad("use http://HOST:PORT or https://HOST:PORT"));
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("it names no host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad(
            "it holds credentials; give the key with --key or PERDURE_MASTER_KEY",
        ));
    }
    if uri.query().is_some() {
        return Err(bad("it has a query; give only the host and a path prefix"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Servers are verified against the Mozilla roots built in (webpki-roots),
/// as the host's outbound client does, so the client trusts the same roots
/// on every machine.
fn tls_config() -> Result<rustls::ClientConfig, RemoteError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RemoteError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An error and its sources, `outer: inner: ...` (hyper's own message is
/// only "client error (Connect)").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            base_url("http://127.0.0.1:7071/").ok().as_deref(),
            Some("http://127.0.0.1:7071")
        );
        assert_eq!(
            base_url("https://h/prefix").ok().as_deref(),
            Some("https://h/prefix")
        );
        for bad in [
            "127.0.0.1:7071",
            "ftp://h",
            "http://user:key@h",
            "http://h/?code=k",
            "",
        ] {
            assert!(
                matches!(base_url(bad), Err(RemoteError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_answers_keep_the_hosts_message() {
        let body = br#"{"error":{"code":"not-found","message":"no instance x"}}"#;
        let failure = ApiFailure::from_answer(StatusCode::NOT_FOUND, body);
        assert_eq!(failure.to_string(), "no instance x (HTTP 404, not-found)");
        assert_eq!(RemoteError::Api(failure).exit_code(), exit::NOT_FOUND);
        let odd = ApiFailure::from_answer(StatusCode::BAD_GATEWAY, b"  <html>oops</html>");
        assert_eq!(odd.to_string(), "<html>oops</html> (HTTP 502)");
        let empty = ApiFailure::from_answer(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(empty.message, "Unauthorized");
    }
}
