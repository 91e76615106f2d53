//! Flow analytics (SA-2): per-host behaviour over flows (NetFlow/IPFIX, captures, Zeek conn
//! logs) — port scans (one source, many ports of one host), sweeps (one source, one service on
//! many hosts, ICMP echo included), ICMP exfiltration (echo traffic carrying bulk payload) and C2
//! beaconing (one destination contacted at regular intervals with regular sizes).
//!
//! Event time drives every window; per-key state is capped so memory stays bounded under a flood.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

/// One flow as the analytics need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowObs {
    /// Flow start, ms.
    pub time_ms: i64,
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// Destination port (ICMP: type × 256 + code).
    pub dst_port: u16,
    /// Source port (0 if unknown).
    pub src_port: u16,
    /// Bytes the destination answered with, when the record is bidirectional (Zeek conn.log);
    /// `None` for unidirectional flow records (NetFlow, IPFIX, capture flows).
    pub reply_bytes: Option<u64>,
    /// IP protocol.
    pub proto: u8,
    /// Bytes from the source.
    pub bytes: u64,
    /// Packets from the source.
    pub packets: u64,
}

impl FlowObs {
    /// The flow of an OCSF Network Activity (4001) event (flow start from `start_time`, else
    /// `time`); `None` for other classes or a flow without a source address.
    pub fn from_ocsf(o: &serde_json::Value) -> Option<FlowObs> {
        if o.get("class_uid")?.as_u64()? != 4001 {
            return None;
        }
        let s = |p: &str| {
            o.pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let n = |p: &str| {
            o.pointer(p)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let f = FlowObs {
            time_ms: o["start_time"].as_i64().or_else(|| o["time"].as_i64())?,
            src: s("/src_endpoint/ip"),
            dst: s("/dst_endpoint/ip"),
            dst_port: u16::try_from(n("/dst_endpoint/port")).unwrap_or(0),
            src_port: u16::try_from(n("/src_endpoint/port")).unwrap_or(0),
            // A refused or unanswered connection (status Failure) got no reply, whatever
            // the responder's RST packets weighed.
            reply_bytes: o
                .pointer("/traffic/bytes_in")
                .and_then(serde_json::Value::as_u64)
                .map(|b| if o["status_id"] == 2 { 0 } else { b }),
            proto: u8::try_from(n("/connection_info/protocol_num")).unwrap_or(0),
            bytes: n("/traffic/bytes"),
            packets: n("/traffic/packets"),
        };
        (!f.src.is_empty()).then_some(f)
    }
}

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct NetRules {
    /// Scan and sweep window, ms.
    pub scan_window_ms: i64,
    /// Distinct ports of one host probed from one source: port scan.
    pub scan_ports: usize,
    /// Distinct hosts probed on one port (or pinged) from one source: sweep.
    pub sweep_hosts: usize,
    /// A probe is a flow of at most this many packets.
    pub probe_packets: u64,
    /// ICMP exfiltration: bytes from one source to one destination within the window…
    pub icmp_bytes: u64,
    /// …with at least this many bytes per packet (an ordinary ping carries 64–100).
    pub icmp_bytes_per_packet: u64,
    /// Beaconing: connections needed to judge regularity.
    pub beacon_min: usize,
    /// Shortest beacon period considered, ms (faster is a session, not a beacon).
    pub beacon_min_period_ms: i64,
    /// Largest coefficient of variation of the intervals.
    pub beacon_interval_cv: f64,
    /// Largest coefficient of variation of the sizes.
    pub beacon_size_cv: f64,
    /// Keys tracked at most per analytic.
    pub max_keys: usize,
}

impl Default for NetRules {
    fn default() -> Self {
        NetRules {
            scan_window_ms: 5 * 60 * 1000,
            scan_ports: 50,
            sweep_hosts: 30,
            probe_packets: 3,
            icmp_bytes: 64 * 1024,
            icmp_bytes_per_packet: 300,
            beacon_min: 8,
            beacon_min_period_ms: 5_000,
            beacon_interval_cv: 0.1,
            beacon_size_cv: 0.2,
            max_keys: 100_000,
        }
    }
}

/// A finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetAlert {
    /// `net.port_scan`, `net.sweep_scan`, `net.icmp_exfil`, `net.beacon`, or from the per-host
    /// baselines `net.lateral_movement`, `net.new_port`, `net.exfil_volume`, `net.exfil_upload`.
    pub kind: &'static str,
    /// Source address.
    pub src: String,
    /// The host scanned, the exfiltration or beacon destination (`dst:port`), or the port swept.
    pub target: String,
    /// Distinct ports or hosts (scans), packets (ICMP), connections (beacon).
    pub count: usize,
    /// Bytes involved.
    pub bytes: u64,
    /// Beacon period, ms (beacons only).
    pub period_ms: Option<i64>,
    /// First flow counted, ms.
    pub first_ms: i64,
    /// The flow that raised it, ms.
    pub at_ms: i64,
    /// `medium` or `high`.
    pub severity: &'static str,
}

#[derive(Debug, Default)]
struct Spread {
    /// (time, item) of recent probes.
    hist: VecDeque<(i64, String)>,
    items: BTreeMap<String, u32>,
    alerted_ms: Option<i64>,
    last_ms: i64,
}

impl Spread {
    fn add(&mut self, t: i64, item: String, window: i64, cap: usize) -> usize {
        self.last_ms = t;
        while self
            .hist
            .front()
            .is_some_and(|(x, _)| t - x > window || self.hist.len() >= cap)
        {
            if let Some((_, i)) = self.hist.pop_front()
                && let Some(n) = self.items.get_mut(&i)
            {
                *n -= 1;
                if *n == 0 {
                    self.items.remove(&i);
                }
            }
        }
        *self.items.entry(item.clone()).or_default() += 1;
        self.hist.push_back((t, item));
        self.items.len()
    }
}

#[derive(Debug, Default)]
struct Volume {
    hist: VecDeque<(i64, u64, u64)>,
    bytes: u64,
    packets: u64,
    alerted_ms: Option<i64>,
    last_ms: i64,
}

#[derive(Debug, Default)]
struct Beacon {
    /// (start, bytes) of the latest connections.
    seen: VecDeque<(i64, u64)>,
    alerted_ms: Option<i64>,
    last_ms: i64,
}

/// The watcher.
#[derive(Debug, Default)]
pub struct NetWatch {
    rules: NetRules,
    ports: HashMap<(String, String), Spread>,
    hosts: HashMap<(String, u8, u16), Spread>,
    icmp: HashMap<(String, String), Volume>,
    beacons: HashMap<(String, String, u16), Beacon>,
    base: crate::netbase::Baselines,
}

fn cv(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if n < 2.0 {
        return f64::INFINITY;
    }
    let mean = xs.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return f64::INFINITY;
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() / mean
}

fn bound<K, V>(m: &mut HashMap<K, V>, max: usize, keep: impl Fn(&V) -> bool) {
    if m.len() >= max {
        m.retain(|_, v| keep(v));
        if m.len() >= max {
            m.clear();
        }
    }
}

impl NetWatch {
    /// A watcher with `rules` and the default per-host baselines.
    pub fn new(rules: NetRules) -> Self {
        NetWatch {
            rules,
            ..Default::default()
        }
    }

