//! Untrusted tabular text for discovery: CSV (with a header row) and JSON / JSONL records
//! (nested objects flattened to `a/b/c` paths, arrays joined one value per line), parsed into
//! named columns. Errors name the row or line; nothing here panics on any input (fuzzed).

use std::collections::BTreeMap;

/// Named columns and rows of text cells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tabular {
    /// Column names.
    pub header: Vec<String>,
    /// Rows, cells by header position.
    pub rows: Vec<Vec<String>>,
}

/// Parse CSV text whose first row is the header.
pub fn parse_csv(text: &str) -> Result<Tabular, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = r
        .headers()
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("row {}: {e}", i + 2))?;
        rows.push(rec.iter().map(str::to_string).collect());
    }
    Ok(Tabular { header, rows })
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                flatten(
                    &if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}/{k}")
                    },
                    x,
                    out,
                    depth + 1,
                );
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                flatten(prefix, x, out, depth + 1);
            }
        }
        serde_json::Value::Null => {}
        other => {
            let s = match other {
                serde_json::Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            let e = out
                .entry(if prefix.is_empty() {
                    "value".into()
                } else {
                    prefix.to_string()
                })
                .or_default();
            if !e.is_empty() {
                e.push('\n');
            }
            e.push_str(&s);
        }
    }
}

/// Parse JSON records: a JSON array (or single value) when `lines` is false, else one JSON
/// value per non-empty line. At most `limit` records are kept; returns them and the total count.
pub fn parse_json(text: &str, lines: bool, limit: usize) -> Result<(Tabular, usize), String> {
    let values: Vec<serde_json::Value> = if lines {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
            .collect::<Result<_, _>>()?
    } else {
        match serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))? {
            serde_json::Value::Array(a) => a,
            v => vec![v],
        }
    };
    let total = values.len();
    let flat: Vec<BTreeMap<String, String>> = values
        .iter()
        .take(limit)
        .map(|v| {
            let mut m = BTreeMap::new();
            flatten("", v, &mut m, 0);
            m
        })
        .collect();
    let mut header: Vec<String> = flat.iter().flat_map(|m| m.keys().cloned()).collect();
    header.sort();
    header.dedup();
    let rows = flat
        .iter()
        .map(|m| {
            header
                .iter()
                .map(|h| m.get(h).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    Ok((Tabular { header, rows }, total))
}

/// Profile every column of a table (cells holding several values, one per line, count each).
pub fn profile(
    t: &Tabular,
    scheme: &crate::columns::GradeScheme,
) -> Vec<crate::columns::ColumnProfile> {
    let mut profs: Vec<crate::columns::ColumnProfiler> = t
        .header
        .iter()
        .map(|h| crate::columns::ColumnProfiler::new(h))
        .collect();
    for r in &t.rows {
        for (p, v) in profs.iter_mut().zip(r) {
            for part in v.split('\n') {
                p.add(part);
            }
        }
    }
    profs.into_iter().map(|p| p.finish(scheme)).collect()
}

/// Entry points for the cargo-fuzz targets (`fuzz/fuzz_targets/discover_csv.rs`, `discover_json.rs`).
pub mod fuzzing {
    /// CSV text through parsing and profiling.
    pub fn csv(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data)
            && let Ok(t) = super::parse_csv(s)
        {
            let _ = super::profile(&t, &crate::columns::GradeScheme::default());
        }
    }

    /// JSON and JSONL text through parsing and profiling.
    pub fn json(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            for lines in [false, true] {
                if let Ok((t, _)) = super::parse_json(s, lines, 1000) {
                    let _ = super::profile(&t, &crate::columns::GradeScheme::default());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_parse_with_located_errors() {
        let t = parse_csv("a,b\n1,\"x,y\"\n2\n").unwrap();
        assert_eq!(t.header, ["a", "b"]);
        assert_eq!(
            t.rows,
            vec![vec!["1".to_string(), "x,y".into()], vec!["2".into()]]
        );
        let (t, n) = parse_json(r#"{"p":{"id":"1","tags":["a","b"]},"n":3}"#, true, 10).unwrap();
        assert_eq!(
            (t.header.clone(), n),
            (vec!["n".to_string(), "p/id".into(), "p/tags".into()], 1)
        );
        assert_eq!(t.rows[0][2], "a\nb");
        assert_eq!(
            parse_json("{}\n{bad", true, 10)
                .unwrap_err()
                .split(':')
                .next(),
            Some("line 2")
        );
        let deep = "[".repeat(200) + &"]".repeat(200);
        let _ = parse_json(&deep, false, 10);
    }
}
