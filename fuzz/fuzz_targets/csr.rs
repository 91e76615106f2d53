#![no_main]
//! Fuzz target: untrusted csr input must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_pki::fuzzing::csr(data));
