//! Sigma on the bus (SA-1, IDS-1): every Windows event that arrives as a JSON log (`log.json`
//! whose record is an `evtx_dump` event) is matched against the loaded rules as it streams by;
//! hits and correlation hits become `alert.sigma.<tactic>.<rule id>` events for the alert book,
//! the incidents and the response engine.
//!
//! Correlations use each event's own time; windows with an upper bound are judged as the clock
//! passes them. Alerts are published before the log event is acknowledged, so a crash redelivers
//! rather than loses a detection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cf_core::{SharedClock, Timestamp};
use cf_event::{Event, Severity};
use cf_sigma::{CorrelationHit, Correlator, EvtxEvent, FieldSource, Level, RuleSet};
use serde_json::{Value, json};

use crate::ports::EventBus;

/// Counters.
#[derive(Debug, Default)]
pub struct SigmaCounters {
    /// Events examined.
    pub events: AtomicU64,
    /// Rule hits published.
    pub hits: AtomicU64,
    /// Correlation hits published.
    pub correlations: AtomicU64,
    /// Hits of disabled or suppressed rules, not published.
    pub suppressed: AtomicU64,
}

/// The whitepaper's attack-chain stage names live in cf-detect; this picks the ATT&CK tactic a
/// rule is tagged with (the first one), for the alert kind.
fn tactic(tags: &[String]) -> &'static str {
    const TACTICS: [&str; 14] = [
        "initial_access",
        "execution",
        "persistence",
        "privilege_escalation",
        "defense_evasion",
        "credential_access",
        "discovery",
        "lateral_movement",
        "collection",
        "command_and_control",
        "exfiltration",
        "impact",
        "reconnaissance",
        "resource_development",
    ];
    tags.iter()
        .filter_map(|t| t.strip_prefix("attack."))
        .find_map(|t| {
            let t = t.replace('-', "_");
            TACTICS.iter().find(|x| **x == t).copied()
        })
        .unwrap_or("untagged")
}

fn severity(l: Level) -> Severity {
    match l {
        Level::Informational => Severity::Info,
        Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}

/// The computer an event is about and its own time (else `fallback`).
fn host_and_time(w: &EvtxEvent<'_>, fallback: Timestamp) -> (String, Timestamp) {
    let host = w
        .field("Computer")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_string();
    let t = w
        .system_time()
        .and_then(|s| Timestamp::parse_rfc3339(s).ok())
        .unwrap_or(fallback);
    (host, t)
}

/// A correlation hit's entity: the values it was grouped by (what it counted per), else the
/// host.
fn correlation_entity(h: &CorrelationHit, host: &str) -> String {
    let key = h
        .group
        .iter()
        .filter_map(|(_, v)| v.clone())
        .collect::<Vec<_>>()
        .join("/");
    if key.is_empty() {
        host.to_string()
    } else {
        key
    }
}

/// The alert of a detection rule's hit on one event (`retro` when found by a hunt).
fn detection_event(
    id: String,
    rule: &cf_sigma::CompiledRule,
    tags: &[String],
    host: &str,
    t: Timestamp,
    log_event: &str,
    retro: bool,
) -> Event {
    let mut payload = json!({
        "key": host, "rule_id": rule.id, "title": rule.title, "level": rule.level.as_str(),
        "tags": tags, "log_event": log_event, "event_time": t,
    });
    if retro {
        payload["retro"] = json!(true);
    }
    Event {
        id,
        topic: format!("alert.sigma.{}.{}", tactic(tags), rule.id),
        time: t,
        source: if retro {
            "chengfang/sigma-retro"
        } else {
            "chengfang/sigma"
        }
        .into(),
        severity: severity(rule.level),
        payload,
    }
}

/// The alert of a correlation hit (`retro` when found by a hunt).
fn correlation_event(
    id: String,
    rule: &cf_sigma::CorrelationRule,
    tags: &[String],
    level: Level,
    h: &CorrelationHit,
    entity: &str,
    retro: bool,
) -> Event {
    let group: serde_json::Map<String, Value> = h
        .group
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::from)))
        .collect();
    let mut payload = json!({
        "key": entity, "rule_id": rule.id, "title": rule.title, "level": level.as_str(),
        "tags": tags, "correlation": rule.kind.as_str(), "group": group, "count": h.count,
    });
    if retro {
        payload["retro"] = json!(true);
    }
    Event {
        id,
        topic: format!("alert.sigma.{}.{}", tactic(tags), rule.id),
        time: Timestamp::from_unix_nanos(h.time_ns),
        source: if retro {
            "chengfang/sigma-retro"
        } else {
            "chengfang/sigma"
        }
        .into(),
        severity: severity(level),
        payload,
    }
}

