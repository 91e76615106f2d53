//! Packet captures (SA-1, IDS-1): pcap and pcapng files read packet by packet (pcap-parser) and
//! decoded to L3/L4 (etherparse). DNS messages become DNS records (OCSF 4003); every packet is
//! also folded into unidirectional flows (OCSF 4001, as an exporter would), so a capture feeds the
//! same analytics as DNS logs and NetFlow.

use std::collections::HashMap;
use std::net::IpAddr;

use cf_core::Timestamp;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_parser::pcapng::Block;
use pcap_parser::{Linktype, PcapBlockOwned, PcapNGSlice};
use serde_json::{Value, json};

use crate::dns::DnsRecord;
use crate::netflow::Flow;

/// Why a capture could not be read at all (a damaged packet later in the file is an
/// [`Output::Undecodable`] instead, and the packets before it are kept).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaptureError {
    /// Neither a pcap nor a pcapng header.
    #[error("not a pcap or pcapng file (first bytes {0})")]
    NotACapture(String),
}

/// A flow built from captured packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFlow {
    /// The flow (version 0: built from a capture).
    pub flow: Flow,
    /// First packet.
    pub first: Timestamp,
    /// Last packet.
    pub last: Timestamp,
}

/// What a capture yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A DNS query or response.
    Dns(DnsRecord),
    /// A flow that ended (idle, active timeout or end of capture).
    Flow(CaptureFlow),
    /// A packet (1-based index in the file) that could not be decoded, and why.
    Undecodable {
        /// Packet number.
        packet: u64,
        /// Reason.
        reason: String,
    },
}

/// Counts of one capture.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Packets read.
    pub packets: u64,
    /// Packets without IP (ARP, STP …): counted, not flows.
    pub non_ip: u64,
    /// DNS messages decoded.
    pub dns: u64,
    /// Flows emitted.
    pub flows: u64,
    /// Packets or DNS payloads that could not be decoded.
    pub undecodable: u64,
}

/// A flow ends after this long without packets (NetFlow exporters' common inactive timeout).
const IDLE_MS: i64 = 15_000;
/// A long flow is cut after this long (exporters' active timeout), so it reaches the analytics.
const ACTIVE_MS: i64 = 60_000;
/// The table is swept for idle flows at most this often (packet time).
const SWEEP_MS: i64 = 5_000;
/// Largest DNS message considered (RFC 1035 TCP maximum).
const DNS_MAX: usize = 65_535;

type FlowKey = (u8, IpAddr, u16, IpAddr, u16);

/// Turns packets into DNS records and flows.
#[derive(Debug, Default)]
pub struct PacketDecoder {
    flows: HashMap<FlowKey, CaptureFlow>,
    last_sweep_ms: i64,
    /// Counts so far.
    pub stats: Stats,
}

fn fold_flow(f: &mut CaptureFlow, t: Timestamp, len: u64, flags: Option<u8>) {
    f.last = t;
    f.flow.bytes = Some(f.flow.bytes.unwrap_or(0) + len);
    f.flow.packets = Some(f.flow.packets.unwrap_or(0) + 1);
    if let Some(x) = flags {
        f.flow.tcp_flags = Some(f.flow.tcp_flags.unwrap_or(0) | x);
    }
}

impl PacketDecoder {
    /// A decoder with no flows.
    pub fn new() -> Self {
        Self::default()
    }

