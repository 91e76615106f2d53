//! DNS tunnelling detection (SA-2): does a domain carry data in its query names (dns2tcp,
//! iodine, dnscat, TUNS …)? Each query name is scored by a logistic regression over the shape of
//! its subdomain part; a domain is scored from its queries' mean score and how many distinct
//! names it has, so a few odd names never make a tunnel but a stream of encoded ones does.
//!
//! Method (docs/analytics.md has the measurements): the subdomain part is what is left of the
//! registrable domain; its features are tool-agnostic (length, labels, longest label, symbol
//! entropy, digit / upper-case / non-hostname symbol shares, distinct-symbol ratio, and how
//! benign-like its longest label reads under the DGA model's character model of real names). The
//! weights are fitted by Newton's method (IRLS, ridge-regularised, class-balanced), so training is
//! deterministic without a seed; `chengfang analyze train-dns-tunnel` writes `models/dns_tunnel.txt`.
//! The domain verdict threshold is set at training time from a false-positive budget on benign
//! domains.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::dga::{CharLm, split};

/// Features per query name (the first is the bias).
pub const QF: usize = 12;
/// A domain's score reaches full weight at this many distinct names (fewer scale it down).
pub const MIN_UNIQUE: usize = 8;
const HEADER: &str = "chengfang dns-tunnel model v1";

/// A query name cut at its registrable domain: (subdomain part, registrable domain), both
/// without dots at the ends. `a.b.example.co.uk` → (`a.b`, `example.co.uk`).
pub fn cut(qname: &str) -> (&str, String) {
    let q = qname.trim().trim_end_matches('.');
    let (label, suffix) = split(q);
    let base = if suffix.is_empty() {
        label
    } else {
        format!("{label}.{suffix}")
    };
    // The base as it is spelled in `q` (case kept) ends the name; what precedes it is the sub.
    let n = base.len();
    if q.len() > n && q.as_bytes()[q.len() - n - 1] == b'.' {
        (&q[..q.len() - n - 1], base)
    } else {
        ("", base)
    }
}

/// Symbols of a subdomain: `\DDD` escapes and non-ASCII characters count as one non-hostname
/// symbol each, so a name reads the same from the wire and from a text log.
fn symbols(sub: &str) -> Vec<u32> {
    let b: Vec<char> = sub.chars().collect();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(char::is_ascii_digit) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |a, d| a * 10 + d.to_digit(10).unwrap_or(0));
            out.push(match char::from_u32(v) {
                Some(x) if x.is_ascii_graphic() => v,
                _ => 0x1_0000 + v,
            });
            i += 4;
        } else {
            out.push(if c.is_ascii_graphic() {
                u32::from(c)
            } else {
                0x1_0000 + u32::from(c)
            });
            i += 1;
        }
    }
    out
}