/// One hit of a retroactive hunt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetroHit {
    /// Sigma `id`.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// Level.
    pub level: &'static str,
    /// ATT&CK tactic (the alert kind's middle part).
    pub tactic: &'static str,
    /// The archived event.
    pub event_id: String,
    /// Its time.
    pub time: Timestamp,
    /// Its computer.
    pub host: String,
}

/// What a retroactive hunt found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetroReport {
    /// Archived JSON events read.
    pub events_scanned: u64,
    /// Of which Windows events the rules judged.
    pub windows_events: u64,
    /// Hits, newest event first.
    pub hits: Vec<RetroHit>,
    /// Whether the hit limit stopped the hunt early.
    pub truncated: bool,
    /// Whether the range held more correlation-relevant hits than a hunt keeps in memory
    /// ([`MAX_CAPTURED`]); correlations were then judged on the newest ones only — narrow the
    /// range to judge them all.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub correlations_incomplete: bool,
    /// Alerts published (with `raise_alerts`).
    pub alerts_raised: u64,
}

/// Correlation-relevant hits a retroactive hunt keeps in memory at most (a few hundred bytes
/// each): what bounds a hunt over a long range.
pub const MAX_CAPTURED: usize = 1_000_000;

/// The streaming detector.
#[derive(Clone)]
pub struct SigmaStream {
    rules: Arc<RuleSet>,
    correlator: Arc<std::sync::Mutex<Correlator>>,
    clock: SharedClock,
    node: String,
    ids: Arc<AtomicU64>,
    counters: Arc<SigmaCounters>,
    controls: crate::rules::SharedControls,
}

impl std::fmt::Debug for SigmaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigmaStream")
            .field("rules", &self.rules.rules().len())
            .finish()
    }
}

impl SigmaStream {
    /// A detector over compiled rules and their correlations.
    pub fn new(rules: RuleSet, correlator: Correlator, clock: SharedClock, node: &str) -> Self {
        SigmaStream {
            rules: Arc::new(rules),
            correlator: Arc::new(std::sync::Mutex::new(correlator)),
            clock,
            node: node.to_string(),
            ids: Arc::default(),
            counters: Arc::default(),
            controls: Arc::default(),
        }
    }

    /// Consult the rule book's controls (disabled rules, suppressions) before publishing.
    pub fn with_controls(mut self, controls: crate::rules::SharedControls) -> Self {
        self.controls = controls;
        self
    }

    /// A rule's tags with the analysts' edits.
    fn tags(&self, rule_id: &str, file_tags: &[String]) -> Vec<String> {
        self.controls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tags_of(rule_id, file_tags)
    }

