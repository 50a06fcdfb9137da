//! The typed error a function returns (the WIT `error` record), as the
//! engine stores and the APIs show it.

/// An error a function returned, or the host made for it.
///
/// Invariant: `code` is one of [`GuestError::CODES`]; any other code a
/// guest or a stored row names reads as `application`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestError {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl GuestError {
    /// The error codes of the WIT `error-code` enum, as the APIs spell them.
    pub const CODES: [&'static str; 12] = [
        "invalid-argument",
        "not-found",
        "already-exists",
        "failed-precondition",
        "permission-denied",
        "resource-exhausted",
        "timeout",
        "cancelled",
        "application",
        "trapped",
        "nondeterminism",
        "internal",
    ];

    /// `code` is one of the WIT error codes; anything else reads as
    /// `application`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: Self::CODES
                .into_iter()
                .find(|c| *c == code)
                .unwrap_or("application"),
            message: message.into(),
            details: None,
        }
    }

    /// Reads back the JSON this error serializes to; text that is not such
    /// JSON becomes an `internal` error carrying it.
    pub fn from_stored(json: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Stored {
            code: String,
            message: String,
            details: Option<serde_json::Value>,
        }
        match serde_json::from_str::<Stored>(json) {
            Ok(stored) => Self {
                details: stored.details,
                ..Self::new(&stored.code, stored.message)
            },
            Err(_) => Self::new("internal", json),
        }
    }
}