fn is_odd(s: u32) -> bool {
    !char::from_u32(s)
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The features of one query name.
pub fn features(qname: &str, lm: &CharLm) -> [f32; QF] {
    let (sub, _) = cut(qname);
    let mut f = [0f32; QF];
    f[0] = 1.0;
    if sub.is_empty() {
        return f;
    }
    let syms = symbols(sub);
    let labels: Vec<&[u32]> = syms.split(|&s| s == u32::from('.')).collect();
    let body: Vec<u32> = syms
        .iter()
        .copied()
        .filter(|&s| s != u32::from('.'))
        .collect();
    let n = body.len().max(1) as f32;
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for s in &body {
        *counts.entry(*s).or_default() += 1;
    }
    let entropy: f32 = counts
        .values()
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum();
    let digits = body
        .iter()
        .filter(|&&s| char::from_u32(s).is_some_and(|c| c.is_ascii_digit()))
        .count();
    let upper = body
        .iter()
        .filter(|&&s| char::from_u32(s).is_some_and(|c| c.is_ascii_uppercase()))
        .count();
    let odd = body.iter().filter(|&&s| is_odd(s)).count();
    let longest = labels
        .iter()
        .max_by_key(|l| l.len())
        .copied()
        .unwrap_or(&[]);
    let longest_text: String = longest
        .iter()
        .filter_map(|&s| char::from_u32(s))
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let (lm_mean, _, lm_unseen) = lm.judge(&longest_text);
    f[1] = 1.0;
    f[2] = (body.len() as f32 / 50.0).min(5.0);
    f[3] = (labels.len() as f32 / 3.0).min(3.0);
    f[4] = (longest.len() as f32 / 63.0).min(2.0);
    f[5] = entropy / 5.0;
    f[6] = digits as f32 / n;
    f[7] = upper as f32 / n;
    f[8] = odd as f32 / n;
    f[9] = (-lm_mean / 4.0).min(3.0);
    f[10] = lm_unseen;
    f[11] = counts.len() as f32 / n;
    f
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// A trained model.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelModel {
    /// Weights of the query features (the first is the bias).
    pub weights: [f32; QF],
    /// Domain scores at or above this are tunnels.
    pub threshold: f32,
}

/// Why a model text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("DNS-tunnel model: {0}")]
pub struct ModelError(String);

impl TunnelModel {
    /// The model shipped with this build.
    pub fn builtin() -> Result<TunnelModel, ModelError> {
        TunnelModel::from_text(include_str!("../models/dns_tunnel.txt"))
    }

    /// Probability-like score of one query name (higher: more like encoded data).
    pub fn query_score(&self, qname: &str, lm: &CharLm) -> f32 {
        let f = features(qname, lm);
        sigmoid(f.iter().zip(&self.weights).map(|(x, w)| x * w).sum())
    }

    /// A domain's score from its queries' mean score and its number of distinct names.
    pub fn domain_score(mean_query_score: f32, unique: usize) -> f32 {
        mean_query_score * (unique as f32 / MIN_UNIQUE as f32).min(1.0)
    }

    /// Whether a domain score is a tunnel verdict.
    pub fn is_tunnel(&self, domain_score: f32) -> bool {
        domain_score >= self.threshold
    }

    /// The model as text (exact: weights as f32 bit patterns, with readable values beside).
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        for w in &self.weights {
            s.push_str(&format!("w {:08x} {w}\n", w.to_bits()));
        }
        s.push_str(&format!(
            "threshold {:08x} {}\n",
            self.threshold.to_bits(),
            self.threshold
        ));
        s
    }

    /// Parse [`to_text`](Self::to_text).
    pub fn from_text(t: &str) -> Result<TunnelModel, ModelError> {
        let mut lines = t.lines();
        if lines.next() != Some(HEADER) {
            return Err(ModelError(format!("first line is not `{HEADER}`")));
        }
        let bits = |l: &str, key: &str| -> Result<f32, ModelError> {
            let mut p = l.split_whitespace();
            if p.next() != Some(key) {
                return Err(ModelError(format!("expected `{key}`, found `{l}`")));
            }
            let h = p
                .next()
                .ok_or_else(|| ModelError(format!("`{l}` has no value")))?;
            u32::from_str_radix(h, 16)
                .map(f32::from_bits)
                .map_err(|e| ModelError(format!("`{l}`: {e}")))
        };
        let mut weights = [0f32; QF];
        for w in &mut weights {
            let l = lines
                .next()
                .ok_or_else(|| ModelError("too few weights".into()))?;
            *w = bits(l, "w")?;
        }
        let l = lines
            .next()
            .ok_or_else(|| ModelError("no threshold".into()))?;
        let threshold = bits(l, "threshold")?;
        if weights.iter().chain([&threshold]).any(|x| !x.is_finite()) {
            return Err(ModelError("a value is not finite".into()));
        }
        Ok(TunnelModel { weights, threshold })
    }
}

/// Solve `a x = b` (small, dense, symmetric positive definite after the ridge) by Gaussian
/// elimination with partial pivoting.
fn solve(mut a: [[f64; QF]; QF], mut b: [f64; QF]) -> [f64; QF] {
    for col in 0..QF {
        let piv = (col..QF)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let d = a[col][col];
        if d.abs() < 1e-12 {
            continue;
        }
        let pivot_row = a[col];
        let pivot_b = b[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let k = row[col] / d;
                for (x, p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= k * p;
                }
                b[r] -= k * pivot_b;
            }
        }
    }
    let mut x = [0f64; QF];
    for i in 0..QF {
        if a[i][i].abs() >= 1e-12 {
            x[i] = b[i] / a[i][i];
        }
    }
    x
}

