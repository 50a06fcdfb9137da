//! The route table, path segments and cookie parsing: a method, a path
//! and a cookie, separated by newlines.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let cookie = parts.next().unwrap_or_default();
    perdure::fuzzing::http_request(method, path, cookie);
});
