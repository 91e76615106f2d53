//! Values and modifiers: a Sigma field spec (`CommandLine|contains|all`) and its values compile
//! into a `FieldMatcher`; matching folds case without allocating for ASCII text.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use crate::SigmaError;
use crate::event::FieldSource;

/// One compiled value pattern.
#[derive(Debug, Clone)]
pub(crate) enum Pattern {
    Exact(String),
    /// An exact value that is also an integer: compared numerically against numbers.
    ExactInt(String, i64),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    Glob(Vec<Tok>),
    Regex(regex::Regex),
    Cidr(ipnet::IpNet),
    Num(NumOp, f64),
    Null,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum NumOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(String),
    Star,
    One,
}

#[derive(Debug, Clone)]
enum Kind {
    Values {
        patterns: Vec<Pattern>,
        all: bool,
        cased: bool,
    },
    Exists(bool),
    FieldRef {
        others: Vec<String>,
        mode: RefMode,
        all: bool,
        cased: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum RefMode {
    Equal,
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled `field|modifiers: values` item.
#[derive(Debug, Clone)]
pub(crate) struct FieldMatcher {
    field: String,
    kind: Kind,
}

/// Compile a `re` value with its `i`, `m` and `s` flags. The same expression recurs across rules
/// (153 `re` values of the Windows rules are 104 expressions), so compiled ones are kept per
/// thread and cloned (a clone shares the compiled program); the cache is emptied when it grows
/// past a bound, so that reloading rule sets does not grow it without end.
fn compile_regex(text: &str, flags: (bool, bool, bool)) -> Result<regex::Regex, regex::Error> {
    type Cache = std::collections::HashMap<(String, (bool, bool, bool)), regex::Regex>;
    thread_local! {
        static COMPILED: std::cell::RefCell<Cache> = Default::default();
    }
    const KEEP: usize = 4096;
    let key = (text.to_string(), flags);
    if let Some(r) = COMPILED.with_borrow(|c| c.get(&key).cloned()) {
        return Ok(r);
    }
    let (i, m, s) = flags;
    let r = regex::RegexBuilder::new(text)
        .case_insensitive(i)
        .multi_line(m)
        .dot_matches_new_line(s)
        .size_limit(1 << 22)
        .build()?;
    COMPILED.with_borrow_mut(|c| {
        if c.len() >= KEEP {
            c.clear();
        }
        c.insert(key, r.clone());
    });
    Ok(r)
}

/// Parse Sigma string syntax: `*` and `?` are wildcards, `\*`, `\?` and `\\` escape them.
pub(crate) fn tokenize(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    lit.push(n);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    out.push(Tok::Lit(std::mem::take(&mut lit)));
                }
                if c == '*' {
                    if out.last() != Some(&Tok::Star) {
                        out.push(Tok::Star);
                    }
                } else {
                    out.push(Tok::One);
                }
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Tok::Lit(lit));
    }
    out
}