    /// One captured frame of `linktype` (1-based `index`, capture time `t`).
    pub fn frame(
        &mut self,
        index: u64,
        t: Timestamp,
        linktype: Linktype,
        data: &[u8],
    ) -> Vec<Output> {
        self.stats.packets += 1;
        let mut out = Vec::new();
        let sliced = match linktype {
            Linktype::ETHERNET => SlicedPacket::from_ethernet(data),
            Linktype::LINUX_SLL => SlicedPacket::from_linux_sll(data),
            Linktype::RAW | Linktype::IPV4 | Linktype::IPV6 => SlicedPacket::from_ip(data),
            Linktype::NULL | Linktype::LOOP => match data.get(4..) {
                Some(rest) => SlicedPacket::from_ip(rest),
                None => {
                    self.undecodable(&mut out, index, "loopback frame shorter than its header");
                    return out;
                }
            },
            other => {
                self.undecodable(
                    &mut out,
                    index,
                    &format!("link type {} is not supported", other.0),
                );
                return out;
            }
        };
        let p = match sliced {
            Ok(p) => p,
            Err(e) => {
                self.undecodable(&mut out, index, &format!("frame: {e}"));
                return out;
            }
        };
        let (src, dst, proto, ip_len) = match &p.net {
            Some(NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    h.protocol().0,
                    u64::from(h.total_len()),
                )
            }
            Some(NetSlice::Ipv6(v6)) => {
                let h = v6.header();
                (
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    v6.payload().ip_number.0,
                    u64::from(h.payload_length()) + 40,
                )
            }
            _ => {
                self.stats.non_ip += 1;
                self.sweep(t, &mut out);
                return out;
            }
        };
        let (sport, dport, flags) = match &p.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                let fl = u8::from(tcp.fin())
                    | u8::from(tcp.syn()) << 1
                    | u8::from(tcp.rst()) << 2
                    | u8::from(tcp.psh()) << 3
                    | u8::from(tcp.ack()) << 4
                    | u8::from(tcp.urg()) << 5;
                (tcp.source_port(), tcp.destination_port(), Some(fl))
            }
            Some(TransportSlice::Udp(udp)) => (udp.source_port(), udp.destination_port(), None),
            // Exporters encode ICMP type and code in the destination port.
            Some(TransportSlice::Icmpv4(i)) => (
                0,
                u16::from(i.type_u8()) << 8 | u16::from(i.code_u8()),
                None,
            ),
            Some(TransportSlice::Icmpv6(i)) => (
                0,
                u16::from(i.type_u8()) << 8 | u16::from(i.code_u8()),
                None,
            ),
            _ => (0, 0, None),
        };
        // DNS: UDP port 53 carries one message; TCP carries a 2-byte length prefix, and only
        // segments holding one whole message are read (no stream reassembly here).
        let dns_payload = match &p.transport {
            Some(TransportSlice::Udp(udp)) if sport == 53 || dport == 53 => {
                Some(("udp", udp.payload()))
            }
            Some(TransportSlice::Tcp(tcp))
                if (sport == 53 || dport == 53) && tcp.payload().len() > 2 =>
            {
                let pl = tcp.payload();
                let n = usize::from(u16::from_be_bytes([pl[0], pl[1]]));
                (n + 2 == pl.len() && n <= DNS_MAX).then(|| ("tcp", &pl[2..]))
            }
            _ => None,
        };
        if let Some((transport, payload)) = dns_payload {
            match crate::dns::decode(payload, (src, sport, dst, dport), transport, t) {
                Ok(d) => {
                    self.stats.dns += 1;
                    out.push(Output::Dns(d));
                }
                Err(e) => self.undecodable(&mut out, index, &e.to_string()),
            }
        }
        let key = (proto, src, sport, dst, dport);
        let ms = t.unix_millis();
        if let Some(f) = self.flows.get(&key)
            && (ms - f.last.unix_millis() > IDLE_MS || ms - f.first.unix_millis() > ACTIVE_MS)
            && let Some(done) = self.flows.remove(&key)
        {
            self.emit(done, &mut out);
        }
        let f = self.flows.entry(key).or_insert_with(|| CaptureFlow {
            flow: Flow {
                version: 0,
                src: Some(src),
                dst: Some(dst),
                src_port: Some(sport),
                dst_port: Some(dport),
                protocol: Some(proto),
                ..Flow::default()
            },
            first: t,
            last: t,
        });
        fold_flow(f, t, ip_len, flags);
        self.sweep(t, &mut out);
        out
    }

    fn undecodable(&mut self, out: &mut Vec<Output>, packet: u64, reason: &str) {
        self.stats.undecodable += 1;
        out.push(Output::Undecodable {
            packet,
            reason: reason.to_string(),
        });
    }

    fn emit(&mut self, f: CaptureFlow, out: &mut Vec<Output>) {
        self.stats.flows += 1;
        out.push(Output::Flow(f));
    }

    fn sweep(&mut self, t: Timestamp, out: &mut Vec<Output>) {
        let ms = t.unix_millis();
        if ms - self.last_sweep_ms < SWEEP_MS {
            return;
        }
        self.last_sweep_ms = ms;
        let mut idle: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| ms - f.last.unix_millis() > IDLE_MS)
            .map(|(k, _)| *k)
            .collect();
        idle.sort_by_key(|k| self.flows[k].first);
        for k in idle {
            if let Some(f) = self.flows.remove(&k) {
                self.emit(f, out);
            }
        }
    }

    /// End of capture: every open flow, oldest first.
    pub fn finish(&mut self) -> Vec<Output> {
        let mut rest: Vec<CaptureFlow> = self.flows.drain().map(|(_, f)| f).collect();
        rest.sort_by_key(|f| (f.first, f.last));
        let mut out = Vec::new();
        for f in rest {
            self.emit(f, &mut out);
        }
        out
    }
}

