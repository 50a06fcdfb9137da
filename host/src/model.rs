//! The host's own description of function apps: typed ids and the validated,
//! normalised form of what a component says about itself. Everything past
//! the sandbox boundary reads these types, never the raw WIT records.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::route::{RouteError, RouteTemplate};

/// The sha256 of a component's bytes: the identity of one app version.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A digest string that is not `sha256:` followed by 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not a digest (expected sha256:<64 hex digits>): {0:?}")]
pub struct DigestParseError(String);

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| DigestParseError(s.to_owned()))?;
        Ok(Self(out))
    }
}

/// The four function kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    Http,
    Orchestrator,
    Activity,
    Entity,
}

/// Who may call an HTTP function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthLevel {
    Anonymous,
    Function,
    Admin,
}

/// How an HTTP function is reached, validated.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpTrigger {
    pub route: RouteTemplate,
    /// Upper case; empty means every method.
    pub methods: Vec<String>,
    pub auth_level: AuthLevel,
}

impl HttpTrigger {
    pub fn allows(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// True when a request could match both triggers.
    pub fn overlaps(&self, other: &HttpTrigger) -> bool {
        let methods_overlap = self.methods.is_empty()
            || other.methods.is_empty()
            || self.methods.iter().any(|m| other.methods.contains(m));
        methods_overlap && self.route.same_shape(&other.route)
    }
}

/// One function of an app, validated.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FunctionDef {
    pub name: String,
    pub kind: FunctionKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTrigger>,
    /// An entity's operations; empty for other kinds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
}

impl FunctionDef {
    /// True if this entity function accepts `operation`.
    pub fn accepts(&self, operation: &str) -> bool {
        self.operations.iter().any(|o| o == operation)
    }
}

/// Why a component's self-description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptionError {
    #[error("the app exports no functions")]
    Empty,
    #[error("function name {0:?} is not valid: use 1-128 letters, digits, '_', '-' or '.'")]
    BadName(String),
    #[error("function {0} is declared twice")]
    Duplicate(String),
    #[error("HTTP function {0} has no HTTP trigger")]
    MissingTrigger(String),
    #[error("{kind:?} function {name} has an HTTP trigger; only HTTP functions do")]
    UnexpectedTrigger { name: String, kind: FunctionKind },
    #[error("HTTP function {name}: {source}")]
    Route { name: String, source: RouteError },
    #[error("HTTP function {name}: method {method:?} is not a valid HTTP method")]
    BadMethod { name: String, method: String },
    #[error("HTTP functions {first} and {second} answer the same route and method")]
    RouteClash { first: String, second: String },
    #[error("entity {0} declares no operations")]
    NoOperations(String),
    #[error(
        "entity {name}: operation name {operation:?} is not valid: use 1-128 letters, digits, '_', '-' or '.'"
    )]
    BadOperation { name: String, operation: String },
    #[error("{kind:?} function {name} declares operations; only entities do")]
    UnexpectedOperations { name: String, kind: FunctionKind },
}

/// Checks a function name: the same rule applies to every kind, since
/// orchestrator, activity and entity names appear in URLs and journals.
pub fn validate_function_name(name: &str) -> Result<(), DescriptionError> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(DescriptionError::BadName(name.to_owned()))
    }
}

pub use perdure_records::is_plain_name;

fn validate_operations(f: &RawFunction) -> Result<Vec<String>, DescriptionError> {
    if f.kind != FunctionKind::Entity {
        if f.operations.is_empty() {
            return Ok(Vec::new());
        }
        return Err(DescriptionError::UnexpectedOperations {
            name: f.name.clone(),
            kind: f.kind,
        });
    }
    if f.operations.is_empty() {
        return Err(DescriptionError::NoOperations(f.name.clone()));
    }
    let mut operations: Vec<String> = Vec::with_capacity(f.operations.len());
    for operation in &f.operations {
        if !is_plain_name(operation) {
            return Err(DescriptionError::BadOperation {
                name: f.name.clone(),
                operation: operation.clone(),
            });
        }
        if !operations.contains(operation) {
            operations.push(operation.clone());
        }
    }
    Ok(operations)
}

fn validate_method(name: &str, method: &str) -> Result<String, DescriptionError> {
    let upper = method.to_ascii_uppercase();
    match http::Method::from_bytes(upper.as_bytes()) {
        Ok(_) if !upper.is_empty() => Ok(upper),
        _ => Err(DescriptionError::BadMethod {
            name: name.to_owned(),
            method: method.to_owned(),
        }),
    }
}

/// What an app exports, validated: unique valid names, a parsed route for
/// every HTTP function and none for the others, no clash between its own
/// routes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppDescription {
    pub functions: Vec<FunctionDef>,
}

