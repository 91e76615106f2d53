//! `chengfang hunt`: load Sigma rules, stream events from a JSONL file and print every
//! (rule, event) hit. A stable contract for scripts: with `--json`, one object per hit with
//! `rule_id` (the Sigma id) and `line` (the event's 1-based line number).

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cf_sigma::{EvtxEvent, RuleSet, compile_rule};

/// What one worker found in its share of a batch: (line, rule) hits, events read, bad lines.
type WorkerResult = (Vec<(usize, usize)>, u64, Vec<(usize, String)>);

/// Loaded rules and what was refused.
pub struct Loaded {
    /// The rule set.
    pub set: RuleSet,
    /// (path, reason) of every refused rule.
    pub refused: Vec<(PathBuf, String)>,
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot read rules from {}", path.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Load every rule under `path`; a rule that cannot be compiled is refused, never fatal.
pub fn load_rules(path: &Path) -> Result<Loaded> {
    let mut files = Vec::new();
    collect(path, &mut files)?;
    let mut set = RuleSet::new();
    let mut refused = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                refused.push((f, format!("unreadable: {e}")));
                continue;
            }
        };
        match compile_rule(&text) {
            Ok(r) => set.add(r),
            Err(e) => refused.push((f, e.to_string())),
        }
    }
    Ok(Loaded { set, refused })
}

/// Run the hunt; returns true when the events file was read to the end.
pub fn run(rules: &Path, events: &Path, json: bool, show_refused: bool) -> Result<bool> {
    let loaded = load_rules(rules)?;
    eprintln!(
        "loaded {} rules, refused {}{}",
        loaded.set.rules().len(),
        loaded.refused.len(),
        if show_refused || loaded.refused.is_empty() {
            ""
        } else {
            " (--show-refused lists them)"
        }
    );
    if show_refused {
        for (p, why) in &loaded.refused {
            eprintln!("  refused {}: {why}", p.display());
        }
    }
    let f =
        std::fs::File::open(events).with_context(|| format!("cannot open {}", events.display()))?;
    let reader = std::io::BufReader::with_capacity(1 << 20, f);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let (mut n_events, mut n_hits, mut malformed) = (0u64, 0u64, 0u64);
    let rules = loaded.set.rules();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let mut lines = reader.lines().enumerate().peekable();
    // Batches of lines are matched on every core; output keeps the input order.
    while lines.peek().is_some() {
        let mut batch: Vec<(usize, String)> = Vec::with_capacity(8192);
        for (i, line) in lines.by_ref().take(8192) {
            let line =
                line.with_context(|| format!("{}:{}: not UTF-8 text", events.display(), i + 1))?;
            batch.push((i + 1, line));
        }
        // Interleaved, not contiguous: expensive events cluster in real logs.
        let results: Vec<WorkerResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|k| {
                    let set = &loaded.set;
                    let part = batch.iter().skip(k).step_by(workers);
                    scope.spawn(move || {
                        let (mut found, mut n, mut bad) = (Vec::new(), 0u64, Vec::new());
                        let mut hits = Vec::new();
                        for (no, line) in part {
                            if line.trim().is_empty() {
                                continue;
                            }
                            match serde_json::from_str::<serde_json::Value>(line) {
                                Ok(v) => {
                                    n += 1;
                                    set.match_evtx(&EvtxEvent::new(&v), &mut hits);
                                    found.extend(hits.iter().map(|&r| (*no, r)));
                                }
                                Err(e) => bad.push((*no, e.to_string())),
                            }
                        }
                        (found, n, bad)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut found_all = Vec::new();
        let mut bad_all = Vec::new();
        for (found, n, bad) in results {
            n_events += n;
            found_all.extend(found);
            bad_all.extend(bad);
        }
        found_all.sort_unstable();
        bad_all.sort_unstable();
        for (no, e) in bad_all {
            malformed += 1;
            if malformed <= 10 {
                eprintln!("{}:{no}: skipped, not JSON: {e}", events.display());
            }
        }
        for (no, r) in found_all {
            let rule = &rules[r];
            n_hits += 1;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "rule_id": rule.id, "line": no, "title": rule.title, "level": rule.level.as_str() })
                )?;
            } else {
                writeln!(
                    out,
                    "line {no:>7}  {:<13} {}  ({})",
                    rule.level.as_str(),
                    rule.title,
                    rule.id
                )?;
            }
        }
    }
    out.flush()?;
    eprintln!(
        "{n_events} events, {n_hits} hits{}",
        if malformed > 0 {
            format!(", {malformed} malformed lines skipped")
        } else {
            String::new()
        }
    );
    Ok(true)
}
