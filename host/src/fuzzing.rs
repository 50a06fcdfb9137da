//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer):
//! every parser the host owns that takes outside input, reachable from
//! one crate. Compiled only with the `fuzzing` feature.
//!
//! Each function must not panic for any input; where a parser has an
//! inverse, it also checks the round trip.

use std::path::Path;

use crate::durable::journal;
use crate::route::RouteTemplate;
use crate::traces::TraceContext;

/// A request line and a cookie: route table lookup, path segments, the
/// cookie without the session.
pub fn http_request(method: &str, path: &str, cookie: &str) {
    crate::http::fuzzing::request_line(method, path, cookie);
}

/// An app's route template and a path to match.
pub fn route(template: &str, path: &str) {
    if let Ok(template) = RouteTemplate::parse(template) {
        let _ = template.matches(path);
        let _ = template.specificity();
    }
}

/// What the journal hands back on replay.
pub fn journal(text: &str) {
    let _ = journal::parse_await_all(text);
    let _ = journal::parse_await_any(text);
    let _ = perdure_records::GuestError::from_stored(text);
}

/// An app's `NAME.toml` and the host's settings file.
pub fn config(text: &str) {
    let _ = crate::config::AppConfig::parse(text, Path::new("fuzz.toml"));
    let _ = toml::from_str::<crate::settings::ServeSettings>(text);
}

/// A `traceparent` header and ids; what parses prints back as it came.
pub fn identifiers(text: &str) {
    if let Some(context) = TraceContext::parse(text) {
        assert_eq!(TraceContext::parse(&context.header()), Some(context));
    }
    let _ = perdure_records::InstanceId::parse(text);
    if let Ok(digest) = text.parse::<crate::model::Digest>() {
        assert_eq!(
            digest.to_string().parse::<crate::model::Digest>().ok(),
            Some(digest)
        );
    }
    if let Some((name, key)) = text.split_once('@') {
        let _ = perdure_records::EntityId::parse(name, key);
    }
}
