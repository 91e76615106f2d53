//! `chengfang scan --units FILE --json`: sensitive-data discovery over text units, a stable
//! contract for scripts and scorers. The unit key's last part (a CSV column or JSON key) is
//! passed to the recognisers as a hint; checksum-bearing identifiers never depend on it.

use std::io::{BufRead, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// One input line; `text` borrows from the line unless it has escapes.
#[derive(Deserialize)]
struct Unit<'a> {
    key: serde_json::Value,
    #[serde(borrow)]
    text: std::borrow::Cow<'a, str>,
}

/// Lines read and scanned together; each core scans an interleaved share of a batch.
const BATCH: usize = 4096;

/// What one worker's share of a batch gave: the output of each of its lines, one after the other.
#[derive(Default)]
struct Share {
    out: Vec<u8>,
    /// Where each line's output ends in `out`, in the share's order.
    ends: Vec<usize>,
    /// (line number, message) of every skipped line.
    skipped: Vec<(usize, String)>,
    units: u64,
    found: u64,
}

/// Scan one worker's share of a batch.
fn scan_share(lines: crate::workers::Share<'_, (usize, String)>, json: bool) -> Share {
    let mut sh = Share::default();
    for (no, line) in lines {
        let mark = sh.out.len();
        // A failure of the scanner on one line skips that line, never the run.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scan_line(line, *no, json, &mut sh)
        }))
        .is_err()
        {
            sh.out.truncate(mark);
            sh.skipped
                .push((*no, "skipped, the scanner failed on this line".into()));
        }
        sh.ends.push(sh.out.len());
    }
    sh
}

fn scan_line(line: &str, no: usize, json: bool, sh: &mut Share) {
    if line.trim().is_empty() {
        return;
    }
    let unit: Unit = match serde_json::from_str(line) {
        Ok(u) => u,
        Err(e) if e.is_data() => {
            sh.skipped.push((
                no,
                format!("skipped, needs \"key\" and a string \"text\" ({e})"),
            ));
            return;
        }
        Err(e) => {
            sh.skipped.push((no, format!("skipped, not JSON: {e}")));
            return;
        }
    };
    let (key, text) = (&unit.key, &*unit.text);
    let hint = key.as_str().and_then(cf_classify::hint_from_key);
    let spans = cf_classify::scan(text, hint);
    // Counted once scanned: a line the scanner fails on counts as skipped, not as a unit.
    sh.units += 1;
    sh.found += spans.len() as u64;
    let out = &mut sh.out;
    // Writing to a Vec cannot fail. Written by hand, numbers too: the shape is fixed and this is
    // the scanner's hot output path.
    if json {
        out.extend_from_slice(b"{\"key\":");
        let _ = serde_json::to_writer(&mut *out, key);
        out.extend_from_slice(b",\"spans\":[");
        for (j, (start, end, kind)) in cf_classify::code_point_spans(text, &spans)
            .into_iter()
            .enumerate()
        {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"start\":");
            push_number(out, start);
            out.extend_from_slice(b",\"end\":");
            push_number(out, end);
            out.extend_from_slice(b",\"type\":\"");
            out.extend_from_slice(kind.as_str().as_bytes());
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"]}\n");
    } else {
        for s in &spans {
            let _ = writeln!(
                out,
                "{}\t{}\t{}",
                key.as_str().unwrap_or_default(),
                s.kind.as_str(),
                &text[s.start..s.end]
            );
        }
    }
}

/// `n` in decimal, by serde_json's integer writer: the formatting machinery (`write!`) cost
/// more than the scan on span-dense units.
fn push_number(out: &mut Vec<u8>, n: usize) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(out, &n);
}

