//! Streaming DNS analytics (SA-2): DNS queries watched over a sliding window for tunnelling
//! (a registrable domain receiving a stream of encoded names, `dns.tunnel`) and DGA malware (one
//! client looking up several machine-generated domains, `dns.dga`). Each alert is raised once per
//! domain (tunnel) or client (DGA) and window.
//!
//! Memory is bounded: per-domain history is capped, and domains not seen within the window are
//! dropped when the table is full.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::dga::DgaModel;
use crate::dnstunnel::{self, TunnelModel};

/// Thresholds and bounds.
#[derive(Debug, Clone, Copy)]
pub struct DnsRules {
    /// Window, ms.
    pub window_ms: i64,
    /// Distinct DGA-like domains one client must look up within the window.
    pub dga_min_domains: usize,
    /// Domains (and clients) tracked at most.
    pub max_keys: usize,
    /// Queries remembered per domain at most.
    pub max_history: usize,
}

impl Default for DnsRules {
    fn default() -> Self {
        DnsRules {
            window_ms: 10 * 60 * 1000,
            dga_min_domains: 3,
            max_keys: 100_000,
            max_history: 2_048,
        }
    }
}

/// A finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsAlert {
    /// `dns.tunnel` or `dns.dga`.
    pub kind: &'static str,
    /// The client (for a tunnel: the one that sent most of its queries).
    pub src: String,
    /// The registrable domain (tunnel) or the most DGA-like one (DGA).
    pub domain: String,
    /// Domain score (tunnel) or highest DGA score (DGA), 0–1.
    pub score: f32,
    /// Distinct names (tunnel) or distinct DGA-like domains (DGA) in the window.
    pub distinct: usize,
    /// Queries in the window (tunnel).
    pub queries: usize,
    /// Up to five example names.
    pub examples: Vec<String>,
    /// Clients involved (up to eight).
    pub clients: Vec<String>,
    /// First query counted, ms.
    pub first_ms: i64,
    /// The query that raised it, ms.
    pub at_ms: i64,
    /// `medium` or `high`.
    pub severity: &'static str,
}

#[derive(Debug, Default)]
struct Domain {
    /// (time, name hash, query score).
    hist: VecDeque<(i64, u64, f32)>,
    names: HashMap<u64, u32>,
    score_sum: f64,
    clients: BTreeMap<String, u32>,
    examples: Vec<String>,
    alerted_ms: Option<i64>,
    last_ms: i64,
}

#[derive(Debug, Default)]
struct Client {
    /// DGA-like domains and when each was last looked up, with its score.
    dga: BTreeMap<String, (i64, f32)>,
    alerted_ms: Option<i64>,
    last_ms: i64,
}

/// The watcher.
#[derive(Debug)]
pub struct DnsWatch {
    rules: DnsRules,
    tunnel: TunnelModel,
    dga: DgaModel,
    domains: HashMap<String, Domain>,
    clients: HashMap<String, Client>,
    dga_cache: HashMap<String, f32>,
}

fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl DnsWatch {
    /// A watcher with the given models.
    pub fn new(rules: DnsRules, tunnel: TunnelModel, dga: DgaModel) -> Self {
        DnsWatch {
            rules,
            tunnel,
            dga,
            domains: HashMap::new(),
            clients: HashMap::new(),
            dga_cache: HashMap::new(),
        }
    }

    /// Domains and clients currently tracked.
    pub fn tracked(&self) -> (usize, usize) {
        (self.domains.len(), self.clients.len())
    }

    /// One DNS query (`time_ms` event time, `client` address, `qname` as queried).
    pub fn observe(&mut self, time_ms: i64, client: &str, qname: &str) -> Vec<DnsAlert> {
        let mut out = Vec::new();
        let (sub, base) = dnstunnel::cut(qname);
        if base.is_empty() || !base.contains('.') {
            return out;
        }
        let w = self.rules.window_ms;
        self.bound(time_ms);
        // Tunnelling: every query counts toward its registrable domain.
        let score = if sub.is_empty() {
            0.0
        } else {
            self.tunnel.query_score(qname, &self.dga.lm)
        };
        let d = self.domains.entry(base.clone()).or_default();
        d.last_ms = time_ms;
        while d
            .hist
            .front()
            .is_some_and(|(t, _, _)| time_ms - t > w || d.hist.len() >= self.rules.max_history)
        {
            if let Some((_, h, s)) = d.hist.pop_front() {
                d.score_sum -= f64::from(s);
                if let Some(c) = d.names.get_mut(&h) {
                    *c -= 1;
                    if *c == 0 {
                        d.names.remove(&h);
                    }
                }
            }
        }
        let h = hash(sub);
        d.hist.push_back((time_ms, h, score));
        d.score_sum += f64::from(score);
        let fresh = d
            .names
            .insert(h, d.names.get(&h).copied().unwrap_or(0) + 1)
            .is_none();
        if fresh && d.examples.len() < 5 && !sub.is_empty() {
            d.examples.push(qname.trim_end_matches('.').to_string());
        }
        if d.clients.len() < 8 || d.clients.contains_key(client) {
            *d.clients.entry(client.to_string()).or_default() += 1;
        }
        let mean = (d.score_sum / d.hist.len() as f64) as f32;
        let dscore = TunnelModel::domain_score(mean, d.names.len());
        if self.tunnel.is_tunnel(dscore) && d.alerted_ms.is_none_or(|t| time_ms - t > w) {
            d.alerted_ms = Some(time_ms);
            let top = d
                .clients
                .iter()
                .max_by_key(|(_, n)| **n)
                .map_or_else(|| client.to_string(), |(c, _)| c.clone());
            out.push(DnsAlert {
                kind: "dns.tunnel",
                src: top,
                domain: base.clone(),
                score: dscore,
                distinct: d.names.len(),
                queries: d.hist.len(),
                examples: d.examples.clone(),
                clients: d.clients.keys().cloned().collect(),
                first_ms: d.hist.front().map_or(time_ms, |x| x.0),
                at_ms: time_ms,
                severity: "high",
            });
        }
        // DGA: the registrable name, scored once; a client collecting several DGA-like
        // domains within the window is infected (one odd name is not).
        let dga = cached_dga(&self.dga, &mut self.dga_cache, &base);
        if self.dga.is_dga(dga) {
            let c = self.clients.entry(client.to_string()).or_default();
            c.last_ms = time_ms;
            c.dga.retain(|_, (t, _)| time_ms - *t <= w);
            c.dga.insert(base.clone(), (time_ms, dga));
            if c.dga.len() >= self.rules.dga_min_domains
                && c.alerted_ms.is_none_or(|t| time_ms - t > w)
            {
                c.alerted_ms = Some(time_ms);
                let (top, (_, best)) = c
                    .dga
                    .iter()
                    .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
                    .map(|(d, v)| (d.clone(), *v))
                    .unwrap_or_else(|| (base.clone(), (time_ms, dga)));
                out.push(DnsAlert {
                    kind: "dns.dga",
                    src: client.to_string(),
                    domain: top,
                    score: best,
                    distinct: c.dga.len(),
                    queries: c.dga.len(),
                    examples: c.dga.keys().take(5).cloned().collect(),
                    clients: vec![client.to_string()],
                    first_ms: c.dga.values().map(|v| v.0).min().unwrap_or(time_ms),
                    at_ms: time_ms,
                    severity: "high",
                });
            }
        }
        out
    }

    fn bound(&mut self, now: i64) {
        let w = self.rules.window_ms;
        let max = self.rules.max_keys;
        if self.domains.len() >= max {
            self.domains.retain(|_, d| now - d.last_ms <= w);
            if self.domains.len() >= max {
                // Still full inside one window: keep the domains with history worth keeping.
                self.domains.retain(|_, d| d.names.len() > 1);
            }
            if self.domains.len() >= max {
                self.domains.clear();
            }
        }
        if self.clients.len() >= max {
            self.clients.retain(|_, c| now - c.last_ms <= w);
            if self.clients.len() >= max {
                self.clients.clear();
            }
        }
        if self.dga_cache.len() >= max {
            self.dga_cache.clear();
        }
    }
}

