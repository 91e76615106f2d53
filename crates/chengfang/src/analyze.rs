//! `chengfang analyze …`: the analytics as commands. `domains FILE` scores one domain per line for
//! DGA (a stable contract: with `--json`, one object per line with `domain`, `dga_score` and
//! `dga`); `train-dga` builds the shipped model from labelled data; `eval-dga` measures it on
//! families left out of training. `dns`, `train-dns-tunnel` and `eval-dns-tunnel` do the same for
//! DNS tunnelling (per domain, tools left out of training).

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cf_detect::dga::{self, DgaModel, TrainConfig};
use cf_detect::dnstunnel::{self, TunnelModel};
use clap::Subcommand;

/// Analytics commands.
#[derive(Subcommand, Debug)]
pub enum AnalyzeCmd {
    /// Score domains (one per line; `-` reads stdin) for DGA.
    Domains {
        /// File of domains.
        file: PathBuf,
        /// One JSON object per line: domain, dga_score (0–1), dga (the verdict).
        #[arg(long)]
        json: bool,
        /// A model file instead of the built-in one.
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Build the public-suffix file the DGA and tunnel models cut names with, from the Public
    /// Suffix List (Debian's `publicsuffix`).
    PublicSuffixes {
        /// The list.
        #[arg(long, default_value = "/usr/share/publicsuffix/public_suffix_list.dat")]
        psl: PathBuf,
        /// Where to write it (crates/cf-detect/models/public_suffixes.txt).
        #[arg(long)]
        out: PathBuf,
    },
    /// Train the DGA model from a CSV (`domain,label,family,…`, label 1 = DGA; .gz accepted).
    TrainDga {
        /// Labelled data.
        #[arg(long)]
        data: PathBuf,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// Passes over the data.
        #[arg(long, default_value_t = 8)]
        epochs: usize,
        /// False-positive budget on benign names that sets the verdict threshold.
        #[arg(long, default_value_t = 0.01)]
        fpr: f64,
        /// English word list, one word per line (Debian's `wamerican`).
        #[arg(long, default_value = DEFAULT_WORDS)]
        words: PathBuf,
    },
    /// Leave-families-out evaluation: train without some DGA families (and a share of benign
    /// names), score the held-out ones; AUC and recall at 1% false positives per fold.
    EvalDga {
        /// Labelled data.
        #[arg(long)]
        data: PathBuf,
        /// Folds (families are dealt round-robin by name).
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Passes over the data.
        #[arg(long, default_value_t = 8)]
        epochs: usize,
        /// English word list, one word per line (Debian's `wamerican`).
        #[arg(long, default_value = DEFAULT_WORDS)]
        words: PathBuf,
        /// Score only benign names whose source (4th column) starts with this (training still
        /// uses every benign name): e.g. `alexa`, since the 2014 resolver list holds DGA names.
        #[arg(long)]
        benign_source: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Judge the domains of a DNS log for tunnelling: Zeek `dns.log` (TSV or JSON lines), a
    /// capture (`.pcap`/`.pcapng`), or one query name per line (`.gz` accepted). One line per
    /// registrable domain with its names, distinct names, score and verdict.
    Dns {
        /// The log or capture.
        file: PathBuf,
        /// One JSON object per line: domain, queries, distinct, tunnel_score, tunnel.
        #[arg(long)]
        json: bool,
        /// Only domains judged tunnels.
        #[arg(long)]
        tunnels_only: bool,
    },
    /// Run the flow analytics (port scans, sweeps, ICMP exfiltration, beaconing) over a capture
    /// (`.pcap`/`.pcapng`) or a Zeek `conn.log` in JSON (`.gz` accepted); one line per alert.
    Flows {
        /// Captures or conn logs; several are merged in time order (e.g. two sensors' logs).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The city's own address space for the per-host baselines (comma-separated networks);
        /// traffic to anything else is "leaving". Default: RFC 1918, CGNAT, link-local, ULA.
        #[arg(long)]
        internal: Option<String>,
        /// One JSON object per alert.
        #[arg(long)]
        json: bool,
    },
    /// Train the DNS-tunnel model: netrack's labelled names (`--data`) and benign DNS logs or
    /// name lists (`--benign`, repeatable; Zeek dns.log TSV/JSON, a `domain,label,…` CSV's
    /// label-0 rows, or one name per line; `.gz` accepted).
    TrainDnsTunnel {
        /// netrack_qnames.csv(.gz).
        #[arg(long)]
        data: PathBuf,
        /// Benign sources.
        #[arg(long, required = true)]
        benign: Vec<PathBuf>,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// Names per domain window.
        #[arg(long, default_value_t = 20)]
        window: usize,
        /// False-positive budget on benign domain windows that sets the verdict threshold.
        #[arg(long, default_value_t = 0.01)]
        fpr: f64,
    },
    /// Leave-one-tool-out evaluation of the DNS-tunnel model: train without each tool (and 30%
    /// of benign domains), judge that tool's domain windows and the held-out benign ones.
    EvalDnsTunnel {
        /// netrack_qnames.csv(.gz).
        #[arg(long)]
        data: PathBuf,
        /// Benign sources.
        #[arg(long, required = true)]
        benign: Vec<PathBuf>,
        /// Names per domain window.
        #[arg(long, default_value_t = 20)]
        window: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// A text file, gunzipped when it ends in `.gz`.
fn read_text(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not gzip text", path.display()))?;
    } else {
        std::io::BufReader::new(f)
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
    }
    Ok(text)
}

/// (tool, name) of tunnel names, and benign names.
type DnsCorpus = (Vec<(String, String)>, Vec<String>);

/// netrack's labelled names and the benign names of `benign`.
fn dns_corpus(data: &Path, benign: &[PathBuf]) -> Result<DnsCorpus> {
    let (tunnel, mut normal) = dnstunnel::netrack(&read_text(data)?);
    if tunnel.is_empty() {
        bail!(
            "{}: no tunnel rows (expected label,qname,tunnel_domain_hint)",
            data.display()
        );
    }
    for b in benign {
        let names = dnstunnel::names_from_dns_log(&read_text(b)?);
        if names.is_empty() {
            bail!("{}: no query names found", b.display());
        }
        normal.extend(names);
    }
    Ok((tunnel, normal))
}

/// (client, query name) of every DNS query in a log or capture.
fn dns_queries(file: &Path) -> Result<Vec<(String, String)>> {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "pcap" | "pcapng" | "cap") {
        let data =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut out = Vec::new();
        cf_ingest::pcap::read(&data, |o| {
            if let cf_ingest::pcap::Output::Dns(d) = o
                && !d.response
            {
                out.push((d.client.map(|c| c.to_string()).unwrap_or_default(), d.qname));
            }
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return Ok(out);
    }
    let text = read_text(file)?;
    if text.lines().any(|l| l.starts_with('{')) {
        return Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| cf_ingest::dns::from_zeek(&v))
            .map(|d| (d.client.map(|c| c.to_string()).unwrap_or_default(), d.qname))
            .collect());
    }
    Ok(dnstunnel::names_from_dns_log(&text)
        .into_iter()
        .map(|n| (String::new(), n))
        .collect())
}

/// The flows of a capture or of a Zeek `conn.log` (JSON lines), in time order.
fn flows_of(file: &Path) -> Result<Vec<cf_detect::netwatch::FlowObs>> {
    use cf_detect::netwatch::FlowObs;
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
    let mut out = Vec::new();
    if matches!(ext, "pcap" | "pcapng" | "cap") {
        let data =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        cf_ingest::pcap::read(&data, |o| {
            if let cf_ingest::pcap::Output::Flow(f) = o {
                out.extend(FlowObs::from_ocsf(&cf_ingest::pcap::flow_to_ocsf(&f, "")));
            }
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    } else {
        for (i, line) in read_text(file)?.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
                format!("{}:{}: not a JSON conn.log record", file.display(), i + 1)
            })?;
            let o = cf_ingest::zeek::conn_to_ocsf(&v).with_context(|| {
                format!("{}:{}: not a Zeek conn.log record", file.display(), i + 1)
            })?;
            out.extend(FlowObs::from_ocsf(&o));
        }
    }
    out.sort_by_key(|f| f.time_ms);
    Ok(out)
}

/// Where Debian's `wamerican` puts its list.
const DEFAULT_WORDS: &str = "/usr/share/dict/american-english";

/// A list a Debian data package installs (`package`), or the file given by `flag`.
fn read_debian_list(path: &Path, package: &str, flag: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read {} (install Debian's `{package}` or pass {flag})",
            path.display()
        )
    })
}

