//! Ingest parsers (SA-1, AUD-1): syslog in RFC 5424, RFC 3164 and the variants real senders emit,
//! and the framing of syslog over TCP (octet counting and newline). Issue 6 grows NetFlow/IPFIX
//! and the normaliser here.
//!
//! Architecture invariant: no I/O and no clock — bytes and the receive time come in, records go
//! out, and malformed input is an error with its position, never a panic.

pub mod framing;
pub mod ocsf;
pub mod syslog;

/// Entry points shared by the cargo-fuzz target `syslog` and the stable corpus replay test.
pub mod fuzzing {
    /// Untrusted syslog datagrams and TCP streams must never panic.
    pub fn syslog(data: &[u8]) {
        let t = cf_core::Timestamp::from_unix_secs(1_790_000_000);
        let _ = crate::syslog::parse(data, t);
        let mut f = crate::framing::Framer::new(4096);
        let _ = f.push(data);
        let _ = f.finish();
    }
}
