//! `chengfang hunt`: load Sigma rules, stream events from a JSONL file (or an EVTX file, records
//! numbered as lines) and print every (rule, event) hit. A stable contract for scripts: with `--json`, one object per hit with
//! `rule_id` (the Sigma id) and `line` (the event's 1-based line number).

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cf_sigma::{
    Captured, CorrelationHit, Correlator, EvtxEvent, FlatEvent, RuleSet, SigmaDocument,
    compile_documents,
};

/// One input event: a JSONL line, an EVTX record already decoded, or why a record was not.
enum Input {
    Line(String),
    Record(serde_json::Value),
    Undecodable(String),
}

/// A matched event's input to the correlations: (line, event time if it has one, capture).
type Capture = (usize, Option<i64>, Captured);

/// What one worker found in its share of a batch.
#[derive(Default)]
struct WorkerResult {
    hits: Vec<(usize, usize)>,
    events: u64,
    bad: Vec<(usize, String)>,
    captures: Vec<Capture>,
}

/// One hit as `--json` prints it (members in this order).
#[derive(serde::Serialize)]
struct HitLine<'a> {
    rule_id: &'a str,
    line: usize,
    title: &'a str,
    level: &'a str,
}

/// Loaded rules and what was refused.
pub struct Loaded {
    /// The detection rules.
    pub set: RuleSet,
    /// The correlation rules over them.
    pub correlator: Correlator,
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
    let mut correlations = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                refused.push((f, format!("unreadable: {e}")));
                continue;
            }
        };
        match compile_documents(&text) {
            Ok(docs) => {
                for d in docs {
                    match d {
                        SigmaDocument::Detection(r) => set.add(*r),
                        SigmaDocument::Correlation(c) => correlations.push((f.clone(), *c)),
                    }
                }
            }
            Err(e) => refused.push((f, e.to_string())),
        }
    }
    let (paths, rules): (Vec<PathBuf>, Vec<_>) = correlations.into_iter().unzip();
    let (correlator, bad) = Correlator::new(rules, set.rules());
    for (i, c, e) in bad {
        let path = paths.get(i).cloned().unwrap_or_default();
        refused.push((path, format!("correlation `{}`: {e}", c.title)));
    }
    Ok(Loaded {
        set,
        correlator,
        refused,
    })
}

fn event_time(ev: &EvtxEvent<'_>) -> Option<i64> {
    ev.system_time()
        .and_then(|t| cf_core::Timestamp::parse_rfc3339(t).ok())
        .map(|t| t.unix_nanos())
}

/// Match one worker's share of a batch.
fn examine_share(
    set: &RuleSet,
    corr: &Correlator,
    share: crate::workers::Share<'_, (usize, Input)>,
) -> WorkerResult {
    let mut res = WorkerResult::default();
    let mut hits = Vec::new();
    let mut examine = |no: usize, ev: EvtxEvent<'_>| {
        res.events += 1;
        set.match_evtx(&ev, &mut hits);
        for &r in &hits {
            if let Some(c) = corr.capture(r, &ev) {
                res.captures.push((no, event_time(&ev), c));
            }
            if !corr.suppressed(r) {
                res.hits.push((no, r));
            }
        }
    };
    let mut bad = Vec::new();
    for (no, input) in share {
        match input {
            Input::Record(v) => examine(*no, EvtxEvent::new(v)),
            Input::Line(l) if l.trim().is_empty() => {}
            Input::Line(l) => match FlatEvent::from_line(l) {
                Ok(v) => examine(*no, EvtxEvent::flat(&v)),
                Err(e) => bad.push((*no, e.to_string())),
            },
            Input::Undecodable(why) => bad.push((*no, why.clone())),
        }
    }
    res.bad = bad;
    res
}

