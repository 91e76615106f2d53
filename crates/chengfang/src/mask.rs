//! `chengfang mask`: static masking of CSV, JSONL and text files by a role's policy (MSK-1…MSK-4),
//! with an optional k-anonymity / l-diversity check of the result before it is released.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cf_mask::{Masker, PolicySet};
use clap::Args;

/// Arguments.
#[derive(Args, Debug)]
pub struct MaskArgs {
    /// Input: .csv (header row), .jsonl (one JSON object per line) or any other text file.
    pub input: PathBuf,
    /// Output file (same format).
    #[arg(long)]
    pub output: PathBuf,
    /// Role of the recipient; picks the policy bound to it (fallback: the strictest).
    #[arg(long, default_value = "")]
    pub role: String,
    /// Policy set (JSON: policies, bindings, fallback); default: the built-in standard /
    /// analytics / clear policies.
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Masking key file (32+ bytes; hex accepted). Pseudonyms, surrogates and FPE depend on it;
    /// the same key gives the same pseudonym in every table.
    #[arg(long, env = "CHENGFANG_MASK_KEY_FILE")]
    pub key_file: PathBuf,
    /// CSV only: quasi-identifier columns (comma-separated) for a k-anonymity check of the output.
    #[arg(long)]
    pub qi: Option<String>,
    /// CSV only: sensitive column for l-diversity.
    #[arg(long)]
    pub sensitive: Option<String>,
    /// Required k (the command fails, writing nothing, if the output does not meet it).
    #[arg(long, default_value_t = 1)]
    pub k: usize,
    /// Required l.
    #[arg(long, default_value_t = 1)]
    pub l: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn key(path: &Path) -> Result<Masker> {
    let bytes = crate::tables::key_file(path, "masking key")?;
    // Keys longer than 32 bytes are compressed; the masker's own PRF keeps them apart by purpose.
    Ok(Masker::new(cf_crypto::sha256(&bytes)))
}

fn mask_json(
    m: &Masker,
    p: &cf_mask::Policy,
    v: &mut serde_json::Value,
    key: Option<&str>,
    n: &mut usize,
) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                mask_json(m, p, x, Some(k), n);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                mask_json(m, p, x, key, n);
            }
        }
        serde_json::Value::String(s) => {
            let (out, f) = p.mask_text(m, s, key);
            *n += f.len();
            *s = out;
        }
        serde_json::Value::Number(num) => {
            let s = num.to_string();
            let (out, f) = p.mask_text(m, &s, key);
            if !f.is_empty() {
                *n += f.len();
                *v = serde_json::Value::String(out);
            }
        }
        _ => {}
    }
}

/// Run.
pub fn run(a: &MaskArgs) -> Result<bool> {
    let set = match &a.policies {
        Some(p) => PolicySet::parse(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
        None => PolicySet::default(),
    };
    let policy = set.for_roles(&[a.role.as_str()]);
    let m = key(&a.key_file)?;
    let ext = a
        .input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let tmp = a.output.with_extension("partial");
    let report = match ext.as_str() {
        "csv" => {
            let mut table = crate::tables::read(&a.input)?;
            let (header, rows) = (&table.header, &mut table.rows);
            let counts = cf_mask::mask_table(&m, policy, header, rows);
            let col = |name: &str| {
                header
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| anyhow::anyhow!("no column `{name}` in {}", a.input.display()))
            };
            let kanon = match &a.qi {
                Some(q) => {
                    let qi = q
                        .split(',')
                        .map(|c| col(c.trim()))
                        .collect::<Result<Vec<_>>>()?;
                    let s = a.sensitive.as_deref().map(col).transpose()?;
                    Some(cf_mask::kanon::check(rows, &qi, s, a.k, a.l))
                }
                None => None,
            };
            if let Some(k) = &kanon
                && !k.passes
            {
                let msg = format!(
                    "the masked table is {}-anonymous{} but {}-anonymity{} is required; nothing written",
                    k.k,
                    k.l.map(|l| format!(", {l}-diverse")).unwrap_or_default(),
                    a.k,
                    if a.sensitive.is_some() {
                        format!(" and {}-diversity", a.l)
                    } else {
                        String::new()
                    }
                );
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({"ok": false, "error": msg, "kanon": k})
                    );
                } else {
                    eprintln!("{msg}");
                    for w in k.weak.iter().take(10) {
                        eprintln!(
                            "  class {:?}: {} rows, {} distinct",
                            w.key, w.size, w.distinct
                        );
                    }
                }
                return Ok(false);
            }
            let report = serde_json::json!({"rows": rows.len(), "columns": counts, "kanon": kanon});
            crate::tables::write(&a.output, &table)?;
            report
        }
        _ => {
            let f = std::fs::File::open(&a.input)
                .with_context(|| format!("cannot open {}", a.input.display()))?;
            let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
            let (mut lines, mut found) = (0usize, 0usize);
            for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line =
                    line.with_context(|| format!("{}: line {}", a.input.display(), i + 1))?;
                if ext == "jsonl" && !line.trim().is_empty() {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&line).with_context(|| {
                            format!("{}: line {} is not JSON", a.input.display(), i + 1)
                        })?;
                    mask_json(&m, policy, &mut v, None, &mut found);
                    writeln!(w, "{v}")?;
                } else {
                    let (out, f) = policy.mask_text(&m, &line, None);
                    found += f.len();
                    writeln!(w, "{out}")?;
                }
                lines += 1;
            }
            w.flush()?;
            drop(w);
            std::fs::rename(&tmp, &a.output)?;
            serde_json::json!({"lines": lines, "masked_values": found})
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "policy": policy.name, "report": report})
        );
    } else {
        println!(
            "masked {} with policy `{}` → {}",
            a.input.display(),
            policy.name,
            a.output.display()
        );
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(true)
}
