//! NetFlow v5, v9 and IPFIX (SA-1): exporters' datagrams decoded with per-exporter template
//! state (netflow_parser: templates scoped by exporter and observation domain, data that arrives
//! before its template held and decoded when the template comes), each flow normalised to one
//! record and to OCSF Network Activity (class 4001).

use std::net::{IpAddr, SocketAddr};

use cf_core::Timestamp;
use netflow_parser::static_versions::v5::V5;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::ipfix::{FlowSetBody as IpfixBody, IPFix};
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, V9};
use netflow_parser::{
    AutoScopedParser, FieldValue, NetflowPacket, NetflowParser, PendingFlowsConfig, V9Field,
};
use serde::Serialize;
use serde_json::{Value, json};

/// One flow, whatever the export protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// 5, 9 or 10 (IPFIX).
    pub version: u16,
    /// Source address.
    pub src: Option<IpAddr>,
    /// Destination address.
    pub dst: Option<IpAddr>,
    /// Source port (ICMP: 0).
    pub src_port: Option<u16>,
    /// Destination port (ICMP: type × 256 + code, as exporters encode it).
    pub dst_port: Option<u16>,
    /// IP protocol number.
    pub protocol: Option<u8>,
    /// Bytes (as exported, before sampling correction).
    pub bytes: Option<u64>,
    /// Packets.
    pub packets: Option<u64>,
    /// Cumulative TCP flags.
    pub tcp_flags: Option<u8>,
    /// Input interface index.
    pub in_if: Option<u32>,
    /// Output interface index.
    pub out_if: Option<u32>,
    /// Sampling interval (1 in N), when the exporter says.
    pub sampling: Option<u32>,
}

/// What one datagram yielded.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Flows decoded (including earlier data decoded now that its template arrived).
    pub flows: Vec<Flow>,
    /// Template definitions learned.
    pub templates: usize,
    /// Data sets held until their template arrives.
    pub waiting: usize,
    /// Why decoding stopped early, if it did (flows before that point are kept).
    pub error: Option<String>,
    /// Data and options-data sets decoded.
    pub data_sets: usize,
}

/// Data sets (set id ≥ 256) in a v9 or IPFIX datagram, read from the set headers.
fn data_sets(data: &[u8]) -> usize {
    let version = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut at = match version {
        Some(9) => 20,
        Some(10) => 16,
        _ => return 0,
    };
    let mut n = 0;
    while let Some(h) = data.get(at..at + 4) {
        let (id, len) = (
            u16::from_be_bytes([h[0], h[1]]),
            usize::from(u16::from_be_bytes([h[2], h[3]])),
        );
        if len < 4 {
            break;
        }
        if id >= 256 {
            n += 1;
        }
        at += len;
    }
    n
}

/// Decoder with one template state per exporter.
pub struct FlowDecoder {
    parser: AutoScopedParser,
}

impl std::fmt::Debug for FlowDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowDecoder").finish_non_exhaustive()
    }
}

impl Default for FlowDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn num(v: &FieldValue) -> Option<u64> {
    v.as_u64()
}

fn ip(v: &FieldValue) -> Option<IpAddr> {
    v.try_into().ok()
}

/// The fields of a flow the normalised record keeps, by canonical name.
#[derive(Clone, Copy)]
enum Key {
    Src,
    Dst,
    SrcPort,
    DstPort,
    Proto,
    Bytes,
    Packets,
    Flags,
    InIf,
    OutIf,
    Sampling,
}

fn set(f: &mut Flow, k: Key, v: &FieldValue) {
    let small = |x: Option<u64>| x.and_then(|n| u32::try_from(n).ok());
    match k {
        Key::Src => f.src = f.src.or_else(|| ip(v)),
        Key::Dst => f.dst = f.dst.or_else(|| ip(v)),
        Key::SrcPort => f.src_port = num(v).and_then(|n| u16::try_from(n).ok()),
        Key::DstPort => f.dst_port = num(v).and_then(|n| u16::try_from(n).ok()),
        Key::Proto => f.protocol = v.as_u8(),
        Key::Bytes => f.bytes = num(v),
        Key::Packets => f.packets = num(v),
        Key::Flags => {
            f.tcp_flags = match v {
                FieldValue::TcpControlBits(_, raw) => Some(*raw),
                other => num(other).and_then(|n| u8::try_from(n & 0xff).ok()),
            }
        }
        Key::InIf => f.in_if = small(num(v)),
        Key::OutIf => f.out_if = small(num(v)),
        Key::Sampling => f.sampling = small(num(v)),
    }
}

fn v9_key(k: &V9Field) -> Option<Key> {
    Some(match k {
        V9Field::Ipv4SrcAddr | V9Field::Ipv6SrcAddr => Key::Src,
        V9Field::Ipv4DstAddr | V9Field::Ipv6DstAddr => Key::Dst,
        V9Field::L4SrcPort => Key::SrcPort,
        V9Field::L4DstPort => Key::DstPort,
        V9Field::Protocol => Key::Proto,
        V9Field::InBytes => Key::Bytes,
        V9Field::InPkts => Key::Packets,
        V9Field::TcpFlags => Key::Flags,
        V9Field::InputSnmp => Key::InIf,
        V9Field::OutputSnmp => Key::OutIf,
        V9Field::SamplingInterval => Key::Sampling,
        _ => return None,
    })
}

