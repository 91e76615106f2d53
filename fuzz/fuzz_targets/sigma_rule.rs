#![no_main]
//! Fuzz target: an untrusted Sigma rule must compile or be refused, never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cf_sigma::compile_rule(s);
    }
});