/// Fit the query weights: class-balanced, ridge-regularised logistic regression by IRLS.
pub fn fit(samples: &[([f32; QF], bool)]) -> [f32; QF] {
    // Identical feature rows are folded into one weighted row (benign logs repeat names).
    let mut rows: BTreeMap<([u32; QF], bool), f64> = BTreeMap::new();
    for (f, y) in samples {
        *rows.entry((f.map(f32::to_bits), *y)).or_default() += 1.0;
    }
    let pos: f64 = rows.iter().filter(|r| r.0.1).map(|r| r.1).sum();
    let neg: f64 = rows.iter().filter(|r| !r.0.1).map(|r| r.1).sum();
    let (wp, wn) = (0.5 / pos.max(1.0), 0.5 / neg.max(1.0));
    let ridge = 1e-3;
    let mut w = [0f64; QF];
    for _ in 0..30 {
        let mut g = [0f64; QF];
        let mut h = [[0f64; QF]; QF];
        for ((bits, y), count) in &rows {
            let x = bits.map(|b| f64::from(f32::from_bits(b)));
            let z: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-z).exp());
            let cw = count * if *y { wp } else { wn };
            let t = if *y { 1.0 } else { 0.0 };
            let s = cw * p * (1.0 - p);
            for i in 0..QF {
                g[i] += cw * (p - t) * x[i];
                for j in 0..QF {
                    h[i][j] += s * x[i] * x[j];
                }
            }
        }
        for i in 0..QF {
            g[i] += ridge * w[i];
            h[i][i] += ridge;
        }
        let step = solve(h, g);
        let mut moved = 0f64;
        for i in 0..QF {
            w[i] -= step[i];
            moved = moved.max(step[i].abs());
        }
        if moved < 1e-7 {
            break;
        }
    }
    w.map(|x| x as f32)
}

/// Query names grouped by registrable domain, in windows of at most `window` consecutive
/// names — the unit a detector watching a resolver judges.
pub fn domain_windows<'a>(names: &[&'a str], window: usize) -> Vec<(String, Vec<&'a str>)> {
    let mut by: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for n in names {
        by.entry(cut(n).1).or_default().push(n);
    }
    let mut out = Vec::new();
    for (d, ns) in by {
        for c in ns.chunks(window.max(1)) {
            out.push((d.clone(), c.to_vec()));
        }
    }
    out
}

/// The score of one window of a domain's names.
pub fn window_score(model: &TunnelModel, lm: &CharLm, names: &[&str]) -> f32 {
    let unique = names
        .iter()
        .map(|n| cut(n).0.to_ascii_lowercase())
        .collect::<HashSet<_>>()
        .len();
    let mean =
        names.iter().map(|n| model.query_score(n, lm)).sum::<f32>() / names.len().max(1) as f32;
    TunnelModel::domain_score(mean, unique)
}

/// Train on labelled names: fit the query weights, then set the domain threshold so that at most
/// `fpr` of the benign names' domain windows (of `window` names) score at or above it.
pub fn train(
    tunnel: &[&str],
    benign: &[&str],
    lm: &CharLm,
    window: usize,
    fpr: f64,
) -> TunnelModel {
    let samples: Vec<([f32; QF], bool)> = tunnel
        .iter()
        .map(|n| (features(n, lm), true))
        .chain(benign.iter().map(|n| (features(n, lm), false)))
        .collect();
    let mut model = TunnelModel {
        weights: fit(&samples),
        threshold: 0.5,
    };
    let mut neg: Vec<f32> = domain_windows(benign, window)
        .iter()
        .map(|(_, ns)| window_score(&model, lm, ns))
        .collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let k = ((neg.len() as f64) * fpr).floor() as usize;
    // The smallest threshold above the (k+1)-th highest benign score, never below 0.5.
    let above = neg.get(k).copied().unwrap_or(0.0);
    model.threshold = f32::max(0.5, f32::from_bits(above.to_bits() + 1));
    model
}

