//! Rules: YAML text → `CompiledRule` (validated once), and the `RuleSet` that routes each event
//! to the rules of its channel and event id before any field is compared.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use serde_json::Value;

use crate::SigmaError;
use crate::condition::{self, Cond};
use crate::correlation::CorrelationRule;
use crate::event::{EvtxEvent, FieldRef, FieldSource};
use crate::literals::LiteralSet;
use crate::logsource::{self, Route};
use crate::matcher::{FieldMatcher, Keywords, keywords};

/// Rule severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// informational
    Informational,
    /// low
    Low,
    /// medium
    Medium,
    /// high
    High,
    /// critical
    Critical,
}

impl Level {
    pub(crate) fn parse(s: &str) -> Level {
        match s {
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => Level::Informational,
        }
    }
    /// Name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone)]
enum Selection {
    AllOf(Vec<FieldMatcher>),
    AnyOf(Vec<Selection>),
    Keywords(Keywords),
}

/// Alternatives of (field, lower-case literal): if none occurs in the event, the rule cannot match.
type Needles = Vec<(String, String)>;

fn best(cands: impl Iterator<Item = Option<Needles>>) -> Option<Needles> {
    // Prefer the requirement whose shortest literal is longest (fewest false alarms).
    cands
        .flatten()
        .max_by_key(|n| n.iter().map(|(_, l)| l.len()).min().unwrap_or(0))
}

fn any_of(cands: impl Iterator<Item = Option<Needles>>) -> Option<Needles> {
    let mut all = Vec::new();
    for n in cands {
        all.extend(n?);
    }
    (!all.is_empty()).then_some(all)
}

fn needles(c: &Cond, sels: &[Selection]) -> Option<Needles> {
    match c {
        Cond::Sel(i) => sels.get(*i)?.needles(),
        Cond::And(v) => best(v.iter().map(|c| needles(c, sels))),
        Cond::Or(v) => any_of(v.iter().map(|c| needles(c, sels))),
        Cond::Not(_) => None,
    }
}

impl Selection {
    fn needles(&self) -> Option<Needles> {
        match self {
            Selection::AllOf(ms) => best(ms.iter().map(|m| {
                m.needles()
                    .map(|(f, ls)| ls.into_iter().map(|l| (f.to_string(), l)).collect())
            })),
            Selection::AnyOf(ss) => any_of(ss.iter().map(Selection::needles)),
            Selection::Keywords(_) => None,
        }
    }

    fn required_event_ids(&self) -> Option<Vec<u32>> {
        match self {
            Selection::AllOf(ms) => ms.iter().find_map(FieldMatcher::required_event_ids),
            Selection::AnyOf(ss) => union(ss.iter().map(Selection::required_event_ids)),
            Selection::Keywords(_) => None,
        }
    }

    fn matches(&self, ev: &dyn FieldSource) -> bool {
        match self {
            Selection::AllOf(ms) => ms.iter().all(|m| m.matches(ev)),
            Selection::AnyOf(ss) => ss.iter().any(|s| s.matches(ev)),
            Selection::Keywords(k) => k.matches(ev),
        }
    }
}

fn union(it: impl Iterator<Item = Option<Vec<u32>>>) -> Option<Vec<u32>> {
    let mut all = Vec::new();
    for ids in it {
        all.extend(ids?);
    }
    all.sort_unstable();
    all.dedup();
    Some(all)
}

/// Event ids without which the condition cannot hold (used to route rules more narrowly).
fn required_ids(c: &Cond, sels: &[Selection]) -> Option<Vec<u32>> {
    match c {
        Cond::Sel(i) => sels.get(*i)?.required_event_ids(),
        Cond::And(v) => v.iter().find_map(|c| required_ids(c, sels)),
        Cond::Or(v) => union(v.iter().map(|c| required_ids(c, sels))),
        Cond::Not(_) => None,
    }
}

/// A validated, compiled detection rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Sigma `id`.
    pub id: String,
    /// Sigma `name` (how correlation rules may refer to it).
    pub name: Option<String>,
    /// Title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// Tags (e.g. `attack.t1059.001`).
    pub tags: Vec<String>,
    /// Where it applies.
    pub route: Route,
    selections: Vec<Selection>,
    condition: Cond,
}