    fn allowed(&self, rule_id: &str, entity: &str, t: Timestamp) -> bool {
        let ok = self
            .controls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .allows(rule_id, entity, t);
        if !ok {
            self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Counters.
    pub fn counters(&self) -> &Arc<SigmaCounters> {
        &self.counters
    }

    fn id(&self) -> String {
        format!(
            "sigma-{}-{}-{}",
            self.node,
            self.clock.now().unix_nanos(),
            self.ids.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The alerts one log event raises (rule hits, then the correlations they complete).
    pub fn examine(&self, ev: &Event) -> Vec<Event> {
        let Some(record) = ev.payload.get("record") else {
            return Vec::new();
        };
        if record.pointer("/Event/System").is_none() {
            return Vec::new();
        }
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        let w = EvtxEvent::new(record);
        let mut hits = Vec::new();
        self.rules.match_evtx(&w, &mut hits);
        if hits.is_empty() {
            return Vec::new();
        }
        let (host, t) = host_and_time(&w, ev.time);
        // One lock: correlate, decide what reports on its own, and turn correlation hits into
        // alerts while the correlator is at hand.
        let (reported, corr_alerts) = {
            let mut c = self
                .correlator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut corr = Vec::new();
            let seq = self.counters.events.load(Ordering::Relaxed);
            for &r in &hits {
                if let Some(cap) = c.capture(r, &w) {
                    c.observe(&cap, t.unix_nanos(), seq, &mut corr);
                }
            }
            let reported: Vec<usize> = hits.iter().copied().filter(|&r| !c.suppressed(r)).collect();
            let alerts: Vec<Event> = corr
                .iter()
                .filter_map(|h| self.correlation_alert(&c, h, &host))
                .collect();
            (reported, alerts)
        };
        let mut out = Vec::with_capacity(reported.len() + corr_alerts.len());
        for r in reported {
            let rule = &self.rules.rules()[r];
            if !self.allowed(&rule.id, &host, t) {
                continue;
            }
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            let tags = self.tags(&rule.id, &rule.tags);
            out.push(detection_event(
                self.id(),
                rule,
                &tags,
                &host,
                t,
                &ev.id,
                false,
            ));
        }
        out.extend(corr_alerts);
        out
    }

    fn correlation_alert(&self, c: &Correlator, h: &CorrelationHit, host: &str) -> Option<Event> {
        let (rule, level) = c.rule(h.correlation)?;
        let entity = correlation_entity(h, host);
        if !self.allowed(&rule.id, &entity, Timestamp::from_unix_nanos(h.time_ns)) {
            return None;
        }
        self.counters.correlations.fetch_add(1, Ordering::Relaxed);
        let tags = self.tags(&rule.id, &rule.tags);
        Some(correlation_event(
            self.id(),
            rule,
            &tags,
            level,
            h,
            &entity,
            false,
        ))
    }

    /// Run the loaded detection rules (all, or those in `only`) retroactively over the Windows
    /// events archived in `[from, to)`: an audited hunt through the store. Hits are reported
    /// (at most `max_hits`); with `raise`, each hit of a rule that is enabled and not suppressed
    /// also goes on the bus as an alert marked `retro`. Correlation rules run too, with a fresh
    /// correlator fed in event-time order, so a hunt never disturbs the stream's windows.
    #[allow(clippy::too_many_arguments)]
    pub async fn hunt_archive(
        &self,
        archive: &crate::archive::EventArchive,
        ledger: &crate::audit::AuditLedger,
        auth: &crate::authz::Authorized,
        ctx: &crate::tokens::RequestContext,
        window: (Timestamp, Timestamp),
        only: Option<&[String]>,
        raise: Option<&Arc<dyn EventBus>>,
        max_hits: usize,
    ) -> Result<RetroReport, crate::PlatformError> {
        auth.require(crate::authz::Action::SearchEvents)?;
        if raise.is_some() {
            auth.require(crate::authz::Action::ManageRules)?;
        }
        let (from, to) = window;
        if from >= to {
            return Err(crate::PlatformError::InvalidInput(
                "from: must be before to".into(),
            ));
        }
        let correlation_ids: Vec<String> = self
            .correlator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rules()
            .map(|c| c.id.clone())
            .collect();
        if let Some(ids) = only {
            for id in ids {
                if !self.rules.rules().iter().any(|r| &r.id == id) && !correlation_ids.contains(id)
                {
                    return Err(crate::PlatformError::NotFound(format!(
                        "no loaded detection or correlation rule `{id}`"
                    )));
                }
            }
        }
        // Correlations run when all rules do, or when one is asked for by name (with every
        // correlation, so chains keep their inputs; only the named ones are reported).
        let correlate = only.is_none_or(|ids| ids.iter().any(|id| correlation_ids.contains(id)));
        let rec = cf_event::AuditRecord::new(
            "rules.hunt",
            self.clock.now(),
            &ctx.source_addr,
            "chengfang-sigma",
            &auth.principal().id,
            "events",
            "hunt",
            cf_event::Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(
            json!({"from": from, "to": to, "rules": only, "raise_alerts": raise.is_some()}),
        );
        ledger.append(rec).await?;
        let mut report = RetroReport::default();
        let mut alerts = Vec::new();
        let mut hits = Vec::new();
        // A fresh correlator over the same correlation rules; what it needs is captured during
        // the scan (newest first) and replayed oldest first.
        let (mut fresh, _) = {
            let c = self
                .correlator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Correlator::new(c.rules().cloned().collect(), self.rules.rules())
        };
        let mut captured: Vec<(i64, cf_sigma::Captured, String)> = Vec::new();
        report.events_scanned = archive
            .scan(auth, "topic:\"log.json\"", from, to, |e| {
                let Some(record) = e.body.get("record") else {
                    return true;
                };
                if record.pointer("/Event/System").is_none() {
                    return true;
                }
                report.windows_events += 1;
                let w = EvtxEvent::new(record);
                hits.clear();
                self.rules.match_evtx(&w, &mut hits);
                let (host, t) = host_and_time(&w, e.time);
                for &r in &hits {
                    if correlate && let Some(cap) = fresh.capture(r, &w) {
                        if captured.len() < MAX_CAPTURED {
                            captured.push((t.unix_nanos(), cap, host.clone()));
                        } else {
                            report.correlations_incomplete = true;
                        }
                    }
                    let rule = &self.rules.rules()[r];
                    // Rules that only feed correlations report through them, as on the stream.
                    if only.is_some_and(|ids| !ids.contains(&rule.id))
                        || (only.is_none() && fresh.suppressed(r))
                    {
                        continue;
                    }
                    if report.hits.len() >= max_hits {
                        report.truncated = true;
                        return false;
                    }
                    let tags = self.tags(&rule.id, &rule.tags);
                    report.hits.push(RetroHit {
                        rule_id: rule.id.clone(),
                        title: rule.title.clone(),
                        level: rule.level.as_str(),
                        tactic: tactic(&tags),
                        event_id: e.id.clone(),
                        time: e.time,
                        host: host.clone(),
                    });
                    if raise.is_some() && self.allowed(&rule.id, &host, e.time) {
                        alerts.push(detection_event(
                            format!("retro-{}-{}", rule.id, e.id),
                            rule,
                            &tags,
                            &host,
                            e.time,
                            &e.id,
                            true,
                        ));
                    }
                }
                true
            })
            .await?;
        if !report.truncated {
            captured.sort_by_key(|c| c.0);
            let mut corr = Vec::new();
            for (seq, (t, cap, host)) in captured.iter().enumerate() {
                corr.clear();
                fresh.observe(cap, *t, seq as u64, &mut corr);
                for h in &corr {
                    self.retro_correlation(
                        &fresh,
                        h,
                        host,
                        (raise.is_some(), only),
                        &mut report,
                        &mut alerts,
                    );
                }
            }
            corr.clear();
            fresh.advance(to.unix_nanos().saturating_add(i64::MAX / 4), &mut corr);
            for h in &corr {
                self.retro_correlation(
                    &fresh,
                    h,
                    "-",
                    (raise.is_some(), only),
                    &mut report,
                    &mut alerts,
                );
            }
        }
        if let Some(bus) = raise {
            for a in alerts {
                bus.publish(&a).await.map_err(|e| {
                    crate::PlatformError::Unavailable(format!("alert not published: {e}"))
                })?;
                report.alerts_raised += 1;
            }
        }
        Ok(report)
    }

    fn retro_correlation(
        &self,
        c: &Correlator,
        h: &CorrelationHit,
        host: &str,
        (raise, only): (bool, Option<&[String]>),
        report: &mut RetroReport,
        alerts: &mut Vec<Event>,
    ) {
        let Some((rule, level)) = c.rule(h.correlation) else {
            return;
        };
        if only.is_some_and(|ids| !ids.contains(&rule.id)) {
            return;
        }
        let entity = correlation_entity(h, host);
        let t = Timestamp::from_unix_nanos(h.time_ns);
        let tags = self.tags(&rule.id, &rule.tags);
        report.hits.push(RetroHit {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            level: level.as_str(),
            tactic: tactic(&tags),
            event_id: format!("correlation of {} events", h.count),
            time: t,
            host: entity.clone(),
        });
        if raise && self.allowed(&rule.id, &entity, t) {
            alerts.push(correlation_event(
                format!("retro-{}-{}-{}", rule.id, h.time_ns, entity),
                rule,
                &tags,
                level,
                h,
                &entity,
                true,
            ));
        }
    }

    /// Judge correlation windows that time has closed.
    pub fn tick(&self, now: Timestamp) -> Vec<Event> {
        let mut c = self
            .correlator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut hits = Vec::new();
        c.advance(now.unix_nanos(), &mut hits);
        hits.iter()
            .filter_map(|h| self.correlation_alert(&c, h, "-"))
            .collect()
    }

    /// Consume `log.json` until `stop` turns true (run as a task).
    pub async fn run(self, bus: Arc<dyn EventBus>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut sub = match bus.subscribe("log.json", "sigma").await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "sigma cannot subscribe");
                return;
            }
        };
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                d = sub.rx.recv() => {
                    let Some(d) = d else { return };
                    let mut ok = true;
                    for a in self.examine(&d.event) {
                        if let Err(e) = bus.publish(&a).await {
                            tracing::error!(error = %e, "sigma alert not published; the event will be redelivered");
                            ok = false;
                            break;
                        }
                    }
                    let _ = if ok { d.ack().await } else { d.nack().await };
                }
                _ = every.tick() => {
                    for a in self.tick(self.clock.now()) {
                        if let Err(e) = bus.publish(&a).await {
                            tracing::error!(error = %e, topic = %a.topic, "sigma correlation alert not published");
                        }
                    }
                }
                _ = stop.changed() => if *stop.borrow() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tactics_from_tags() {
        let t = |v: &[&str]| tactic(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&["attack.t1059.001", "attack.execution"]), "execution");
        assert_eq!(
            t(&["attack.lateral-movement", "attack.t1021"]),
            "lateral_movement"
        );
        assert_eq!(t(&["car.2013-05-009"]), "untagged");
    }

    #[test]
    fn a_windows_event_raises_an_alert_and_other_logs_do_not() {
        let rule = "title: Whoami\nid: 11111111-0000-4000-8000-000000000001\nlevel: medium\ntags: [attack.discovery]\nlogsource: {category: process_creation, product: windows}\ndetection:\n  sel: {Image|endswith: '\\\\whoami.exe'}\n  condition: sel\n";
        let mut set = RuleSet::new();
        set.add(cf_sigma::compile_rule(rule).unwrap());
        let (corr, _) = Correlator::new(Vec::new(), set.rules());
        let clock: SharedClock = Arc::new(cf_core::ManualClock::new(Timestamp::from_unix_secs(1)));
        let s = SigmaStream::new(set, corr, clock, "t");
        let ev = |record: Value| Event {
            id: "log-1".into(),
            topic: "log.json".into(),
            time: Timestamp::from_unix_secs(5),
            source: "https://x".into(),
            severity: Severity::Info,
            payload: json!({"record": record}),
        };
        let hit = ev(
            json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational",
            "EventID": 1, "Computer": "WS-07", "TimeCreated_attributes": {"SystemTime": "2026-11-25T08:00:00Z"}},
            "EventData": {"Image": "C:\\Windows\\System32\\whoami.exe"}}}),
        );
        let a = s.examine(&hit);
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].topic,
            "alert.sigma.discovery.11111111-0000-4000-8000-000000000001"
        );
        assert_eq!(a[0].payload["key"], "WS-07");
        assert_eq!(a[0].severity, Severity::Medium);
        assert_eq!(
            a[0].time,
            Timestamp::parse_rfc3339("2026-11-25T08:00:00Z").unwrap()
        );
        assert!(s.examine(&ev(json!({"user": "a"}))).is_empty());
        assert_eq!(s.counters().events.load(Ordering::Relaxed), 1);
    }
}
