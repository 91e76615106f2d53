//! Sigma correlation rules (specification 2.0): `event_count`, `value_count`, `temporal` and
//! `temporal_ordered` over the hits of detection rules, with `group-by`, `timespan`, aliases and
//! chains of correlations. A stateful, clock-free engine: callers pass each event's own time.
//!
//! Window semantics (the specification leaves them to the engine, so they are fixed here):
//! - a condition with only lower bounds (`gt`, `gte`) is a *sliding* window: at every matching
//!   event the window `[t − timespan, t]` of its group is evaluated; when it holds, one hit is
//!   emitted and the group starts afresh (one alert per burst, not one per further event);
//! - a condition with an upper bound (`lt`, `lte`, `eq`) can only be judged when the window is
//!   over: the window opens at the group's first event and is judged when time passes
//!   `start + timespan` ([`Correlator::advance`]) or at the end of the input ([`Correlator::flush`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde_json::Value;

use crate::SigmaError;
use crate::event::FieldSource;
use crate::rule::{CompiledRule, Level};

/// Observations kept per group and window; older ones are dropped (and counted) beyond it, so a
/// flood of matching events cannot grow memory without bound.
pub const MAX_WINDOW: usize = 65_536;

/// The four correlation types of the specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrelationKind {
    /// Number of events.
    EventCount,
    /// Number of distinct values of `field`.
    ValueCount {
        /// The field (or alias) whose distinct values are counted.
        field: String,
    },
    /// Number of distinct referenced rules that matched, in any order.
    Temporal,
    /// Like `Temporal`, in the order of `rules`.
    TemporalOrdered,
}

impl CorrelationKind {
    /// The specification's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            CorrelationKind::EventCount => "event_count",
            CorrelationKind::ValueCount { .. } => "value_count",
            CorrelationKind::Temporal => "temporal",
            CorrelationKind::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// The count condition: every bound given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountCondition {
    /// Greater than.
    pub gt: Option<u64>,
    /// Greater than or equal.
    pub gte: Option<u64>,
    /// Less than.
    pub lt: Option<u64>,
    /// Less than or equal.
    pub lte: Option<u64>,
    /// Equal.
    pub eq: Option<u64>,
}

impl CountCondition {
    /// Whether `n` satisfies every bound.
    pub fn holds(&self, n: u64) -> bool {
        self.gt.is_none_or(|b| n > b)
            && self.gte.is_none_or(|b| n >= b)
            && self.lt.is_none_or(|b| n < b)
            && self.lte.is_none_or(|b| n <= b)
            && self.eq.is_none_or(|b| n == b)
    }

    /// Whether the condition has an upper bound, so that it can only be judged on a closed window.
    pub fn bounded_above(&self) -> bool {
        self.lt.is_some() || self.lte.is_some() || self.eq.is_some()
    }

    /// The smallest count that can satisfy the lower bounds.
    fn floor(&self) -> u64 {
        let gt = self.gt.map_or(0, |b| b.saturating_add(1));
        gt.max(self.gte.unwrap_or(0)).max(self.eq.unwrap_or(0))
    }
}

/// A parsed correlation rule.
#[derive(Debug, Clone)]
pub struct CorrelationRule {
    /// Sigma `id`.
    pub id: String,
    /// Sigma `name` (how other correlations may refer to it).
    pub name: Option<String>,
    /// Title.
    pub title: String,
    /// Level (when absent: the highest level of the rules it refers to).
    pub level: Option<Level>,
    /// Tags.
    pub tags: Vec<String>,
    /// Type.
    pub kind: CorrelationKind,
    /// Referenced rules, by `id` or `name`, in order.
    pub rules: Vec<String>,
    /// Group-by fields (or aliases).
    pub group_by: Vec<String>,
    /// Timespan in nanoseconds.
    pub timespan_ns: i64,
    /// Count condition.
    pub condition: CountCondition,
    /// alias → (rule reference → field in that rule's events).
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// Whether the referenced rules also report on their own.
    pub generate: bool,
}

fn strings(v: Option<&Value>, what: &str) -> Result<Vec<String>, SigmaError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| SigmaError::Parse(format!("`{what}` must list strings")))
            })
            .collect(),
        Some(_) => Err(SigmaError::Parse(format!(
            "`{what}` must be a string or a list"
        ))),
    }
}

/// Parse a timespan such as `30s`, `5m`, `1h`, `2d` (also `1w`) into nanoseconds.
pub fn parse_timespan(s: &str) -> Result<i64, SigmaError> {
    let bad = || SigmaError::Parse(format!("timespan `{s}`: use a number and s, m, h, d or w"));
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(SigmaError::Parse(format!(
            "timespan `{s}` must not be zero"
        )));
    }
    n.checked_mul(secs)
        .and_then(|x| x.checked_mul(1_000_000_000))
        .ok_or_else(|| SigmaError::Parse(format!("timespan `{s}` is too long")))
}