/// Labelled names of netrack's `label,qname,tunnel_domain_hint` CSV: (tool, name) for tunnel
/// rows and the normal names. The `dns2tcp_or_iodine` class is split by the tools' own framing:
/// dns2tcp's queries start with `q`, iodine's with its user id or a command letter.
pub fn netrack(csv: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut tunnel, mut normal) = (Vec::new(), Vec::new());
    for line in csv.lines().skip(1) {
        let mut p = line.splitn(2, ',');
        let (Some(label), Some(rest)) = (p.next(), p.next()) else {
            continue;
        };
        let Some((name, hint)) = rest.rsplit_once(',') else {
            continue;
        };
        let name = name.trim_end_matches('.').to_string();
        match (label, hint) {
            ("0", _) => normal.push(name),
            ("1", "dns2tcp_or_iodine") => {
                let tool = if name.starts_with('q') {
                    "dns2tcp"
                } else {
                    "iodine"
                };
                tunnel.push((tool.to_string(), name));
            }
            ("1", h) if !h.is_empty() => tunnel.push((h.to_string(), name)),
            _ => {}
        }
    }
    (tunnel, normal)
}

/// Query names of a DNS log: Zeek `dns.log` as TSV (with its `#fields` header) or JSON lines
/// (a `query` member), a labelled CSV (`domain,label,…`: its label-0 rows), or plain text with
/// one name per line.
pub fn names_from_dns_log(text: &str) -> Vec<String> {
    let mut col: Option<usize> = None;
    let mut out = Vec::new();
    if text.starts_with("domain,label,") {
        for line in text.lines().skip(1) {
            let mut c = line.split(',');
            if let (Some(d), Some("0")) = (c.next(), c.next()) {
                out.push(d.trim_end_matches('.').to_string());
            }
        }
        return out;
    }
    for line in text.lines() {
        if let Some(f) = line.strip_prefix("#fields\t") {
            col = f.split('\t').position(|c| c == "query");
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name = if line.starts_with('{') {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("query")?.as_str().map(str::to_string))
        } else if let Some(c) = col {
            line.split('\t').nth(c).map(str::to_string)
        } else {
            line.split([',', ' ', '\t']).next().map(str::to_string)
        };
        if let Some(n) = name.filter(|n| !n.is_empty() && n != "-" && n.contains('.')) {
            out.push(n.trim_end_matches('.').to_string());
        }
    }
    out
}

/// How one held-out tool fared.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolResult {
    /// Tool held out of training.
    pub tool: String,
    /// Its query names.
    pub names: usize,
    /// Query-level AUC against the held-out benign names.
    pub query_auc: f64,
    /// Query-level recall at 1% false positives on the held-out benign names.
    pub query_recall_at_1pct: f64,
    /// Domain windows of the tool.
    pub windows: usize,
    /// Of which judged tunnels at the model's threshold.
    pub windows_detected: usize,
}

/// The leave-one-tool-out evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluation {
    /// Names per domain window.
    pub window: usize,
    /// Per held-out tool.
    pub tools: Vec<ToolResult>,
    /// Held-out benign names.
    pub benign_names: usize,
    /// Held-out benign domain windows (each model judges all of them).
    pub benign_windows: usize,
    /// Benign windows judged tunnels, summed over the models.
    pub benign_false_positives: usize,
}

/// Whether a benign name is held out of training (a fixed 30% of registrable domains, so no
/// domain is on both sides).
pub fn held_out(name: &str) -> bool {
    crate::dga::fnv(cut(name).1.as_bytes()) % 10 < 3
}