/// A function as the component described it, before validation.
#[derive(Debug, Clone)]
pub struct RawFunction {
    pub name: String,
    pub kind: FunctionKind,
    pub http: Option<RawTrigger>,
    pub operations: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RawTrigger {
    pub route: String,
    pub methods: Vec<String>,
    pub auth_level: AuthLevel,
}

impl AppDescription {
    pub fn validate(raw: Vec<RawFunction>) -> Result<Self, DescriptionError> {
        if raw.is_empty() {
            return Err(DescriptionError::Empty);
        }
        let mut functions: Vec<FunctionDef> = Vec::with_capacity(raw.len());
        for f in raw {
            validate_function_name(&f.name)?;
            if functions.iter().any(|g| g.name == f.name) {
                return Err(DescriptionError::Duplicate(f.name));
            }
            let operations = validate_operations(&f)?;
            let http = match (f.kind, f.http) {
                (FunctionKind::Http, None) => return Err(DescriptionError::MissingTrigger(f.name)),
                (FunctionKind::Http, Some(t)) => {
                    let route = RouteTemplate::parse(&t.route).map_err(|source| {
                        DescriptionError::Route {
                            name: f.name.clone(),
                            source,
                        }
                    })?;
                    let methods = t
                        .methods
                        .iter()
                        .map(|m| validate_method(&f.name, m))
                        .collect::<Result<Vec<_>, _>>()?;
                    Some(HttpTrigger {
                        route,
                        methods,
                        auth_level: t.auth_level,
                    })
                }
                (kind, Some(_)) => {
                    return Err(DescriptionError::UnexpectedTrigger { name: f.name, kind });
                }
                (_, None) => None,
            };
            if let Some(trigger) = &http
                && let Some(other) = functions
                    .iter()
                    .find(|g| g.http.as_ref().is_some_and(|h| h.overlaps(trigger)))
            {
                return Err(DescriptionError::RouteClash {
                    first: other.name.clone(),
                    second: f.name,
                });
            }
            functions.push(FunctionDef {
                name: f.name,
                kind: f.kind,
                http,
                operations,
            });
        }
        Ok(Self { functions })
    }

    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(name: &str, route: &str, methods: &[&str]) -> RawFunction {
        RawFunction {
            name: name.into(),
            kind: FunctionKind::Http,
            http: Some(RawTrigger {
                route: route.into(),
                methods: methods.iter().map(|m| m.to_string()).collect(),
                auth_level: AuthLevel::Function,
            }),
            operations: Vec::new(),
        }
    }

    #[test]
    fn digest_round_trips() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_string().parse::<Digest>().ok(), Some(d));
        assert!("sha256:zz".parse::<Digest>().is_err());
    }

    #[test]
    fn rejects_bad_descriptions() {
        assert_eq!(
            AppDescription::validate(vec![]).err(),
            Some(DescriptionError::Empty)
        );
        let dup = vec![http("A", "a", &["GET"]), http("A", "b", &["GET"])];
        assert!(matches!(
            AppDescription::validate(dup),
            Err(DescriptionError::Duplicate(_))
        ));
        let clash = vec![
            http("A", "x/{id}", &["GET"]),
            http("B", "x/{key}", &["get", "POST"]),
        ];
        assert!(matches!(
            AppDescription::validate(clash),
            Err(DescriptionError::RouteClash { .. })
        ));
        let methods_differ = vec![http("A", "x", &["GET"]), http("B", "x", &["POST"])];
        assert!(AppDescription::validate(methods_differ).is_ok());
        let bad_name = vec![http("a b", "x", &[])];
        assert!(matches!(
            AppDescription::validate(bad_name),
            Err(DescriptionError::BadName(_))
        ));
    }

    #[test]
    fn entities_declare_valid_operations() {
        let entity = |operations: &[&str]| RawFunction {
            name: "Counter".into(),
            kind: FunctionKind::Entity,
            http: None,
            operations: operations.iter().map(|o| o.to_string()).collect(),
        };
        assert!(matches!(
            AppDescription::validate(vec![entity(&[])]),
            Err(DescriptionError::NoOperations(_))
        ));
        assert!(matches!(
            AppDescription::validate(vec![entity(&["add", "a b"])]),
            Err(DescriptionError::BadOperation { .. })
        ));
        let valid = AppDescription::validate(vec![entity(&["add", "get", "add"])])
            .map_err(|e| e.to_string());
        let counter = valid.as_ref().ok().and_then(|d| d.function("Counter"));
        assert_eq!(
            counter.map(|f| f.operations.clone()),
            Some(vec!["add".to_owned(), "get".to_owned()])
        );
        assert!(counter.is_some_and(|f| f.accepts("get") && !f.accepts("reset")));
        let mut http_with_ops = http("A", "a", &["GET"]);
        http_with_ops.operations = vec!["add".into()];
        assert!(matches!(
            AppDescription::validate(vec![http_with_ops]),
            Err(DescriptionError::UnexpectedOperations { .. })
        ));
    }
}