impl CompiledRule {
    /// Whether the detection matches `ev` (log-source routing is the caller's, see [`RuleSet`]).
    pub fn matches(&self, ev: &dyn FieldSource) -> bool {
        let mut memo: [Option<bool>; 32] = [None; 32];
        let sels = &self.selections;
        self.condition.eval(&mut |i| {
            if let Some(Some(r)) = memo.get(i) {
                return *r;
            }
            let r = sels[i].matches(ev);
            if let Some(slot) = memo.get_mut(i) {
                *slot = Some(r);
            }
            r
        })
    }
}

fn compile_selection(name: &str, v: &Value) -> Result<Selection, SigmaError> {
    match v {
        Value::Object(map) => {
            let mut ms = Vec::with_capacity(map.len());
            for (k, vals) in map {
                ms.push(FieldMatcher::compile(k, vals)?);
            }
            Ok(Selection::AllOf(ms))
        }
        Value::Array(items) if items.iter().all(Value::is_object) => Ok(Selection::AnyOf(
            items
                .iter()
                .map(|i| compile_selection(name, i))
                .collect::<Result<_, _>>()?,
        )),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            Ok(Selection::Keywords(keywords(items)?))
        }
        Value::String(_) | Value::Number(_) => {
            Ok(Selection::Keywords(keywords(std::slice::from_ref(v))?))
        }
        _ => Err(SigmaError::Unsupported(format!(
            "selection `{name}` mixes maps and values or is empty"
        ))),
    }
}

/// One document of a rule file.
#[derive(Debug, Clone)]
pub enum SigmaDocument {
    /// A detection rule.
    Detection(Box<CompiledRule>),
    /// A correlation rule over detection (or correlation) rules.
    Correlation(Box<CorrelationRule>),
}

fn yaml(text: &str) -> Result<Value, SigmaError> {
    if let Some(v) = crate::yaml::parse(text) {
        return Ok(v);
    }
    serde_saphyr::from_str(text).map_err(|e| {
        SigmaError::Parse(
            e.to_string()
                .lines()
                .next()
                .unwrap_or("YAML error")
                .to_string(),
        )
    })
}

/// Parse and compile every document of a rule file: a single rule, or a correlation rule with
/// the rules it refers to (`---`-separated). Any bad document refuses the whole file, naming it.
pub fn compile_documents(text: &str) -> Result<Vec<SigmaDocument>, SigmaError> {
    let docs = split_documents(text);
    let many = docs.len() > 1;
    let mut out = Vec::with_capacity(docs.len());
    for (i, d) in docs.into_iter().enumerate() {
        let at = |e: SigmaError| -> SigmaError {
            if !many {
                return e;
            }
            let n = i + 1;
            match e {
                SigmaError::Parse(m) => SigmaError::Parse(format!("document {n}: {m}")),
                SigmaError::Unsupported(m) => SigmaError::Unsupported(format!("document {n}: {m}")),
                SigmaError::Condition(m) => SigmaError::Condition(format!("document {n}: {m}")),
                SigmaError::Value { field, why } => SigmaError::Value {
                    field: format!("document {n}: {field}"),
                    why,
                },
            }
        };
        let doc = yaml(d).map_err(at)?;
        if doc.get("action").is_some() {
            return Err(at(SigmaError::Unsupported(
                "rule collections with `action: global` (Sigma 1 style)".into(),
            )));
        }
        if doc.get("correlation").is_some() {
            out.push(SigmaDocument::Correlation(Box::new(
                crate::correlation::parse(&doc).map_err(at)?,
            )));
        } else {
            out.push(SigmaDocument::Detection(Box::new(
                compile_value(&doc).map_err(at)?,
            )));
        }
    }
    if out.is_empty() {
        return Err(SigmaError::Parse("no rule in the file".into()));
    }
    Ok(out)
}

