//! Packet captures from ../shared/datasets/soc (real traffic): the dns2tcp tunnel capture decodes
//! to the same query names netrack's feature extraction took from it, the SYN port scan and the
//! ICMP host sweeps become flows that show the scans' shape, and ARP frames are counted.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use cf_ingest::pcap::{CaptureFlow, Output, read};

fn soc() -> Option<PathBuf> {
    Some(cf_testkit::datasets()?.join("soc"))
}

fn outputs(path: &std::path::Path) -> (cf_ingest::pcap::Stats, Vec<Output>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let st = read(&data, |o| out.push(o)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (st, out)
}

fn flows(out: &[Output]) -> Vec<&CaptureFlow> {
    out.iter()
        .filter_map(|o| match o {
            Output::Flow(f) => Some(f),
            _ => None,
        })
        .collect()
}

#[test]
fn dns2tcp_capture_decodes_to_netrack_query_names() {
    let Some(soc) = soc() else { return };
    let (st, out) = outputs(&soc.join("dns_tunnel/pcap/dns2tcp_netrack_2018-03-23.pcap"));
    assert_eq!(
        st.undecodable,
        0,
        "{:?}",
        out.iter().find(|o| matches!(o, Output::Undecodable { .. }))
    );
    let names: HashSet<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Dns(d) => Some(d.qname.clone()),
            _ => None,
        })
        .collect();
    assert!(st.dns > 1000, "{st:?}");
    // netrack's labelled names of this tool were extracted from this capture.
    let csv = cf_testkit::read_gz(&soc.join("dns_tunnel/netrack_qnames.csv.gz"));
    let expected: BTreeSet<&str> = csv
        .lines()
        .filter(|l| l.ends_with(",dns2tcp_or_iodine"))
        .filter_map(|l| l.split(',').nth(1))
        .map(|q| q.trim_end_matches('.'))
        .collect();
    let found = expected.iter().filter(|q| names.contains(**q)).count();
    // The class holds this capture's 4,000 names and iodine's from another capture.
    assert!(
        found >= 3_950,
        "{found} of {} netrack names decoded; e.g. missing {:?}",
        expected.len(),
        expected.iter().find(|q| !names.contains(**q))
    );
    let tunnel = names
        .iter()
        .filter(|n| n.ends_with("hidemyself.org"))
        .count();
    assert!(
        tunnel * 10 >= names.len() * 9,
        "{tunnel} of {}",
        names.len()
    );
    // Responses carry the answers the tunnel's downstream rides on.
    let answered = out
        .iter()
        .filter(|o| matches!(o, Output::Dns(d) if d.response && !d.answers.is_empty()))
        .count();
    assert!(answered > 100, "{answered}");
    let o = out.iter().find_map(|o| match o {
        Output::Dns(d) if d.response => Some(cf_ingest::dns::to_ocsf(d, "pcap")),
        _ => None,
    });
    let o = o.expect("a response");
    assert_eq!(o["class_uid"], 4003);
    assert_eq!(o["activity_id"], 2);
    assert!(o["answers"][0]["rdata"].is_string(), "{o}");
}

#[test]
fn syn_scan_is_many_one_packet_flows_from_one_source() {
    let Some(soc) = soc() else { return };
    let (st, out) = outputs(&soc.join("pcap/scans_pcaphunt/ps-tcp_syn.pcap"));
    assert_eq!(st.undecodable, 0);
    let fl = flows(&out);
    // The scanner: the source with the most distinct destination ports.
    let mut by_src: std::collections::HashMap<_, HashSet<u16>> = Default::default();
    for f in &fl {
        if f.flow.protocol == Some(6) {
            by_src
                .entry(f.flow.src)
                .or_default()
                .insert(f.flow.dst_port.unwrap_or(0));
        }
    }
    let (scanner, ports) = by_src.iter().max_by_key(|(_, p)| p.len()).unwrap();
    assert!(ports.len() >= 500, "{} ports", ports.len());
    let syn_only = fl
        .iter()
        .filter(|f| f.flow.src == *scanner && f.flow.tcp_flags == Some(0x02))
        .count();
    assert!(
        syn_only * 10 >= ports.len() * 9,
        "{syn_only} SYN-only flows of {} ports",
        ports.len()
    );
    let o = cf_ingest::pcap::flow_to_ocsf(fl[0], "ps-tcp_syn.pcap");
    assert_eq!(o["class_uid"], 4001);
    assert_eq!(o["metadata"]["product"]["name"], "pcap");
}

#[test]
fn icmp_sweeps_are_echo_requests_to_many_hosts() {
    let Some(soc) = soc() else { return };
    let dir = soc.join("pcap/scans_pcaphunt");
    // Two captures of the sweep (the `.pcapng` one is, despite its name, a pcap file too).
    for name in ["hs-icmpScan.pcap", "hs-icmpScan.pcapng"] {
        let (st, out) = outputs(&dir.join(name));
        assert_eq!(st.undecodable, 0, "{name}");
        let echo_targets: HashSet<_> = flows(&out)
            .iter()
            .filter(|f| f.flow.protocol == Some(1) && f.flow.dst_port == Some(0x0800))
            .map(|f| f.flow.dst)
            .collect();
        assert!(
            echo_targets.len() >= 50,
            "{name}: {} hosts pinged",
            echo_targets.len()
        );
    }
    // ARP frames are counted, not lost and not flows.
    let (arp, _) = outputs(&dir.join("hs-arpScan.pcap"));
    assert!(arp.non_ip > 100 && arp.undecodable == 0, "{arp:?}");
}

#[test]
fn fuzz_corpus_replays() {
    assert!(cf_testkit::replay_corpus("pcap", cf_ingest::fuzzing::pcap) >= 2);
}

proptest::proptest! {
    /// Arbitrary bytes as a capture, or as a DNS message, are read or refused, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        cf_ingest::fuzzing::pcap(&data);
        let ends = ("10.0.0.1".parse().unwrap(), 1, "10.0.0.2".parse().unwrap(), 53);
        let _ = cf_ingest::dns::decode(&data, ends, "udp", cf_core::Timestamp::from_unix_secs(0));
    }

    /// A valid pcap header followed by arbitrary records never panics either, and every packet
    /// is accounted for (decoded, non-IP or undecodable).
    #[test]
    fn arbitrary_records_are_accounted_for(body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
        f.extend_from_slice(&body);
        let st = read(&f, |_| {}).unwrap();
        proptest::prop_assert!(st.undecodable <= st.packets + 1);
    }
}