/// The DGA score of a registrable domain, computed once per domain.
fn cached_dga(model: &DgaModel, cache: &mut HashMap<String, f32>, base: &str) -> f32 {
    if let Some(s) = cache.get(base) {
        return *s;
    }
    let s = model.score(base);
    cache.insert(base.to_string(), s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> DnsWatch {
        DnsWatch::new(
            DnsRules::default(),
            TunnelModel::builtin().unwrap(),
            DgaModel::builtin().unwrap(),
        )
    }

    #[test]
    fn a_stream_of_encoded_names_is_a_tunnel_once() {
        let mut w = watch();
        let mut alerts = Vec::new();
        for i in 0..200u32 {
            let name = format!(
                "{:08x}{:08x}Xk{:x}.aGVsbG8gd29ybGQ{:x}.t.exfil-example.net",
                i.wrapping_mul(2_654_435_761),
                i.wrapping_mul(40_503),
                i * 7,
                i * 13
            );
            alerts.extend(w.observe(1_000 + i64::from(i) * 100, "10.0.0.66", &name));
        }
        let kinds: Vec<&str> = alerts.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["dns.tunnel"], "{alerts:?}");
        assert_eq!(alerts[0].domain, "exfil-example.net");
        assert_eq!(alerts[0].src, "10.0.0.66");
        // Raised as soon as enough distinct encoded names pile up, not after the whole stream.
        assert!(
            alerts[0].distinct >= 4 && alerts[0].distinct <= dnstunnel::MIN_UNIQUE,
            "{}",
            alerts[0].distinct
        );
    }

    #[test]
    fn ordinary_browsing_raises_nothing() {
        let mut w = watch();
        let names = [
            "www.google.com",
            "mail.google.com",
            "fonts.gstatic.com",
            "www.wikipedia.org",
            "en.wikipedia.org",
            "update.microsoft.com",
            "login.microsoftonline.com",
            "github.com",
            "api.github.com",
            "4.3.2.10.in-addr.arpa",
            "5.3.2.10.in-addr.arpa",
            "6.3.2.10.in-addr.arpa",
        ];
        for i in 0..600i64 {
            let n = names[(i as usize * 7) % names.len()];
            assert!(w.observe(i * 1000, "10.0.0.5", n).is_empty(), "{n}");
        }
    }

    #[test]
    fn several_dga_domains_from_one_client_is_an_infection() {
        let mut w = watch();
        let mut alerts = Vec::new();
        for (i, d) in [
            "xjwqpzkvrtb.com",
            "qmzkxvbwplr.net",
            "zzkqxvjwmpt.org",
            "kqvjxzpwbrt.info",
        ]
        .iter()
        .enumerate()
        {
            alerts.extend(w.observe(i as i64 * 1000, "10.0.0.77", d));
        }
        let dga: Vec<&DnsAlert> = alerts.iter().filter(|a| a.kind == "dns.dga").collect();
        assert_eq!(dga.len(), 1, "{alerts:?}");
        assert_eq!(dga[0].src, "10.0.0.77");
        assert!(dga[0].distinct >= 3);
        // One odd name from another client is not an infection.
        assert!(w.observe(10_000, "10.0.0.78", "xjwqpzkvrtb.com").is_empty());
    }

    #[test]
    fn memory_stays_bounded() {
        let mut w = DnsWatch::new(
            DnsRules {
                max_keys: 100,
                ..DnsRules::default()
            },
            TunnelModel::builtin().unwrap(),
            DgaModel::builtin().unwrap(),
        );
        for i in 0..5_000i64 {
            w.observe(
                i,
                &format!("10.0.{}.{}", i / 250, i % 250),
                &format!("host{i}.example{i}.com"),
            );
            let (d, c) = w.tracked();
            assert!(d <= 100 && c <= 100, "{d} {c}");
        }
    }
}
