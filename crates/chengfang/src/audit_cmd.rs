//! `chengfang audit …`: offline verification of a data directory or an export, the weekly
//! review, proofs, and export — all without a running server.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_ledger::NoteVerifier;
use cf_platform::LedgerEntry;
use cf_platform::ports::StateStore;
use cf_platform::verify::{RowIn, VerifyReport, verify};
use cf_store::SqlStore;

/// Export format version.
const EXPORT_VERSION: u32 = 1;

/// Rows and checkpoint notes of a ledger, wherever they came from.
pub struct LedgerSource {
    /// Rows ascending.
    pub rows: Vec<RowIn>,
    /// Signed notes.
    pub notes: Vec<String>,
    /// Origin recorded with the ledger.
    pub origin: Option<String>,
    /// Verifier key recorded with the ledger (untrusted unless pinned).
    pub vkey: Option<String>,
}

async fn read_store(store: &SqlStore) -> Result<(Vec<RowIn>, Vec<String>)> {
    let mut rows = Vec::new();
    let mut from = 0u64;
    loop {
        let page = store.ledger_entries(from, 10_000).await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        rows.extend(page.into_iter().map(|e| RowIn {
            seq: e.seq,
            body: e.body,
            leaf_hash: Some(e.leaf_hash),
        }));
    }
    let notes = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| c.note)
        .collect();
    Ok((rows, notes))
}

/// Read a data directory (its SQLite database, read-only) or an export file.
pub async fn load(path: &Path) -> Result<LedgerSource> {
    if path.is_dir() {
        let store = SqlStore::open_sqlite_read_only(&path.join("state.db"))
            .await
            .with_context(|| {
                format!(
                    "{} is not a Chengfang data directory with an embedded ledger",
                    path.display()
                )
            })?;
        let (rows, notes) = read_store(&store).await?;
        store.close().await;
        let read = |f: &str| {
            std::fs::read_to_string(path.join(f))
                .ok()
                .map(|s| s.trim().to_string())
        };
        return Ok(LedgerSource {
            rows,
            notes,
            origin: read("ledger.origin"),
            vkey: read("ledger.vkey"),
        });
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut src = LedgerSource {
        rows: Vec::new(),
        notes: Vec::new(),
        origin: None,
        vkey: None,
    };
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        if let Some(ver) = v.get("chengfang_ledger_export") {
            if ver.as_u64() != Some(u64::from(EXPORT_VERSION)) {
                bail!(
                    "{}:{}: unsupported export version {ver}",
                    path.display(),
                    i + 1
                );
            }
            src.origin = v["origin"].as_str().map(str::to_string);
            src.vkey = v["verifier_key"].as_str().map(str::to_string);
        } else if let (Some(seq), Some(body)) = (v["seq"].as_u64(), v["body"].as_str()) {
            src.rows.push(RowIn {
                seq,
                body: body.to_string(),
                leaf_hash: None,
            });
        } else if let Some(note) = v["checkpoint"].as_str() {
            src.notes.push(note.to_string());
        } else {
            bail!(
                "{}:{}: neither a record nor a checkpoint",
                path.display(),
                i + 1
            );
        }
    }
    Ok(src)
}

/// `chengfang audit verify`.
pub async fn verify_cmd(
    path: &Path,
    keys: Vec<String>,
    origin: Option<String>,
    allow_unsigned_tail: bool,
    json: bool,
) -> Result<bool> {
    let src = load(path).await?;
    let pinned = !keys.is_empty();
    let vkeys: Vec<String> = if pinned {
        keys
    } else {
        src.vkey
            .clone()
            .map(|v| v.lines().map(str::to_string).collect())
            .unwrap_or_default()
    };
    if vkeys.is_empty() {
        anyhow::bail!("no verifier key: pass --key <vkey> (printed by `chengfang serve`)");
    }
    let verifiers: Vec<NoteVerifier> = vkeys
        .iter()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            NoteVerifier::from_vkey(v.trim())
                .map_err(|e| anyhow::anyhow!("--key {}: {e}", v.trim()))
        })
        .collect::<Result<_>>()?;
    let origin = origin
        .or(src.origin.clone())
        .unwrap_or_else(|| verifiers[0].name().to_string());
    let report = verify(src.rows, &src.notes, &origin, &verifiers);
    let ok = if allow_unsigned_tail {
        report.ok()
    } else {
        report.fully_signed()
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": ok, "key_pinned": pinned, "report": report })
        );
    } else {
        print_report(path, &report, pinned, allow_unsigned_tail);
    }
    Ok(ok)
}