/// Parse and compile one detection rule's text (a file with one document).
pub fn compile_rule(text: &str) -> Result<CompiledRule, SigmaError> {
    let docs: Vec<&str> = split_documents(text);
    if docs.len() > 1 {
        return Err(SigmaError::Unsupported(
            "several documents in one file: load them with `compile_documents`".into(),
        ));
    }
    let doc = yaml(docs.first().copied().unwrap_or_default())?;
    if doc.get("correlation").is_some() {
        return Err(SigmaError::Unsupported(
            "a correlation rule: load it with `compile_documents`".into(),
        ));
    }
    compile_value(&doc)
}

fn compile_value(doc: &Value) -> Result<CompiledRule, SigmaError> {
    let s = |k: &str| doc.get(k).and_then(Value::as_str);
    let title = s("title")
        .ok_or_else(|| SigmaError::Parse("no `title`".into()))?
        .to_string();
    let id = s("id").unwrap_or_default().to_string();
    let det = doc
        .get("detection")
        .and_then(Value::as_object)
        .ok_or_else(|| SigmaError::Parse("no `detection` map".into()))?;
    let ls = doc.get("logsource");
    let lsf = |k: &str| ls.and_then(|l| l.get(k)).and_then(Value::as_str);
    let route = logsource::route(lsf("product"), lsf("category"), lsf("service"))?;
    let mut names = Vec::new();
    let mut selections = Vec::new();
    for (k, v) in det {
        if k == "condition" || k == "timeframe" {
            continue;
        }
        names.push(k.clone());
        selections.push(compile_selection(k, v)?);
    }
    if selections.len() > 32 {
        return Err(SigmaError::Unsupported("more than 32 selections".into()));
    }
    let conds: Vec<String> = match det.get("condition") {
        Some(Value::String(c)) => vec![c.clone()],
        Some(Value::Array(cs)) => cs
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect(),
        _ => return Err(SigmaError::Parse("no `condition`".into())),
    };
    let mut compiled: Vec<Cond> = conds
        .iter()
        .map(|c| condition::parse(c, &names))
        .collect::<Result<_, _>>()?;
    let condition = if compiled.len() == 1 {
        compiled.remove(0)
    } else {
        Cond::Or(compiled)
    };
    let tags = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(CompiledRule {
        id,
        name: s("name").map(str::to_string),
        title,
        level: Level::parse(s("level").unwrap_or("")),
        tags,
        route,
        selections,
        condition,
    })
}

pub(crate) fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// A field, the set of its literals, and for each literal the rules that require it.
type FieldLiterals = (String, Arc<LiteralSet>, Vec<Vec<usize>>);

/// Every text a value pattern can be compared with in `v`, as the matcher converts it: strings,
/// numbers and booleans as text, arrays element by element (`owned`: text made here, not part of
/// the event).
fn scalar_texts(v: &Value, f: &mut dyn FnMut(&str, bool)) {
    match v {
        Value::String(s) => f(s, false),
        Value::Number(n) => f(&n.to_string(), true),
        Value::Bool(b) => f(if *b { "true" } else { "false" }, true),
        Value::Array(a) => a.iter().for_each(|x| scalar_texts(x, f)),
        Value::Null | Value::Object(_) => {}
    }
}

/// FNV-1a: field names are short and trusted (rule fields); SipHash cost more than the lookup.
#[derive(Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl std::hash::BuildHasher for Fnv {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// Whether a member name may be one of a set of names, tested before hashing it: most members
/// of an event name no automaton field. One bit per bucket of (length, first byte, last byte).
#[derive(Debug, Default)]
struct NameFilter([u64; 16]);

