//! The route table of every loaded HTTP function, most specific first.

use std::sync::Arc;

use super::LoadedApp;
use crate::model::FunctionDef;

/// The outcome of routing a request below `/api/`.
pub enum RouteMatch {
    Found {
        app: Arc<LoadedApp>,
        function: FunctionDef,
        params: Vec<(String, String)>,
    },
    /// The path exists but not for this method; `allowed` lists the
    /// methods that would match.
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    NotFound,
}

struct Entry {
    app: Arc<LoadedApp>,
    function: FunctionDef,
}

#[derive(Default)]
pub(super) struct RouteTable {
    entries: Vec<Entry>,
}

impl RouteTable {
    pub(super) fn build<'a>(apps: impl Iterator<Item = &'a Arc<LoadedApp>>) -> Self {
        let mut entries: Vec<Entry> = apps
            .flat_map(|app| {
                app.description
                    .functions
                    .iter()
                    .filter(|f| f.http.is_some())
                    .map(|f| Entry {
                        app: app.clone(),
                        function: f.clone(),
                    })
            })
            .collect();
        entries.sort_by_key(|e| e.function.http.as_ref().map(|h| h.route.specificity()));
        Self { entries }
    }

    pub(super) fn resolve(&self, method: &str, path: &str) -> RouteMatch {
        let mut allowed: Vec<String> = Vec::new();
        for entry in &self.entries {
            let Some(trigger) = &entry.function.http else {
                continue;
            };
            let Some(params) = trigger.route.matches(path) else {
                continue;
            };
            if trigger.allows(method) {
                return RouteMatch::Found {
                    app: entry.app.clone(),
                    function: entry.function.clone(),
                    params,
                };
            }
            allowed.extend(trigger.methods.iter().cloned());
        }
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            allowed.sort();
            allowed.dedup();
            RouteMatch::MethodNotAllowed { allowed }
        }
    }
}
