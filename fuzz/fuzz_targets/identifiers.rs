//! traceparent headers, instance ids, digests and entity ids.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        perdure::fuzzing::identifiers(text);
    }
});
