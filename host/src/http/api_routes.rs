//! The host's own HTTP API as a table: every route outside `/api/` (those
//! are the apps'), by method and path template (`{x}` is one non-empty
//! segment).
//!
//! Invariant: [`lookup`] runs before any handler, so a request no entry
//! matches gets 404 and one whose path matches only under other methods
//! gets 405 with `Allow`; a handler without an entry here is unreachable.
//! `openapi.json` (served at `/openapi.json`) documents exactly these
//! entries; a unit test compares the two both ways.

/// The OpenAPI document of [`ROUTES`].
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// Every route of the host's API, as `(method, template)`.
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/dashboard/{file}"),
    ("GET", "/admin/health"),
    ("GET", "/admin/functions"),
    ("GET", "/admin/keys"),
    ("POST", "/admin/keys"),
    ("DELETE", "/admin/keys/{id}"),
    ("PUT", "/admin/apps/{name}"),
    ("DELETE", "/admin/apps/{name}"),
    ("PUT", "/admin/apps/{name}/config"),
    ("GET", "/admin/stats"),
    ("GET", "/admin/cluster"),
    ("GET", "/admin/instances/{instanceId}/timeline"),
    ("GET", "/admin/instances/{instanceId}/logs"),
    ("POST", "/admin/instances/{instanceId}/upgrade"),
    ("POST", "/admin/orchestrators/{name}/upgrade"),
    ("POST", "/runtime/webhooks/durabletask/orchestrators/{name}"),
    (
        "POST",
        "/runtime/webhooks/durabletask/orchestrators/{name}/{instanceId}",
    ),
    ("GET", "/runtime/webhooks/durabletask/instances"),
    ("DELETE", "/runtime/webhooks/durabletask/instances"),
    (
        "GET",
        "/runtime/webhooks/durabletask/instances/{instanceId}",
    ),
    (
        "DELETE",
        "/runtime/webhooks/durabletask/instances/{instanceId}",
    ),
    (
        "POST",
        "/runtime/webhooks/durabletask/instances/{instanceId}/raiseEvent/{eventName}",
    ),
    (
        "POST",
        "/runtime/webhooks/durabletask/instances/{instanceId}/terminate",
    ),
    (
        "POST",
        "/runtime/webhooks/durabletask/instances/{instanceId}/suspend",
    ),
    (
        "POST",
        "/runtime/webhooks/durabletask/instances/{instanceId}/resume",
    ),
    (
        "POST",
        "/runtime/webhooks/durabletask/instances/{instanceId}/restart",
    ),
    ("GET", "/runtime/webhooks/durabletask/entities/{name}"),
    ("GET", "/runtime/webhooks/durabletask/entities/{name}/{key}"),
    (
        "POST",
        "/runtime/webhooks/durabletask/entities/{name}/{key}",
    ),
];

/// What the table says of a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The route's template.
    Found(&'static str),
    NotFound,
    /// The path exists under these methods only.
    MethodNotAllowed(Vec<&'static str>),
}

/// Whether `path` (trailing `/` ignored) fits `template`.
fn fits(template: &str, path: &str) -> bool {
    let path = match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let mut wanted = template.split('/');
    let mut given = path.split('/');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Looks a request up in [`ROUTES`].
pub(crate) fn lookup(method: &str, path: &str) -> Lookup {
    let mut allowed = Vec::new();
    for (m, template) in ROUTES {
        if fits(template, path) {
            if *m == method {
                return Lookup::Found(template);
            }
            allowed.push(*m);
        }
    }
    if allowed.is_empty() {
        Lookup::NotFound
    } else {
        Lookup::MethodNotAllowed(allowed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() -> anyhow::Result<()> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI)?;
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("no paths"))?
        {
            for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, t)| ((*m).to_owned(), (*t).to_owned()))
            .collect();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "openapi.json documents routes the host lacks: {unrouted:?}"
        );
        Ok(())
    }

    #[test]
    fn lookups_match_segments_and_say_which_methods_a_path_has() {
        let base = "/runtime/webhooks/durabletask";
        assert_eq!(
            lookup("GET", "/admin/health"),
            Lookup::Found("/admin/health")
        );
        assert_eq!(
            lookup("GET", "/admin/health/"),
            Lookup::Found("/admin/health")
        );
        assert_eq!(
            lookup("POST", &format!("{base}/instances/a%2Fb/raiseEvent/Go")),
            Lookup::Found(
                "/runtime/webhooks/durabletask/instances/{instanceId}/raiseEvent/{eventName}"
            )
        );
        assert_eq!(
            lookup("PUT", &format!("{base}/instances/x")),
            Lookup::MethodNotAllowed(vec!["GET", "DELETE"])
        );
        assert_eq!(
            lookup("GET", &format!("{base}/instances//terminate")),
            Lookup::NotFound
        );
        assert_eq!(lookup("GET", "/admin"), Lookup::NotFound);
        assert_eq!(lookup("GET", "/"), Lookup::Found("/"));
        assert_eq!(lookup("GET", "/nowhere"), Lookup::NotFound);
        assert_eq!(lookup("POST", "/admin/keys/k1/extra"), Lookup::NotFound);
    }
}
