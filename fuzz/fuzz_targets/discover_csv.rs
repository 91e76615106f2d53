#![no_main]
//! Fuzz target: untrusted CSV for discovery must never panic (see cf_classify::tabular::fuzzing).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_classify::tabular::fuzzing::csv(data));
