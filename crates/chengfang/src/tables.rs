//! Reading and writing tables as CSV, JSON (an array of objects), JSONL or XLSX (first sheet,
//! first row the header), chosen by file extension, for exports, watermarks, tracing and discovery.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cf_mask::watermark::Table;

/// Format from the extension.
fn format(p: &Path) -> Result<&'static str> {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok("csv"),
        Some("json") => Ok("json"),
        Some("jsonl") | Some("ndjson") => Ok("jsonl"),
        Some("xlsx") => Ok("xlsx"),
        _ => bail!("{}: use a .csv, .json, .jsonl or .xlsx file", p.display()),
    }
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn from_objects(objs: Vec<serde_json::Map<String, serde_json::Value>>) -> Table {
    let mut header: Vec<String> = Vec::new();
    for o in &objs {
        for k in o.keys() {
            if !header.contains(k) {
                header.push(k.clone());
            }
        }
    }
    let rows = objs
        .iter()
        .map(|o| {
            header
                .iter()
                .map(|h| o.get(h).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    Table { header, rows }
}

/// Read a table.
pub fn read(p: &Path) -> Result<Table> {
    match format(p)? {
        "csv" => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {} as UTF-8 text", p.display()))?;
            let t = cf_classify::tabular::parse_csv(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok(Table {
                header: t.header,
                rows: t.rows,
            })
        }
        "xlsx" => {
            use calamine::Reader;
            let mut wb = calamine::open_workbook_auto(p)
                .with_context(|| format!("cannot open {} as a workbook", p.display()))?;
            let range = wb
                .worksheet_range_at(0)
                .with_context(|| format!("{}: the workbook has no sheet", p.display()))?
                .with_context(|| format!("{}: first sheet", p.display()))?;
            let mut rows = range
                .rows()
                .map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<String>>());
            let header = rows.next().unwrap_or_default();
            Ok(Table {
                header,
                rows: rows.collect(),
            })
        }
        "json" => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let objs: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&text)
                .with_context(|| format!("{}: expected a JSON array of objects", p.display()))?;
            Ok(from_objects(objs))
        }
        _ => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let mut objs = Vec::new();
            for (i, l) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                objs.push(serde_json::from_str(l).with_context(|| {
                    format!("{}: line {} is not a JSON object", p.display(), i + 1)
                })?);
            }
            Ok(from_objects(objs))
        }
    }
}

/// Write a table (atomically: a temporary file renamed into place).
pub fn write(p: &Path, t: &Table) -> Result<()> {
    let tmp = p.with_extension("partial");
    match format(p)? {
        "xlsx" => {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let ws = wb.add_worksheet();
            for (r, row) in std::iter::once(&t.header).chain(t.rows.iter()).enumerate() {
                for (c, v) in row.iter().enumerate() {
                    let (r, c) = (u32::try_from(r)?, u16::try_from(c)?);
                    ws.write_string(r, c, v)
                        .with_context(|| format!("{}: cell {r},{c}", p.display()))?;
                }
            }
            wb.save(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
        }
        "csv" => {
            let mut w = csv::Writer::from_path(&tmp)?;
            w.write_record(&t.header)?;
            for r in &t.rows {
                w.write_record(r)?;
            }
            w.flush()?;
        }
        f => {
            let objs: Vec<serde_json::Value> = t
                .rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        t.header
                            .iter()
                            .cloned()
                            .zip(r.iter().map(|v| serde_json::Value::String(v.clone())))
                            .collect(),
                    )
                })
                .collect();
            let text = if f == "json" {
                serde_json::to_string_pretty(&objs)?
            } else {
                objs.iter().map(|o| o.to_string() + "\n").collect()
            };
            std::fs::write(&tmp, text)?;
        }
    }
    std::fs::rename(&tmp, p)?;
    Ok(())
}

/// Key material from a file given on the command line (masking, watermark keys): 32 or more
/// bytes, either raw or as hex text. The bytes are wiped when dropped.
pub fn key_file(path: &Path, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let raw = zeroize::Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("cannot read the {what} {}", path.display()))?,
    );
    let hex_bytes = std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .filter(|b| b.len() >= 32);
    let bytes = match hex_bytes {
        Some(b) => zeroize::Zeroizing::new(b),
        None => raw,
    };
    if bytes.len() < 32 {
        bail!("{}: a {what} needs at least 32 bytes", path.display());
    }
    Ok(bytes)
}
