//! What the journal hands back on replay (await answers, stored errors).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        perdure::fuzzing::journal(text);
    }
});