/// Parse one YAML document that has a `correlation` section.
pub(crate) fn parse(doc: &Value) -> Result<CorrelationRule, SigmaError> {
    let s = |k: &str| doc.get(k).and_then(Value::as_str);
    let title = s("title")
        .ok_or_else(|| SigmaError::Parse("no `title`".into()))?
        .to_string();
    let c = doc
        .get("correlation")
        .and_then(Value::as_object)
        .ok_or_else(|| SigmaError::Parse("`correlation` must be a map".into()))?;
    let cs = |k: &str| c.get(k).and_then(Value::as_str);
    let rules = strings(c.get("rules"), "correlation.rules")?;
    if rules.is_empty() {
        return Err(SigmaError::Parse(
            "`correlation.rules` names no rule".into(),
        ));
    }
    let timespan_ns = parse_timespan(
        cs("timespan").ok_or_else(|| SigmaError::Parse("no `correlation.timespan`".into()))?,
    )?;
    let mut condition = CountCondition::default();
    let mut field = None;
    match c.get("condition") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if k == "field" {
                    field = Some(
                        v.as_str()
                            .ok_or_else(|| {
                                SigmaError::Parse("`condition.field` must be a string".into())
                            })?
                            .to_string(),
                    );
                    continue;
                }
                let n = v.as_u64().ok_or_else(|| {
                    SigmaError::Parse(format!("`condition.{k}` must be a non-negative integer"))
                })?;
                let slot = match k.as_str() {
                    "gt" => &mut condition.gt,
                    "gte" => &mut condition.gte,
                    "lt" => &mut condition.lt,
                    "lte" => &mut condition.lte,
                    "eq" => &mut condition.eq,
                    other => {
                        return Err(SigmaError::Parse(format!(
                            "`condition.{other}`: use gt, gte, lt, lte or eq"
                        )));
                    }
                };
                *slot = Some(n);
            }
        }
        Some(_) => {
            return Err(SigmaError::Parse(
                "`correlation.condition` must be a map such as {gte: 10}".into(),
            ));
        }
    }
    let has_bound = condition != CountCondition::default();
    let kind = match cs("type") {
        Some("event_count") => CorrelationKind::EventCount,
        Some("value_count") => CorrelationKind::ValueCount {
            field: field
                .clone()
                .ok_or_else(|| SigmaError::Parse("value_count needs `condition.field`".into()))?,
        },
        Some("temporal") => CorrelationKind::Temporal,
        Some("temporal_ordered") => CorrelationKind::TemporalOrdered,
        Some(t @ ("value_sum" | "value_avg" | "value_percentile" | "value_median")) => {
            return Err(SigmaError::Unsupported(format!(
                "correlation type `{t}` (not in specification 2.0)"
            )));
        }
        Some(t) => {
            return Err(SigmaError::Parse(format!(
                "correlation type `{t}`: use event_count, value_count, temporal or temporal_ordered"
            )));
        }
        None => return Err(SigmaError::Parse("no `correlation.type`".into())),
    };
    match &kind {
        CorrelationKind::EventCount | CorrelationKind::ValueCount { .. } if !has_bound => {
            return Err(SigmaError::Parse(format!(
                "{} needs a `condition` with gt, gte, lt, lte or eq",
                kind.as_str()
            )));
        }
        CorrelationKind::Temporal | CorrelationKind::TemporalOrdered if !has_bound => {
            // Default: every referenced rule must have matched.
            condition.gte = Some(rules.len() as u64);
        }
        _ => {}
    }
    if field.is_some() && !matches!(kind, CorrelationKind::ValueCount { .. }) {
        return Err(SigmaError::Parse(
            "`condition.field` only applies to value_count".into(),
        ));
    }
    let mut aliases = BTreeMap::new();
    if let Some(a) = c.get("aliases") {
        let a = a
            .as_object()
            .ok_or_else(|| SigmaError::Parse("`correlation.aliases` must be a map".into()))?;
        for (alias, per_rule) in a {
            let per_rule = per_rule.as_object().ok_or_else(|| {
                SigmaError::Parse(format!("alias `{alias}` must map rule names to fields"))
            })?;
            let mut m = BTreeMap::new();
            for (rule, f) in per_rule {
                let f = f.as_str().ok_or_else(|| {
                    SigmaError::Parse(format!("alias `{alias}`.`{rule}` must be a field name"))
                })?;
                m.insert(rule.clone(), f.to_string());
            }
            aliases.insert(alias.clone(), m);
        }
    }
    let generate = match c.get("generate").or_else(|| doc.get("generate")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(SigmaError::Parse("`generate` must be true or false".into())),
    };
    Ok(CorrelationRule {
        id: s("id").unwrap_or_default().to_string(),
        name: s("name").map(str::to_string),
        title,
        level: s("level").map(Level::parse),
        tags: strings(doc.get("tags"), "tags")?,
        kind,
        rules,
        group_by: strings(c.get("group-by"), "correlation.group-by")?,
        timespan_ns,
        condition,
        aliases,
        generate,
    })
}

