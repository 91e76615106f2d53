#![no_main]
//! Fuzz target: untrusted NetFlow v5/v9/IPFIX datagrams (a sequence, so template state carries
//! from one to the next) must decode or be refused, never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cf_ingest::fuzzing::netflow(data);
});
