//! `chengfang analyze …`: the analytics as commands. `domains FILE` scores one domain per line for
//! DGA (a stable contract: with `--json`, one object per line with `domain`, `dga_score` and
//! `dga`); `train-dga` builds the shipped model from labelled data; `eval-dga` measures it on
//! families left out of training.

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cf_detect::dga::{self, DgaModel, TrainConfig};
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
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Rows of the labelled CSV: (domain, is_dga, family).
fn read_labelled(path: &Path) -> Result<Vec<(String, bool, String)>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not gzip text", path.display()))?;
    } else {
        std::io::BufReader::new(f).read_to_string(&mut text)?;
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split(',').collect();
        if i == 0 && cols.first() == Some(&"domain") {
            continue;
        }
        match cols.as_slice() {
            [d, l, fam, ..] if !d.is_empty() => match *l {
                "0" | "1" => rows.push((d.to_string(), *l == "1", fam.to_string())),
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
        AnalyzeCmd::TrainDga {
            data,
            out,
            epochs,
            fpr,
        } => {
            let rows = read_labelled(&data)?;
            let pairs: Vec<(String, bool)> = rows.into_iter().map(|(d, y, _)| (d, y)).collect();
            let m = dga::train(
                &pairs,
                TrainConfig {
                    epochs,
                    fpr,
                    ..TrainConfig::default()
                },
            );
            std::fs::write(&out, m.to_bytes())
                .with_context(|| format!("cannot write {}", out.display()))?;
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
            json,
        } => {
            let rows = read_labelled(&data)?;
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
                let train: Vec<(String, bool)> = rows
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
                let m = dga::train(
                    &train,
                    TrainConfig {
                        epochs,
                        ..TrainConfig::default()
                    },
                );
                let pos: Vec<f32> = rows
                    .iter()
                    .filter(|r| r.1 && held.contains(&&r.2))
                    .map(|r| m.score(&r.0))
                    .collect();
                let neg: Vec<f32> = rows
                    .iter()
                    .filter(|r| !r.1 && benign_held(&r.0))
                    .map(|r| m.score(&r.0))
                    .collect();
                let (recall, _) = dga::recall_at_fpr(&pos, &neg, 0.01);
                let at_model =
                    pos.iter().filter(|&&s| m.is_dga(s)).count() as f64 / pos.len().max(1) as f64;
                let fp_model =
                    neg.iter().filter(|&&s| m.is_dga(s)).count() as f64 / neg.len().max(1) as f64;
                let r = serde_json::json!({
                    "fold": k, "held_out_families": held, "dga": pos.len(), "benign": neg.len(),
                    "auc": dga::auc(&pos, &neg), "recall_at_1pct_fpr": recall,
                    "recall_at_model_threshold": at_model, "fpr_at_model_threshold": fp_model,
                });
                if !json {
                    println!(
                        "fold {k}: {} unseen DGA, {} benign; AUC {:.4}; recall {:.3} at 1% FPR; at the model's threshold recall {:.3}, FPR {:.4}; held out: {}",
                        pos.len(),
                        neg.len(),
                        r["auc"].as_f64().unwrap_or(0.0),
                        recall,
                        at_model,
                        fp_model,
                        held.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
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
