//! An app's NAME.toml and the host's settings file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        perdure::fuzzing::config(text);
    }
});