/// Run the scan on every core; the output keeps the input's order.
pub fn run(units: &Path, json: bool) -> Result<bool> {
    let input: Box<dyn BufRead> = if units.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(units)
                .with_context(|| format!("cannot open {}", units.display()))?,
        ))
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let (mut n, mut found, mut bad) = (0u64, 0u64, 0u64);
    let mut lines = crate::lines::lines(input).enumerate();
    // A line that cannot be read ends the run after the lines before it are written.
    let mut unreadable = None;
    let run = crate::workers::interleaved(
        |lines| scan_share(lines, json),
        || {
            if let Some(e) = unreadable.take() {
                return Err(e);
            }
            let mut batch = Vec::with_capacity(BATCH);
            for (i, line) in lines.by_ref().take(BATCH) {
                match line {
                    Ok(line) => batch.push((i + 1, line)),
                    Err(e) => {
                        unreadable = Some(anyhow::Error::from(e).context(format!(
                            "{}:{}: not UTF-8 text",
                            units.display(),
                            i + 1
                        )));
                        break;
                    }
                }
            }
            if batch.is_empty() {
                return unreadable.take().map_or(Ok(None), Err);
            }
            Ok(Some(batch))
        },
        |batch, shares| {
            let mut skipped: Vec<&(usize, String)> =
                shares.iter().flat_map(|s| &s.skipped).collect();
            skipped.sort_by_key(|(no, _)| *no);
            for (no, msg) in skipped {
                bad += 1;
                eprintln!("{}:{no}: {msg}", units.display());
            }
            // Line j of the batch is line j / workers of share j % workers.
            let mut from = vec![0usize; shares.len()];
            for j in 0..batch.len() {
                let (k, m) = (j % shares.len(), j / shares.len());
                let end = shares[k].ends[m];
                out.write_all(&shares[k].out[from[k]..end])?;
                from[k] = end;
            }
            for s in &shares {
                n += s.units;
                found += s.found;
            }
            Ok(())
        },
    );
    // The lines before an unreadable one are on stdout before the error is reported.
    out.flush()?;
    run?;
    eprintln!(
        "{n} units, {found} findings{}",
        if bad > 0 {
            format!(", {bad} lines skipped")
        } else {
            String::new()
        }
    );
    Ok(bad == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(cf_classify::hint_from_key("residents:0:姓名"), Some("姓名"));
        assert_eq!(
            cf_classify::hint_from_key("dev-rec-000000:/person/name"),
            Some("name")
        );
        assert_eq!(cf_classify::hint_from_key("dev-doc-000001"), None);
    }

    #[test]
    fn numbers_and_lines_are_written_as_json() {
        for n in [0, 7, 10, 99, 100, 4_096, 123_456_789, usize::MAX] {
            let mut out = Vec::new();
            push_number(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
        let mut sh = Share::default();
        scan_line(
            r#"{"key":"k\"1","text":"手机13812345678，ok"}"#,
            1,
            true,
            &mut sh,
        );
        let line: serde_json::Value = serde_json::from_slice(&sh.out).expect("one JSON line");
        assert_eq!(
            line,
            serde_json::json!({"key": "k\"1", "spans": [{"start": 2, "end": 13, "type": "CN_MOBILE"}]})
        );
        assert!(sh.out.ends_with(b"]}\n"));
    }

    /// Shares put back in line order give what one pass over the lines gives.
    #[test]
    fn shares_keep_the_line_order() {
        let batch: Vec<(usize, String)> = (0..11)
            .map(|i| {
                let line = match i % 4 {
                    0 => format!(r#"{{"key":"u{i}","text":"手机13812345678"}}"#),
                    1 => String::new(),
                    2 => "not json".to_string(),
                    _ => format!(r#"{{"key":"u{i}","text":"nothing here"}}"#),
                };
                (i + 1, line)
            })
            .collect();
        let one = scan_share(crate::workers::share(&batch, 0, 1), true);
        for workers in 2..5 {
            let shares: Vec<Share> = (0..workers)
                .map(|k| scan_share(crate::workers::share(&batch, k, workers), true))
                .collect();
            let mut from = vec![0; workers];
            let mut joined = Vec::new();
            for j in 0..batch.len() {
                let (k, m) = (j % workers, j / workers);
                joined.extend_from_slice(&shares[k].out[from[k]..shares[k].ends[m]]);
                from[k] = shares[k].ends[m];
            }
            assert_eq!(joined, one.out, "{workers} workers");
            let skipped: usize = shares.iter().map(|s| s.skipped.len()).sum();
            assert_eq!(skipped, one.skipped.len());
        }
        assert!(String::from_utf8_lossy(&one.out).contains("CN_MOBILE"));
    }
}