/// What a correlation needs from one event matched by a detection rule, taken from the event
/// where it was matched (so matching may run on worker threads and correlation after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The detection rule (index into the rule set).
    pub rule: usize,
    /// (field, value as text) for every field any consuming correlation reads.
    pub fields: Vec<(String, Option<String>)>,
}

/// One correlation that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationHit {
    /// Index of the correlation rule in the [`Correlator`].
    pub correlation: usize,
    /// Time of the event that completed it (or the end of a judged window).
    pub time_ns: i64,
    /// The group: each `group-by` name and its value.
    pub group: Vec<(String, Option<String>)>,
    /// The count the condition was judged on.
    pub count: u64,
    /// The caller's references of the contributing events (for chains: of their events).
    pub events: Vec<u64>,
}

#[derive(Debug, Clone)]
struct Obs {
    t: i64,
    pos: usize,
    value: Option<String>,
    refs: Vec<u64>,
}

#[derive(Debug, Default)]
struct Window {
    start: i64,
    newest: i64,
    obs: VecDeque<Obs>,
}

/// Where a correlation's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Rule(usize),
    Corr(usize),
}

#[derive(Debug)]
struct Compiled {
    rule: CorrelationRule,
    level: Level,
    /// Per position in `rules`: the source and the reference text used.
    sources: Vec<(Source, String)>,
    windows: HashMap<Vec<Option<String>>, Window>,
    last_sweep: i64,
}

/// Stateful evaluation of correlation rules over detection hits.
#[derive(Debug, Default)]
pub struct Correlator {
    corrs: Vec<Compiled>,
    /// Per detection rule: (correlation, position) consumers.
    by_rule: HashMap<usize, Vec<(usize, usize)>>,
    /// Per correlation: (correlation, position) consumers of its hits.
    by_corr: HashMap<usize, Vec<(usize, usize)>>,
    /// Per detection rule: the fields its consumers read.
    needs: HashMap<usize, Vec<String>>,
    suppressed: HashSet<usize>,
    dropped: u64,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(text_of),
        other => Some(other.to_string()),
    }
}

