#![no_main]
//! Fuzz target: untrusted signed note input must never panic (see cf_ledger::fuzzing).

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_ledger::fuzzing::signed_note(data));
