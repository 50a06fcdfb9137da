//! Outbound HTTP from activities, to the hosts the app's configuration
//! allows (`[outbound] allowed_hosts` in `NAME.toml` beside `NAME.wasm`).
//! A request anywhere else fails with [`ErrorCode::PermissionDenied`]
//! before anything is sent.
//!
//! ```no_run
//! # use perdure_sdk::prelude::*;
//! fn check(url: String) -> Result<bool> {
//!     let response = perdure_sdk::outbound::get(&url)?;
//!     Ok(response.is_success())
//! }
//! ```
//!
//! [`ErrorCode::PermissionDenied`]: crate::ErrorCode::PermissionDenied

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::perdure::functions::outbound_http as host;
use crate::error::{Error, Result};

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_ascii_uppercase(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A JSON body (and its content type).
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Result<Self> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::invalid_argument(format!("request body: {e}")))?;
        Ok(Self {
            body,
            ..self.header("content-type", "application/json")
        })
    }

    /// Sends the request; an HTTP error status is a response, not an error.
    pub fn send(self) -> Result<Response> {
        let response = host::send(&host::OutgoingRequest {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
        })?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

/// A response received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::invalid_argument(format!("response body: {e}")))
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    Request::new("GET", url).send()
}