    /// The per-host baselines judged by `base` (e.g. the city's own address space).
    pub fn with_baselines(mut self, base: crate::netbase::BaseRules) -> Self {
        self.base = crate::netbase::Baselines::new(base);
        self
    }

    /// Keys tracked (ports, hosts, ICMP pairs, beacon tuples, baseline hosts).
    pub fn tracked(&self) -> usize {
        self.ports.len()
            + self.hosts.len()
            + self.icmp.len()
            + self.beacons.len()
            + self.base.tracked()
    }

    /// One flow; the alerts it raises.
    pub fn observe(&mut self, f: &FlowObs) -> Vec<NetAlert> {
        let r = self.rules;
        let t = f.time_ms;
        let w = r.scan_window_ms;
        let mut out = Vec::new();
        bound(&mut self.ports, r.max_keys, |s| t - s.last_ms <= w);
        bound(&mut self.hosts, r.max_keys, |s| t - s.last_ms <= w);
        bound(&mut self.icmp, r.max_keys, |s| t - s.last_ms <= w);
        bound(&mut self.beacons, r.max_keys, |s| s.seen.len() > 1);
        let icmp = matches!(f.proto, 1 | 58);
        let echo =
            (f.proto == 1 && f.dst_port >> 8 == 8) || (f.proto == 58 && f.dst_port >> 8 == 128);
        let cap = r.scan_ports.max(r.sweep_hosts) * 4;
        if f.packets <= r.probe_packets {
            if !icmp {
                let s = self
                    .ports
                    .entry((f.src.clone(), f.dst.clone()))
                    .or_default();
                let n = s.add(t, f.dst_port.to_string(), w, cap);
                if n >= r.scan_ports && s.alerted_ms.is_none_or(|a| t - a > w) {
                    s.alerted_ms = Some(t);
                    out.push(NetAlert {
                        kind: "net.port_scan",
                        src: f.src.clone(),
                        target: f.dst.clone(),
                        count: n,
                        bytes: 0,
                        period_ms: None,
                        first_ms: s.hist.front().map_or(t, |x| x.0),
                        at_ms: t,
                        severity: "medium",
                    });
                }
            }
            if !icmp || echo {
                let port = if icmp { 0 } else { f.dst_port };
                let s = self
                    .hosts
                    .entry((f.src.clone(), f.proto, port))
                    .or_default();
                let n = s.add(t, f.dst.clone(), w, cap);
                if n >= r.sweep_hosts && s.alerted_ms.is_none_or(|a| t - a > w) {
                    s.alerted_ms = Some(t);
                    out.push(NetAlert {
                        kind: "net.sweep_scan",
                        src: f.src.clone(),
                        target: if icmp {
                            "icmp-echo".into()
                        } else {
                            format!("port {port}")
                        },
                        count: n,
                        bytes: 0,
                        period_ms: None,
                        first_ms: s.hist.front().map_or(t, |x| x.0),
                        at_ms: t,
                        severity: "medium",
                    });
                }
            }
        }
        if icmp {
            let v = self.icmp.entry((f.src.clone(), f.dst.clone())).or_default();
            v.last_ms = t;
            while v
                .hist
                .front()
                .is_some_and(|(x, _, _)| t - x > w || v.hist.len() >= cap)
            {
                if let Some((_, b, p)) = v.hist.pop_front() {
                    v.bytes -= b;
                    v.packets -= p;
                }
            }
            v.hist.push_back((t, f.bytes, f.packets));
            v.bytes += f.bytes;
            v.packets += f.packets;
            if v.bytes >= r.icmp_bytes
                && v.bytes / v.packets.max(1) >= r.icmp_bytes_per_packet
                && v.alerted_ms.is_none_or(|a| t - a > w)
            {
                v.alerted_ms = Some(t);
                out.push(NetAlert {
                    kind: "net.icmp_exfil",
                    src: f.src.clone(),
                    target: f.dst.clone(),
                    count: usize::try_from(v.packets).unwrap_or(usize::MAX),
                    bytes: v.bytes,
                    period_ms: None,
                    first_ms: v.hist.front().map_or(t, |x| x.0),
                    at_ms: t,
                    severity: "high",
                });
            }
        } else {
            let b = self
                .beacons
                .entry((f.src.clone(), f.dst.clone(), f.dst_port))
                .or_default();
            b.last_ms = t;
            b.seen.push_back((t, f.bytes));
            while b.seen.len() > r.beacon_min * 2 {
                b.seen.pop_front();
            }
            if b.seen.len() >= r.beacon_min {
                let starts: Vec<i64> = b.seen.iter().map(|x| x.0).collect();
                let gaps: Vec<f64> = starts.windows(2).map(|p| (p[1] - p[0]) as f64).collect();
                let sizes: Vec<f64> = b.seen.iter().map(|x| x.1 as f64).collect();
                let mean_gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
                let period = mean_gap.round() as i64;
                if period >= r.beacon_min_period_ms
                    && cv(&gaps) <= r.beacon_interval_cv
                    && cv(&sizes) <= r.beacon_size_cv
                    && b.alerted_ms.is_none_or(|a| t - a > 3_600_000)
                {
                    b.alerted_ms = Some(t);
                    out.push(NetAlert {
                        kind: "net.beacon",
                        src: f.src.clone(),
                        target: format!("{}:{}", f.dst, f.dst_port),
                        count: b.seen.len(),
                        bytes: b.seen.iter().map(|x| x.1).sum(),
                        period_ms: Some(period),
                        first_ms: starts[0],
                        at_ms: t,
                        severity: "high",
                    });
                }
            }
        }
        out.extend(self.base.observe(f));
        out
    }
}

/// Distinct sources of alerts by kind (for summaries).
pub fn sources_by_kind(alerts: &[NetAlert]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut m: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for a in alerts {
        m.entry(a.kind).or_default().insert(a.src.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(
        t: i64,
        src: &str,
        dst: &str,
        port: u16,
        proto: u8,
        bytes: u64,
        packets: u64,
    ) -> FlowObs {
        FlowObs {
            time_ms: t,
            src: src.into(),
            dst: dst.into(),
            dst_port: port,
            src_port: 40_000,
            reply_bytes: None,
            proto,
            bytes,
            packets,
        }
    }

    #[test]
    fn port_scan_and_sweep_each_once() {
        let mut w = NetWatch::new(NetRules::default());
        let mut a = Vec::new();
        for p in 1..=200u16 {
            a.extend(w.observe(&flow(
                i64::from(p) * 10,
                "203.0.113.9",
                "10.0.0.5",
                p,
                6,
                44,
                1,
            )));
        }
        for h in 1..=60u8 {
            a.extend(w.observe(&flow(
                5_000 + i64::from(h),
                "10.0.0.66",
                &format!("10.0.1.{h}"),
                445,
                6,
                60,
                1,
            )));
        }
        for h in 1..=40u8 {
            a.extend(w.observe(&flow(
                9_000 + i64::from(h),
                "10.0.0.67",
                &format!("10.0.2.{h}"),
                0x0800,
                1,
                84,
                1,
            )));
        }
        let kinds: Vec<(&str, &str)> = a.iter().map(|x| (x.kind, x.src.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("net.port_scan", "203.0.113.9"),
                ("net.sweep_scan", "10.0.0.66"),
                ("net.sweep_scan", "10.0.0.67")
            ]
        );
        assert_eq!(a[1].target, "port 445");
        assert_eq!(a[2].target, "icmp-echo");
    }

    #[test]
    fn busy_client_to_one_server_is_not_a_scan() {
        let mut w = NetWatch::new(NetRules::default());
        for i in 0..2_000i64 {
            let p = [80u16, 443, 53][(i % 3) as usize];
            assert!(
                w.observe(&flow(
                    i * 50,
                    "10.0.0.5",
                    "10.0.0.1",
                    p,
                    6,
                    900 + (i as u64 * 37) % 5000,
                    8 + (i as u64 % 7)
                ))
                .is_empty()
            );
        }
    }

    #[test]
    fn icmp_with_bulk_payload_is_exfiltration_and_ping_is_not() {
        let mut w = NetWatch::new(NetRules::default());
        for i in 0..200i64 {
            assert!(
                w.observe(&flow(i * 1000, "10.0.0.5", "8.8.8.8", 0x0800, 1, 84, 1))
                    .is_empty()
            );
        }
        let mut a = Vec::new();
        for i in 0..100i64 {
            a.extend(w.observe(&flow(
                i * 100,
                "10.0.0.9",
                "198.51.100.7",
                0x0800,
                1,
                1200,
                1,
            )));
        }
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (a[0].kind, a[0].target.as_str()),
            ("net.icmp_exfil", "198.51.100.7")
        );
    }

    #[test]
    fn regular_callbacks_are_a_beacon_and_jittery_sessions_are_not() {
        let mut w = NetWatch::new(NetRules::default());
        let mut a = Vec::new();
        for i in 0..12i64 {
            a.extend(w.observe(&flow(
                i * 60_000 + (i % 3) * 200,
                "10.0.0.7",
                "203.0.113.50",
                443,
                6,
                512 + (i as u64 % 2) * 20,
                6,
            )));
        }
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].kind, "net.beacon");
        assert!(
            (a[0].period_ms.unwrap() - 60_000).abs() < 600,
            "{:?}",
            a[0].period_ms
        );
        let mut t = 0i64;
        for i in 0..40i64 {
            t += 3_000 + (i * 7919) % 90_000;
            assert!(
                w.observe(&flow(
                    t,
                    "10.0.0.8",
                    "203.0.113.51",
                    443,
                    6,
                    400 + (i as u64 * 104_729) % 20_000,
                    12
                ))
                .is_empty()
            );
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let mut w = NetWatch::new(NetRules {
            max_keys: 50,
            ..NetRules::default()
        });
        for i in 0..5_000i64 {
            w.observe(&flow(
                i,
                &format!("10.{}.{}.1", i / 200, i % 200),
                "10.0.0.1",
                (i % 1000) as u16,
                6,
                40,
                1,
            ));
            assert!(w.tracked() <= 4 * 50);
        }
    }
}
