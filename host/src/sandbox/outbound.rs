//! The host side of `outbound-http`: activities send HTTP and HTTPS
//! requests to the origins their app's configuration allows, with its
//! timeout and response size cap. Everything else is refused before a
//! connection is made.
//!
//! HTTPS uses rustls: servers are verified against the Mozilla root
//! certificates (webpki-roots, built in, so the host trusts the same roots
//! on every machine) plus any the operator adds with `--outbound-ca-file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::bindings::perdure::functions::{outbound_http, types};
use super::state::{InvocationState, Role};
use crate::config::OutboundConfig;
use crate::model::FunctionKind;

/// The connection pool every activity of a host shares.
pub struct OutboundClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundClient")
    }
}

/// The outbound client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OutboundSetupError {
    #[error("cannot read CA certificates from {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("cannot set up TLS for outbound HTTPS: {0}")]
    Tls(String),
}

impl OutboundClient {
    /// A client trusting the built-in roots, and the PEM certificates in
    /// `extra_roots` if given. Blocking (reads the file).
    pub fn new(extra_roots: Option<&Path>) -> Result<Self, OutboundSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_roots {
            let bad = |message: String| OutboundSetupError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("the file holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OutboundSetupError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // The TLS layer above takes https URLs; plain http passes through.
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl OutboundClient {
    /// Sends a request of the host's own (the trace exporter's) through
    /// the shared pool: http, or https against the same roots.
    pub(crate) fn request(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(request)
    }
}

fn error(code: types::ErrorCode, message: String) -> types::Error {
    types::Error {
        code,
        message,
        details: None,
    }
}

/// Builds the request if the configuration allows its origin.
fn checked_request(
    config: &OutboundConfig,
    request: outbound_http::OutgoingRequest,
) -> Result<http::Request<Full<Bytes>>, types::Error> {
    let invalid = |why: String| error(types::ErrorCode::InvalidArgument, why);
    let uri: http::Uri = request
        .url
        .parse()
        .map_err(|e| invalid(format!("{:?} is not a URL: {e}", request.url)))?;
    let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
    let host = uri
        .host()
        .ok_or_else(|| invalid(format!("{:?} has no host", request.url)))?;
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    if !config.allows(&scheme, host, port) {
        return Err(error(
            types::ErrorCode::PermissionDenied,
            format!(
                "outbound HTTP to {scheme}://{host}:{port} is not allowed: add it to \
                 [outbound] allowed_hosts in the app's configuration"
            ),
        ));
    }
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(uri);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| invalid(format!("the request is not valid: {e}")))
}

async fn send(
    client: &OutboundClient,
    config: &OutboundConfig,
    request: outbound_http::OutgoingRequest,
) -> Result<outbound_http::IncomingResponse, types::Error> {
    let url = request.url.clone();
    let request = checked_request(config, request)?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let limit = config.max_response_bytes;
    let exchange = async {
        let response = client
            .client
            .request(request)
            .await
            .map_err(|e| error(types::ErrorCode::Internal, format!("{url}: {}", chain(&e))))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, limit).collect().await.map_err(|e| {
            error(
                types::ErrorCode::ResourceExhausted,
                format!("{url}: reading the response failed (limit {limit} bytes): {e}"),
            )
        })?;
        let headers = parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Ok(outbound_http::IncomingResponse {
            status: parts.status.as_u16(),
            headers,
            body: body.to_bytes().to_vec(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(error(
                types::ErrorCode::Timeout,
                format!(
                    "{url}: no complete response within {} ms",
                    config.timeout_ms
                ),
            ))
        })
}

impl outbound_http::Host for InvocationState {
    async fn send(
        &mut self,
        request: outbound_http::OutgoingRequest,
    ) -> wasmtime::Result<Result<outbound_http::IncomingResponse, types::Error>> {
        if !matches!(self.role, Role::Activity(_)) {
            return Err(self.unavailable("outbound-http", FunctionKind::Activity));
        }
        self.waiting();
        let Role::Activity(info) = &self.role else {
            return Err(self.unavailable("outbound-http", FunctionKind::Activity));
        };
        let (client, config) = (info.outbound.clone(), info.config.clone());
        let mut request = request;
        let has_trace = request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("traceparent"));
        if !has_trace && let Some(engine) = &self.client {
            // The activity's execution span: the service joins the trace.
            if let Some(traceparent) = engine.activity_traceparent(info).await {
                request
                    .headers
                    .push(("traceparent".to_owned(), traceparent));
            }
        }
        let result = send(&client, &config.outbound, request).await;
        // The wait is not computing (the time limit still counts it).
        self.done_waiting();
        if let Err(e) = &result {
            tracing::debug!(function = %self.caller.function, "outbound request failed: {}", e.message);
        }
        Ok(result)
    }
}

/// An error with its causes: a failed TLS handshake says why (e.g. an
/// unknown issuer) only in its source chain.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