impl NameFilter {
    fn slot(name: &str) -> usize {
        crate::event::name_bucket(name) & 1023
    }

    fn insert(&mut self, name: &str) {
        let s = Self::slot(name);
        self.0[s >> 6] |= 1 << (s & 63);
    }

    fn may_hold(&self, name: &str) -> bool {
        let s = Self::slot(name);
        self.0[s >> 6] & (1 << (s & 63)) != 0
    }
}

/// One channel's rules indexed for routing: the rules with required literals behind one
/// literal set per field, the others by the event id they need. An event then reads
/// only the lists of its own id and the rules whose literals it holds, where every event used to
/// walk the channel's whole list (about 1,200 process-creation rules on Security and Sysmon).
#[derive(Debug, Default)]
struct ChannelIndex {
    fields: Vec<FieldLiterals>,
    /// The automata of plain field names ([`crate::event::is_plain_name`]) by name: an event's
    /// members are looked up here, rather than every field of the channel in the event (Security
    /// has automata for dozens of fields, most of them absent from any one event).
    plain: HashMap<Box<str>, usize, Fnv>,
    /// A first, cheaper test of the names in `plain`.
    plain_filter: NameFilter,
    /// The automata of other fields (dotted paths, `System` names), looked up one by one.
    direct: Vec<usize>,
    /// Rules without a literal requirement that take any event id.
    any_id: Vec<usize>,
    /// Rules without a literal requirement, by each event id they take.
    by_id: HashMap<u32, Vec<usize>>,
    /// Rules behind the automata: the event ids each takes (empty: any).
    filtered: HashMap<usize, Vec<u32>>,
}

/// The routing index of every channel.
#[derive(Debug, Default)]
struct Prefilter {
    channels: HashMap<String, ChannelIndex>,
}

impl Prefilter {
    fn build(rules: &[CompiledRule], by_channel: &HashMap<String, Vec<(usize, Vec<u32>)>>) -> Self {
        let need: Vec<Option<Needles>> = rules
            .iter()
            .map(|r| needles(&r.condition, &r.selections))
            .collect();
        let mut channels = HashMap::new();
        // Channels that share rules share literal sets (process creation is routed to both
        // Security and Sysmon): each distinct set is indexed once.
        let mut built: HashMap<Vec<&str>, Arc<LiteralSet>> = HashMap::new();
        for (chan, list) in by_channel {
            // Per field: its literals, the rules owning each, and each literal's index.
            type PerField<'n> = (Vec<&'n str>, Vec<Vec<usize>>, HashMap<&'n str, usize>);
            let mut per_field: HashMap<&str, PerField> = HashMap::new();
            for (r, _) in list {
                let Some(ns) = &need[*r] else { continue };
                for (f, lit) in ns {
                    let lit = tail(lit, PREFILTER_TAIL);
                    let e = per_field.entry(f.as_str()).or_default();
                    match e.2.get(lit) {
                        Some(&i) => e.1[i].push(*r),
                        None => {
                            e.2.insert(lit, e.0.len());
                            e.0.push(lit);
                            e.1.push(vec![*r]);
                        }
                    }
                }
            }
            let mut ci = ChannelIndex::default();
            for (f, (lits, owners, _)) in per_field {
                // Literal sets search lower-cased text (case-insensitive automata, to skip
                // lower-casing, cost more to build and search than lowering saves).
                let set = built
                    .entry(lits)
                    .or_insert_with_key(|lits| Arc::new(LiteralSet::new(lits)));
                if crate::event::is_plain_name(f) {
                    ci.plain_filter.insert(f);
                    ci.plain.insert(f.into(), ci.fields.len());
                } else {
                    ci.direct.push(ci.fields.len());
                }
                ci.fields.push((f.to_string(), Arc::clone(set), owners));
            }
            for (r, ids) in list {
                if need[*r].is_some() {
                    // A rule listed twice in a channel takes the union of its ids (empty: any).
                    match ci.filtered.entry(*r) {
                        Entry::Vacant(v) => {
                            v.insert(ids.clone());
                        }
                        Entry::Occupied(mut o) => {
                            let e = o.get_mut();
                            if e.is_empty() || ids.is_empty() {
                                e.clear();
                            } else {
                                e.extend_from_slice(ids);
                            }
                        }
                    }
                } else if ids.is_empty() {
                    ci.any_id.push(*r);
                } else {
                    for id in ids {
                        ci.by_id.entry(*id).or_default().push(*r);
                    }
                }
            }
            channels.insert(chan.clone(), ci);
        }
        Prefilter { channels }
    }
}

