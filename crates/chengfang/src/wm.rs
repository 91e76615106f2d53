//! `chengfang watermark` and `chengfang trace` (PRV-1): mark an export for its recipient; name
//! the recipient of a leaked copy.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// `chengfang watermark`.
#[derive(Args, Debug)]
pub struct MarkArgs {
    /// Export to mark (.csv, .json or .jsonl).
    pub input: PathBuf,
    /// Marked output (its extension picks the format).
    #[arg(long)]
    pub output: PathBuf,
    /// Who receives this copy.
    #[arg(long)]
    pub recipient: String,
    /// Column that identifies a row (a record id, kept in exports).
    #[arg(long)]
    pub key_column: String,
    /// Watermark key file (32+ bytes; hex accepted); the same key traces.
    #[arg(long, env = "CHENGFANG_WATERMARK_KEY_FILE")]
    pub key_file: PathBuf,
}

/// `chengfang trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The leaked copy (.csv, .json or .jsonl).
    pub file: PathBuf,
    /// Candidate recipients: a comma-separated list, or @FILE with one per line.
    #[arg(long)]
    pub recipients: String,
    /// Column that identifies a row.
    #[arg(long)]
    pub key_column: String,
    /// Watermark key file.
    #[arg(long, env = "CHENGFANG_WATERMARK_KEY_FILE")]
    pub key_file: PathBuf,
    /// Bound on the probability of naming a wrong recipient.
    #[arg(long, default_value_t = 1e-6)]
    pub alpha: f64,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

fn masker(p: &std::path::Path) -> Result<cf_mask::Masker> {
    let bytes = crate::tables::key_file(p, "watermark key")?;
    // Domain-separated from masking keys made from the same file.
    Ok(cf_mask::Masker::new(cf_crypto::sha256_parts(&[
        b"chengfang-watermark/v1",
        &bytes,
    ])))
}

/// Mark.
pub fn mark(a: &MarkArgs) -> Result<bool> {
    let m = masker(&a.key_file)?;
    let mut t = crate::tables::read(&a.input)?;
    let n = cf_mask::watermark::embed(&m, &a.recipient, &a.key_column, &mut t)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::tables::write(&a.output, &t)?;
    println!(
        "marked {n} of {} rows for `{}` → {}",
        t.rows.len(),
        a.recipient,
        a.output.display()
    );
    Ok(true)
}

/// Trace.
pub fn trace(a: &TraceArgs) -> Result<bool> {
    let m = masker(&a.key_file)?;
    let cands: Vec<String> = match a.recipients.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read {f}"))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => a
            .recipients
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let t = crate::tables::read(&a.file)?;
    let tr = cf_mask::watermark::trace(&m, &cands, &a.key_column, &t, a.alpha)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&tr)?);
    } else {
        match &tr.attributed {
            Some(r) => println!(
                "leaked copy of `{r}` (false-attribution bound {:.1e})",
                a.alpha
            ),
            None => println!("no recipient can be named at α = {:.1e}", a.alpha),
        }
        println!(
            "{:<24} {:>6} {:>8} {:>10} {:>10}",
            "recipient", "rows", "matches", "threshold", "p-bound"
        );
        for c in tr.candidates.iter().take(10) {
            println!(
                "{:<24} {:>6} {:>8} {:>10.1} {:>10.1e}",
                c.recipient, c.rows, c.matches, c.threshold, c.p_bound
            );
        }
    }
    Ok(tr.attributed.is_some())
}
