//! The weekly audit review (AUD-4): counts by event type, actor and result, the failures and
//! the privileged actions of a period, computed from ledger entries wherever they come from.

use std::collections::BTreeMap;

use cf_core::Timestamp;
use cf_event::Outcome;
use serde::Serialize;

use crate::audit::LedgerEntry;

/// One line of a failure or privileged-action listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportLine {
    /// Ledger position.
    pub seq: u64,
    /// When.
    pub time: Timestamp,
    /// Event type.
    pub event_type: String,
    /// Actor.
    pub subject: String,
    /// Verb.
    pub action: String,
    /// Object.
    pub object: String,
    /// Result.
    pub result: Outcome,
    /// Where from.
    pub source_addr: String,
}

/// The review of one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// Period start (inclusive).
    pub since: Timestamp,
    /// Period end (the report time).
    pub until: Timestamp,
    /// Records in the period.
    pub total: u64,
    /// Count per event type.
    pub by_type: BTreeMap<String, u64>,
    /// Count per actor.
    pub by_actor: BTreeMap<String, u64>,
    /// Count per result.
    pub by_result: BTreeMap<String, u64>,
    /// Failed and denied actions (newest last), at most `max_lines`.
    pub failures: Vec<ReportLine>,
    /// Number of failed and denied actions (all of them, even beyond the listing).
    pub failure_count: u64,
    /// Privileged actions (newest last), at most `max_lines`.
    pub privileged: Vec<ReportLine>,
    /// Number of privileged actions.
    pub privileged_count: u64,
    /// Actors with the most failures, descending.
    pub top_failing_actors: Vec<(String, u64)>,
}

impl AuditReport {
    /// Build the review of `[since, until]` from `entries` (any order of arrival; filtered here).
    pub fn build(
        entries: impl IntoIterator<Item = LedgerEntry>,
        since: Timestamp,
        until: Timestamp,
        max_lines: usize,
    ) -> Self {
        let mut r = AuditReport {
            since,
            until,
            total: 0,
            by_type: BTreeMap::new(),
            by_actor: BTreeMap::new(),
            by_result: BTreeMap::new(),
            failures: Vec::new(),
            failure_count: 0,
            privileged: Vec::new(),
            privileged_count: 0,
            top_failing_actors: Vec::new(),
        };
        let mut failing: BTreeMap<String, u64> = BTreeMap::new();
        for e in entries {
            let rec = &e.record;
            if rec.time < since || rec.time > until {
                continue;
            }
            r.total += 1;
            *r.by_type.entry(rec.event_type.clone()).or_default() += 1;
            *r.by_actor.entry(rec.subject.clone()).or_default() += 1;
            *r.by_result
                .entry(rec.result.as_str().to_string())
                .or_default() += 1;
            let line = || ReportLine {
                seq: e.seq,
                time: rec.time,
                event_type: rec.event_type.clone(),
                subject: rec.subject.clone(),
                action: rec.action.clone(),
                object: rec.object.clone(),
                result: rec.result,
                source_addr: rec.source_addr.clone(),
            };
            if rec.result != Outcome::Success {
                r.failure_count += 1;
                *failing.entry(rec.subject.clone()).or_default() += 1;
                r.failures.push(line());
                if r.failures.len() > max_lines {
                    r.failures.remove(0);
                }
            }
            if rec.privileged {
                r.privileged_count += 1;
                r.privileged.push(line());
                if r.privileged.len() > max_lines {
                    r.privileged.remove(0);
                }
            }
        }
        let mut top: Vec<(String, u64)> = failing.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(10);
        r.top_failing_actors = top;
        r
    }

    /// A plain-text rendering with aligned tables, for terminals and mail.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "Audit review {} .. {}", self.since, self.until);
        let _ = writeln!(
            s,
            "records: {}   failures/denials: {}   privileged actions: {}\n",
            self.total, self.failure_count, self.privileged_count
        );
        let section = |s: &mut String, title: &str, m: &BTreeMap<String, u64>| {
            let w = m
                .keys()
                .map(|k| k.chars().count())
                .max()
                .unwrap_or(0)
                .max(title.len());
            let _ = writeln!(s, "{title:<w$}  count");
            let _ = writeln!(s, "{}  -----", "-".repeat(w));
            let mut rows: Vec<_> = m.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (k, v) in rows {
                let _ = writeln!(s, "{k:<w$}  {v:>5}");
            }
            s.push('\n');
        };
        section(&mut s, "event type", &self.by_type);
        section(&mut s, "actor", &self.by_actor);
        section(&mut s, "result", &self.by_result);
        let lines = |s: &mut String, title: &str, v: &[ReportLine]| {
            let _ = writeln!(s, "{title}");
            if v.is_empty() {
                let _ = writeln!(s, "  (none)");
            }
            for l in v {
                let _ = writeln!(
                    s,
                    "  #{:<8} {}  {:<24} {:<20} {:<10} {:<8} {}  from {}",
                    l.seq,
                    l.time,
                    l.event_type,
                    l.subject,
                    l.action,
                    l.result.as_str(),
                    l.object,
                    l.source_addr
                );
            }
            s.push('\n');
        };
        lines(&mut s, "Failures and denials (latest)", &self.failures);
        lines(&mut s, "Privileged actions (latest)", &self.privileged);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_event::AuditRecord;

    fn entry(seq: u64, secs: i64, subject: &str, result: Outcome, privileged: bool) -> LedgerEntry {
        let mut rec = AuditRecord::new(
            "auth.login",
            Timestamp::from_unix_secs(secs),
            "10.0.0.1",
            "test",
            subject,
            "session",
            "login",
            result,
            "r",
        );
        rec.privileged = privileged;
        LedgerEntry {
            seq,
            prev: String::new(),
            record: rec,
        }
    }

    #[test]
    fn counts_failures_and_privileged_in_period() {
        let es = vec![
            entry(0, 10, "alice", Outcome::Success, false),
            entry(1, 100, "alice", Outcome::Denied, false),
            entry(2, 101, "bob", Outcome::Failure, true),
            entry(3, 102, "bob", Outcome::Denied, false),
            entry(4, 103, "carol", Outcome::Success, true),
        ];
        let r = AuditReport::build(
            es,
            Timestamp::from_unix_secs(50),
            Timestamp::from_unix_secs(200),
            10,
        );
        assert_eq!(r.total, 4);
        assert_eq!(r.failure_count, 3);
        assert_eq!(r.privileged_count, 2);
        assert_eq!(r.by_actor["bob"], 2);
        assert_eq!(r.top_failing_actors[0], ("bob".to_string(), 2));
        assert_eq!(r.by_result["denied"], 2);
        let t = r.to_table();
        assert!(t.contains("failures/denials: 3"), "{t}");
        assert!(t.contains("carol"), "{t}");
    }
}
