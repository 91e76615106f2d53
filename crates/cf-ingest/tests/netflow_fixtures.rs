//! NetFlow v5/v9 and IPFIX on real exporter packets (akvorado's decoder fixtures in
//! ../shared/datasets/soc/netflow): templates are learned per exporter, data that arrives before
//! its template is held and decoded when it comes, and every datagram yields flows, templates or
//! a reason — never nothing, never a panic.

use std::net::SocketAddr;
use std::path::PathBuf;

use cf_ingest::netflow::{Decoded, FlowDecoder};

fn dir() -> Option<PathBuf> {
    Some(cf_testkit::datasets()?.join("soc/netflow/akvorado_decoder_fixtures/netflow"))
}

fn feed(d: &mut FlowDecoder, file: &str, from: Option<SocketAddr>) -> Decoded {
    let mut all = Decoded::default();
    let Some(dir) = dir() else { return all };
    for (src, payload) in cf_testkit::pcap_udp(&dir.join(file)) {
        let r = d.decode(from.unwrap_or(src), &payload);
        all.flows.extend(r.flows);
        all.templates += r.templates;
        all.waiting += r.waiting;
        if all.error.is_none() {
            all.error = r.error;
        }
    }
    all
}

/// (template capture, data capture) pairs of one exporter each.
const PAIRS: [(&str, &str); 9] = [
    ("template.pcap", "data.pcap"),
    ("datalink-template.pcap", "datalink-data.pcap"),
    (
        "ethernet-over-mpls-with-control-word-template.pcap",
        "ethernet-over-mpls-with-control-word-data.pcap",
    ),
    ("icmp-template.pcap", "icmp-data.pcap"),
    ("ipfix-srv6-template.pcap", "ipfix-srv6-data.pcap"),
    ("ipfixprobe-templates.pcap", "ipfixprobe-data.pcap"),
    ("juniper-cpid-template.pcap", "juniper-cpid-data.pcap"),
    (
        "multiplesamplingrates-template.pcap",
        "multiplesamplingrates-data.pcap",
    ),
    ("samplingrate-template.pcap", "samplingrate-data.pcap"),
];

#[test]
fn templates_first_or_data_first_give_the_same_flows() {
    if dir().is_none() {
        return;
    }
    for (t, d) in PAIRS {
        let mut a = FlowDecoder::new();
        let learned = feed(&mut a, t, None);
        assert!(
            learned.templates > 0 && learned.error.is_none(),
            "{t}: {learned:?}"
        );
        let in_order = feed(&mut a, d, None);
        if d == "juniper-cpid-data.pcap" {
            // Juniper's enterprise elements around a variable-length frame section are not
            // decoded by the parser: the datagram is reported (and kept raw upstream), not lost.
            assert!(in_order.flows.is_empty(), "{in_order:?}");
            assert!(
                in_order
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("no record")),
                "{in_order:?}"
            );
            continue;
        }
        assert!(!in_order.flows.is_empty(), "{d} after {t}: {in_order:?}");
        assert_eq!(in_order.waiting, 0, "{d}");
        // Records that carry a sampled frame (dataLinkFrameSection) instead of addresses keep
        // their interfaces; the frame itself is not dissected.
        let frames = ["datalink", "ethernet-over-mpls", "ipfix-srv6"]
            .iter()
            .any(|p| d.starts_with(p));
        assert!(
            in_order
                .flows
                .iter()
                .all(|f| (f.src.is_some() && f.dst.is_some()) || (frames && f.in_if.is_some())),
            "{d}: {:?}",
            in_order.flows
        );
        // Data first: held, then decoded when the template arrives.
        let mut b = FlowDecoder::new();
        let early = feed(&mut b, d, None);
        assert!(
            early.flows.is_empty() && early.waiting > 0,
            "{d} alone: {early:?}"
        );
        let late = feed(&mut b, t, None);
        // (A template capture may carry data of its own besides.)
        assert!(
            in_order.flows.iter().all(|f| late.flows.contains(f)),
            "{d} held then decoded: {:?} vs {:?}",
            late.flows,
            in_order.flows
        );
    }
}

#[test]
fn templates_belong_to_their_exporter() {
    if dir().is_none() {
        return;
    }
    let mut d = FlowDecoder::new();
    let a: SocketAddr = "192.0.2.1:2055".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:2055".parse().unwrap();
    assert!(feed(&mut d, "template.pcap", Some(a)).templates > 0);
    let other = feed(&mut d, "data.pcap", Some(b));
    assert!(
        other.flows.is_empty() && other.waiting > 0,
        "another exporter's template is not used: {other:?}"
    );
    assert!(!feed(&mut d, "data.pcap", Some(a)).flows.is_empty());
}

#[test]
fn netflow_v5_matches_the_raw_records() {
    let Some(dir) = dir() else { return };
    let dgrams = cf_testkit::pcap_udp(&dir.join("nfv5.pcap"));
    let raw = &dgrams[0].1;
    let count = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    // Read straight from the wire format (RFC-less but fixed: 24-byte header, 48-byte records).
    let octets: u64 = (0..count)
        .map(|i| {
            let r = &raw[24 + 48 * i..24 + 48 * (i + 1)];
            u64::from(u32::from_be_bytes([r[20], r[21], r[22], r[23]]))
        })
        .sum();
    let protos: Vec<u8> = (0..count).map(|i| raw[24 + 48 * i + 38]).collect();
    let mut d = FlowDecoder::new();
    let out = feed(&mut d, "nfv5.pcap", None);
    assert_eq!(out.flows.len(), count);
    assert_eq!(
        out.flows.iter().filter_map(|f| f.bytes).sum::<u64>(),
        octets
    );
    assert_eq!(
        out.flows
            .iter()
            .map(|f| f.protocol.unwrap())
            .collect::<Vec<_>>(),
        protos
    );
    let o = cf_ingest::netflow::to_ocsf(
        &out.flows[0],
        "10.19.144.41",
        cf_core::Timestamp::from_unix_secs(1),
    );
    assert_eq!(
        (o["class_uid"].as_u64(), o["src_endpoint"]["ip"].as_str()),
        (Some(4001), Some("161.202.212.212"))
    );
}

#[test]
fn every_capture_yields_something_or_a_reason() {
    let Some(dir) = dir() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let mut d = FlowDecoder::new();
        for (src, payload) in cf_testkit::pcap_udp(&p) {
            let r = d.decode(src, &payload);
            assert!(
                !r.flows.is_empty()
                    || r.templates > 0
                    || r.waiting > 0
                    || r.data_sets > 0
                    || r.error.is_some(),
                "{}: a datagram vanished",
                p.display()
            );
            // Truncated and bit-flipped datagrams: an error or fewer flows, never a panic.
            for cut in [1, payload.len() / 2, payload.len().saturating_sub(1)] {
                let _ = FlowDecoder::new().decode(src, &payload[..cut]);
            }
            let mut flipped = payload.clone();
            for b in flipped.iter_mut().step_by(7) {
                *b ^= 0x5a;
            }
            let _ = d.decode(src, &flipped);
            n += 1;
        }
    }
    assert!(n >= 27, "{n} datagrams");
}

#[test]
fn replay_netflow_fuzz_corpus() {
    assert!(cf_testkit::replay_corpus("netflow", cf_ingest::fuzzing::netflow) >= 2);
}
