//! Route templates from an app's description, and paths to match.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (template, path) = text.split_once('\n').unwrap_or((&text, ""));
    perdure::fuzzing::route(template, path);
});
