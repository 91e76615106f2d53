#![no_main]
//! Fuzz target: untrusted encrypted streams must never panic (see cf_kms::fuzzing).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_kms::fuzzing::stream(data));
