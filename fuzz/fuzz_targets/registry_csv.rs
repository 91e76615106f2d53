#![no_main]
//! Fuzz target: untrusted registry_csv input must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_device::fuzzing::registry_csv(data));
