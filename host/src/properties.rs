//! Property tests of the parsers the host owns that are not HTTP's: route
//! templates (an app's description) and the journal's answers (what a
//! database hands back on replay). Arbitrary input never panics; what is
//! written reads back as it was. (The HTTP ones are in
//! `http/properties.rs`.)

use proptest::prelude::*;

use crate::durable::journal::{
    Answer, answer_from_value, answer_to_value, await_all_result, await_any_result,
    parse_await_all, parse_await_any,
};
use crate::route::RouteTemplate;
use perdure_records::GuestError;

fn answer() -> impl Strategy<Value = Answer> {
    let outcome = prop_oneof![
        any::<String>().prop_map(Ok),
        any::<String>().prop_map(|message| Err(GuestError::new("application", message))),
    ];
    (outcome, proptest::option::of(any::<i64>()))
        .prop_map(|(outcome, event)| Answer { outcome, event })
}

proptest! {
    #[test]
    fn route_templates_parse_and_match_any_text_without_panicking(
        route in "[a-z{}/?*:._-]{0,40}|\\PC{0,40}",
        path in "[a-z0-9/._-]{0,40}|\\PC{0,40}",
    ) {
        if let Ok(template) = RouteTemplate::parse(&route) {
            let _ = template.matches(&path);
            let _ = template.specificity();
        }
    }

    #[test]
    fn a_literal_route_matches_itself(segments in proptest::collection::vec("[a-z0-9]{1,8}", 1..5)) {
        let route = segments.join("/");
        let template = RouteTemplate::parse(&route);
        prop_assert!(template.is_ok(), "{route}: {template:?}");
        if let Ok(template) = template {
            prop_assert!(template.matches(&route).is_some(), "{route}");
        }
    }

    #[test]
    fn journal_answers_decode_any_text_without_panicking(text in "\\PC{0,200}") {
        let _ = parse_await_all(&text);
        let _ = parse_await_any(&text);
        if let Ok(value) = serde_json::from_str(&text) {
            let _ = answer_from_value(&value);
        }
    }

    #[test]
    fn journal_answers_read_back_as_written(
        answers in proptest::collection::vec(answer(), 0..6),
        index in 0usize..6,
    ) {
        prop_assert_eq!(parse_await_all(&await_all_result(&answers)), Some(answers.clone()));
        for answer in &answers {
            prop_assert_eq!(answer_from_value(&answer_to_value(answer)), Some(answer.clone()));
        }
        if let Some(answer) = answers.get(index) {
            prop_assert_eq!(
                parse_await_any(&await_any_result(index, answer)),
                Some((index, answer.clone()))
            );
        }
    }
}
