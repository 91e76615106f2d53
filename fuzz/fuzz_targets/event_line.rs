#![no_main]
//! Fuzz target: `chengfang hunt`'s event lines (evtx_dump JSONL) read as flat events must be
//! read exactly as serde_json reads them, and never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cf_sigma::fuzzing::event_line(data);
});
