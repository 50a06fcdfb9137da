//! Route templates of HTTP functions (`orders/{id}`, `files/{*path}`) and
//! the table that maps a request path to a function.
//!
//! Literal segments match case-insensitively (as in Azure Functions); a
//! literal beats a placeholder, which beats a catch-all, so `orders/new`
//! and `orders/{id}` can live side by side.

use std::fmt;

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    CatchAll(String),
}

/// A parsed route template. Invariant: a catch-all is only ever the last
/// segment, and placeholder names are unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate {
    text: String,
    segments: Vec<Segment>,
}

/// Why a route template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route {0:?} is empty")]
    Empty(String),
    #[error("route {route:?}: segment {segment:?} is not a literal, {{name}} or {{*name}}")]
    BadSegment { route: String, segment: String },
    #[error("route {0:?}: a catch-all {{*name}} must be the last segment")]
    CatchAllNotLast(String),
    #[error("route {route:?}: placeholder {name:?} appears twice")]
    DuplicateParam { route: String, name: String },
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_literal(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

impl RouteTemplate {
    pub fn parse(route: &str) -> Result<Self, RouteError> {
        let trimmed = route.trim_matches('/');
        if trimmed.is_empty() {
            return Err(RouteError::Empty(route.to_owned()));
        }
        let parts: Vec<&str> = trimmed.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment =
                if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if let Some(name) = inner.strip_prefix('*') {
                        if !is_identifier(name) {
                            return Err(bad(route, part));
                        }
                        if i + 1 != parts.len() {
                            return Err(RouteError::CatchAllNotLast(route.to_owned()));
                        }
                        Segment::CatchAll(name.to_owned())
                    } else if is_identifier(inner) {
                        Segment::Param(inner.to_owned())
                    } else {
                        return Err(bad(route, part));
                    }
                } else if is_literal(part) {
                    Segment::Literal(part.to_ascii_lowercase())
                } else {
                    return Err(bad(route, part));
                };
            if let Segment::Param(name) | Segment::CatchAll(name) = &segment {
                let seen = segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) | Segment::CatchAll(n) if n == name));
                if seen {
                    return Err(RouteError::DuplicateParam {
                        route: route.to_owned(),
                        name: name.clone(),
                    });
                }
            }
            segments.push(segment);
        }
        Ok(Self {
            text: trimmed.to_owned(),
            segments,
        })
    }

    /// Matches a path below `/api/` (without leading slash); returns the
    /// placeholders' decoded values.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let path = path.trim_matches('/');
        let mut parts = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect::<Vec<_>>()
        };
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::CatchAll(name) => {
                    let rest = parts.split_off(i.min(parts.len())).join("/");
                    params.push((name.clone(), decode(&rest)?));
                    return Some(params);
                }
                Segment::Literal(lit) => {
                    if !parts.get(i)?.eq_ignore_ascii_case(lit) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    let value = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), decode(value)?));
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// True when both templates match exactly the same paths.
    pub fn same_shape(&self, other: &RouteTemplate) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    (Segment::CatchAll(_), Segment::CatchAll(_)) => true,
                    _ => false,
                })
    }

    /// Sort key: more specific templates first (literals before
    /// placeholders before catch-alls, then longer before shorter).
    pub fn specificity(&self) -> (Vec<u8>, std::cmp::Reverse<usize>) {
        let ranks = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Param(_) => 1,
                Segment::CatchAll(_) => 2,
            })
            .collect();
        (ranks, std::cmp::Reverse(self.segments.len()))
    }
}

fn bad(route: &str, segment: &str) -> RouteError {
    RouteError::BadSegment {
        route: route.to_owned(),
        segment: segment.to_owned(),
    }
}

fn decode(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

impl fmt::Display for RouteTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for RouteTemplate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> RouteTemplate {
        RouteTemplate::parse(s).expect("valid route")
    }

    #[test]
    fn matches_literals_params_and_catch_alls() {
        assert_eq!(route("greet").matches("greet"), Some(vec![]));
        assert_eq!(route("greet").matches("GREET/"), Some(vec![]));
        assert_eq!(route("greet").matches("greet/x"), None);
        assert_eq!(
            route("orders/{id}").matches("orders/a%20b"),
            Some(vec![("id".into(), "a b".into())])
        );
        assert_eq!(route("orders/{id}").matches("orders"), None);
        assert_eq!(
            route("files/{*path}").matches("files/a/b/c"),
            Some(vec![("path".into(), "a/b/c".into())])
        );
        assert_eq!(
            route("files/{*path}").matches("files"),
            Some(vec![("path".into(), "".into())])
        );
    }

    #[test]
    fn refuses_bad_templates() {
        assert!(RouteTemplate::parse("/").is_err());
        assert!(RouteTemplate::parse("a/{*x}/b").is_err());
        assert!(RouteTemplate::parse("a/{x}/{x}").is_err());
        assert!(RouteTemplate::parse("a/{x y}").is_err());
        assert!(RouteTemplate::parse("a b").is_err());
    }

    #[test]
    fn shapes_and_specificity() {
        assert!(route("a/{x}").same_shape(&route("A/{y}")));
        assert!(!route("a/{x}").same_shape(&route("a/b")));
        assert!(route("a/b").specificity() < route("a/{x}").specificity());
        assert!(route("a/{x}").specificity() < route("a/{*x}").specificity());
    }
}