impl Correlator {
    /// Resolve each correlation's references against the detection rules (by id or name) and
    /// the other correlations. Returns the engine and the correlations refused — with their
    /// position in `rules` and the reason (unknown or ambiguous reference, cycle).
    pub fn new(
        rules: Vec<CorrelationRule>,
        detections: &[CompiledRule],
    ) -> (Self, Vec<(usize, CorrelationRule, SigmaError)>) {
        let mut refused = Vec::new();
        // Resolve references; a correlation can refer to a correlation that is later in the list.
        let keys = |id: &str, name: Option<&str>| {
            let mut k = Vec::new();
            if !id.is_empty() {
                k.push(id.to_string());
            }
            if let Some(n) = name {
                k.push(n.to_string());
            }
            k
        };
        let mut index: HashMap<String, Vec<Source>> = HashMap::new();
        for (i, d) in detections.iter().enumerate() {
            for k in keys(&d.id, d.name.as_deref()) {
                index.entry(k).or_default().push(Source::Rule(i));
            }
        }
        for (i, c) in rules.iter().enumerate() {
            for k in keys(&c.id, c.name.as_deref()) {
                index.entry(k).or_default().push(Source::Corr(i));
            }
        }
        let mut resolved: Vec<Result<Vec<(Source, String)>, SigmaError>> = rules
            .iter()
            .map(|c| {
                c.rules
                    .iter()
                    .map(|r| match index.get(r).map(Vec::as_slice) {
                        Some([one]) => Ok((*one, r.clone())),
                        Some([_, _, ..]) => Err(SigmaError::Unsupported(format!(
                            "rule reference `{r}` is ambiguous (several rules have that id or name)"
                        ))),
                        _ => Err(SigmaError::Unsupported(format!(
                            "rule reference `{r}` matches no loaded rule"
                        ))),
                    })
                    .collect()
            })
            .collect();
        // Refuse cycles and, transitively, what depends on a refused correlation.
        loop {
            let mut changed = false;
            for i in 0..resolved.len() {
                let Ok(srcs) = &resolved[i] else { continue };
                let bad = srcs.iter().find_map(|(s, r)| match s {
                    Source::Corr(j) if *j == i => Some(format!("refers to itself through `{r}`")),
                    Source::Corr(j) if resolved[*j].is_err() => {
                        Some(format!("refers to `{r}`, which was refused"))
                    }
                    _ => None,
                });
                if let Some(why) = bad {
                    resolved[i] = Err(SigmaError::Unsupported(why));
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Longer cycles: a correlation is valid when all its inputs bottom out in detections.
        let mut depth: Vec<Option<usize>> = vec![None; rules.len()];
        for _ in 0..=rules.len() {
            for i in 0..rules.len() {
                if depth[i].is_some() {
                    continue;
                }
                let Ok(srcs) = &resolved[i] else { continue };
                let d = srcs.iter().try_fold(0usize, |acc, (s, _)| match s {
                    Source::Rule(_) => Some(acc),
                    Source::Corr(j) => depth[*j].map(|d| acc.max(d + 1)),
                });
                depth[i] = d;
            }
        }
        for i in 0..rules.len() {
            if resolved[i].is_ok() && depth[i].is_none() {
                resolved[i] = Err(SigmaError::Unsupported(
                    "correlation chain has a cycle".into(),
                ));
            }
        }
        // Keep the valid ones, renumbered.
        let mut new_index = vec![None; rules.len()];
        let mut kept = Vec::new();
        for (i, (rule, res)) in rules.into_iter().zip(resolved).enumerate() {
            match res {
                Ok(srcs) => {
                    new_index[i] = Some(kept.len());
                    kept.push((rule, srcs));
                }
                Err(e) => refused.push((i, rule, e)),
            }
        }
        let mut me = Correlator::default();
        for (ci, (rule, srcs)) in kept.into_iter().enumerate() {
            let srcs: Vec<(Source, String)> = srcs
                .into_iter()
                .map(|(s, r)| match s {
                    Source::Corr(j) => (Source::Corr(new_index[j].unwrap_or(usize::MAX)), r),
                    s => (s, r),
                })
                .collect();
            let mut level = rule.level;
            for (pos, (s, r)) in srcs.iter().enumerate() {
                match s {
                    Source::Rule(d) => {
                        me.by_rule.entry(*d).or_default().push((ci, pos));
                        if !rule.generate {
                            me.suppressed.insert(*d);
                        }
                        let need = me.needs.entry(*d).or_default();
                        for f in fields_read(&rule, r, detections.get(*d)) {
                            if !need.contains(&f) {
                                need.push(f);
                            }
                        }
                        if rule.level.is_none() {
                            let l = detections.get(*d).map_or(Level::Informational, |x| x.level);
                            level = Some(level.map_or(l, |m| m.max(l)));
                        }
                    }
                    Source::Corr(j) => me.by_corr.entry(*j).or_default().push((ci, pos)),
                }
            }
            me.corrs.push(Compiled {
                level: level.unwrap_or(Level::Informational),
                rule,
                sources: srcs,
                windows: HashMap::new(),
                last_sweep: i64::MIN,
            });
        }
        // A rule that some generating correlation (or none) refers to keeps reporting.
        for c in &me.corrs {
            if c.rule.generate {
                for (s, _) in &c.sources {
                    if let Source::Rule(d) = s {
                        me.suppressed.remove(d);
                    }
                }
            }
        }
        (me, refused)
    }

    /// The valid correlation rules, in engine order (the index of [`CorrelationHit::correlation`]).
    pub fn rules(&self) -> impl Iterator<Item = &CorrelationRule> {
        self.corrs.iter().map(|c| &c.rule)
    }

    /// The correlation with index `i`, and its effective level.
    pub fn rule(&self, i: usize) -> Option<(&CorrelationRule, Level)> {
        self.corrs.get(i).map(|c| (&c.rule, c.level))
    }

    /// Whether any correlation consumes the hits of detection rule `rule`.
    pub fn consumes(&self, rule: usize) -> bool {
        self.by_rule.contains_key(&rule)
    }

    /// Whether detection rule `rule` only feeds correlations (`generate: false`) and should not
    /// be reported on its own.
    pub fn suppressed(&self, rule: usize) -> bool {
        self.suppressed.contains(&rule)
    }

    /// Observations dropped because a window passed [`MAX_WINDOW`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Take what the correlations need from `ev`, which detection rule `rule` matched.
    pub fn capture(&self, rule: usize, ev: &dyn FieldSource) -> Option<Captured> {
        let need = self.needs.get(&rule)?;
        Some(Captured {
            rule,
            fields: need
                .iter()
                .map(|f| (f.clone(), ev.field(f).and_then(text_of)))
                .collect(),
        })
    }

    /// Feed one captured detection hit at event time `t` (nanoseconds), with the caller's
    /// reference for the event; correlations that fire are appended to `out`.
    pub fn observe(&mut self, cap: &Captured, t: i64, event: u64, out: &mut Vec<CorrelationHit>) {
        let Some(consumers) = self.by_rule.get(&cap.rule).cloned() else {
            return;
        };
        let get = |f: &str| {
            cap.fields
                .iter()
                .find(|(k, _)| k == f)
                .and_then(|(_, v)| v.clone())
        };
        for (ci, pos) in consumers {
            let (key, value) = {
                let c = &self.corrs[ci];
                let r = &c.sources[pos].1;
                let key: Vec<Option<String>> = c
                    .rule
                    .group_by
                    .iter()
                    .map(|g| get(&resolve(&c.rule, g, r)))
                    .collect();
                let value = match &c.rule.kind {
                    CorrelationKind::ValueCount { field } => get(&resolve(&c.rule, field, r)),
                    _ => None,
                };
                (key, value)
            };
            self.feed(ci, pos, key, value, t, vec![event], out);
        }
    }

    /// Judge every window that ended before `now` (upper-bounded conditions) and forget idle
    /// groups; call it as time passes when no events arrive.
    pub fn advance(&mut self, now: i64, out: &mut Vec<CorrelationHit>) {
        for ci in 0..self.corrs.len() {
            self.sweep(ci, now, out);
        }
    }

    /// End of input: judge every open window.
    pub fn flush(&mut self, out: &mut Vec<CorrelationHit>) {
        self.advance(i64::MAX, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        ci: usize,
        pos: usize,
        key: Vec<Option<String>>,
        value: Option<String>,
        t: i64,
        refs: Vec<u64>,
        out: &mut Vec<CorrelationHit>,
    ) {
        let span = self.corrs[ci].rule.timespan_ns;
        let closing = self.corrs[ci].rule.condition.bounded_above();
        if closing {
            // A window that this event falls outside is over: judge it first.
            let ended = self.corrs[ci]
                .windows
                .get(&key)
                .is_some_and(|w| t > w.start.saturating_add(span));
            if ended && let Some(w) = self.corrs[ci].windows.remove(&key) {
                self.judge(ci, key.clone(), w, out);
            }
        }
        let mut fired = None;
        {
            let c = &mut self.corrs[ci];
            let w = c.windows.entry(key.clone()).or_insert_with(|| Window {
                start: t,
                newest: t,
                obs: VecDeque::new(),
            });
            let o = Obs {
                t,
                pos,
                value,
                refs,
            };
            // Keep time order even when events arrive a little late.
            let at = w.obs.partition_point(|x| x.t <= t);
            w.obs.insert(at, o);
            w.newest = w.newest.max(t);
            w.start = w.start.min(t);
            if !closing {
                let from = w.newest.saturating_sub(span);
                while w.obs.front().is_some_and(|x| x.t < from) {
                    w.obs.pop_front();
                }
            }
            if w.obs.len() > MAX_WINDOW {
                w.obs.pop_front();
                self.dropped += 1;
            }
            if !closing {
                let n = count(&c.rule.kind, &w.obs, c.sources.len());
                if c.rule.condition.holds(n) {
                    let w = c.windows.remove(&key).unwrap_or_default();
                    fired = Some((n, w));
                } else if matches!(c.rule.kind, CorrelationKind::EventCount) {
                    // Only the newest `floor` events can complete an event count.
                    let keep = usize::try_from(c.rule.condition.floor()).unwrap_or(usize::MAX);
                    while w.obs.len() > keep.max(1) {
                        w.obs.pop_front();
                    }
                }
            }
        }
        if let Some((n, w)) = fired {
            self.emit(ci, key, n, t, w, out);
        }
        // Idle groups are forgotten (and closed windows judged) now and then.
        let c = &self.corrs[ci];
        if t.saturating_sub(c.last_sweep) > span.max(1) {
            self.sweep(ci, t, out);
        }
    }

    fn sweep(&mut self, ci: usize, now: i64, out: &mut Vec<CorrelationHit>) {
        let c = &mut self.corrs[ci];
        c.last_sweep = now;
        let span = c.rule.timespan_ns;
        let closing = c.rule.condition.bounded_above();
        let expired: Vec<Vec<Option<String>>> = c
            .windows
            .iter()
            .filter(|(_, w)| {
                if closing {
                    now > w.start.saturating_add(span)
                } else {
                    now.saturating_sub(w.newest) > span
                }
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(w) = self.corrs[ci].windows.remove(&k)
                && closing
            {
                self.judge(ci, k, w, out);
            }
        }
    }

    fn judge(
        &mut self,
        ci: usize,
        key: Vec<Option<String>>,
        w: Window,
        out: &mut Vec<CorrelationHit>,
    ) {
        let c = &self.corrs[ci];
        let n = count(&c.rule.kind, &w.obs, c.sources.len());
        if c.rule.condition.holds(n) {
            let t = w.newest;
            self.emit(ci, key, n, t, w, out);
        }
    }

    fn emit(
        &mut self,
        ci: usize,
        key: Vec<Option<String>>,
        n: u64,
        t: i64,
        w: Window,
        out: &mut Vec<CorrelationHit>,
    ) {
        let mut events: Vec<u64> = w.obs.into_iter().flat_map(|o| o.refs).collect();
        events.sort_unstable();
        events.dedup();
        let group: Vec<(String, Option<String>)> = self.corrs[ci]
            .rule
            .group_by
            .iter()
            .cloned()
            .zip(key)
            .collect();
        let hit = CorrelationHit {
            correlation: ci,
            time_ns: t,
            group: group.clone(),
            count: n,
            events: events.clone(),
        };
        out.push(hit);
        // Chains: this hit is an event for the correlations that refer to this one, with the
        // group-by values as its fields.
        let consumers = self.by_corr.get(&ci).cloned().unwrap_or_default();
        for (cj, pos) in consumers {
            let (k2, v2) = {
                let c2 = &self.corrs[cj];
                let r = &c2.sources[pos].1;
                let get = |f: &str| {
                    group
                        .iter()
                        .find(|(k, _)| k == f)
                        .and_then(|(_, v)| v.clone())
                };
                let k2: Vec<Option<String>> = c2
                    .rule
                    .group_by
                    .iter()
                    .map(|g| get(&resolve(&c2.rule, g, r)))
                    .collect();
                let v2 = match &c2.rule.kind {
                    CorrelationKind::ValueCount { field } => get(&resolve(&c2.rule, field, r)),
                    _ => None,
                };
                (k2, v2)
            };
            self.feed(cj, pos, k2, v2, t, events.clone(), out);
        }
    }
}

/// The field an alias (or plain field name) stands for in events of the rule referenced as `r`.
fn resolve(rule: &CorrelationRule, name: &str, r: &str) -> String {
    rule.aliases
        .get(name)
        .and_then(|m| m.get(r))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Every field a correlation reads from events of the detection referenced as `r`.
fn fields_read(rule: &CorrelationRule, r: &str, det: Option<&CompiledRule>) -> Vec<String> {
    let mut names: Vec<&String> = rule.group_by.iter().collect();
    if let CorrelationKind::ValueCount { field } = &rule.kind {
        names.push(field);
    }
    names
        .into_iter()
        .map(|n| {
            // Aliases may be keyed by the reference used or by the rule's own id or name.
            let by_ref = rule.aliases.get(n.as_str()).and_then(|m| {
                m.get(r).or_else(|| {
                    det.and_then(|d| {
                        m.get(&d.id)
                            .or_else(|| d.name.as_ref().and_then(|nm| m.get(nm)))
                    })
                })
            });
            by_ref.cloned().unwrap_or_else(|| n.clone())
        })
        .collect()
}

/// The count a condition is judged on.
fn count(kind: &CorrelationKind, obs: &VecDeque<Obs>, positions: usize) -> u64 {
    match kind {
        CorrelationKind::EventCount => obs.len() as u64,
        CorrelationKind::ValueCount { .. } => {
            let distinct: HashSet<&str> = obs.iter().filter_map(|o| o.value.as_deref()).collect();
            distinct.len() as u64
        }
        CorrelationKind::Temporal => {
            let mut seen = vec![false; positions];
            for o in obs {
                if let Some(s) = seen.get_mut(o.pos) {
                    *s = true;
                }
            }
            seen.iter().filter(|s| **s).count() as u64
        }
        CorrelationKind::TemporalOrdered => {
            // Earliest-first greedy: finds the longest prefix of `rules` seen in order.
            let mut next = 0;
            for o in obs {
                if o.pos == next {
                    next += 1;
                    if next == positions {
                        break;
                    }
                }
            }
            next as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigmaDocument;
    use crate::rule::compile_documents;

    const S: i64 = 1_000_000_000;

    fn load(text: &str) -> (Vec<CompiledRule>, Correlator) {
        let mut dets = Vec::new();
        let mut corrs = Vec::new();
        for d in compile_documents(text).unwrap() {
            match d {
                SigmaDocument::Detection(r) => dets.push(*r),
                SigmaDocument::Correlation(c) => corrs.push(*c),
            }
        }
        let (c, refused) = Correlator::new(corrs, &dets);
        assert!(refused.is_empty(), "{refused:?}");
        (dets, c)
    }

    const BASE: &str = r#"
title: Failed logon
name: failed_logon
id: 00000000-0000-0000-0000-000000000001
level: low
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4625}
    condition: sel
---
title: Successful logon
name: ok_logon
id: 00000000-0000-0000-0000-000000000002
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4624}
    condition: sel
"#;

    fn ev(user: &str, ip: &str) -> Value {
        serde_json::json!({"TargetUserName": user, "IpAddress": ip})
    }

    fn feed(c: &mut Correlator, rule: usize, evs: &[(i64, Value)]) -> Vec<CorrelationHit> {
        let mut out = Vec::new();
        for (i, (t, e)) in evs.iter().enumerate() {
            if let Some(cap) = c.capture(rule, e) {
                c.observe(&cap, *t, i as u64, &mut out);
            }
        }
        out
    }

    #[test]
    fn event_count_fires_once_per_burst_and_per_group() {
        let (_, mut c) = load(&format!(
            "{BASE}---\ntitle: Brute force\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 1m\n  condition: {{gte: 3}}\n"
        ));
        assert!(c.suppressed(0) && c.consumes(0) && !c.consumes(1));
        let evs: Vec<(i64, Value)> = vec![
            (0, ev("a", "10.0.0.1")),
            (10 * S, ev("b", "10.0.0.2")),
            (20 * S, ev("c", "10.0.0.1")),
            (90 * S, ev("d", "10.0.0.1")), // the first two of 10.0.0.1 are > 1 m old
            (95 * S, ev("e", "10.0.0.1")),
            (96 * S, ev("f", "10.0.0.1")), // fires: 90, 95, 96
            (97 * S, ev("g", "10.0.0.1")), // the group started afresh: no second hit
        ];
        let hits = feed(&mut c, 0, &evs);
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].events, vec![3, 4, 5]);
        assert_eq!(
            hits[0].group,
            vec![("IpAddress".into(), Some("10.0.0.1".into()))]
        );
        assert_eq!((hits[0].count, hits[0].time_ns), (3, 96 * S));
        assert_eq!(c.rule(0).map(|(_, l)| l), Some(Level::Low));
    }

    #[test]
    fn value_count_counts_distinct_values() {
        let (_, mut c) = load(&format!(
            "{BASE}---\ntitle: Spraying\ncorrelation:\n  type: value_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 5m\n  condition: {{field: TargetUserName, gt: 2}}\n"
        ));
        let evs: Vec<(i64, Value)> = vec![
            (0, ev("a", "10.0.0.9")),
            (S, ev("a", "10.0.0.9")),
            (2 * S, ev("b", "10.0.0.9")),
            (3 * S, ev("b", "10.0.0.9")),
            (4 * S, ev("c", "10.0.0.9")), // the third distinct user: fires
        ];
        let hits = feed(&mut c, 0, &evs);
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].count, hits[0].events.len()), (3, 5));
    }

    #[test]
    fn temporal_ordered_needs_the_order() {
        let (_, mut c) = load(&format!(
            "{BASE}---\ntitle: Guessed\ncorrelation:\n  type: temporal_ordered\n  rules: [failed_logon, ok_logon]\n  group-by: [TargetUserName]\n  timespan: 10m\n"
        ));
        let mut out = Vec::new();
        let obs = |c: &mut Correlator, r: usize, t: i64, u: &str, out: &mut Vec<_>| {
            let cap = c.capture(r, &ev(u, "x")).unwrap();
            c.observe(&cap, t, t as u64, out);
        };
        obs(&mut c, 1, 0, "alice", &mut out); // success first: not the order
        obs(&mut c, 0, S, "bob", &mut out);
        assert!(out.is_empty());
        obs(&mut c, 0, 2 * S, "alice", &mut out);
        obs(&mut c, 1, 3 * S, "alice", &mut out); // failure then success: fires
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].group[0].1.as_deref(), Some("alice"));
        // The hit carries the group's events inside the window, the earlier success included.
        assert_eq!(out[0].events, vec![0, 2 * S as u64, 3 * S as u64]);
        // Unordered temporal accepts either order.
        let (_, mut t) = load(&format!(
            "{BASE}---\ntitle: Both\ncorrelation:\n  type: temporal\n  rules: [ok_logon, failed_logon]\n  group-by: [TargetUserName]\n  timespan: 10m\n"
        ));
        let mut out = Vec::new();
        obs(&mut t, 0, 0, "carol", &mut out);
        obs(&mut t, 1, S, "carol", &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn upper_bounds_are_judged_when_the_window_closes() {
        let (_, mut c) = load(&format!(
            "{BASE}---\ntitle: Exactly two\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 1m\n  condition: {{eq: 2}}\n"
        ));
        let hits = feed(
            &mut c,
            0,
            &[
                (0, ev("a", "1")),
                (S, ev("a", "1")),
                (0, ev("a", "2")),
                (S, ev("a", "2")),
                (2 * S, ev("a", "2")),
            ],
        );
        assert!(hits.is_empty(), "windows are still open");
        let mut out = Vec::new();
        c.advance(30 * S, &mut out);
        assert!(out.is_empty(), "not over yet");
        c.flush(&mut out);
        assert_eq!(out.len(), 1, "only group 1 had exactly two: {out:?}");
        assert_eq!(out[0].group[0].1.as_deref(), Some("1"));
    }

    #[test]
    fn chains_and_aliases() {
        let text = format!(
            "{BASE}---\ntitle: Many failures\nname: many_failed\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [user]\n  timespan: 1m\n  condition: {{gte: 2}}\n  aliases:\n    user:\n      failed_logon: TargetUserName\n---\ntitle: Failures then success\nlevel: critical\ncorrelation:\n  type: temporal_ordered\n  rules: [many_failed, ok_logon]\n  group-by: [user]\n  timespan: 5m\n  aliases:\n    user:\n      ok_logon: TargetUserName\n      many_failed: user\n"
        );
        let (_, mut c) = load(&text);
        let mut out = Vec::new();
        for (r, t, u) in [(0, 0, "dave"), (0, S, "dave"), (1, 2 * S, "dave")] {
            let cap = c.capture(r, &ev(u, "x")).unwrap();
            c.observe(&cap, t, t as u64, &mut out);
        }
        let names: Vec<&str> = out
            .iter()
            .map(|h| c.rule(h.correlation).unwrap().0.title.as_str())
            .collect();
        assert_eq!(names, vec!["Many failures", "Failures then success"]);
        assert_eq!(out[1].events, vec![0, S as u64, 2 * S as u64]);
        assert_eq!(c.rule(1).unwrap().1, Level::Critical);
    }

    #[test]
    fn refusals_name_the_problem() {
        let (dets, _) = load(BASE);
        let parse = |y: &str| -> Result<CorrelationRule, SigmaError> {
            parse(&serde_saphyr::from_str::<Value>(y).unwrap())
        };
        for (y, want) in [
            (
                "title: x\ncorrelation: {type: event_count, rules: [a], timespan: 1m}",
                "needs a `condition`",
            ),
            (
                "title: x\ncorrelation: {type: value_count, rules: [a], timespan: 1m, condition: {gte: 1}}",
                "condition.field",
            ),
            (
                "title: x\ncorrelation: {type: event_count, rules: [a], timespan: 1y, condition: {gte: 1}}",
                "timespan",
            ),
            (
                "title: x\ncorrelation: {type: event_count, rules: [], timespan: 1m, condition: {gte: 1}}",
                "names no rule",
            ),
            (
                "title: x\ncorrelation: {type: value_sum, rules: [a], timespan: 1m, condition: {gte: 1}}",
                "value_sum",
            ),
            (
                "title: x\ncorrelation: {type: event_count, rules: [a], timespan: 1m, condition: {over: 1}}",
                "over",
            ),
        ] {
            let e = parse(y).unwrap_err().to_string();
            assert!(e.contains(want), "{y}: {e}");
        }
        let unknown = parse("title: x\ncorrelation: {type: event_count, rules: [nope], timespan: 1m, condition: {gte: 1}}").unwrap();
        let cyc_a =
            parse("title: a\nname: a\ncorrelation: {type: temporal, rules: [b], timespan: 1m}")
                .unwrap();
        let cyc_b = parse("title: b\nname: b\ncorrelation: {type: temporal, rules: [a, failed_logon], timespan: 1m}").unwrap();
        let fine =
            parse("title: ok\ncorrelation: {type: temporal, rules: [failed_logon], timespan: 1m}")
                .unwrap();
        let (c, refused) = Correlator::new(vec![unknown, cyc_a, cyc_b, fine], &dets);
        let why: Vec<String> = refused.iter().map(|(_, _, e)| e.to_string()).collect();
        assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(refused.len(), 3, "{why:?}");
        assert!(why[0].contains("matches no loaded rule"));
        assert!(
            why[1].contains("cycle") && why[2].contains("cycle"),
            "{why:?}"
        );
        assert_eq!(c.rules().count(), 1);
    }

    proptest::proptest! {
        #[test]
        fn timespan_round_trips(n in 1i64..10_000, unit in 0usize..5) {
            let (u, secs) = [("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400), ("w", 604_800)][unit];
            proptest::prop_assert_eq!(parse_timespan(&format!("{n}{u}")).unwrap(), n * secs * S);
        }

        #[test]
        fn any_text_parses_or_errs(s in "\\PC{0,12}") {
            let _ = parse_timespan(&s);
        }
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("90m").unwrap(), 5_400 * S);
        assert_eq!(parse_timespan("1d").unwrap(), 86_400 * S);
        for bad in ["", "m", "10", "0s", "5 m", "-1m", "99999999999999999d"] {
            assert!(parse_timespan(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn windows_are_bounded() {
        let (_, mut c) = load(&format!(
            "{BASE}---\ntitle: Rare\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  timespan: 1d\n  condition: {{lt: 2}}\n"
        ));
        let cap = c.capture(0, &ev("a", "b")).unwrap();
        let mut out = Vec::new();
        for i in 0..(MAX_WINDOW as i64 + 10) {
            c.observe(&cap, i, i as u64, &mut out);
        }
        assert_eq!(c.dropped(), 10);
        c.flush(&mut out);
        assert!(out.is_empty());
    }
}
