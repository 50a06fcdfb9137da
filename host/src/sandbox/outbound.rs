//! The host side of `outbound-http`: activities send HTTP requests to the
//! origins their app's configuration allows, with its timeout and response
//! size cap. Everything else is refused before a connection is made.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::bindings::perdure::functions::{outbound_http, types};
use super::state::{InvocationState, Role};
use crate::config::OutboundConfig;
use crate::model::FunctionKind;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One connection pool for every activity.
fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(connector)
    })
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
    if scheme != "http" {
        return Err(error(
            types::ErrorCode::FailedPrecondition,
            format!("{scheme} requests are not supported by this host yet; use http"),
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
    config: &OutboundConfig,
    request: outbound_http::OutgoingRequest,
) -> Result<outbound_http::IncomingResponse, types::Error> {
    let url = request.url.clone();
    let request = checked_request(config, request)?;
    let timeout = Duration::from_millis(config.timeout_ms);
    let limit = config.max_response_bytes;
    let exchange = async {
        let response = client()
            .request(request)
            .await
            .map_err(|e| error(types::ErrorCode::Internal, format!("{url}: {e}")))?;
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
        let Role::Activity(info) = &self.role else {
            return Err(self.unavailable("outbound-http", FunctionKind::Activity));
        };
        let config = info.config.clone();
        let result = send(&config.outbound, request).await;
        if let Err(e) = &result {
            tracing::debug!(function = %self.caller.function, "outbound request failed: {}", e.message);
        }
        Ok(result)
    }
}