fn ts(secs: u32, frac: u32, nanos_per_unit: i64) -> Timestamp {
    Timestamp::from_unix_nanos(i64::from(secs) * 1_000_000_000 + i64::from(frac) * nanos_per_unit)
}

/// Read a whole capture file, handing every output to `sink` as it comes; returns the counts.
/// A damaged packet becomes [`Output::Undecodable`] and, when the file cannot be followed past
/// it, the rest is reported as one undecodable tail.
pub fn read(data: &[u8], mut sink: impl FnMut(Output)) -> Result<Stats, CaptureError> {
    let mut d = PacketDecoder::new();
    let mut index = 0u64;
    if let Ok((mut rem, header)) = pcap_parser::parse_pcap_header(data) {
        let unit = if header.is_nanosecond_precision() {
            1
        } else {
            1000
        };
        let parse = if header.is_bigendian() {
            pcap_parser::parse_pcap_frame_be
        } else {
            pcap_parser::parse_pcap_frame
        };
        while !rem.is_empty() {
            index += 1;
            match parse(rem) {
                Ok((next, b)) => {
                    rem = next;
                    for o in d.frame(index, ts(b.ts_sec, b.ts_usec, unit), header.network, b.data) {
                        sink(o);
                    }
                }
                Err(e) => {
                    d.stats.undecodable += 1;
                    sink(Output::Undecodable {
                        packet: index,
                        reason: format!(
                            "capture cut or damaged here ({} bytes left): {e}",
                            rem.len()
                        ),
                    });
                    break;
                }
            }
        }
    } else if let Ok(ng) = PcapNGSlice::from_slice(data) {
        // Per section: each interface's link type, resolution (units/s) and offset (s).
        let mut ifaces: Vec<(Linktype, u64, i64)> = Vec::new();
        for block in ng {
            let b = match block {
                Ok(PcapBlockOwned::NG(b)) => b,
                Ok(_) => continue,
                Err(e) => {
                    d.stats.undecodable += 1;
                    sink(Output::Undecodable {
                        packet: index + 1,
                        reason: format!("capture cut or damaged here: {e}"),
                    });
                    break;
                }
            };
            match b {
                Block::SectionHeader(_) => ifaces.clear(),
                Block::InterfaceDescription(idb) => ifaces.push((
                    idb.linktype,
                    idb.ts_resolution().unwrap_or(0),
                    idb.ts_offset(),
                )),
                Block::EnhancedPacket(epb) => {
                    index += 1;
                    match ifaces.get(epb.if_id as usize) {
                        Some(&(lt, res, off)) if res > 0 => {
                            let raw = (u128::from(epb.ts_high) << 32) | u128::from(epb.ts_low);
                            let nanos = (raw * 1_000_000_000 / u128::from(res)) as i64;
                            let t = Timestamp::from_unix_nanos(
                                nanos.saturating_add(off.saturating_mul(1_000_000_000)),
                            );
                            for o in d.frame(index, t, lt, epb.data) {
                                sink(o);
                            }
                        }
                        _ => {
                            d.stats.undecodable += 1;
                            sink(Output::Undecodable {
                                packet: index,
                                reason: format!(
                                    "packet names interface {} that the section does not describe",
                                    epb.if_id
                                ),
                            });
                        }
                    }
                }
                Block::SimplePacket(spb) => {
                    index += 1;
                    let lt = ifaces.first().map_or(Linktype::ETHERNET, |i| i.0);
                    for o in d.frame(index, ts(0, 0, 0), lt, spb.data) {
                        sink(o);
                    }
                }
                _ => {}
            }
        }
    } else {
        return Err(CaptureError::NotACapture(
            data.iter().take(8).map(|b| format!("{b:02x}")).collect(),
        ));
    }
    for o in d.finish() {
        sink(o);
    }
    Ok(d.stats)
}

