//! Rolling per-host flow baselines (SA-2): what each host habitually does on the network, learned
//! from its own flows, and the departures that matter — lateral movement, newly opened ports,
//! exfiltration volume above the host's own hourly history, and uploads to a first-contact peer.
//!
//! Every judgement is per host and uses event time, so replaying a day of flows gives the alerts
//! that day would have raised. Memory is bounded: hosts, peers and ports per host are capped, the
//! least recently seen host going first.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use crate::netwatch::{FlowObs, NetAlert};

/// A network (address and prefix), as the address-space settings name them.
pub use ipnet::IpNet;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Parameters; [`BaseRules::default`] documents the defaults.
#[derive(Debug, Clone)]
pub struct BaseRules {
    /// The city's own address space; everything else is "outside" (exfiltration judgements).
    pub internal: Vec<ipnet::IpNet>,
    /// Remote administration services: SSH, Telnet, RPC endpoint mapper, NetBIOS session, SMB,
    /// RDP, WinRM (HTTP/HTTPS), VNC.
    pub admin_ports: Vec<u16>,
    /// Infrastructure services (DNS, Kerberos, LDAP, global catalog, NTP, DHCP): a host seen
    /// serving them is a server that every workstation legitimately reaches on admin ports too.
    pub infra_ports: Vec<u16>,
    /// Window for the lateral-movement patterns, ms (default 10 min).
    pub lateral_window_ms: i64,
    /// Distinct admin services one source uses on one workstation within the window (remote
    /// execution: SMB to copy, RPC or WinRM to run) — default 2.
    pub lateral_services: usize,
    /// Distinct workstations one source reaches on admin services within the window (fan-out) —
    /// default 5.
    pub lateral_fanout: usize,
    /// A pair seen on this many distinct days is habitual (an admin's jump host) and not
    /// alerted — default 3.
    pub habitual_days: usize,
    /// A host's first this long as a server is learning: its ports are not "new" (default 24 h).
    pub learn_ms: i64,
    /// Hours of history a host needs before its hourly volume is judged against it (default 6).
    pub volume_min_hours: usize,
    /// Outbound volume is anomalous above mean + this many standard deviations… (default 4)
    pub volume_sigmas: f64,
    /// …and above this many bytes in the hour (default 100 MB).
    pub volume_min_bytes: u64,
    /// Without enough history, only volumes above this are alerted (default 2 GB in an hour).
    pub volume_cold_bytes: u64,
    /// Upload to a destination outside never contacted before: at least this many bytes in one
    /// flow… (default 1 MiB)
    pub upload_bytes: u64,
    /// …with at least this ratio of bytes sent to bytes received (default 4).
    pub upload_ratio: f64,
    /// Hosts tracked at most (default 100,000).
    pub max_hosts: usize,
    /// Peers or ports remembered per host at most (default 512).
    pub max_per_host: usize,
    /// Outside destinations remembered per host at most, the longest known forgotten first
    /// (default 128; 16 bytes each).
    pub max_outside_peers: usize,
}

impl Default for BaseRules {
    fn default() -> Self {
        BaseRules {
            internal: default_internal(),
            admin_ports: vec![22, 23, 135, 139, 445, 3389, 5900, 5985, 5986],
            infra_ports: vec![53, 67, 88, 123, 389, 464, 636, 3268, 3269],
            lateral_window_ms: 10 * 60 * 1000,
            lateral_services: 2,
            lateral_fanout: 5,
            habitual_days: 3,
            learn_ms: DAY_MS,
            volume_min_hours: 6,
            volume_sigmas: 4.0,
            volume_min_bytes: 100_000_000,
            volume_cold_bytes: 2_000_000_000,
            upload_bytes: 1 << 20,
            upload_ratio: 4.0,
            max_hosts: 100_000,
            max_per_host: 512,
            max_outside_peers: 128,
        }
    }
}

/// RFC 1918, carrier-grade NAT, loopback, link-local and IPv6 unique-local and link-local space.
pub fn default_internal() -> Vec<ipnet::IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

