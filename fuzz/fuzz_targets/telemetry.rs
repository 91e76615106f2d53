#![no_main]
//! Fuzz target: untrusted telemetry input must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_device::fuzzing::telemetry(data));