/// OCSF Network Activity (4001) for a flow from a capture, with its start and end.
pub fn flow_to_ocsf(f: &CaptureFlow, capture: &str) -> Value {
    let mut v = crate::netflow::to_ocsf(&f.flow, capture, f.last);
    v["metadata"]["product"]["name"] = json!("pcap");
    v["start_time"] = json!(f.first.unix_millis());
    v["end_time"] = json!(f.last.unix_millis());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .udp(sport, dport);
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).unwrap();
        v
    }

    fn pcap_file(frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for (t, fr) in frames {
            f.extend_from_slice(&t.to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
            f.extend_from_slice(&(fr.len() as u32).to_le_bytes());
            f.extend_from_slice(fr);
        }
        f
    }

    fn dns_query(name: &str) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            p.push(l.len() as u8);
            p.extend_from_slice(l.as_bytes());
        }
        p.extend_from_slice(&[0, 0, 16, 0, 1]);
        p
    }

    #[test]
    fn dns_and_flows_from_a_capture() {
        let q = dns_query("abc.example.org");
        let file = pcap_file(&[
            (100, udp_frame([10, 0, 0, 5], [10, 0, 0, 1], 5353, 53, &q)),
            (101, udp_frame([10, 0, 0, 5], [10, 0, 0, 1], 5353, 53, &q)),
            (
                200,
                udp_frame([10, 0, 0, 5], [10, 0, 0, 9], 4000, 9999, b"x"),
            ),
        ]);
        let mut outs = Vec::new();
        let st = read(&file, |o| outs.push(o)).unwrap();
        assert_eq!((st.packets, st.dns, st.undecodable), (3, 2, 0));
        let dns: Vec<&DnsRecord> = outs
            .iter()
            .filter_map(|o| {
                if let Output::Dns(d) = o {
                    Some(d)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(dns[0].qname, "abc.example.org");
        assert_eq!(dns[0].qtype_name, "TXT");
        assert_eq!(dns[0].time, Timestamp::from_unix_secs(100));
        let flows: Vec<&CaptureFlow> = outs
            .iter()
            .filter_map(|o| {
                if let Output::Flow(f) = o {
                    Some(f)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            flows.len(),
            2,
            "the DNS flow went idle before the third packet"
        );
        assert_eq!(flows[0].flow.packets, Some(2));
        assert_eq!(flows[0].flow.dst_port, Some(53));
        let o = flow_to_ocsf(flows[0], "t.pcap");
        assert_eq!(
            (o["class_uid"].as_u64(), o["start_time"].as_i64()),
            (Some(4001), Some(100_000))
        );
    }

    #[test]
    fn damage_is_reported_and_what_came_before_is_kept() {
        let q = dns_query("a.example");
        let mut file = pcap_file(&[
            (1, udp_frame([10, 0, 0, 5], [10, 0, 0, 1], 5000, 53, &q)),
            (
                2,
                udp_frame([10, 0, 0, 5], [10, 0, 0, 1], 5000, 53, b"\xff\xff"),
            ),
            (3, vec![0xde, 0xad]),
        ]);
        file.extend_from_slice(&[1, 2, 3]);
        let mut outs = Vec::new();
        let st = read(&file, |o| outs.push(o)).unwrap();
        assert_eq!(st.dns, 1);
        let bad: Vec<u64> = outs
            .iter()
            .filter_map(|o| {
                if let Output::Undecodable { packet, .. } = o {
                    Some(*packet)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(bad, [2, 3, 4]);
        assert!(matches!(
            read(b"not a capture at all", |_| {}),
            Err(CaptureError::NotACapture(_))
        ));
        assert!(read(b"", |_| {}).is_err());
    }
}
