//! Ingest parsers (SA-1, AUD-1): syslog in RFC 5424, RFC 3164 and the variants real senders emit,
//! the framing of syslog over TCP (octet counting and newline), NetFlow v5/v9 and IPFIX with
//! per-exporter templates, Windows EVTX files, packet captures (pcap/pcapng) with their DNS
//! messages, and the OCSF normaliser.
//!
//! Architecture invariant: no I/O and no clock — bytes and the receive time come in, records go
//! out, and malformed input is an error with its position, never a panic.

pub mod dns;
pub mod evtx;
pub mod framing;
pub mod netflow;
pub mod ocsf;
pub mod pcap;
pub mod syslog;
pub mod winevent;
pub mod zeek;

/// Entry points shared by the cargo-fuzz targets and the stable corpus replay tests.
pub mod fuzzing {
    /// Untrusted EVTX bytes must be refused or read record by record, never panic.
    pub fn evtx(data: &[u8]) {
        if let Ok(recs) = crate::evtx::records(data.to_vec()) {
            for r in recs.into_iter().flatten() {
                let _ = r.pointer("/Event/System/EventID");
            }
        }
    }

    /// Untrusted flow-export datagrams must never panic, whatever template state came before:
    /// the input is cut into datagrams (2-byte length prefixes) from two exporters.
    pub fn netflow(data: &[u8]) {
        let mut d = crate::netflow::FlowDecoder::new();
        let t = cf_core::Timestamp::from_unix_secs(1_790_000_000);
        let mut rest = data;
        let mut i = 0u16;
        while rest.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            let (dgram, tail) = rest[2..].split_at(n);
            let from = std::net::SocketAddr::from(([10, 0, 0, (i % 2) as u8 + 1], 2055));
            for f in d.decode(from, dgram).flows {
                let _ = crate::netflow::to_ocsf(&f, "fuzz", t);
            }
            rest = tail;
            i = i.wrapping_add(1);
        }
    }

    /// Untrusted capture files (and the DNS messages in them) must be read or refused, never
    /// panic; every output must also normalise.
    pub fn pcap(data: &[u8]) {
        let _ = crate::pcap::read(data, |o| match o {
            crate::pcap::Output::Dns(d) => {
                let _ = crate::dns::to_ocsf(&d, "fuzz");
            }
            crate::pcap::Output::Flow(f) => {
                let _ = crate::pcap::flow_to_ocsf(&f, "fuzz");
            }
            crate::pcap::Output::Undecodable { .. } => {}
        });
    }

    /// Untrusted syslog datagrams and TCP streams must never panic.
    pub fn syslog(data: &[u8]) {
        let t = cf_core::Timestamp::from_unix_secs(1_790_000_000);
        let _ = crate::syslog::parse(data, t);
        let mut f = crate::framing::Framer::new(4096);
        let _ = f.push(data);
        let _ = f.finish();
    }
}
