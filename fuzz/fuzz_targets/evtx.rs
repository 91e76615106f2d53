#![no_main]
//! Fuzz target: untrusted EVTX files must be refused or read record by record, never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cf_ingest::fuzzing::evtx(data);
});
