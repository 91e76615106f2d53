//! Detection analytics (SA-2), first part: brute force, password spraying / credential stuffing
//! and successful logins after a guessing run, over authentication events (OCSF 3002) in sliding
//! windows per source address and per account.
//!
//! Architecture invariant: no I/O and no clock — event times drive the windows, so replaying a
//! log gives the same alerts as watching it live.

pub mod dga;
pub mod dnstunnel;
pub mod dnswatch;
pub mod incidents;
pub mod netbase;
pub mod netwatch;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Serialize;

/// One authentication attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Event time, ms since the epoch.
    pub time_ms: i64,
    /// Account tried.
    pub user: String,
    /// Source address.
    pub src: String,
    /// Whether it succeeded.
    pub success: bool,
}

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct AuthRules {
    /// Window, ms.
    pub window_ms: i64,
    /// Failures from one source within the window: brute force.
    pub source_failures: usize,
    /// Distinct accounts failed from one source within the window: spraying / stuffing.
    pub source_accounts: usize,
    /// Failures against one account from this many sources within the window: distributed attack.
    pub account_sources: usize,
}

impl Default for AuthRules {
    fn default() -> Self {
        AuthRules {
            window_ms: 10 * 60 * 1000,
            source_failures: 20,
            source_accounts: 10,
            account_sources: 10,
        }
    }
}

/// A finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthAlert {
    /// `auth.brute_force`, `auth.password_spraying`, `auth.distributed_brute_force`,
    /// `auth.success_after_guessing`.
    pub kind: &'static str,
    /// Source address or account the alert is about.
    pub key: String,
    /// Failures counted.
    pub failures: usize,
    /// Distinct accounts (or sources) involved.
    pub distinct: usize,
    /// First failure in the window, ms.
    pub first_ms: i64,
    /// The event that raised it, ms.
    pub at_ms: i64,
    /// Severity: `medium` or `high`.
    pub severity: &'static str,
}

#[derive(Debug, Default)]
struct Track {
    fails: VecDeque<(i64, String)>,
    alerted: HashMap<&'static str, i64>,
    last_ms: i64,
}

/// Failures remembered per source or account: far above every threshold, and what keeps a
/// flood of failures from one address (a real brute force runs at thousands a second) from
/// making each new attempt cost more than the last.
pub const TRACK_CAP: usize = 256;

/// Sources and accounts tracked at most; beyond, idle ones are forgotten first (a flood of
/// spoofed addresses costs bounded memory).
pub const MAX_KEYS: usize = 100_000;

fn bound_keys(m: &mut HashMap<String, Track>, now: i64, window: i64) {
    if m.len() >= MAX_KEYS {
        m.retain(|_, t| now - t.last_ms <= window);
        if m.len() >= MAX_KEYS {
            m.clear();
        }
    }
}

/// The detector.
#[derive(Debug, Default)]
pub struct AuthDetector {
    rules: AuthRules,
    by_src: HashMap<String, Track>,
    by_user: HashMap<String, Track>,
}

impl AuthDetector {
    /// A detector with `rules`.
    pub fn new(rules: AuthRules) -> Self {
        AuthDetector {
            rules,
            ..Default::default()
        }
    }

