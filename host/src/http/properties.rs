//! Property tests of the HTTP layer's own parsers: the route table, path
//! segment decoding and the instance filter of the list and purge routes.
//! Arbitrary input never panics; a filter either parses or is a 400.

use proptest::prelude::*;

use super::api_routes::{Lookup, ROUTES, lookup};
use super::durable_views::instance_filter;
use super::path_segments;

proptest! {
    #[test]
    fn any_method_and_path_looks_up_without_panicking(
        method in "[A-Z]{1,7}",
        path in "(/[a-zA-Z0-9%{}._-]{0,12}){0,8}/?|\\PC{0,60}",
    ) {
        let _ = lookup(&method, &path);
        let _ = path_segments(path.split('/'));
    }

    #[test]
    fn every_route_template_filled_in_is_found(index in 0..ROUTES.len(), value in "[a-zA-Z0-9._:-]{1,16}") {
        let (method, template) = ROUTES[index];
        let path: Vec<&str> = template
            .split('/')
            .map(|s| if s.starts_with('{') { value.as_str() } else { s })
            .collect();
        prop_assert_eq!(lookup(method, &path.join("/")), Lookup::Found(template));
    }

    #[test]
    fn any_filter_query_parses_or_is_a_bad_request(
        pairs in proptest::collection::vec(
            (
                prop_oneof![
                    Just("runtimeStatus".to_owned()),
                    Just("createdTimeFrom".to_owned()),
                    Just("createdTimeTo".to_owned()),
                    Just("instanceIdPrefix".to_owned()),
                    "\\PC{0,12}",
                ],
                "\\PC{0,40}|[0-9T:.Z+-]{0,30}|(Running|Completed|Failed),?(Pending)?",
            ),
            0..6,
        ),
    ) {
        if let Err(e) = instance_filter(&pairs) {
            prop_assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
        }
    }
}