fn fold(s: &str, cased: bool) -> String {
    if cased {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

/// Turn tokens into the cheapest pattern.
fn simplify(mut toks: Vec<Tok>, cased: bool) -> Pattern {
    toks.dedup_by(|a, b| *a == Tok::Star && *b == Tok::Star);
    let lit = |t: &Tok| matches!(t, Tok::Lit(_));
    let text = |t: &Tok| match t {
        Tok::Lit(s) => fold(s, cased),
        _ => String::new(),
    };
    match toks.as_slice() {
        [] => Pattern::Exact(String::new()),
        [Tok::Star] => Pattern::Glob(vec![Tok::Star]),
        [a] if lit(a) => {
            let t = text(a);
            match t.parse::<i64>() {
                Ok(n) if !t.starts_with('+') && (t == "0" || !t.starts_with('0')) => {
                    Pattern::ExactInt(t, n)
                }
                _ => Pattern::Exact(t),
            }
        }
        [Tok::Star, a, Tok::Star] if lit(a) => Pattern::Contains(text(a)),
        [a, Tok::Star] if lit(a) => Pattern::StartsWith(text(a)),
        [Tok::Star, a] if lit(a) => Pattern::EndsWith(text(a)),
        _ => Pattern::Glob(
            toks.into_iter()
                .map(|t| match t {
                    Tok::Lit(s) => Tok::Lit(fold(&s, cased)),
                    other => other,
                })
                .collect(),
        ),
    }
}

/// ASCII case-insensitive substring search (needle already lower-case), without allocating.
fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.len() < needle.len() {
        return false;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        if hay[i].to_ascii_lowercase() == first
            && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
        {
            return true;
        }
        i += 1;
    }
    false
}

/// Case-insensitive (unless `cased`) comparisons against an already folded needle.
fn with_folded<R>(hay: &str, cased: bool, f: impl FnOnce(&str) -> R) -> R {
    if cased || !hay.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
        f(hay)
    } else {
        f(&hay.to_lowercase())
    }
}

fn glob(p: &[Tok], s: &str) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(Tok::Lit(l)) => s
            .strip_prefix(l.as_str())
            .is_some_and(|rest| glob(&p[1..], rest)),
        Some(Tok::One) => {
            let mut it = s.chars();
            it.next().is_some() && glob(&p[1..], it.as_str())
        }
        Some(Tok::Star) => {
            if p.len() == 1 {
                return true;
            }
            let mut rest = s;
            loop {
                if glob(&p[1..], rest) {
                    return true;
                }
                let mut it = rest.chars();
                if it.next().is_none() {
                    return false;
                }
                rest = it.as_str();
            }
        }
    }
}

fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<f64>().ok().or_else(|| {
                t.strip_prefix("0x")
                    .and_then(|h| i64::from_str_radix(h, 16).ok())
                    .map(|i| i as f64)
            })
        }
        _ => None,
    }
}

impl Pattern {
    /// Match a text (already known to be a scalar's text).
    pub(crate) fn matches_text(&self, s: &str, cased: bool, ev: &dyn FieldSource) -> bool {
        match self {
            Pattern::Exact(n) => {
                if cased {
                    s == n
                } else if s.is_ascii() && n.is_ascii() {
                    s.eq_ignore_ascii_case(n)
                } else {
                    with_folded(s, false, |h| h == n)
                }
            }
            Pattern::ExactInt(n, _) => {
                if cased {
                    s == n
                } else {
                    s.eq_ignore_ascii_case(n)
                }
            }
            Pattern::Contains(n) => {
                if cased {
                    s.contains(n.as_str())
                } else if s.len() < 64 && s.is_ascii() && n.is_ascii() {
                    contains_ci(s.as_bytes(), n.as_bytes())
                } else {
                    ev.lower(s).contains(n.as_str())
                }
            }
            Pattern::StartsWith(n) => {
                if !cased && s.is_ascii() && n.is_ascii() {
                    s.len() >= n.len() && s.as_bytes()[..n.len()].eq_ignore_ascii_case(n.as_bytes())
                } else {
                    with_folded(s, cased, |h| h.starts_with(n.as_str()))
                }
            }
            Pattern::EndsWith(n) => {
                if !cased && s.is_ascii() && n.is_ascii() {
                    s.len() >= n.len()
                        && s.as_bytes()[s.len() - n.len()..].eq_ignore_ascii_case(n.as_bytes())
                } else {
                    with_folded(s, cased, |h| h.ends_with(n.as_str()))
                }
            }
            Pattern::Glob(p) => {
                if cased {
                    glob(p, s)
                } else {
                    glob(p, &ev.lower(s))
                }
            }
            Pattern::Regex(r) => r.is_match(s),
            Pattern::Cidr(net) => s
                .trim()
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| net.contains(&ip)),
            Pattern::Num(op, x) => {
                as_number(&Value::String(s.to_string())).is_some_and(|v| cmp(*op, v, *x))
            }
            Pattern::Null => false,
        }
    }

    /// Match a field value (arrays match when any element does).
    pub(crate) fn matches_value(&self, v: &Value, cased: bool, ev: &dyn FieldSource) -> bool {
        match (self, v) {
            (Pattern::Null, Value::Null) => true,
            (Pattern::Null, Value::String(s)) => s.is_empty(),
            (Pattern::Num(op, x), v) => as_number(v).is_some_and(|n| cmp(*op, n, *x)),
            (Pattern::ExactInt(_, n), Value::Number(x)) => x.as_i64() == Some(*n),
            (
                Pattern::Exact(_)
                | Pattern::Contains(_)
                | Pattern::StartsWith(_)
                | Pattern::EndsWith(_),
                Value::Number(x),
            ) if x.is_i64() || x.is_u64() => {
                let mut buf = [0u8; 24];
                let t = int_text(x, &mut buf);
                self.matches_text(t, cased, ev)
            }
            (_, Value::Array(a)) => a.iter().any(|e| self.matches_value(e, cased, ev)),
            (_, v) => scalar_text(v).is_some_and(|t| self.matches_text(&t, cased, ev)),
        }
    }
}