fn ipfix_key(k: &IPFixField) -> Option<Key> {
    let IPFixField::IANA(k) = k else { return None };
    Some(match k {
        IANAIPFixField::SourceIpv4address | IANAIPFixField::SourceIpv6address => Key::Src,
        IANAIPFixField::DestinationIpv4address | IANAIPFixField::DestinationIpv6address => Key::Dst,
        IANAIPFixField::SourceTransportPort => Key::SrcPort,
        IANAIPFixField::DestinationTransportPort => Key::DstPort,
        IANAIPFixField::ProtocolIdentifier => Key::Proto,
        IANAIPFixField::OctetDeltaCount => Key::Bytes,
        IANAIPFixField::PacketDeltaCount => Key::Packets,
        IANAIPFixField::TcpControlBits => Key::Flags,
        IANAIPFixField::IngressInterface => Key::InIf,
        IANAIPFixField::EgressInterface => Key::OutIf,
        IANAIPFixField::SamplingInterval => Key::Sampling,
        _ => return None,
    })
}

fn from_v5(p: &V5, out: &mut Decoded) {
    // The low 14 bits are the interval; the top two the sampling mode.
    let interval = u32::from(p.header.sampling_interval & 0x3fff);
    for s in &p.flowsets {
        out.flows.push(Flow {
            version: 5,
            src: Some(IpAddr::V4(s.src_addr)),
            dst: Some(IpAddr::V4(s.dst_addr)),
            src_port: Some(s.src_port),
            dst_port: Some(s.dst_port),
            protocol: Some(s.protocol_number),
            bytes: Some(u64::from(s.d_octets)),
            packets: Some(u64::from(s.d_pkts)),
            tcp_flags: Some(s.tcp_flags),
            in_if: Some(u32::from(s.input)),
            out_if: Some(u32::from(s.output)),
            sampling: (interval > 0).then_some(interval),
        });
    }
}

/// One data set's records, each field mapped by `key`; an empty set is reported, not skipped.
fn data_set<K>(
    records: &[Vec<(K, FieldValue)>],
    set_id: u16,
    version: u16,
    key: fn(&K) -> Option<Key>,
    out: &mut Decoded,
) {
    out.data_sets += 1;
    if records.is_empty() {
        out.error.get_or_insert_with(|| {
            format!("data set {set_id}: no record could be decoded with its template")
        });
    }
    for rec in records {
        let mut f = Flow {
            version,
            ..Flow::default()
        };
        for (k, v) in rec {
            if let Some(k) = key(k) {
                set(&mut f, k, v);
            }
        }
        out.flows.push(f);
    }
}

fn from_v9(p: &V9, out: &mut Decoded) {
    for fs in &p.flowsets {
        match &fs.body {
            V9Body::Template(t) => out.templates += t.templates.len(),
            V9Body::OptionsTemplate(t) => out.templates += t.templates.len(),
            V9Body::Data(d) => data_set(&d.fields, fs.header.flowset_id, 9, v9_key, out),
            V9Body::NoTemplate(_) => out.waiting += 1,
            V9Body::OptionsData(_) => out.data_sets += 1,
            V9Body::Empty => {}
        }
    }
}

fn from_ipfix(p: &IPFix, out: &mut Decoded) {
    for fs in &p.flowsets {
        match &fs.body {
            IpfixBody::Template(_)
            | IpfixBody::OptionsTemplate(_)
            | IpfixBody::V9Template(_)
            | IpfixBody::V9OptionsTemplate(_) => out.templates += 1,
            IpfixBody::Templates(t) => out.templates += t.len(),
            IpfixBody::OptionsTemplates(t) => out.templates += t.len(),
            IpfixBody::V9Templates(t) => out.templates += t.len(),
            IpfixBody::V9OptionsTemplates(t) => out.templates += t.len(),
            IpfixBody::Data(d) => data_set(&d.fields, fs.header.header_id, 10, ipfix_key, out),
            IpfixBody::V9Data(d) => data_set(&d.fields, fs.header.header_id, 10, v9_key, out),
            IpfixBody::NoTemplate(_) => out.waiting += 1,
            IpfixBody::OptionsData(_) | IpfixBody::V9OptionsData(_) => out.data_sets += 1,
            IpfixBody::Empty => {}
        }
    }
}

impl FlowDecoder {
    /// A decoder that holds data sets until their template arrives (bounded by the library's
    /// defaults: per template and in total).
    pub fn new() -> Self {
        let builder = NetflowParser::builder().with_pending_flows(PendingFlowsConfig::default());
        let parser = AutoScopedParser::try_with_builder(builder).unwrap_or_default();
        FlowDecoder { parser }
    }

