#![no_main]
//! Fuzz target: untrusted pcap/pcapng files and the DNS messages in them must be read or
//! refused, never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cf_ingest::fuzzing::pcap(data);
});
