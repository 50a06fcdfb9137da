//! Requests and responses of HTTP-triggered functions.

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::perdure::functions::types as wit;
use crate::error::{Error, Result};

/// A request to an HTTP function, as routed by the host.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Upper case, e.g. "GET".
    pub method: String,
    /// The full path, e.g. "/api/greet".
    pub path: String,
    /// Decoded query parameters in order of appearance.
    pub query: Vec<(String, String)>,
    /// Values of the route's `{placeholders}`.
    pub params: Vec<(String, String)>,
    /// Header names are lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Scheme, host and port the request came in on, for building links.
    pub base_url: String,
}

fn lookup<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl HttpRequest {
    /// The first query parameter with this name.
    pub fn query(&self, name: &str) -> Option<&str> {
        lookup(&self.query, name)
    }

    /// A route placeholder's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        lookup(&self.params, name)
    }

    /// A header's value; `name` is matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::invalid_argument(format!("request body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(Error::from)
    }
}

/// The response of an HTTP function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// An `application/json` response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::new(crate::ErrorCode::Internal, e.to_string()))?;
        Ok(Self::new(status)
            .header("content-type", "application/json")
            .body(body))
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

impl From<wit::HttpRequest> for HttpRequest {
    fn from(r: wit::HttpRequest) -> Self {
        Self {
            method: r.method,
            path: r.path,
            query: r.query,
            params: r.params,
            headers: r.headers,
            body: r.body,
            base_url: r.base_url,
        }
    }
}

impl From<HttpResponse> for wit::HttpResponse {
    fn from(r: HttpResponse) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<wit::HttpResponse> for HttpResponse {
    fn from(r: wit::HttpResponse) -> Self {
        Self {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}