/// The word list as the model keeps it (hashes) and as text (the generic word-chain DGAs are
/// drawn from it).
fn read_words(path: &Path) -> Result<(dga::Words, String)> {
    let text = read_debian_list(path, "wamerican", "--words")?;
    let w = dga::Words::parse(&text);
    if w.is_empty() {
        bail!("{}: no lower-case words of 3-20 letters", path.display());
    }
    Ok((w, text))
}

/// Rows of the labelled CSV: (domain, is_dga, family of a DGA name or source of a benign one).
fn read_labelled(path: &Path) -> Result<Vec<(String, bool, String)>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        if i == 0 && cols.first() == Some(&"domain") {
            continue;
        }
        match cols.as_slice() {
            // The third field kept is the family of a DGA name and the source (the file's fourth
            // column) of a benign one.
            [d, l, fam, rest @ ..] if !d.is_empty() => match *l {
                "1" => rows.push((d.to_string(), true, fam.to_string())),
                "0" => rows.push((
                    d.to_string(),
                    false,
                    rest.first().unwrap_or(&"").to_string(),
                )),
                other => bail!(
                    "{}:{}: label `{other}` is not 0 or 1",
                    path.display(),
                    i + 1
                ),
            },
            _ => bail!("{}:{}: expected domain,label,family", path.display(), i + 1),
        }
    }
    if rows.is_empty() {
        bail!("{}: no labelled rows", path.display());
    }
    Ok(rows)
}

fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Run; `Ok(false)` for `domains` when the input had unreadable lines.
pub fn run(cmd: AnalyzeCmd) -> Result<bool> {
    match cmd {
        AnalyzeCmd::Dns {
            file,
            json,
            tunnels_only,
        } => {
            let model = TunnelModel::builtin()?;
            let lm = DgaModel::builtin()?.lm;
            let queries = dns_queries(&file)?;
            let mut by: std::collections::BTreeMap<
                String,
                (Vec<&str>, std::collections::BTreeSet<&str>),
            > = Default::default();
            for (client, q) in &queries {
                let e = by.entry(dnstunnel::cut(q).1).or_default();
                e.0.push(q);
                if !client.is_empty() {
                    e.1.insert(client);
                }
            }
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            if !json {
                writeln!(
                    out,
                    "{:<40} {:>8} {:>8} {:>7}  verdict  clients",
                    "domain", "queries", "distinct", "score"
                )?;
            }
            for (domain, (names, clients)) in &by {
                let distinct = names
                    .iter()
                    .map(|n| dnstunnel::cut(n).0.to_ascii_lowercase())
                    .collect::<std::collections::HashSet<_>>()
                    .len();
                let score = dnstunnel::window_score(&model, &lm, names);
                let verdict = model.is_tunnel(score);
                if tunnels_only && !verdict {
                    continue;
                }
                let clients: Vec<&str> = clients.iter().copied().collect();
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"domain": domain, "queries": names.len(), "distinct": distinct,
                            "tunnel_score": (f64::from(score) * 1e6).round() / 1e6, "tunnel": verdict, "clients": clients})
                    )?;
                } else {
                    writeln!(
                        out,
                        "{:<40} {:>8} {:>8} {:>7.4}  {:<7}  {}",
                        domain,
                        names.len(),
                        distinct,
                        score,
                        if verdict { "TUNNEL" } else { "-" },
                        clients.join(",")
                    )?;
                }
            }
            out.flush()?;
            Ok(true)
        }
        AnalyzeCmd::Flows {
            files,
            internal,
            json,
        } => {
            let mut base = cf_detect::netbase::BaseRules::default();
            if let Some(nets) = internal {
                base.internal = cf_detect::netbase::parse_networks(&nets)
                    .map_err(|e| anyhow::anyhow!("--internal: {e}"))?;
            }
            let mut flows = Vec::new();
            for f in &files {
                flows.extend(flows_of(f)?);
            }
            flows.sort_by_key(|f| f.time_ms);
            let mut w =
                cf_detect::netwatch::NetWatch::new(cf_detect::netwatch::NetRules::default())
                    .with_baselines(base);
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let mut n = 0usize;
            for f in &flows {
                for a in w.observe(f) {
                    n += 1;
                    if json {
                        writeln!(out, "{}", serde_json::to_string(&a)?)?;
                    } else {
                        writeln!(
                            out,
                            "{:<21} {:<16} {:<24} {:>6} {:>10}",
                            a.kind, a.src, a.target, a.count, a.bytes
                        )?;
                    }
                }
            }
            if !json {
                writeln!(out, "{} flows, {n} alerts", flows.len())?;
            }
            out.flush()?;
            Ok(true)
        }
        AnalyzeCmd::TrainDnsTunnel {
            data,
            benign,
            out,
            window,
            fpr,
        } => {
            let (tunnel, normal) = dns_corpus(&data, &benign)?;
            let lm = DgaModel::builtin()?.lm;
            let t: Vec<&str> = tunnel.iter().map(|t| t.1.as_str()).collect();
            let b: Vec<&str> = normal.iter().map(String::as_str).collect();
            let m = dnstunnel::train(&t, &b, &lm, window, fpr);
            std::fs::write(&out, m.to_text())
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "trained on {} tunnel and {} benign names; threshold {:.4}; written to {}",
                t.len(),
                b.len(),
                m.threshold,
                out.display()
            );
            Ok(true)
        }
        AnalyzeCmd::EvalDnsTunnel {
            data,
            benign,
            window,
            json,
        } => {
            let (tunnel, normal) = dns_corpus(&data, &benign)?;
            let lm = DgaModel::builtin()?.lm;
            let ev = dnstunnel::leave_one_tool_out(&tunnel, &normal, &lm, window, 0.01);
            if json {
                println!("{}", serde_json::to_string(&ev)?);
            } else {
                println!(
                    "{:<10} {:>6} {:>9} {:>13} {:>16}",
                    "unseen", "names", "query AUC", "query R@1%FP", "domain windows"
                );
                for r in &ev.tools {
                    println!(
                        "{:<10} {:>6} {:>9.4} {:>13.3} {:>9}/{:<6}",
                        r.tool,
                        r.names,
                        r.query_auc,
                        r.query_recall_at_1pct,
                        r.windows_detected,
                        r.windows
                    );
                }
                println!(
                    "benign: {} held-out names in {} domain windows; {} false positives over {} models ({:.3}%)",
                    ev.benign_names,
                    ev.benign_windows,
                    ev.benign_false_positives,
                    ev.tools.len(),
                    100.0 * ev.benign_false_positives as f64
                        / (ev.benign_windows * ev.tools.len()).max(1) as f64
                );
            }
            Ok(true)
        }
        AnalyzeCmd::Domains { file, json, model } => {
            let m = match model {
                Some(p) => DgaModel::from_bytes(
                    &std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?,
                )?,
                None => DgaModel::builtin()?,
            };
            let input: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                ))
            };
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let mut ok = true;
            for (i, line) in input.lines().enumerate() {
                let Ok(line) = line else {
                    eprintln!("{}:{}: not UTF-8 text, skipped", file.display(), i + 1);
                    ok = false;
                    continue;
                };
                let d = line.trim();
                if d.is_empty() || d.starts_with('#') {
                    continue;
                }
                let s = m.score(d);
                let verdict = m.is_dga(s);
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"domain": d, "dga_score": (f64::from(s) * 1e6).round() / 1e6, "dga": verdict})
                    )?;
                } else {
                    writeln!(
                        out,
                        "{:<50} {:.4}  {}",
                        d,
                        s,
                        if verdict { "DGA" } else { "-" }
                    )?;
                }
            }
            out.flush()?;
            Ok(ok)
        }
        AnalyzeCmd::PublicSuffixes { psl, out } => {
            let s = dga::Suffixes::parse_psl(&read_debian_list(&psl, "publicsuffix", "--psl")?);
            if s.is_empty() {
                bail!("{}: no rules", psl.display());
            }
            std::fs::write(&out, s.to_text())
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{} suffix rules written to {}", s.len(), out.display());
            Ok(true)
        }
        AnalyzeCmd::TrainDga {
            data,
            out,
            epochs,
            fpr,
            words,
        } => {
            let rows = read_labelled(&data)?;
            let (words, word_text) = read_words(&words)?;
            let mut pairs: Vec<(String, bool)> = rows.into_iter().map(|(d, y, _)| (d, y)).collect();
            let labelled = pairs.len();
            dga::add_generic_dgas(&mut pairs, &word_text);
            let m = dga::train(
                &pairs,
                &words,
                TrainConfig {
                    epochs,
                    fpr,
                    ..TrainConfig::default()
                },
            );
            std::fs::write(&out, m.to_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
            // Reported over the labelled names only (the generic ones are appended after them).
            let pairs = &pairs[..labelled];
            let pos: Vec<f32> = pairs
                .iter()
                .filter(|p| p.1)
                .map(|p| m.score(&p.0))
                .collect();
            let neg: Vec<f32> = pairs
                .iter()
                .filter(|p| !p.1)
                .map(|p| m.score(&p.0))
                .collect();
            println!(
                "trained on {} domains ({} DGA); threshold {:.4}; training AUC {:.4}; written to {}",
                pairs.len(),
                pos.len(),
                m.threshold,
                dga::auc(&pos, &neg),
                out.display()
            );
            Ok(true)
        }
        AnalyzeCmd::EvalDga {
            data,
            folds,
            epochs,
            words,
            benign_source,
            json,
        } => {
            let rows = read_labelled(&data)?;
            let (words, word_text) = read_words(&words)?;
            let mut families: Vec<String> =
                rows.iter().filter(|r| r.1).map(|r| r.2.clone()).collect();
            families.sort();
            families.dedup();
            let folds = folds.clamp(2, families.len().max(2));
            let mut results = Vec::new();
            let (mut all_pos, mut all_neg) = (Vec::new(), Vec::new());
            for k in 0..folds {
                let held: Vec<&String> = families
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % folds == k)
                    .map(|(_, f)| f)
                    .collect();
                let benign_held = |d: &str| stable_hash(d) % folds as u64 == k as u64;
                let mut train: Vec<(String, bool)> = rows
                    .iter()
                    .filter(|r| {
                        if r.1 {
                            !held.contains(&&r.2)
                        } else {
                            !benign_held(&r.0)
                        }
                    })
                    .map(|r| (r.0.clone(), r.1))
                    .collect();
                dga::add_generic_dgas(&mut train, &word_text);
                let m = dga::train(
                    &train,
                    &words,
                    TrainConfig {
                        epochs,
                        ..TrainConfig::default()
                    },
                );
                // (family, score) of every held-out DGA name, scored once.
                let scored: Vec<(&str, f32)> = rows
                    .iter()
                    .filter(|r| r.1 && held.contains(&&r.2))
                    .map(|r| (r.2.as_str(), m.score(&r.0)))
                    .collect();
                let pos: Vec<f32> = scored.iter().map(|(_, s)| *s).collect();
                let neg: Vec<f32> = rows
                    .iter()
                    .filter(|r| {
                        !r.1 && benign_held(&r.0)
                            && benign_source
                                .as_ref()
                                .is_none_or(|p| r.2.starts_with(p.as_str()))
                    })
                    .map(|r| m.score(&r.0))
                    .collect();
                if neg.is_empty() {
                    bail!(
                        "fold {k}: no benign names to score{}",
                        benign_source
                            .as_ref()
                            .map(|p| format!(" (none has a source starting with `{p}`)"))
                            .unwrap_or_default()
                    );
                }
                let (recall, cut) = dga::recall_at_fpr(&pos, &neg, 0.01);
                let per_family: serde_json::Map<String, serde_json::Value> = held
                    .iter()
                    .map(|f| {
                        let s: Vec<f32> = scored
                            .iter()
                            .filter(|(g, _)| g == f)
                            .map(|(_, s)| *s)
                            .collect();
                        let hit = s.iter().filter(|&&x| x > cut).count() as f64;
                        ((*f).clone(), serde_json::json!(hit / s.len().max(1) as f64))
                    })
                    .collect();
                let at_model =
                    pos.iter().filter(|&&s| m.is_dga(s)).count() as f64 / pos.len().max(1) as f64;
                let fp_model =
                    neg.iter().filter(|&&s| m.is_dga(s)).count() as f64 / neg.len().max(1) as f64;
                let r = serde_json::json!({
                    "fold": k, "held_out_families": held, "dga": pos.len(), "benign": neg.len(),
                    "auc": dga::auc(&pos, &neg), "recall_at_1pct_fpr": recall,
                    "recall_at_model_threshold": at_model, "fpr_at_model_threshold": fp_model,
                    "recall_at_1pct_fpr_per_family": per_family,
                });
                if !json {
                    println!(
                        "fold {k}: {} unseen DGA, {} benign; AUC {:.4}; recall {:.3} at 1% FPR; at the model's threshold recall {:.3}, FPR {:.4}; held out (recall at 1% FPR): {}",
                        pos.len(),
                        neg.len(),
                        r["auc"].as_f64().unwrap_or(0.0),
                        recall,
                        at_model,
                        fp_model,
                        per_family
                            .iter()
                            .map(|(f, r)| format!("{f} {:.2}", r.as_f64().unwrap_or(0.0)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                all_pos.extend(pos);
                all_neg.extend(neg);
                results.push(r);
            }
            let (recall, _) = dga::recall_at_fpr(&all_pos, &all_neg, 0.01);
            let summary = serde_json::json!({
                "folds": results, "auc": dga::auc(&all_pos, &all_neg), "recall_at_1pct_fpr": recall,
            });
            if json {
                println!("{summary}");
            } else {
                println!(
                    "pooled over folds: AUC {:.4}, recall {:.3} at 1% FPR (unseen families)",
                    summary["auc"].as_f64().unwrap_or(0.0),
                    recall
                );
            }
            Ok(true)
        }
    }
}