/// Parse a comma-separated list of networks (`10.0.0.0/8, 2001:db8::/32`); the error names the
/// entry that does not parse.
pub fn parse_networks(s: &str) -> Result<Vec<ipnet::IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<ipnet::IpNet>()
                .or_else(|_| x.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{x}` is not a network (like 10.0.0.0/8) or an address"))
        })
        .collect()
}

#[derive(Debug, Default)]
struct Host {
    last_ms: i64,
    /// Admin-service peers this host reached: peer → days seen (day numbers).
    admin_peers: HashMap<String, BTreeSet<i64>>,
    /// Recent admin contacts: (time, peer, port).
    admin_recent: VecDeque<(i64, String, u16)>,
    /// Alerted (peer or "*fanout") → when.
    lateral_alerted: HashMap<String, i64>,
    /// Seen serving infrastructure ports.
    infra: bool,
    /// First time seen answering as a server, ms.
    serving_since: Option<i64>,
    /// Ports it answered on.
    served: BTreeSet<(u8, u16)>,
    /// Outside destinations contacted (hash of the address → first contact, ms).
    outside_peers: HashMap<u64, i64>,
    /// Current hour (hour number) and bytes sent outside in it, by destination.
    hour: i64,
    hour_bytes: u64,
    hour_by_dst: BTreeMap<String, u64>,
    hour_alerted: bool,
    /// Exponentially weighted mean and variance of past active hours, and how many.
    mean: f64,
    var: f64,
    hours: usize,
}

/// The baselines.
#[derive(Debug, Default)]
pub struct Baselines {
    rules: BaseRules,
    hosts: HashMap<String, Host>,
}

fn peer_key(ip: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same address hashes the same in every run (reproducible replays).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut h);
    h.finish()
}

fn is_internal(nets: &[ipnet::IpNet], ip: &str) -> bool {
    ip.parse::<IpAddr>()
        .is_ok_and(|a| nets.iter().any(|n| n.contains(&a)))
}

/// Weight of the newest hour in the rolling mean and variance (about a day's memory).
const ALPHA: f64 = 0.05;

impl Baselines {
    /// Baselines judged by `rules`.
    pub fn new(rules: BaseRules) -> Self {
        Baselines {
            rules,
            hosts: HashMap::new(),
        }
    }

    /// Hosts tracked.
    pub fn tracked(&self) -> usize {
        self.hosts.len()
    }

    fn host(&mut self, ip: &str, t: i64) -> &mut Host {
        if !self.hosts.contains_key(ip) && self.hosts.len() >= self.rules.max_hosts {
            // Forget the least recently seen tenth rather than refuse new hosts.
            let mut ages: Vec<i64> = self.hosts.values().map(|h| h.last_ms).collect();
            ages.sort_unstable();
            if let Some(&cut) = ages.get(ages.len() / 10) {
                self.hosts.retain(|_, h| h.last_ms > cut);
            }
        }
        let h = self.hosts.entry(ip.to_string()).or_default();
        h.last_ms = h.last_ms.max(t);
        h
    }

    /// One flow; the alerts it raises.
    pub fn observe(&mut self, f: &FlowObs) -> Vec<NetAlert> {
        let mut out = Vec::new();
        if !matches!(f.proto, 6 | 17) {
            return out;
        }
        let r = self.rules.clone();
        let t = f.time_ms;
        let src_in = is_internal(&r.internal, &f.src);
        let dst_in = is_internal(&r.internal, &f.dst);
        let answered = f.reply_bytes.is_some_and(|b| b > 0);
        // Who serves what. A bidirectional record (Zeek) says so directly; a unidirectional one
        // (NetFlow) shows the answer as a flow from a service port to an ephemeral port.
        let server = if answered {
            Some((f.dst.as_str(), f.dst_port))
        } else if f.reply_bytes.is_none()
            && f.src_port != 0
            && f.src_port < 32_768
            && f.dst_port >= 32_768
            && f.packets > 0
        {
            Some((f.src.as_str(), f.src_port))
        } else {
            None
        };
        if let Some((ip, port)) = server
            && is_internal(&r.internal, ip)
        {
            let infra = r.infra_ports.contains(&port);
            let (proto, max) = (f.proto, r.max_per_host);
            let h = self.host(ip, t);
            h.infra |= infra;
            let since = *h.serving_since.get_or_insert(t);
            if h.served.len() < max && h.served.insert((proto, port)) && t - since >= r.learn_ms {
                out.push(NetAlert {
                    kind: "net.new_port",
                    src: ip.to_string(),
                    target: format!("{}/{port}", if proto == 6 { "tcp" } else { "udp" }),
                    count: h.served.len(),
                    bytes: f.bytes,
                    period_ms: None,
                    first_ms: t,
                    at_ms: t,
                    severity: "medium",
                });
            }
        }
        // Lateral movement: workstation to workstation on remote-administration services, with
        // data exchanged (a probe is the scan detector's business).
        let carried = answered || (f.reply_bytes.is_none() && f.packets >= 4);
        if src_in && dst_in && f.src != f.dst && carried && r.admin_ports.contains(&f.dst_port) {
            let dst_infra = self.hosts.get(&f.dst).is_some_and(|h| h.infra);
            let day = t.div_euclid(DAY_MS);
            let max = r.max_per_host;
            let w = r.lateral_window_ms;
            let h = self.host(&f.src, t);
            let habitual = match h.admin_peers.get_mut(&f.dst) {
                Some(days) => {
                    days.insert(day);
                    days.len() >= r.habitual_days
                }
                None => {
                    if h.admin_peers.len() < max {
                        h.admin_peers.insert(f.dst.clone(), BTreeSet::from([day]));
                    }
                    false
                }
            };
            if !dst_infra && !habitual {
                h.admin_recent.push_back((t, f.dst.clone(), f.dst_port));
                while h
                    .admin_recent
                    .front()
                    .is_some_and(|(x, _, _)| t - x > w || h.admin_recent.len() > max)
                {
                    h.admin_recent.pop_front();
                }
                let services: BTreeSet<u16> = h
                    .admin_recent
                    .iter()
                    .filter(|(_, p, _)| *p == f.dst)
                    .map(|(_, _, port)| *port)
                    .collect();
                let peers: BTreeSet<&str> =
                    h.admin_recent.iter().map(|(_, p, _)| p.as_str()).collect();
                let first = h.admin_recent.front().map_or(t, |x| x.0);
                let fresh = |h: &Host, key: &str| {
                    h.lateral_alerted.get(key).is_none_or(|a| t - a > HOUR_MS)
                };
                // Remote execution on one host, else fan-out over several: (key, target, count).
                let found = if services.len() >= r.lateral_services && fresh(h, &f.dst) {
                    let list: Vec<String> = services.iter().map(u16::to_string).collect();
                    Some((
                        f.dst.clone(),
                        format!("{} ({})", f.dst, list.join(",")),
                        services.len(),
                    ))
                } else if peers.len() >= r.lateral_fanout && fresh(h, "*fanout") {
                    let n = peers.len();
                    Some(("*fanout".to_string(), format!("{n} workstations"), n))
                } else {
                    None
                };
                if let Some((key, target, count)) = found {
                    h.lateral_alerted.insert(key, t);
                    out.push(NetAlert {
                        kind: "net.lateral_movement",
                        src: f.src.clone(),
                        target,
                        count,
                        bytes: f.bytes,
                        period_ms: None,
                        first_ms: first,
                        at_ms: t,
                        severity: "high",
                    });
                }
                h.lateral_alerted.retain(|_, a| t - *a <= HOUR_MS);
            }
        }
        // Data leaving the city's address space.
        if src_in && !dst_in && !f.dst.is_empty() {
            let hour = t.div_euclid(HOUR_MS);
            let max = r.max_per_host;
            let h = self.host(&f.src, t);
            if hour > h.hour {
                // Close the finished hour into the rolling baseline. Only hours in which the
                // host sent anything outside count: "how much when it talks", so that a night or
                // a weekend of silence does not make Monday morning look like a leak.
                if h.hour_bytes > 0 {
                    let x = h.hour_bytes as f64;
                    if h.hours == 0 {
                        h.mean = x;
                    } else {
                        let d = x - h.mean;
                        h.mean += ALPHA * d;
                        h.var = (1.0 - ALPHA) * (h.var + ALPHA * d * d);
                    }
                    h.hours += 1;
                }
                h.hour = hour;
                h.hour_bytes = 0;
                h.hour_by_dst.clear();
                h.hour_alerted = false;
            }
            if hour == h.hour {
                h.hour_bytes += f.bytes;
                if h.hour_by_dst.len() < max || h.hour_by_dst.contains_key(&f.dst) {
                    *h.hour_by_dst.entry(f.dst.clone()).or_default() += f.bytes;
                }
                let limit = if h.hours >= r.volume_min_hours {
                    (h.mean + r.volume_sigmas * h.var.sqrt()).max(r.volume_min_bytes as f64)
                } else {
                    r.volume_cold_bytes as f64
                };
                if !h.hour_alerted && h.hour_bytes as f64 > limit {
                    h.hour_alerted = true;
                    let top = h
                        .hour_by_dst
                        .iter()
                        .max_by_key(|(_, b)| **b)
                        .map(|(d, _)| d.clone())
                        .unwrap_or_default();
                    out.push(NetAlert {
                        kind: "net.exfil_volume",
                        src: f.src.clone(),
                        target: top,
                        count: h.hour_by_dst.len(),
                        bytes: h.hour_bytes,
                        period_ms: Some(HOUR_MS),
                        first_ms: hour * HOUR_MS,
                        at_ms: t,
                        severity: "high",
                    });
                }
            }
            let key = peer_key(&f.dst);
            if !h.outside_peers.contains_key(&key) && h.outside_peers.len() >= r.max_outside_peers {
                // Forget the longest-known peer: a new one is what must be judged.
                if let Some(old) = h
                    .outside_peers
                    .iter()
                    .min_by_key(|(_, first)| **first)
                    .map(|(k, _)| *k)
                {
                    h.outside_peers.remove(&old);
                }
            }
            let first_seen = *h.outside_peers.entry(key).or_insert(t);
            let ratio = match f.reply_bytes {
                Some(rb) => f.bytes as f64 / rb.max(1) as f64,
                None => f64::INFINITY,
            };
            // A peer is new for its first hour: an upload usually follows a probe or a login.
            let new_peer = t - first_seen < HOUR_MS;
            if new_peer && f.bytes >= r.upload_bytes && ratio >= r.upload_ratio {
                out.push(NetAlert {
                    kind: "net.exfil_upload",
                    src: f.src.clone(),
                    target: format!("{}:{}", f.dst, f.dst_port),
                    count: 1,
                    bytes: f.bytes,
                    period_ms: None,
                    first_ms: t,
                    at_ms: t,
                    // People upload to new sites too: worth a look, not an emergency alone.
                    severity: "medium",
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[allow(clippy::too_many_arguments)]
    fn flow(
        t: i64,
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
        bytes: u64,
        reply: Option<u64>,
    ) -> FlowObs {
        FlowObs {
            time_ms: t,
            src: src.into(),
            dst: dst.into(),
            dst_port: dport,
            src_port: sport,
            proto: 6,
            bytes,
            packets: bytes / 500 + 4,
            reply_bytes: reply,
        }
    }

    fn kinds(a: &[NetAlert]) -> Vec<(&'static str, String, String)> {
        a.iter()
            .map(|x| (x.kind, x.src.clone(), x.target.clone()))
            .collect()
    }

    #[test]
    fn remote_execution_on_a_workstation_is_lateral_movement_but_the_domain_controller_is_not() {
        let mut b = Baselines::new(BaseRules::default());
        let mut a = Vec::new();
        // Workstations use the domain controller for DNS and Kerberos, then SMB and RPC on it.
        for ws in ["10.0.1.4", "10.0.1.6"] {
            a.extend(b.observe(&flow(0, ws, "10.0.0.4", 50_000, 53, 60, Some(120))));
            a.extend(b.observe(&flow(MIN, ws, "10.0.0.4", 50_001, 88, 1_500, Some(1_400))));
            a.extend(b.observe(&flow(
                2 * MIN,
                ws,
                "10.0.0.4",
                50_002,
                445,
                4_000,
                Some(9_000),
            )));
            a.extend(b.observe(&flow(2 * MIN, ws, "10.0.0.4", 50_003, 135, 500, Some(400))));
        }
        assert!(a.is_empty(), "{a:?}");
        // Workstation to workstation: WinRM, then SMB (copy) and RPC (run).
        a.extend(b.observe(&flow(
            30 * MIN,
            "10.0.1.4",
            "10.0.1.6",
            50_100,
            5985,
            24_000,
            Some(13_000),
        )));
        assert!(a.is_empty(), "one service is not yet a pattern: {a:?}");
        a.extend(b.observe(&flow(
            32 * MIN,
            "10.0.1.4",
            "10.0.1.6",
            50_101,
            445,
            4_200_000,
            Some(3_800),
        )));
        a.extend(b.observe(&flow(
            33 * MIN,
            "10.0.1.4",
            "10.0.1.6",
            50_102,
            135,
            496,
            Some(452),
        )));
        assert_eq!(
            kinds(&a),
            [(
                "net.lateral_movement",
                "10.0.1.4".into(),
                "10.0.1.6 (445,5985)".into()
            )],
            "once per pair and hour"
        );
        // A scan's unanswered probes are not movement.
        let mut c = Baselines::new(BaseRules::default());
        for p in [445, 135, 3389, 5985] {
            assert!(
                c.observe(&flow(0, "10.0.1.9", "10.0.1.7", 50_000, p, 60, Some(0)))
                    .is_empty()
            );
        }
    }

    #[test]
    fn habitual_admin_pairs_are_learned_and_fan_out_is_caught() {
        let mut b = Baselines::new(BaseRules::default());
        // An administrator's jump host manages one server by RDP and SMB every day.
        let mut a = Vec::new();
        for day in 0..5 {
            let t = day * DAY_MS + 9 * 60 * MIN;
            a.extend(b.observe(&flow(
                t,
                "10.9.0.2",
                "10.0.5.20",
                50_000,
                3389,
                90_000,
                Some(800_000),
            )));
            a.extend(b.observe(&flow(
                t + MIN,
                "10.9.0.2",
                "10.0.5.20",
                50_001,
                445,
                9_000,
                Some(9_000),
            )));
        }
        let lateral: Vec<_> = a
            .iter()
            .filter(|x| x.kind == "net.lateral_movement")
            .collect();
        assert!(
            lateral.len() <= 3,
            "only until the pair is habitual: {lateral:?}"
        );
        let tail: Vec<_> = lateral.iter().filter(|x| x.at_ms >= 3 * DAY_MS).collect();
        assert!(
            tail.is_empty(),
            "after three days the pair is habitual: {tail:?}"
        );
        // Malware spreading over SMB to six workstations in five minutes.
        let mut w = Baselines::new(BaseRules::default());
        let mut a = Vec::new();
        for h in 1..=6 {
            a.extend(w.observe(&flow(
                i64::from(h) * MIN,
                "10.0.1.50",
                &format!("10.0.1.{}", 100 + h),
                50_000,
                445,
                200_000,
                Some(5_000),
            )));
        }
        assert_eq!(
            kinds(&a),
            [(
                "net.lateral_movement",
                "10.0.1.50".into(),
                "5 workstations".into()
            )]
        );
    }

    #[test]
    fn a_port_opened_after_learning_is_reported_once() {
        let mut b = Baselines::new(BaseRules::default());
        let mut a = Vec::new();
        // A web server answers on 443 for a day.
        for i in 0..30 {
            a.extend(b.observe(&flow(
                i * HOUR_MS,
                "198.51.100.7",
                "10.0.2.10",
                51_000,
                443,
                800,
                Some(20_000),
            )));
        }
        // Then something starts answering on 4444; NetFlow shows its answers as flows from it.
        let mut answer = flow(
            31 * HOUR_MS,
            "10.0.2.10",
            "198.51.100.8",
            4444,
            52_000,
            3_000,
            None,
        );
        answer.packets = 6;
        a.extend(b.observe(&answer));
        a.extend(b.observe(&flow(
            31 * HOUR_MS + MIN,
            "198.51.100.9",
            "10.0.2.10",
            51_000,
            4444,
            100,
            Some(900),
        )));
        assert_eq!(
            kinds(&a),
            [("net.new_port", "10.0.2.10".into(), "tcp/4444".into())]
        );
        // During learning, nothing is new.
        let mut c = Baselines::new(BaseRules::default());
        for p in [22u16, 80, 443, 8080] {
            assert!(
                c.observe(&flow(
                    0,
                    "198.51.100.7",
                    "10.0.2.11",
                    51_000,
                    p,
                    80,
                    Some(900)
                ))
                .is_empty()
            );
        }
    }

    #[test]
    fn hourly_volume_is_judged_against_the_hosts_own_history() {
        let mut b = Baselines::new(BaseRules::default());
        let mut a = Vec::new();
        // Two weeks of a host sending 20–40 MB an hour outside during office hours.
        for day in 0..14 {
            for hour in 8..18 {
                let t = day * DAY_MS + hour * HOUR_MS;
                let bytes = 20_000_000 + ((day * 7 + hour * 13) % 20) as u64 * 1_000_000;
                a.extend(b.observe(&flow(
                    t,
                    "10.0.3.3",
                    "203.0.113.50",
                    50_000,
                    443,
                    bytes,
                    Some(bytes / 2),
                )));
            }
        }
        assert!(a.is_empty(), "its own habits are not alerted: {a:?}");
        // Then 600 MB in an hour, in 100 MB pieces to a cloud address it already knew.
        let t = 14 * DAY_MS + 10 * HOUR_MS;
        for i in 0..6 {
            a.extend(b.observe(&flow(
                t + i * MIN,
                "10.0.3.3",
                "203.0.113.50",
                50_000,
                443,
                100_000_000,
                Some(2_000_000),
            )));
        }
        let v: Vec<_> = a.iter().filter(|x| x.kind == "net.exfil_volume").collect();
        assert_eq!(v.len(), 1, "{a:?}");
        assert!(
            v[0].bytes >= 100_000_000 && v[0].bytes <= 300_000_000,
            "raised as soon as the hour exceeds the bound: {}",
            v[0].bytes
        );
        // A host without history is judged only against the cold bound.
        let mut c = Baselines::new(BaseRules::default());
        assert!(
            c.observe(&flow(
                0,
                "10.0.3.4",
                "203.0.113.50",
                50_000,
                443,
                500_000_000,
                None
            ))
            .iter()
            .all(|x| x.kind != "net.exfil_volume")
        );
    }

    #[test]
    fn uploads_to_a_new_outside_peer_are_flagged_downloads_are_not() {
        let mut b = Baselines::new(BaseRules {
            internal: parse_networks("10.0.0.0/8").unwrap(),
            ..BaseRules::default()
        });
        let mut a = Vec::new();
        // As in the APT29 emulation: a probe, then 2 MB up and 27 KB down over HTTP; a 5 MB
        // download from the same host is not exfiltration.
        a.extend(b.observe(&flow(
            0,
            "10.0.1.4",
            "192.168.0.4",
            50_000,
            80,
            100,
            Some(424),
        )));
        a.extend(b.observe(&flow(
            3_000,
            "10.0.1.4",
            "192.168.0.4",
            50_001,
            80,
            2_181_167,
            Some(27_238),
        )));
        a.extend(b.observe(&flow(
            180_000,
            "10.0.1.4",
            "192.168.0.4",
            50_002,
            80,
            3_594,
            Some(5_314_513),
        )));
        assert_eq!(
            kinds(&a),
            [(
                "net.exfil_upload",
                "10.0.1.4".into(),
                "192.168.0.4:80".into()
            )]
        );
        // With the default address plan 192.168.0.0/16 is the city's own: nothing leaves it.
        let mut c = Baselines::new(BaseRules::default());
        assert!(
            c.observe(&flow(
                3_000,
                "10.0.1.4",
                "192.168.0.4",
                50_001,
                80,
                2_181_167,
                Some(27_238)
            ))
            .is_empty()
        );
    }

    #[test]
    fn memory_stays_bounded_under_many_hosts() {
        let mut b = Baselines::new(BaseRules {
            max_hosts: 1_000,
            ..BaseRules::default()
        });
        for i in 0..20_000u32 {
            let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            b.observe(&flow(
                i64::from(i),
                &src,
                "203.0.113.1",
                50_000,
                443,
                1_000,
                Some(1_000),
            ));
            assert!(b.tracked() <= 1_000);
        }
    }

    #[test]
    fn network_lists_parse_or_name_the_bad_entry() {
        assert_eq!(
            parse_networks("10.0.0.0/8, 2001:db8::/32,192.0.2.7")
                .unwrap()
                .len(),
            3
        );
        let e = parse_networks("10.0.0.0/8,10.0.0/33").unwrap_err();
        assert!(e.contains("10.0.0/33"), "{e}");
    }
}
