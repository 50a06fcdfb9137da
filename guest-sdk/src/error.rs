//! The error type every function returns, mirrored by the WIT `error`
//! record so that it crosses the host boundary with its code intact.

use std::fmt;

use crate::bindings::perdure::functions::types as wit;

/// What an error means to the caller; see the WIT `error-code` docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    PermissionDenied,
    ResourceExhausted,
    Timeout,
    Cancelled,
    Application,
    Trapped,
    Nondeterminism,
    Internal,
}

/// A typed error: a code for code, a message for people, optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
}

/// The result type of every function.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// A failure of the function's own logic (the usual kind).
    pub fn application(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Application, message)
    }

    /// The caller passed something malformed.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// Attaches structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::invalid_argument(format!("invalid JSON: {e}"))
    }
}

impl From<ErrorCode> for wit::ErrorCode {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InvalidArgument => Self::InvalidArgument,
            ErrorCode::NotFound => Self::NotFound,
            ErrorCode::AlreadyExists => Self::AlreadyExists,
            ErrorCode::FailedPrecondition => Self::FailedPrecondition,
            ErrorCode::PermissionDenied => Self::PermissionDenied,
            ErrorCode::ResourceExhausted => Self::ResourceExhausted,
            ErrorCode::Timeout => Self::Timeout,
            ErrorCode::Cancelled => Self::Cancelled,
            ErrorCode::Application => Self::Application,
            ErrorCode::Trapped => Self::Trapped,
            ErrorCode::Nondeterminism => Self::Nondeterminism,
            ErrorCode::Internal => Self::Internal,
        }
    }
}

impl From<wit::ErrorCode> for ErrorCode {
    fn from(code: wit::ErrorCode) -> Self {
        match code {
            wit::ErrorCode::InvalidArgument => Self::InvalidArgument,
            wit::ErrorCode::NotFound => Self::NotFound,
            wit::ErrorCode::AlreadyExists => Self::AlreadyExists,
            wit::ErrorCode::FailedPrecondition => Self::FailedPrecondition,
            wit::ErrorCode::PermissionDenied => Self::PermissionDenied,
            wit::ErrorCode::ResourceExhausted => Self::ResourceExhausted,
            wit::ErrorCode::Timeout => Self::Timeout,
            wit::ErrorCode::Cancelled => Self::Cancelled,
            wit::ErrorCode::Application => Self::Application,
            wit::ErrorCode::Trapped => Self::Trapped,
            wit::ErrorCode::Nondeterminism => Self::Nondeterminism,
            wit::ErrorCode::Internal => Self::Internal,
        }
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        Self {
            code: e.code.into(),
            message: e.message,
            details: e.details.map(|d| d.to_string()),
        }
    }
}

impl From<wit::Error> for Error {
    fn from(e: wit::Error) -> Self {
        Self {
            code: e.code.into(),
            message: e.message,
            details: e
                .details
                .map(|d| serde_json::from_str(&d).unwrap_or(serde_json::Value::String(d))),
        }
    }
}
