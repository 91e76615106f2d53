//! `chengfang discover`: find and grade personal and important data in databases (SQLite,
//! PostgreSQL, MariaDB by URL), CSV, JSON/JSONL and text files (DAT-1, DAT-2), with per-column
//! reports as a table, JSON or HTML.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cf_classify::columns::{ColumnProfile, GradeScheme};
use clap::Args;
use serde::Serialize;

/// Arguments.
#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// Sources: database URLs (sqlite://, postgres://, mysql://) or files (.csv, .json, .jsonl, .xlsx, other text).
    #[arg(required = true)]
    pub sources: Vec<String>,
    /// Rows sampled per table.
    #[arg(long, default_value_t = 1000)]
    pub sample: u32,
    /// PostgreSQL: only this schema.
    #[arg(long)]
    pub schema: Option<String>,
    /// Grading scheme (JSON: levels, types, default_level, escalate); default: GB/T 43697 levels.
    #[arg(long)]
    pub scheme: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as HTML here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

/// One table's (or file's) result.
#[derive(Debug, Serialize)]
pub struct TableReport {
    /// Source (URL redacted, or path).
    pub source: String,
    /// Table name, or the file name.
    pub table: String,
    /// Rows in the table (all, not just the sample).
    pub rows: u64,
    /// Rows profiled.
    pub sampled: usize,
    /// Grade of the table.
    pub level: String,
    /// Columns (free text: one pseudo-column `text`).
    pub columns: Vec<ColumnProfile>,
}

fn profile(
    source: &str,
    table: &str,
    rows: u64,
    t: &cf_classify::tabular::Tabular,
    scheme: &GradeScheme,
) -> TableReport {
    let columns: Vec<ColumnProfile> = cf_classify::tabular::profile(t, scheme);
    let levels: Vec<&str> = columns.iter().map(|c| c.level.as_str()).collect();
    let level = scheme.table_level(&levels, rows);
    TableReport {
        source: source.to_string(),
        table: table.to_string(),
        rows,
        sampled: t.rows.len(),
        level,
        columns,
    }
}

async fn one(src: &str, a: &DiscoverArgs, scheme: &GradeScheme) -> Result<Vec<TableReport>> {
    use cf_classify::tabular::{Tabular, parse_csv, parse_json};
    if src.contains("://") {
        let shown = cf_store::redact_url(src);
        let tables = cf_store::sample::sample_database(src, a.schema.as_deref(), a.sample)
            .await
            .with_context(|| format!("cannot sample {shown}"))?;
        return Ok(tables
            .into_iter()
            .map(|t| {
                let tab = Tabular {
                    header: t.columns,
                    rows: t.rows,
                };
                profile(&shown, &t.name, t.total_rows, &tab, scheme)
            })
            .collect());
    }
    let path = PathBuf::from(src);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "xlsx" {
        let t = crate::tables::read(&path)?;
        let n = t.rows.len();
        let tab = Tabular {
            header: t.header,
            rows: t.rows.into_iter().take(a.sample as usize).collect(),
        };
        return Ok(vec![profile(src, &name, n as u64, &tab, scheme)]);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {src} as UTF-8 text"))?;
    let bad = |e: String| anyhow::anyhow!("{src}: {e}");
    let (t, n) = match ext.as_str() {
        "csv" => {
            let t = parse_csv(&text).map_err(bad)?;
            let n = t.rows.len();
            (
                Tabular {
                    header: t.header,
                    rows: t.rows.into_iter().take(a.sample as usize).collect(),
                },
                n,
            )
        }
        "json" | "jsonl" | "ndjson" => {
            parse_json(&text, ext != "json", a.sample as usize).map_err(bad)?
        }
        _ => {
            let rows: Vec<Vec<String>> = text.lines().map(|l| vec![l.to_string()]).collect();
            let n = rows.len();
            (
                Tabular {
                    header: vec!["text".into()],
                    rows,
                },
                n,
            )
        }
    };
    Ok(vec![profile(src, &name, n as u64, &t, scheme)])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(reports: &[TableReport]) -> String {
    let mut h = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>Chengfang data discovery</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.sensitive_personal,.important{background:#fdd}.personal{background:#ffe}</style><h1>Data discovery and grading</h1>",
    );
    for r in reports {
        h.push_str(&format!("<h2>{} — {}</h2><p>{} rows, {} sampled; grade <b class=\"{}\">{}</b></p><table><tr><th>column</th><th>type</th><th>share</th><th>values</th><th>also found</th><th>grade</th></tr>", esc(&r.source), esc(&r.table), r.rows, r.sampled, esc(&r.level), esc(&r.level)));
        for c in &r.columns {
            let also: Vec<String> = c
                .whole
                .iter()
                .filter(|(t, _)| Some(**t) != c.majority)
                .chain(c.embedded.iter())
                .map(|(t, n)| format!("{t} ×{n}"))
                .collect();
            h.push_str(&format!("<tr class=\"{}\"><td>{}</td><td>{}</td><td>{:.0}%</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&c.level), esc(&c.name), c.majority.unwrap_or("—"), c.share * 100.0, c.values, esc(&also.join(", ")), esc(&c.level)));
        }
        h.push_str("</table>");
    }
    h
}

/// Run.
pub async fn run(a: &DiscoverArgs) -> Result<bool> {
    let scheme = match &a.scheme {
        Some(p) => {
            let s: GradeScheme = serde_json::from_str(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{}: not a grading scheme", p.display()))?;
            s.validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            s
        }
        None => GradeScheme::default(),
    };
    let mut reports = Vec::new();
    for src in &a.sources {
        reports.extend(one(src, a, &scheme).await?);
    }
    if let Some(p) = &a.html {
        std::fs::write(p, html(&reports))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "scheme": scheme.levels, "tables": reports })
        );
    } else {
        for r in &reports {
            println!(
                "{} {}: {} rows, grade {}",
                r.source, r.table, r.rows, r.level
            );
            for c in r
                .columns
                .iter()
                .filter(|c| c.majority.is_some() || !c.embedded.is_empty())
            {
                println!(
                    "  {:<28} {:<18} {:>5.0}%  {}",
                    c.name,
                    c.majority.unwrap_or("(free text)"),
                    c.share * 100.0,
                    c.level
                );
            }
        }
    }
    Ok(true)
}