/// Run the hunt; returns true when the events file was read to the end.
pub fn run(rules: &Path, events: &Path, json: bool, show_refused: bool) -> Result<bool> {
    let loaded = load_rules(rules)?;
    eprintln!(
        "loaded {} rules and {} correlations, refused {}{}",
        loaded.set.rules().len(),
        loaded.correlator.rules().count(),
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
    // An EVTX file is converted in memory to the JSON lines evtx_dump would print; a record
    // that cannot be decoded counts as a malformed line.
    let is_evtx = events
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("evtx"));
    let mut lines: Box<dyn Iterator<Item = (usize, Result<Input>)>> = if is_evtx {
        let bytes =
            std::fs::read(events).with_context(|| format!("cannot read {}", events.display()))?;
        let recs = cf_ingest::evtx::records(bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", events.display()))?;
        Box::new(recs.into_iter().enumerate().map(|(i, r)| {
            (
                i,
                Ok(match r {
                    Ok(v) => Input::Record(v),
                    Err(e) => Input::Undecodable(format!("undecodable EVTX record: {e}")),
                }),
            )
        }))
    } else {
        let f = std::fs::File::open(events)
            .with_context(|| format!("cannot open {}", events.display()))?;
        Box::new(
            crate::lines::lines(std::io::BufReader::with_capacity(1 << 20, f))
                .enumerate()
                .map(|(i, l)| (i, l.map(Input::Line).map_err(anyhow::Error::from))),
        )
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let (mut n_events, mut n_hits, mut malformed) = (0u64, 0u64, 0u64);
    let rules = loaded.set.rules();
    let mut captures: Vec<Capture> = Vec::new();
    // Batches of lines are matched on every core; output keeps the input order.
    let (set, corr) = (&loaded.set, &loaded.correlator);
    crate::workers::interleaved(
        |share| {
            // A panic on one event loses that share of the batch, never the run.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                examine_share(set, corr, share)
            }))
            .unwrap_or_default()
        },
        || {
            let mut batch: Vec<(usize, Input)> = Vec::with_capacity(8192);
            for (i, line) in lines.by_ref().take(8192) {
                let line = line
                    .with_context(|| format!("{}:{}: not UTF-8 text", events.display(), i + 1))?;
                batch.push((i + 1, line));
            }
            Ok((!batch.is_empty()).then_some(batch))
        },
        |_, results| {
            let mut found_all = Vec::new();
            let mut bad_all = Vec::new();
            for r in results {
                n_events += r.events;
                found_all.extend(r.hits);
                bad_all.extend(r.bad);
                captures.extend(r.captures);
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
                    serde_json::to_writer(
                        &mut out,
                        &HitLine {
                            rule_id: &rule.id,
                            line: no,
                            title: &rule.title,
                            level: rule.level.as_str(),
                        },
                    )?;
                    out.write_all(b"\n")?;
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
            Ok(())
        },
    )?;
    // Correlations run after matching, over the matched events in time order.
    let mut correlator = loaded.correlator;
    let untimed = captures.iter().filter(|(_, t, _)| t.is_none()).count();
    let mut timed: Vec<(i64, usize, Captured)> = captures
        .into_iter()
        .filter_map(|(no, t, c)| t.map(|t| (t, no, c)))
        .collect();
    timed.sort_by_key(|(t, no, _)| (*t, *no));
    let mut corr_hits: Vec<CorrelationHit> = Vec::new();
    for (t, no, c) in &timed {
        correlator.observe(c, *t, *no as u64, &mut corr_hits);
    }
    correlator.flush(&mut corr_hits);
    for h in &corr_hits {
        n_hits += 1;
        write_correlation(&mut out, &correlator, h, json)?;
    }
    out.flush()?;
    if untimed > 0 {
        eprintln!(
            "{untimed} matches of correlated rules have no event time (TimeCreated) and were not correlated"
        );
    }
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

fn write_correlation(
    out: &mut impl Write,
    correlator: &Correlator,
    h: &CorrelationHit,
    json: bool,
) -> Result<()> {
    let Some((rule, level)) = correlator.rule(h.correlation) else {
        return Ok(());
    };
    let last = h.events.iter().copied().max().unwrap_or(0);
    if json {
        let group: serde_json::Map<String, serde_json::Value> = h
            .group
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone().map_or(serde_json::Value::Null, Into::into),
                )
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "rule_id": rule.id, "line": last, "title": rule.title, "level": level.as_str(),
                "correlation": rule.kind.as_str(), "group": group, "count": h.count,
                "lines": h.events,
            })
        )?;
    } else {
        let group: Vec<String> = h
            .group
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("-")))
            .collect();
        writeln!(
            out,
            "line {last:>7}  {:<13} {}  ({}) {} {} over {} events [{}]",
            level.as_str(),
            rule.title,
            rule.id,
            rule.kind.as_str(),
            h.count,
            h.events.len(),
            group.join(" ")
        )?;
    }
    Ok(())
}
