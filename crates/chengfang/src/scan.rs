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

/// Run the scan.
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
    for (i, line) in input.lines().enumerate() {
        let line =
            line.with_context(|| format!("{}:{}: not UTF-8 text", units.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let unit: Unit = match serde_json::from_str(&line) {
            Ok(u) => u,
            Err(e) if e.is_data() => {
                bad += 1;
                eprintln!(
                    "{}:{}: skipped, needs \"key\" and a string \"text\" ({e})",
                    units.display(),
                    i + 1
                );
                continue;
            }
            Err(e) => {
                bad += 1;
                eprintln!("{}:{}: skipped, not JSON: {e}", units.display(), i + 1);
                continue;
            }
        };
        let (key, text) = (&unit.key, &*unit.text);
        n += 1;
        let hint = key.as_str().and_then(cf_classify::hint_from_key);
        let spans = cf_classify::scan(text, hint);
        found += spans.len() as u64;
        if json {
            // Written by hand: the shape is fixed and this is the scanner's hot output path.
            write!(out, "{{\"key\":{key},\"spans\":[")?;
            for (j, (start, end, kind)) in cf_classify::code_point_spans(text, &spans)
                .into_iter()
                .enumerate()
            {
                let sep = if j == 0 { "" } else { "," };
                write!(
                    out,
                    "{sep}{{\"start\":{start},\"end\":{end},\"type\":\"{}\"}}",
                    kind.as_str()
                )?;
            }
            writeln!(out, "]}}")?;
        } else {
            for s in &spans {
                writeln!(
                    out,
                    "{}\t{}\t{}",
                    key.as_str().unwrap_or_default(),
                    s.kind.as_str(),
                    &text[s.start..s.end]
                )?;
            }
        }
    }
    out.flush()?;
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
    #[test]
    fn hints() {
        assert_eq!(cf_classify::hint_from_key("residents:0:姓名"), Some("姓名"));
        assert_eq!(
            cf_classify::hint_from_key("dev-rec-000000:/person/name"),
            Some("name")
        );
        assert_eq!(cf_classify::hint_from_key("dev-doc-000001"), None);
    }
}