fn print_report(path: &Path, r: &VerifyReport, pinned: bool, allow_unsigned_tail: bool) {
    println!("ledger      {}", path.display());
    println!("records     {}", r.records);
    println!(
        "checkpoints {} verified, latest covers {} records",
        r.checkpoints_verified, r.latest_checkpoint_size
    );
    println!("root        {}", r.root);
    if r.unsigned_tail > 0 {
        println!(
            "note        {} newest records are not yet covered by a signed checkpoint",
            r.unsigned_tail
        );
    }
    if !pinned {
        println!(
            "note        the verifier key was read from the ledger's own directory; pin it with --key for an independent check"
        );
    }
    match &r.first_bad {
        Some(p) => println!("result      FAILED at record {}: {}", p.seq, p.reason),
        None if r.unsigned_tail > 0 && !allow_unsigned_tail => println!(
            "result      FAILED: records {}..{} are not covered by any signed checkpoint, so nothing vouches for them (start the platform to sign them, or pass --allow-unsigned-tail)",
            r.latest_checkpoint_size,
            r.records.saturating_sub(1)
        ),
        None => println!(
            "result      OK: every record is intact, in order, and matches the signed checkpoints"
        ),
    }
}

/// `chengfang audit export`.
pub async fn export_cmd(dir: &Path, out: &Path) -> Result<u64> {
    let src = load(dir).await?;
    // Audit data is for auditors only (AUD-5): the export is readable by its owner alone.
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = std::io::BufWriter::new(
        opts.open(out)
            .with_context(|| format!("cannot create {}", out.display()))?,
    );
    writeln!(
        f,
        "{}",
        serde_json::json!({ "chengfang_ledger_export": EXPORT_VERSION, "origin": src.origin, "verifier_key": src.vkey })
    )?;
    for r in &src.rows {
        writeln!(f, "{}", serde_json::json!({ "seq": r.seq, "body": r.body }))?;
    }
    for n in &src.notes {
        writeln!(f, "{}", serde_json::json!({ "checkpoint": n }))?;
    }
    f.flush()?;
    Ok(src.rows.len() as u64)
}

/// `chengfang audit report`.
pub async fn report_cmd(path: &Path, since: std::time::Duration, json: bool) -> Result<()> {
    let src = load(path).await?;
    let now = cf_core::Clock::now(&cf_core::SystemClock);
    let entries: Vec<LedgerEntry> = src
        .rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    let report = cf_platform::report::AuditReport::build(entries, now.minus(since), now, 50);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// `chengfang audit proof`: compute and check an inclusion or consistency proof offline.
pub async fn proof_cmd(
    path: &Path,
    seq: Option<u64>,
    old: Option<u64>,
    size: Option<u64>,
    json: bool,
) -> Result<bool> {
    let src = load(path).await?;
    let mut tree = cf_ledger::MerkleTree::new();
    for r in &src.rows {
        tree.push(cf_ledger::leaf_hash(r.body.as_bytes()));
    }
    let size = size.unwrap_or(tree.size());
    let root = tree.root_at(size)?;
    let out = match (seq, old) {
        (Some(seq), None) => {
            let proof = tree.inclusion_proof(seq, size)?;
            let leaf = tree.leaf(seq).context("no such record")?;
            let ok = cf_ledger::verify_inclusion(seq, size, &leaf, &proof, &root).is_ok();
            serde_json::json!({ "kind": "inclusion", "seq": seq, "size": size, "leaf_hash": B64.encode(leaf), "root": B64.encode(root), "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(), "verified": ok })
        }
        (None, Some(old)) => {
            let proof = tree.consistency_proof(old, size)?;
            let r1 = tree.root_at(old)?;
            let ok = cf_ledger::verify_consistency(old, size, &r1, &root, &proof).is_ok();
            serde_json::json!({ "kind": "consistency", "old": old, "new": size, "old_root": B64.encode(r1), "new_root": B64.encode(root), "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(), "verified": ok })
        }
        _ => bail!("give either --seq N (inclusion) or --old N (consistency)"),
    };
    if json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(out["verified"].as_bool().unwrap_or(false))
}