    /// Decode one datagram from `exporter`.
    pub fn decode(&mut self, exporter: SocketAddr, data: &[u8]) -> Decoded {
        let r = self.parser.parse_from_source(exporter, data);
        let mut out = Decoded {
            error: r.error.map(|e| e.to_string()),
            ..Decoded::default()
        };
        for p in &r.packets {
            match p {
                NetflowPacket::V5(v) => from_v5(v, &mut out),
                NetflowPacket::V9(v) => from_v9(v, &mut out),
                NetflowPacket::IPFix(v) => from_ipfix(v, &mut out),
                _ => {
                    out.error
                        .get_or_insert_with(|| "NetFlow v7 is not accepted".to_string());
                }
            }
        }
        if r.packets.is_empty() && out.error.is_none() {
            out.error = Some("no NetFlow/IPFIX message in the datagram".into());
        }
        // Data sets the parser held back for a template it has not seen yet.
        out.waiting += data_sets(data).saturating_sub(out.data_sets);
        out
    }
}

/// OCSF Network Activity (4001), activity "Traffic" (6), for one flow.
pub fn to_ocsf(f: &Flow, exporter: &str, time: Timestamp) -> Value {
    let proto = match f.protocol {
        Some(1) => "icmp",
        Some(6) => "tcp",
        Some(17) => "udp",
        Some(58) => "icmpv6",
        Some(_) | None => "other",
    };
    json!({
        "class_uid": 4001,
        "class_name": "Network Activity",
        "category_uid": 4,
        "activity_id": 6,
        "type_uid": 400106,
        "time": time.unix_millis(),
        "metadata": {"version": "1.3.0", "product": {"name": format!("netflow v{}", f.version)},
                      "log_provider": exporter},
        "src_endpoint": {"ip": f.src.map(|a| a.to_string()), "port": f.src_port,
                          "interface_uid": f.in_if.map(|i| i.to_string())},
        "dst_endpoint": {"ip": f.dst.map(|a| a.to_string()), "port": f.dst_port,
                          "interface_uid": f.out_if.map(|i| i.to_string())},
        "connection_info": {"protocol_num": f.protocol, "protocol_name": proto,
                             "tcp_flags": f.tcp_flags},
        "traffic": {"bytes": f.bytes, "packets": f.packets},
        "sampling_interval": f.sampling,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v5_packet(flows: u16) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&5u16.to_be_bytes());
        p.extend_from_slice(&flows.to_be_bytes());
        p.extend_from_slice(&1000u32.to_be_bytes()); // uptime
        p.extend_from_slice(&1_800_000_000u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes()); // sequence
        p.extend_from_slice(&[0, 0]); // engine type, id
        p.extend_from_slice(&(0x4000u16 | 100).to_be_bytes()); // mode 1, 1 in 100
        for i in 0..flows {
            p.extend_from_slice(&[10, 0, 0, 1]);
            p.extend_from_slice(&[192, 168, 1, u8::try_from(i).unwrap_or(0)]);
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&3u16.to_be_bytes());
            p.extend_from_slice(&4u16.to_be_bytes());
            p.extend_from_slice(&10u32.to_be_bytes()); // packets
            p.extend_from_slice(&1500u32.to_be_bytes()); // bytes
            p.extend_from_slice(&100u32.to_be_bytes());
            p.extend_from_slice(&200u32.to_be_bytes());
            p.extend_from_slice(&40000u16.to_be_bytes());
            p.extend_from_slice(&443u16.to_be_bytes());
            p.extend_from_slice(&[0, 0x12, 6, 0]); // pad, flags, proto, tos
            p.extend_from_slice(&[0; 8]); // AS, masks, pad
        }
        p
    }

    #[test]
    fn v5_flows_normalise() {
        let mut d = FlowDecoder::new();
        let out = d.decode("10.9.9.9:2055".parse().unwrap(), &v5_packet(3));
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.flows.len(), 3);
        let f = &out.flows[2];
        assert_eq!(f.dst, Some("192.168.1.2".parse().unwrap()));
        assert_eq!(
            (f.dst_port, f.protocol, f.bytes, f.packets),
            (Some(443), Some(6), Some(1500), Some(10))
        );
        assert_eq!(
            (f.tcp_flags, f.in_if, f.sampling),
            (Some(0x12), Some(3), Some(100))
        );
        let o = to_ocsf(f, "10.9.9.9", Timestamp::from_unix_secs(1_800_000_000));
        assert_eq!(o["class_uid"], 4001);
        assert_eq!(o["connection_info"]["protocol_name"], "tcp");
        assert_eq!(o["traffic"]["bytes"], 1500);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = FlowDecoder::new();
        for junk in [
            &b""[..],
            b"\x00",
            b"\x00\x05\xff\xff",
            b"hello world",
            &[0xff; 64],
        ] {
            let out = d.decode("10.0.0.1:9".parse().unwrap(), junk);
            assert!(out.flows.is_empty());
            assert!(out.error.is_some(), "{junk:?}");
        }
        // A v5 header that claims more flows than it carries.
        let mut short = v5_packet(2);
        short.truncate(24 + 48 + 10);
        let out = d.decode("10.0.0.1:9".parse().unwrap(), &short);
        assert!(out.error.is_some() || out.flows.len() <= 1);
    }
}
