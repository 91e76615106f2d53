#![no_main]
//! Fuzz target: an untrusted Sigma rule file (detections and correlation rules, one or several
//! documents) must compile or be refused, never panic; correlations must resolve or be refused.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = cf_sigma::compile_rule(s);
        cf_sigma::fuzzing::documents(s);
    }
});
