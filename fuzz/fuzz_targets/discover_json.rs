#![no_main]
//! Fuzz target: untrusted JSON for discovery must never panic (see cf_classify::tabular::fuzzing).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_classify::tabular::fuzzing::json(data));