/// Train without each tool in turn and judge that tool and the held-out benign domains.
pub fn leave_one_tool_out(
    tunnel: &[(String, String)],
    benign: &[String],
    lm: &CharLm,
    window: usize,
    fpr: f64,
) -> Evaluation {
    let tools: Vec<String> = tunnel
        .iter()
        .map(|t| t.0.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let b_train: Vec<&str> = benign
        .iter()
        .filter(|n| !held_out(n))
        .map(String::as_str)
        .collect();
    let b_test: Vec<&str> = benign
        .iter()
        .filter(|n| held_out(n))
        .map(String::as_str)
        .collect();
    let b_windows = domain_windows(&b_test, window);
    let mut ev = Evaluation {
        window,
        tools: Vec::new(),
        benign_names: b_test.len(),
        benign_windows: b_windows.len(),
        benign_false_positives: 0,
    };
    for tool in &tools {
        let train_pos: Vec<&str> = tunnel
            .iter()
            .filter(|t| &t.0 != tool)
            .map(|t| t.1.as_str())
            .collect();
        let test_pos: Vec<&str> = tunnel
            .iter()
            .filter(|t| &t.0 == tool)
            .map(|t| t.1.as_str())
            .collect();
        let m = train(&train_pos, &b_train, lm, window, fpr);
        let pos: Vec<f32> = test_pos.iter().map(|n| m.query_score(n, lm)).collect();
        let neg: Vec<f32> = b_test.iter().map(|n| m.query_score(n, lm)).collect();
        let windows = domain_windows(&test_pos, window);
        let detected = windows
            .iter()
            .filter(|(_, ns)| m.is_tunnel(window_score(&m, lm, ns)))
            .count();
        ev.benign_false_positives += b_windows
            .iter()
            .filter(|(_, ns)| m.is_tunnel(window_score(&m, lm, ns)))
            .count();
        ev.tools.push(ToolResult {
            tool: tool.clone(),
            names: test_pos.len(),
            query_auc: crate::dga::auc(&pos, &neg),
            query_recall_at_1pct: crate::dga::recall_at_fpr(&pos, &neg, 0.01).0,
            windows: windows.len(),
            windows_detected: detected,
        });
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lm() -> CharLm {
        CharLm::fit(
            [
                "google.com",
                "mail.example.org",
                "www.wikipedia.org",
                "update.microsoft.com",
            ]
            .into_iter(),
        )
    }

    #[test]
    fn cut_keeps_case_and_handles_suffixes() {
        assert_eq!(
            cut("q+Z8A.hidemyself.org."),
            ("q+Z8A", "hidemyself.org".to_string())
        );
        assert_eq!(
            cut("a.B.example.co.uk"),
            ("a.B", "example.co.uk".to_string())
        );
        assert_eq!(cut("example.com"), ("", "example.com".to_string()));
        assert_eq!(cut("localhost"), ("", "localhost".to_string()));
        assert_eq!(cut(""), ("", String::new()));
    }

    #[test]
    fn escapes_and_non_ascii_read_alike() {
        let l = lm();
        let wire = features("ab\\255\\001c.t.example.org", &l);
        let text = features("abÿ\u{1}c.t.example.org", &l);
        assert_eq!(wire, text);
        assert!(wire[8] > 0.3, "odd share {}", wire[8]);
        let plain = features("example.org", &l);
        assert_eq!(plain[1..], [0.0; QF - 1]);
    }

    #[test]
    fn fitting_separates_encoded_names_and_the_text_round_trips() {
        let l = lm();
        let tunnel: Vec<String> = (0..200)
            .map(|i| {
                format!(
                    "{:x}Qz9+{:x}aZ{i}kP0/{:x}.t.tun.org",
                    i * 7919,
                    i * 104729,
                    i * 31
                )
            })
            .collect();
        let benign: Vec<String> = (0..200)
            .map(|i| {
                ["www", "mail", "api", "cdn", "static"][i % 5].to_string()
                    + &format!(".site{i}.com")
            })
            .collect();
        let t: Vec<&str> = tunnel.iter().map(String::as_str).collect();
        let b: Vec<&str> = benign.iter().map(String::as_str).collect();
        let m = train(&t, &b, &l, 20, 0.01);
        assert!(m.query_score(t[3], &l) > 0.9);
        assert!(m.query_score(b[3], &l) < 0.1);
        assert!(m.is_tunnel(window_score(&m, &l, &t[..20])));
        assert!(
            !m.is_tunnel(window_score(&m, &l, &t[..2])),
            "two names are not a tunnel"
        );
        assert_eq!(TunnelModel::from_text(&m.to_text()).unwrap(), m);
        assert!(TunnelModel::from_text("nonsense").is_err());
        let cut_short: String = m.to_text().lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(TunnelModel::from_text(&cut_short).is_err());
    }
}