/// How much of a required literal the prefilter looks for: its last bytes. A literal occurs only
/// where its tail does, so the prefilter loses no candidate; tails of 16 bytes are as selective
/// on the dataset as whole literals (the rules evaluated grow by under 1 %), and the sets are
/// cheaper to build (the Sysmon `Hashes` set alone holds 5,609 hashes of 32–64 digits).
const PREFILTER_TAIL: usize = 16;

/// The last `n` bytes of `s`, or a little less where a character would be cut.
fn tail(s: &str, n: usize) -> &str {
    let mut cut = s.len().saturating_sub(n);
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

/// Whether a route listing event ids `ids` (empty: any) takes an event with id `id`.
fn takes(ids: &[u32], id: Option<u32>) -> bool {
    ids.is_empty() || id.is_some_and(|i| ids.contains(&i))
}

/// Compiled rules indexed by channel for fast routing.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    by_channel: HashMap<String, Vec<(usize, Vec<u32>)>>,
    by_prefix: Vec<(String, usize, Vec<u32>)>,
    any_channel: Vec<(usize, Vec<u32>)>,
    prefilter: std::sync::OnceLock<Prefilter>,
}

impl RuleSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a compiled rule.
    pub fn add(&mut self, rule: CompiledRule) {
        let i = self.rules.len();
        let required = required_ids(&rule.condition, &rule.selections);
        if let Route::Windows(alts) = &rule.route {
            for a in alts {
                // Narrow the route by the event ids the detection itself demands.
                let ids = match (&required, a.event_ids.is_empty()) {
                    (Some(req), true) => req.clone(),
                    (Some(req), false) => {
                        let both: Vec<u32> = a
                            .event_ids
                            .iter()
                            .copied()
                            .filter(|x| req.contains(x))
                            .collect();
                        if both.is_empty() {
                            continue;
                        }
                        both
                    }
                    (None, _) => a.event_ids.clone(),
                };
                match &a.channel {
                    None => self.any_channel.push((i, ids)),
                    Some(c) => match c.strip_suffix('*') {
                        Some(p) => self.by_prefix.push((p.to_string(), i, ids)),
                        None => self.by_channel.entry(c.clone()).or_default().push((i, ids)),
                    },
                }
            }
        }
        self.rules.push(rule);
        self.prefilter = std::sync::OnceLock::new();
    }

    /// The rules.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// The event's channel (lower case) and event id.
    fn route_key(ev: &EvtxEvent<'_>) -> (String, Option<u32>) {
        let channel = ev
            .channel()
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        (channel, ev.event_id())
    }

    /// The rules routed by channel prefix or to any channel that take the event.
    fn unlisted(
        &self,
        channel: &str,
        ok: impl Fn(&Vec<u32>) -> bool,
    ) -> impl Iterator<Item = usize> {
        let prefixed = self
            .by_prefix
            .iter()
            .filter(move |(p, _, _)| channel.starts_with(p.as_str()))
            .map(|(_, r, ids)| (*r, ids));
        prefixed
            .chain(self.any_channel.iter().map(|(r, ids)| (*r, ids)))
            .filter(move |(_, ids)| ok(ids))
            .map(|(r, _)| r)
    }

    /// Indices of the rules that match a Windows event, ascending.
    pub fn match_evtx(&self, ev: &EvtxEvent<'_>, out: &mut Vec<usize>) {
        out.clear();
        let (channel, id) = Self::route_key(ev);
        let ok = |ids: &Vec<u32>| takes(ids, id);
        let mut cand: Vec<usize> = Vec::new();
        let pf = self
            .prefilter
            .get_or_init(|| Prefilter::build(&self.rules, &self.by_channel));
        if let Some(ci) = pf.channels.get(&channel) {
            // Rules whose required literals occur in the event's fields.
            let mut buf = String::new();
            let mut scan = |i: usize, v: FieldRef<'_>| {
                let (_, set, owners) = &ci.fields[i];
                let mut each = |text: &str, owned: bool| {
                    let mut search = |lower: &str| {
                        set.each_match(lower.as_bytes(), |l| {
                            cand.extend(
                                owners[l]
                                    .iter()
                                    .filter(|r| ci.filtered.get(r).is_some_and(ok)),
                            );
                        });
                    };
                    // Text made here (a number's digits, a boolean) is already lower case.
                    if owned {
                        search(text)
                    } else {
                        crate::matcher::with_lower(text, &mut buf, ev, search)
                    }
                };
                match v {
                    FieldRef::Text(t) => each(t, false),
                    FieldRef::Value(v) => scalar_texts(v, &mut each),
                }
            };
            for &i in &ci.direct {
                if let Some(v) = ev.field(&ci.fields[i].0) {
                    scan(i, FieldRef::Value(v));
                }
            }
            let mut seen = vec![false; ci.fields.len()];
            // `plain` holds plain names only, so the other names `plain_fields` passes miss it.
            ev.plain_fields(&mut |name, v| {
                if ci.plain_filter.may_hold(name)
                    && let Some(&i) = ci.plain.get(name)
                    && !std::mem::replace(&mut seen[i], true)
                    && let Some(v) = v
                {
                    scan(i, v);
                }
            });
            cand.extend_from_slice(&ci.any_id);
            if let Some(list) = id.and_then(|i| ci.by_id.get(&i)) {
                cand.extend_from_slice(list);
            }
        }
        cand.extend(self.unlisted(&channel, ok));
        cand.sort_unstable();
        cand.dedup();
        out.extend(cand.into_iter().filter(|&r| self.rules[r].matches(ev)));
    }

    /// [`RuleSet::match_evtx`] without the index: every rule whose route takes the event is
    /// evaluated. Slower; the reference the tests hold the index to.
    pub fn match_evtx_unindexed(&self, ev: &EvtxEvent<'_>, out: &mut Vec<usize>) {
        out.clear();
        let (channel, id) = Self::route_key(ev);
        let ok = |ids: &Vec<u32>| takes(ids, id);
        let listed = self.by_channel.get(&channel).into_iter().flatten();
        let mut cand: Vec<usize> = listed
            .filter(|(_, ids)| ok(ids))
            .map(|(r, _)| *r)
            .chain(self.unlisted(&channel, ok))
            .collect();
        cand.sort_unstable();
        cand.dedup();
        out.extend(cand.into_iter().filter(|&r| self.rules[r].matches(ev)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = r#"
title: Suspicious Encoded PowerShell
id: 11111111-2222-3333-4444-555555555555
level: high
tags: [attack.execution, attack.t1059.001]
logsource:
    category: process_creation
    product: windows
detection:
    selection_img:
        - Image|endswith: '\powershell.exe'
        - OriginalFileName: 'PowerShell.EXE'
    selection_cli:
        CommandLine|contains|windash: ' -enc '
    filter_main:
        ParentImage|startswith: 'C:\Program Files\'
    condition: all of selection_* and not 1 of filter_*
"#;

    fn sysmon(image: &str, cmd: &str, parent: &str) -> Value {
        serde_json::json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1},
            "EventData": {"Image": image, "CommandLine": cmd, "ParentImage": parent}}})
    }

    #[test]
    fn compiles_and_matches_end_to_end() {
        let r = compile_rule(RULE).unwrap();
        assert_eq!((r.level, r.tags.len()), (Level::High, 2));
        let mut set = RuleSet::new();
        set.add(r);
        let mut out = Vec::new();
        let hit = sysmon(
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "powershell /enc ZQBjAGgAbwA=",
            "C:\\Windows\\explorer.exe",
        );
        set.match_evtx(&EvtxEvent::new(&hit), &mut out);
        assert_eq!(out, vec![0]);
        let filtered = sysmon(
            "C:\\Windows\\powershell.exe",
            "powershell -enc x",
            "C:\\Program Files\\Tool\\t.exe",
        );
        set.match_evtx(&EvtxEvent::new(&filtered), &mut out);
        assert!(out.is_empty());
        let mut other_channel = hit.clone();
        other_channel["Event"]["System"]["EventID"] = 3.into();
        set.match_evtx(&EvtxEvent::new(&other_channel), &mut out);
        assert!(out.is_empty(), "routing by event id");
    }

    /// Each branch of the routing index: rules behind literals, rules by event id, rules for
    /// any id of a channel, channel prefixes and any channel; each event finds what evaluating
    /// every routed rule finds.
    #[test]
    fn every_route_of_the_index() {
        let rule = |id: &str, logsource: &str, detection: &str| {
            compile_rule(&format!(
                "title: t{id}\nid: {id}\nlogsource:\n{logsource}\ndetection:\n{detection}\n"
            ))
            .unwrap()
        };
        let sysmon_ls = "    product: windows\n    service: sysmon";
        let mut set = RuleSet::new();
        // 0: behind a literal; 1: by event id, no literal; 2: any id of the channel, no literal;
        // 3: any channel; 4: a keyword list on any channel.
        set.add(rule(
            "0",
            sysmon_ls,
            "    sel:\n        CommandLine|contains: whoami\n    condition: sel",
        ));
        set.add(rule(
            "1",
            sysmon_ls,
            "    sel:\n        EventID: 1\n        CommandLine|re: '^x+$'\n    condition: sel",
        ));
        set.add(rule(
            "2",
            sysmon_ls,
            "    sel:\n        CommandLine|re: '^y+$'\n    condition: sel",
        ));
        set.add(rule(
            "3",
            "    product: windows",
            "    sel:\n        Image|endswith: '\\z.exe'\n    condition: sel",
        ));
        set.add(rule(
            "4",
            "    product: windows",
            "    kw:\n        - mimikatz\n    condition: kw",
        ));
        let cases: [(&str, &str, Vec<usize>); 6] = [
            ("a", "run WHOAMI /all", vec![0]),
            ("a", "xxx", vec![1]),
            ("a", "yyy", vec![2]),
            ("C:\\z.exe", "yy", vec![2, 3]),
            ("a", "Invoke-Mimikatz", vec![4]),
            ("a", "nothing", vec![]),
        ];
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        for (image, cmd, want) in cases {
            let ev = sysmon(image, cmd, "p");
            set.match_evtx(&EvtxEvent::new(&ev), &mut fast);
            set.match_evtx_unindexed(&EvtxEvent::new(&ev), &mut slow);
            assert_eq!((&fast, &slow), (&want, &want), "{image} {cmd}");
        }
        // Rule 1 needs event 1; rule 2 takes any id of its channel, also an event without one.
        let mut ev = sysmon("a", "xxx", "p");
        ev["Event"]["System"]["EventID"] = 3.into();
        set.match_evtx(&EvtxEvent::new(&ev), &mut fast);
        assert!(fast.is_empty());
        ev["Event"]["EventData"]["CommandLine"] = "yy".into();
        set.match_evtx(&EvtxEvent::new(&ev), &mut fast);
        assert_eq!(fast, vec![2]);
        ev["Event"]["System"]
            .as_object_mut()
            .map(|s| s.remove("EventID"));
        set.match_evtx(&EvtxEvent::new(&ev), &mut fast);
        assert_eq!(fast, vec![2]);

        // Literals behind the prefilter are found in booleans, numbers and arrays, as the
        // matcher reads them.
        set.add(rule(
            "5",
            sysmon_ls,
            "    sel:\n        Enabled: 'true'\n    condition: sel",
        ));
        set.add(rule(
            "6",
            sysmon_ls,
            "    sel:\n        Port: 4444\n    condition: sel",
        ));
        for (data, want) in [
            (serde_json::json!({"Enabled": true}), vec![5]),
            (serde_json::json!({"Enabled": "TRUE"}), vec![5]),
            (serde_json::json!({"Enabled": false}), vec![]),
            (serde_json::json!({"Port": 4444}), vec![6]),
            (serde_json::json!({"Port": [80, [4444]]}), vec![6]),
            (serde_json::json!({"Port": "4444"}), vec![6]),
            (serde_json::json!({"Port": 44445}), vec![]),
        ] {
            let ev = serde_json::json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}, "EventData": data}});
            set.match_evtx(&EvtxEvent::new(&ev), &mut fast);
            set.match_evtx_unindexed(&EvtxEvent::new(&ev), &mut slow);
            assert_eq!((&fast, &slow), (&want, &want), "{data}");
        }

        // The prefilter looks for a long literal's tail: the tail alone makes the rule a
        // candidate, not a hit; the literal, or a different case of it, is a hit.
        set.add(rule(
            "7",
            sysmon_ls,
            "    sel:\n        TargetFilename|contains: '\\AppData\\Roaming\\Évil\\payload.dll'\n    condition: sel",
        ));
        assert_eq!(tail("aÉvil\\payload.dl", 16), "Évil\\payload.dl");
        assert_eq!(tail("\\Évil\\payload.dll", 16), "vil\\payload.dll");
        assert_eq!(tail("short", 16), "short");
        for (name, want) in [
            ("C:\\x\\Évil\\payload.dll", vec![]),
            ("C:\\Users\\u\\AppData\\Roaming\\Évil\\payload.dll", vec![7]),
            ("C:\\USERS\\U\\APPDATA\\ROAMING\\ÉVIL\\PAYLOAD.DLL", vec![7]),
        ] {
            let ev = serde_json::json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 11}, "EventData": {"TargetFilename": name}}});
            set.match_evtx(&EvtxEvent::new(&ev), &mut fast);
            set.match_evtx_unindexed(&EvtxEvent::new(&ev), &mut slow);
            assert_eq!((&fast, &slow), (&want, &want), "{name}");
        }
    }

    /// The lower-case cache is checked by content: number text made on the stack (same
    /// address, other digits) must not be served another number's entry.
    #[test]
    fn short_lived_texts_are_not_confused() {
        let mut set = RuleSet::new();
        set.add(
            compile_rule(
                "title: t\nid: g\nlogsource:\n    product: windows\n    service: sysmon\ndetection:\n    sel:\n        SourcePort: '3*9'\n        DestinationPort: '4*4'\n    condition: sel\n",
            )
            .unwrap(),
        );
        let ev = serde_json::json!({"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3},
            "EventData": {"SourcePort": 3389, "DestinationPort": 4444}}});
        let mut out = Vec::new();
        set.match_evtx(&EvtxEvent::new(&ev), &mut out);
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn refuses_with_reasons() {
        let agg = RULE.replace(
            "condition: all of selection_* and not 1 of filter_*",
            "condition: selection_cli | count() > 3",
        );
        assert!(matches!(
            compile_rule(&agg),
            Err(SigmaError::Unsupported(_))
        ));
        assert!(matches!(
            compile_rule("title: x\n"),
            Err(SigmaError::Parse(_))
        ));
        assert!(compile_rule(&RULE.replace("|windash", "|nonsense")).is_err());
        assert!(compile_rule("::: not yaml").is_err());
    }
}