    /// Feed one attempt; returns the alerts it raises (each kind at most once per window and key).
    pub fn observe(&mut self, a: &Attempt) -> Vec<AuthAlert> {
        let w = self.rules.window_ms;
        let r = self.rules;
        let mut out = Vec::new();
        let prune = |t: &mut Track, now: i64| {
            t.last_ms = t.last_ms.max(now);
            while t
                .fails
                .front()
                .is_some_and(|(x, _)| now - x > w || t.fails.len() >= TRACK_CAP)
            {
                t.fails.pop_front();
            }
        };
        bound_keys(&mut self.by_src, a.time_ms, w);
        bound_keys(&mut self.by_user, a.time_ms, w);
        let raise = |t: &mut Track,
                     kind: &'static str,
                     key: &str,
                     distinct: usize,
                     sev: &'static str,
                     out: &mut Vec<AuthAlert>| {
            if t.alerted.get(kind).is_some_and(|at| a.time_ms - at <= w) {
                return;
            }
            t.alerted.insert(kind, a.time_ms);
            out.push(AuthAlert {
                kind,
                key: key.to_string(),
                failures: t.fails.len(),
                distinct,
                first_ms: t.fails.front().map_or(a.time_ms, |f| f.0),
                at_ms: a.time_ms,
                severity: sev,
            });
        };
        let src = self.by_src.entry(a.src.clone()).or_default();
        prune(src, a.time_ms);
        if a.success {
            if src.fails.len() >= r.source_failures.min(10) {
                let distinct = src.fails.iter().map(|f| &f.1).collect::<HashSet<_>>().len();
                raise(
                    src,
                    "auth.success_after_guessing",
                    &a.src,
                    distinct,
                    "high",
                    &mut out,
                );
            }
        } else {
            src.fails.push_back((a.time_ms, a.user.clone()));
            let distinct = src.fails.iter().map(|f| &f.1).collect::<HashSet<_>>().len();
            if src.fails.len() >= r.source_failures {
                raise(
                    src,
                    "auth.brute_force",
                    &a.src,
                    distinct,
                    "medium",
                    &mut out,
                );
            }
            if distinct >= r.source_accounts {
                raise(
                    src,
                    "auth.password_spraying",
                    &a.src,
                    distinct,
                    "high",
                    &mut out,
                );
            }
            let user = self.by_user.entry(a.user.clone()).or_default();
            prune(user, a.time_ms);
            user.fails.push_back((a.time_ms, a.src.clone()));
            let sources = user
                .fails
                .iter()
                .map(|f| &f.1)
                .collect::<HashSet<_>>()
                .len();
            if sources >= r.account_sources {
                raise(
                    user,
                    "auth.distributed_brute_force",
                    &a.user,
                    sources,
                    "high",
                    &mut out,
                );
            }
        }
        out
    }
}

impl AuthDetector {
    /// (sources, accounts) tracked and the longest failure history kept (for bound tests).
    pub fn tracked(&self) -> (usize, usize, usize) {
        let longest = self
            .by_src
            .values()
            .chain(self.by_user.values())
            .map(|t| t.fails.len())
            .max()
            .unwrap_or(0);
        (self.by_src.len(), self.by_user.len(), longest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_address_keeps_a_bounded_history() {
        let mut d = AuthDetector::new(AuthRules::default());
        let mut kinds = Vec::new();
        // 20,000 failures in one second of event time (a replayed or very fast attack).
        for i in 0..20_000i64 {
            for a in d.observe(&at(1, &format!("u{}", i % 500), "203.0.113.9", false)) {
                kinds.push(a.kind);
            }
        }
        assert_eq!(kinds, ["auth.password_spraying", "auth.brute_force"]);
        let (_, users, longest) = d.tracked();
        assert!(longest <= TRACK_CAP, "{longest}");
        assert_eq!(users, 500);
    }

    fn at(t: i64, user: &str, src: &str, success: bool) -> Attempt {
        Attempt {
            time_ms: t * 1000,
            user: user.into(),
            src: src.into(),
            success,
        }
    }

    #[test]
    fn guessing_spraying_and_a_success_after_it() {
        let mut d = AuthDetector::new(AuthRules::default());
        let mut kinds = Vec::new();
        for i in 0..25 {
            kinds.extend(
                d.observe(&at(i, "root", "203.0.113.5", false))
                    .into_iter()
                    .map(|a| a.kind),
            );
        }
        assert_eq!(kinds, ["auth.brute_force"], "raised once per window");
        let s = d.observe(&at(30, "root", "203.0.113.5", true));
        assert_eq!(s[0].kind, "auth.success_after_guessing");
        let mut kinds = Vec::new();
        for i in 0..12 {
            kinds.extend(
                d.observe(&at(100 + i, &format!("user{i}"), "198.51.100.9", false))
                    .into_iter()
                    .map(|a| a.kind),
            );
        }
        assert_eq!(kinds, ["auth.password_spraying"]);
        let mut kinds = Vec::new();
        for i in 0..12 {
            kinds.extend(
                d.observe(&at(200 + i, "admin", &format!("192.0.2.{i}"), false))
                    .into_iter()
                    .map(|a| a.kind),
            );
        }
        assert_eq!(kinds, ["auth.distributed_brute_force"]);
    }

    #[test]
    fn slow_failures_outside_the_window_are_not_an_attack() {
        let mut d = AuthDetector::new(AuthRules::default());
        for i in 0..50 {
            assert!(
                d.observe(&at(i * 3600, "alice", "10.0.0.1", false))
                    .is_empty()
            );
        }
    }
}
