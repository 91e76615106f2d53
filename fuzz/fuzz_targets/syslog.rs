#![no_main]
//! Fuzz target: untrusted syslog datagrams and TCP streams must never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cf_ingest::fuzzing::syslog(data));