/// Decimal text of an integer JSON number, written into `buf` without allocating.
fn int_text<'b>(x: &serde_json::Number, buf: &'b mut [u8; 24]) -> &'b str {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = match (x.as_i64(), x.as_u64()) {
        (Some(i), _) => write!(cur, "{i}"),
        (None, Some(u)) => write!(cur, "{u}"),
        _ => Ok(()),
    };
    let n = cur.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

fn cmp(op: NumOp, a: f64, b: f64) -> bool {
    match op {
        NumOp::Gt => a > b,
        NumOp::Gte => a >= b,
        NumOp::Lt => a < b,
        NumOp::Lte => a <= b,
    }
}

/// Windows command-line flag variants: a `-` or `/` starting a word may be any of these.
const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

fn windash(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let positions: Vec<usize> = (0..chars.len())
        .filter(|&i| {
            (chars[i] == '-' || chars[i] == '/')
                && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
                && chars
                    .get(i + 1)
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        })
        .collect();
    let mut out = vec![chars.clone()];
    for &p in positions.iter().take(4) {
        let mut next = Vec::new();
        for v in &out {
            for d in DASHES {
                let mut w = v.clone();
                w[p] = d;
                next.push(w);
            }
        }
        out = next;
    }
    out.into_iter().map(|v| v.into_iter().collect()).collect()
}

fn encode(s: &str, enc: Option<&str>) -> Vec<u8> {
    match enc {
        Some("utf16le") | Some("wide") => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        Some("utf16be") => s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
        Some("utf16") => [0xFF, 0xFE]
            .into_iter()
            .chain(s.encode_utf16().flat_map(|u| u.to_le_bytes()))
            .collect(),
        _ => s.as_bytes().to_vec(),
    }
}

/// The three base64 renderings of `data` at every alignment (the `base64offset` modifier).
pub(crate) fn base64_offsets(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..3usize {
        let mut shifted = vec![b' '; i];
        shifted.extend_from_slice(data);
        let enc = B64.encode(&shifted);
        let start = [0usize, 2, 3][i];
        let end_trim = [0usize, 3, 2][(data.len() + i) % 3];
        let end = enc.len().saturating_sub(end_trim);
        if start < end {
            out.push(enc[start..end].to_string());
        }
    }
    out
}

fn value_text(field: &str, v: &Value) -> Result<Option<String>, SigmaError> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => {
            return Err(SigmaError::Value {
                field: field.into(),
                why: format!("a value must be a scalar, not {other}"),
            });
        }
    })
}

impl FieldMatcher {
    /// Compile `spec` (field name and modifiers) with its values.
    pub(crate) fn compile(spec: &str, values: &Value) -> Result<Self, SigmaError> {
        let mut parts = spec.split('|');
        let field = parts.next().unwrap_or_default().to_string();
        let mods: Vec<&str> = parts.collect();
        let has = |m: &str| mods.contains(&m);
        const KNOWN: &[&str] = &[
            "contains",
            "startswith",
            "endswith",
            "all",
            "re",
            "i",
            "m",
            "s",
            "cidr",
            "base64",
            "base64offset",
            "utf16le",
            "utf16be",
            "utf16",
            "wide",
            "windash",
            "exists",
            "cased",
            "fieldref",
            "gt",
            "gte",
            "lt",
            "lte",
            "expand",
        ];
        if let Some(bad) = mods.iter().find(|m| !KNOWN.contains(m)) {
            return Err(SigmaError::Unsupported(format!(
                "modifier `{bad}` in `{spec}`"
            )));
        }
        if has("expand") {
            return Err(SigmaError::Unsupported(format!(
                "`{spec}`: the expand modifier needs placeholder values, none are configured"
            )));
        }
        let list: Vec<&Value> = match values {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let all = has("all");
        let cased = has("cased");
        if has("exists") {
            let want = match list.as_slice() {
                [Value::Bool(b)] => *b,
                [Value::String(s)] if s == "true" || s == "false" => s == "true",
                _ => {
                    return Err(SigmaError::Value {
                        field: spec.into(),
                        why: "exists takes true or false".into(),
                    });
                }
            };
            return Ok(FieldMatcher {
                field,
                kind: Kind::Exists(want),
            });
        }
        if has("fieldref") {
            let mode = if has("contains") {
                RefMode::Contains
            } else if has("startswith") {
                RefMode::StartsWith
            } else if has("endswith") {
                RefMode::EndsWith
            } else {
                RefMode::Equal
            };
            let mut others = Vec::new();
            for v in &list {
                others.push(value_text(spec, v)?.ok_or_else(|| SigmaError::Value {
                    field: spec.into(),
                    why: "fieldref needs a field name".into(),
                })?);
            }
            return Ok(FieldMatcher {
                field,
                kind: Kind::FieldRef {
                    others,
                    mode,
                    all,
                    cased,
                },
            });
        }
        let enc = ["utf16le", "utf16be", "utf16", "wide"]
            .into_iter()
            .find(|e| has(e));
        let num = [
            ("gt", NumOp::Gt),
            ("gte", NumOp::Gte),
            ("lt", NumOp::Lt),
            ("lte", NumOp::Lte),
        ]
        .into_iter()
        .find(|(m, _)| has(m));
        let mut patterns = Vec::new();
        for v in &list {
            let Some(text) = value_text(spec, v)? else {
                patterns.push(Pattern::Null);
                continue;
            };
            if let Some((_, op)) = num {
                let x: f64 = text.trim().parse().map_err(|_| SigmaError::Value {
                    field: spec.into(),
                    why: format!("`{text}` is not a number"),
                })?;
                patterns.push(Pattern::Num(op, x));
            } else if has("re") {
                let flags = (has("i"), has("m"), has("s"));
                let r = compile_regex(&text, flags).map_err(|e| {
                    SigmaError::Unsupported(format!(
                        "regular expression in `{spec}`: {}",
                        e.to_string().lines().last().unwrap_or("invalid")
                    ))
                })?;
                patterns.push(Pattern::Regex(r));
            } else if has("cidr") {
                let net: ipnet::IpNet = text.trim().parse().map_err(|_| SigmaError::Value {
                    field: spec.into(),
                    why: format!("`{text}` is not a CIDR block"),
                })?;
                patterns.push(Pattern::Cidr(net));
            } else {
                let variants = if has("windash") {
                    windash(&text)
                } else {
                    vec![text.clone()]
                };
                for variant in variants {
                    let encoded: Vec<Vec<Tok>> = if has("base64offset") {
                        base64_offsets(&encode(&variant, enc))
                            .into_iter()
                            .map(|s| vec![Tok::Lit(s)])
                            .collect()
                    } else if has("base64") {
                        vec![vec![Tok::Lit(B64.encode(encode(&variant, enc)))]]
                    } else {
                        vec![tokenize(&variant)]
                    };
                    // Base64 text is case-sensitive by nature.
                    let case = cased || has("base64") || has("base64offset");
                    for mut toks in encoded {
                        if has("contains") || has("base64offset") {
                            toks.insert(0, Tok::Star);
                            toks.push(Tok::Star);
                        } else if has("startswith") {
                            toks.push(Tok::Star);
                        } else if has("endswith") {
                            toks.insert(0, Tok::Star);
                        }
                        patterns.push(simplify(toks, case));
                    }
                }
            }
        }
        let cased = cased || has("base64") || has("base64offset") || has("re");
        if has("base64") || has("base64offset") || has("windash") {
            // Variants of one value are alternatives even under `all`.
            return Ok(FieldMatcher {
                field,
                kind: Kind::Values {
                    patterns,
                    all: false,
                    cased,
                },
            });
        }
        Ok(FieldMatcher {
            field,
            kind: Kind::Values {
                patterns,
                all,
                cased,
            },
        })
    }

    /// The event ids this matcher requires, when it is a plain `EventID: n` or `EventID: [a, b]`.
    pub(crate) fn required_event_ids(&self) -> Option<Vec<u32>> {
        if self.field != "EventID" {
            return None;
        }
        match &self.kind {
            Kind::Values {
                patterns,
                all: false,
                ..
            } => patterns
                .iter()
                .map(|p| match p {
                    Pattern::ExactInt(_, n) => u32::try_from(*n).ok(),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// Literals (lower-case) of which at least one must occur in this field's text for the matcher
    /// to hold; `None` when no such guarantee exists (regex, numbers, null, exists …).
    pub(crate) fn needles(&self) -> Option<(&str, Vec<String>)> {
        if self.field == "EventID" {
            return None;
        }
        let Kind::Values { patterns, all, .. } = &self.kind else {
            return None;
        };
        let lit = |p: &Pattern| -> Option<String> {
            match p {
                Pattern::Exact(s)
                | Pattern::ExactInt(s, _)
                | Pattern::Contains(s)
                | Pattern::StartsWith(s)
                | Pattern::EndsWith(s) => Some(s.to_lowercase()),
                Pattern::Glob(toks) => toks
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Lit(s) => Some(s.to_lowercase()),
                        _ => None,
                    })
                    .max_by_key(String::len),
                _ => None,
            }
        };
        let lits: Vec<String> = if *all {
            // Every value must occur: the longest one alone is a sound requirement.
            vec![patterns.iter().filter_map(lit).max_by_key(String::len)?]
        } else {
            patterns.iter().map(lit).collect::<Option<Vec<_>>>()?
        };
        if lits.is_empty() || lits.iter().any(|l| l.len() < 3) {
            return None;
        }
        Some((self.field.as_str(), lits))
    }

    pub(crate) fn matches(&self, ev: &dyn FieldSource) -> bool {
        let v = ev.field(&self.field);
        match &self.kind {
            Kind::Exists(want) => v.is_some_and(|v| !v.is_null()) == *want,
            Kind::Values {
                patterns,
                all,
                cased,
            } => {
                // A `cidr` field's address is parsed once, not once per block of the list.
                if let (Some(Pattern::Cidr(_)), Some(v)) = (patterns.first(), v)
                    && !v.is_array()
                {
                    let ip = scalar_text(v).and_then(|t| t.trim().parse::<std::net::IpAddr>().ok());
                    let within = |p: &Pattern| match (p, ip) {
                        (Pattern::Cidr(net), Some(ip)) => net.contains(&ip),
                        (Pattern::Cidr(_), None) => false,
                        (p, _) => p.matches_value(v, *cased, ev),
                    };
                    return if *all {
                        patterns.iter().all(within)
                    } else {
                        patterns.iter().any(within)
                    };
                }
                let test = |p: &Pattern| match v {
                    None => matches!(p, Pattern::Null),
                    Some(v) => p.matches_value(v, *cased, ev),
                };
                if *all {
                    patterns.iter().all(test)
                } else {
                    patterns.iter().any(test)
                }
            }
            Kind::FieldRef {
                others,
                mode,
                all,
                cased,
            } => {
                let Some(a) = v.and_then(scalar_text) else {
                    return false;
                };
                let a = fold(&a, *cased);
                let test = |o: &String| {
                    ev.field(o).and_then(scalar_text).is_some_and(|b| {
                        let b = fold(&b, *cased);
                        match mode {
                            RefMode::Equal => a == b,
                            RefMode::Contains => a.contains(&b),
                            RefMode::StartsWith => a.starts_with(&b),
                            RefMode::EndsWith => a.ends_with(&b),
                        }
                    })
                };
                if *all {
                    others.iter().all(test)
                } else {
                    others.iter().any(test)
                }
            }
        }
    }
}

/// A keyword selection: any text leaf of the event contains one of the values.
#[derive(Debug, Clone)]
pub(crate) struct Keywords {
    patterns: Vec<Pattern>,
    /// When every value is a plain ASCII literal (nearly all keyword lists), one automaton
    /// finds any of them in one pass over a leaf instead of one search per value: a rule such
    /// as the antivirus-signature list (about 80 values) read every leaf 80 times.
    any: Option<aho_corasick::AhoCorasick>,
}

impl Keywords {
    fn new(patterns: Vec<Pattern>) -> Self {
        let lits: Option<Vec<&str>> = patterns
            .iter()
            .map(|p| match p {
                Pattern::Contains(n) if !n.is_empty() && n.is_ascii() && !n.contains('\0') => {
                    Some(n.as_str())
                }
                _ => None,
            })
            .collect();
        // Case-sensitive and leftmost-first, searched over lower-cased text: only such an
        // automaton can use the SIMD (Teddy) prefilter; the ASCII-case-insensitive one scanned
        // every leaf of every event byte by byte. Only whether a value occurs matters here.
        let any = lits.and_then(|l| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(l)
                .ok()
        });
        Keywords { patterns, any }
    }

    /// Whether the event has a text leaf that contains one of the values.
    pub(crate) fn matches(&self, ev: &dyn FieldSource) -> bool {
        match &self.any {
            // The needles are ASCII, lower-case and free of NUL: on ASCII text, ASCII case
            // folding is what `Pattern::Contains` does; other text is folded by Unicode first,
            // as it does. One search over all the event's leaves (shared by every keyword list
            // of the event) instead of one lowering and one search per leaf.
            Some(ac) => ac.is_match(&*ev.lowered_text()),
            None => {
                ev.visit_text(&mut |t| self.patterns.iter().any(|p| p.matches_text(t, false, ev)))
            }
        }
    }
}

/// `f` of `t` in lower case. ASCII text is lowered into `buf` (itself when it has no capital),
/// reused from text to text, where `FieldSource::lower` allocates and caches each one; other
/// text is folded by Unicode through the event's cache.
pub(crate) fn with_lower<R>(
    t: &str,
    buf: &mut String,
    ev: &dyn FieldSource,
    f: impl FnOnce(&str) -> R,
) -> R {
    if !t.is_ascii() {
        return f(&ev.lower(t));
    }
    if !t.bytes().any(|b| b.is_ascii_uppercase()) {
        return f(t);
    }
    buf.clear();
    buf.push_str(t);
    buf.make_ascii_lowercase();
    f(buf)
}

/// Compile a keyword list.
pub(crate) fn keywords(values: &[Value]) -> Result<Keywords, SigmaError> {
    values
        .iter()
        .map(|v| {
            let t = value_text("keywords", v)?.ok_or_else(|| SigmaError::Value {
                field: "keywords".into(),
                why: "null keyword".into(),
            })?;
            let mut toks = tokenize(&t);
            toks.insert(0, Tok::Star);
            toks.push(Tok::Star);
            Ok(simplify(toks, false))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Keywords::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(spec: &str, v: Value, ev: Value) -> bool {
        FieldMatcher::compile(spec, &v).unwrap().matches(&ev)
    }

    #[test]
    fn wildcards_and_case() {
        // `\*` escapes the wildcard; `\\*` is a backslash then a wildcard (Sigma specification).
        assert_eq!(
            tokenize(r"C:\Windows\*.exe"),
            vec![Tok::Lit(r"C:\Windows*.exe".into())]
        );
        assert_eq!(
            tokenize(r"C:\Windows\\*.exe"),
            vec![
                Tok::Lit(r"C:\Windows\".into()),
                Tok::Star,
                Tok::Lit(".exe".into())
            ]
        );
        assert_eq!(tokenize(r"a\*b"), vec![Tok::Lit("a*b".into())]);
        let ev = serde_json::json!({"Image": "C:\\Windows\\System32\\CMD.EXE", "N": 5, "L": ["x", "abc"]});
        assert!(m("Image|endswith", "\\cmd.exe".into(), ev.clone()));
        assert!(!m("Image|endswith|cased", "\\cmd.exe".into(), ev.clone()));
        assert!(m("Image", "c:\\windows\\\\*\\cmd.???".into(), ev.clone()));
        assert!(m(
            "Image|contains|all",
            serde_json::json!(["system32", "windows"]),
            ev.clone()
        ));
        assert!(!m(
            "Image|contains|all",
            serde_json::json!(["system32", "linux"]),
            ev.clone()
        ));
        assert!(m("N|gte", 5.into(), ev.clone()));
        assert!(!m("N|gt", 5.into(), ev.clone()));
        assert!(m("N", "5".into(), ev.clone()));
        assert!(m("L", "abc".into(), ev.clone()));
        assert!(m("Missing", Value::Null, ev.clone()));
        assert!(m("Missing|exists", false.into(), ev.clone()));
        assert!(m("Image|exists", true.into(), ev.clone()));
        assert!(m("Image|re", ".*System32.*".into(), ev.clone()));
        assert!(!m("Image|re", ".*system32.*".into(), ev.clone()));
        assert!(m("Image|re|i", ".*system32.*".into(), ev));
    }

    #[test]
    fn encodings() {
        let cmd = B64.encode("hello world");
        let ev = serde_json::json!({"C": format!("powershell -enc {cmd}")});
        assert!(m(
            "C|base64|contains",
            "hello".into(),
            serde_json::json!({"C": format!("x {} y", B64.encode("hello"))})
        ));
        assert!(m("C|base64offset|contains", "world".into(), ev.clone()));
        assert!(m("C|base64offset|contains", "hello".into(), ev));
        let wide = B64.encode(
            "ab".encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        assert!(m(
            "C|wide|base64",
            "ab".into(),
            serde_json::json!({"C": wide})
        ));
        assert!(m(
            "C|windash|contains",
            " -enc ".into(),
            serde_json::json!({"C": "x /enc y"})
        ));
        assert!(m(
            "C|windash|contains",
            " -enc ".into(),
            serde_json::json!({"C": "x \u{2013}enc y"})
        ));
        assert!(m(
            "Ip|cidr",
            "10.0.0.0/8".into(),
            serde_json::json!({"Ip": "10.2.3.4"})
        ));
        assert!(!m(
            "Ip|cidr",
            "10.0.0.0/8".into(),
            serde_json::json!({"Ip": "11.2.3.4"})
        ));
        // Lists of blocks (the address is parsed once for all of them), `all`, arrays, text
        // around the address, and values that are no address.
        let nets = serde_json::json!(["10.0.0.0/8", "192.168.0.0/16", "fe80::/10"]);
        for (ip, want) in [
            (serde_json::json!("192.168.1.1"), true),
            (serde_json::json!(" fe80::1 "), true),
            (serde_json::json!("172.16.0.1"), false),
            (serde_json::json!("-"), false),
            (serde_json::json!(10), false),
            (serde_json::json!(null), false),
            (serde_json::json!(["1.1.1.1", "10.1.1.1"]), true),
        ] {
            assert_eq!(
                m("Ip|cidr", nets.clone(), serde_json::json!({ "Ip": ip })),
                want
            );
        }
        let both = serde_json::json!(["10.0.0.0/8", "10.1.0.0/16"]);
        assert!(m(
            "Ip|cidr|all",
            both.clone(),
            serde_json::json!({"Ip": "10.1.2.3"})
        ));
        assert!(!m(
            "Ip|cidr|all",
            both,
            serde_json::json!({"Ip": "10.2.2.3"})
        ));
        assert!(m(
            "A|fieldref",
            "B".into(),
            serde_json::json!({"A": "X", "B": "x"})
        ));
        assert!(FieldMatcher::compile("A|frobnicate", &"x".into()).is_err());
    }

    #[test]
    fn compiled_expressions_are_reused_only_with_their_flags() {
        let folded = compile_regex("ab.c", (true, false, true)).unwrap();
        let again = compile_regex("ab.c", (true, false, true)).unwrap();
        let plain = compile_regex("ab.c", (false, false, false)).unwrap();
        assert!(folded.is_match("AB\nC") && again.is_match("AB\nC"));
        assert!(!plain.is_match("AB\nC") && !plain.is_match("ab\nc") && plain.is_match("abxc"));
        assert!(compile_regex("a(", (false, false, false)).is_err());
        assert!(compile_regex("a(", (false, false, false)).is_err());
    }

    /// Every value searched one by one, as before the automaton.
    fn one_by_one(k: &Keywords, ev: &Value) -> bool {
        ev.visit_text(&mut |t| k.patterns.iter().any(|p| p.matches_text(t, false, ev)))
    }

    #[test]
    fn keyword_lists() {
        let k = keywords(&["Mimikatz".into(), "sekurlsa::".into()]).unwrap();
        assert!(k.any.is_some());
        let ev = |t: &str| serde_json::json!({"a": {"b": [t]}});
        assert!(k.matches(&ev("run SEKURLSA::logonpasswords")));
        assert!(k.matches(&ev("écrit par mimiKATZ")));
        assert!(!k.matches(&ev("mimi katz")));
        // A wildcard inside a value keeps the one-by-one search.
        let g = keywords(&["a*b".into(), "c".into()]).unwrap();
        assert!(g.any.is_none());
        assert!(g.matches(&ev("xAyyB")));
    }

    proptest::proptest! {
        /// The automaton finds what searching each value in turn finds, on ASCII and on text
        /// whose Unicode lower case differs from its ASCII one (the Kelvin sign folds to `k`).
        #[test]
        fn keyword_automaton_is_the_one_by_one_search(
            words in proptest::collection::vec("[a-cK:]{1,4}", 1..6),
            texts in proptest::collection::vec("[a-cA-CK: \u{212a}\u{130}é\u{0}]{0,80}", 0..4),
        ) {
            let k = keywords(&words.iter().map(|w| Value::from(w.as_str())).collect::<Vec<_>>()).unwrap();
            proptest::prop_assert!(k.any.is_some());
            let ev = serde_json::json!({"leaves": texts});
            proptest::prop_assert_eq!(k.matches(&ev), one_by_one(&k, &ev));
        }
    }
}
