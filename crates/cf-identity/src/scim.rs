//! SCIM 2.0 building blocks (IDM-3 lifecycle; RFC 7643/7644): the filter language parsed and
//! evaluated over stored JSON resources, PATCH operations, attribute projection and sorting.
//!
//! No I/O. Attribute names compare case-insensitively, as RFC 7643 §2.1 requires; string
//! values compare case-insensitively unless the attribute is case-exact (`id`, `externalId`,
//! `meta.version`).

use serde_json::Value;

/// Why a filter, path or PATCH is refused; `scim_type` is RFC 7644 §3.12's `scimType`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    /// `invalidFilter`, `invalidPath`, `noTarget`, `invalidValue`, `mutability` …
    pub scim_type: &'static str,
    /// What was wrong, where.
    pub detail: String,
}

fn err(scim_type: &'static str, detail: impl Into<String>) -> ScimError {
    ScimError {
        scim_type,
        detail: detail.into(),
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater or equal
    Ge,
    /// less than
    Lt,
    /// less or equal
    Le,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`
    Compare(String, Op, Value),
    /// `attr pr`
    Present(String),
    /// `a and b`
    And(Box<Filter>, Box<Filter>),
    /// `a or b`
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`
    Not(Box<Filter>),
    /// `emails[type eq "work"]`: some element of a multi-valued attribute matches.
    Within(String, Box<Filter>),
}

struct Lexer<'a> {
    s: &'a str,
    i: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
}

impl<'a> Lexer<'a> {
    fn tokens(s: &'a str) -> Result<Vec<Tok>, ScimError> {
        let mut l = Lexer { s, i: 0 };
        let mut out = Vec::new();
        let b = s.as_bytes();
        while l.i < b.len() {
            let c = b[l.i];
            match c {
                b' ' | b'\t' | b'\n' | b'\r' => l.i += 1,
                b'(' => {
                    out.push(Tok::LParen);
                    l.i += 1;
                }
                b')' => {
                    out.push(Tok::RParen);
                    l.i += 1;
                }
                b'[' => {
                    out.push(Tok::LBracket);
                    l.i += 1;
                }
                b']' => {
                    out.push(Tok::RBracket);
                    l.i += 1;
                }
                b'"' => {
                    // A JSON string, escapes included.
                    let start = l.i;
                    l.i += 1;
                    while l.i < b.len() && b[l.i] != b'"' {
                        if b[l.i] == b'\\' {
                            l.i += 1;
                        }
                        l.i += 1;
                    }
                    if l.i >= b.len() {
                        return Err(err(
                            "invalidFilter",
                            format!("unterminated string at character {start}"),
                        ));
                    }
                    l.i += 1;
                    let v: String = serde_json::from_str(&l.s[start..l.i]).map_err(|_| {
                        err("invalidFilter", format!("bad string at character {start}"))
                    })?;
                    out.push(Tok::Str(v));
                }
                _ => {
                    let start = l.i;
                    while l.i < b.len() && !b" \t\n\r()[]\"".contains(&b[l.i]) {
                        l.i += 1;
                    }
                    out.push(Tok::Word(l.s[start..l.i].to_string()));
                }
            }
        }
        Ok(out)
    }
}

struct Parser {
    t: Vec<Tok>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<String> {
        match self.t.get(self.i) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.and()?;
        while self.peek_word().as_deref() == Some("or") {
            self.i += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, ScimError> {
        let mut left = self.unary()?;
        while self.peek_word().as_deref() == Some("and") {
            self.i += 1;
            let right = self.unary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        self.depth += 1;
        if self.depth > 64 {
            return Err(err("invalidFilter", "filter nested too deeply"));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Filter, ScimError> {
        if self.peek_word().as_deref() == Some("not") {
            self.i += 1;
            if self.t.get(self.i) != Some(&Tok::LParen) {
                return Err(err("invalidFilter", "`not` must be followed by `(`"));
            }
            return Ok(Filter::Not(Box::new(self.group()?)));
        }
        if self.t.get(self.i) == Some(&Tok::LParen) {
            return self.group();
        }
        let Some(Tok::Word(attr)) = self.t.get(self.i).cloned() else {
            return Err(err(
                "invalidFilter",
                format!("expected an attribute at token {}", self.i + 1),
            ));
        };
        self.i += 1;
        if self.t.get(self.i) == Some(&Tok::LBracket) {
            self.i += 1;
            let inner = self.or()?;
            if self.t.get(self.i) != Some(&Tok::RBracket) {
                return Err(err("invalidFilter", "missing `]`"));
            }
            self.i += 1;
            return Ok(Filter::Within(attr, Box::new(inner)));
        }
        let op = self.peek_word().ok_or_else(|| {
            err(
                "invalidFilter",
                format!("expected an operator after `{attr}`"),
            )
        })?;
        self.i += 1;
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(attr)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => {
                return Err(err(
                    "invalidFilter",
                    format!("unknown operator `{other}` after `{attr}`"),
                ));
            }
        };
        let value = match self.t.get(self.i).cloned() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(Value::Number)
                    .map_err(|_| {
                        err(
                            "invalidFilter",
                            format!("`{w}` is not a value (strings are quoted)"),
                        )
                    })?,
            },
            _ => {
                return Err(err(
                    "invalidFilter",
                    format!("expected a value after `{attr}`"),
                ));
            }
        };
        self.i += 1;
        Ok(Filter::Compare(attr, op, value))
    }

    fn group(&mut self) -> Result<Filter, ScimError> {
        self.i += 1;
        let f = self.or()?;
        if self.t.get(self.i) != Some(&Tok::RParen) {
            return Err(err("invalidFilter", "missing `)`"));
        }
        self.i += 1;
        Ok(f)
    }
}

/// Parse a filter (RFC 7644 §3.4.2.2).
pub fn parse_filter(s: &str) -> Result<Filter, ScimError> {
    if s.len() > 4096 {
        return Err(err("invalidFilter", "filter longer than 4096 characters"));
    }
    let t = Lexer::tokens(s)?;
    if t.is_empty() {
        return Err(err("invalidFilter", "empty filter"));
    }
    let mut p = Parser { t, i: 0, depth: 0 };
    let f = p.or()?;
    if p.i != p.t.len() {
        return Err(err(
            "invalidFilter",
            format!("unexpected text after token {}", p.i),
        ));
    }
    Ok(f)
}

/// Core schemas: their attributes sit at the top of a resource.
pub const CORE_SCHEMAS: [&str; 2] = [
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:core:2.0:Group",
];
/// Extension schemas: their attributes sit in an object named by the URN.
pub const EXTENSIONS: [&str; 1] = ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];

/// An attribute path in dotted form relative to the resource: a core URN prefix is dropped, an
/// extension's URN becomes the first segment (`urn:…:enterprise:2.0:User:department` →
/// (`urn:…:enterprise:2.0:User`, `department`)).
fn resolve(path: &str) -> (String, Option<String>) {
    let lower = path.to_ascii_lowercase();
    for c in CORE_SCHEMAS {
        if lower.starts_with(&(c.to_ascii_lowercase() + ":")) {
            let rest = &path[c.len() + 1..];
            return match rest.split_once('.') {
                Some((a, b)) => (a.to_string(), Some(b.to_string())),
                None => (rest.to_string(), None),
            };
        }
    }
    for e in EXTENSIONS {
        let el = e.to_ascii_lowercase();
        if lower == el {
            return (e.to_string(), None);
        }
        if lower.starts_with(&(el + ":")) {
            return (e.to_string(), Some(path[e.len() + 1..].to_string()));
        }
    }
    match path.split_once('.') {
        Some((a, b)) => (a.to_string(), Some(b.to_string())),
        None => (path.to_string(), None),
    }
}

/// A member of an object by case-insensitive name.
pub fn get_ci<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values an attribute path reaches (`name.givenName`, `emails.value`): multi-valued
/// attributes fan out.
pub fn values_at<'a>(v: &'a Value, path: &str) -> Vec<&'a Value> {
    let (top, rest) = resolve(path);
    let mut parts = vec![top];
    if let Some(r) = rest {
        parts.extend(r.split('.').map(str::to_string));
    }
    let mut cur = vec![v];
    for part in &parts {
        let mut next = Vec::new();
        for c in cur {
            match get_ci(c, part) {
                Some(Value::Array(a)) => next.extend(a.iter()),
                Some(x) => next.push(x),
                None => {}
            }
        }
        cur = next;
    }
    cur
}

fn case_exact(attr: &str) -> bool {
    let (a, rest) = resolve(attr);
    let a = match rest {
        Some(r) => format!("{a}.{r}"),
        None => a,
    }
    .to_ascii_lowercase();
    matches!(a.as_str(), "id" | "externalid" | "meta.version")
}

fn compare(attr: &str, actual: &Value, op: Op, want: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (actual, want) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if case_exact(attr) {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                Op::Co => return a.contains(&b),
                Op::Sw => return a.starts_with(&b),
                Op::Ew => return a.ends_with(&b),
                _ => a.cmp(&b),
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
        (Value::Bool(a), Value::Bool(b)) => {
            if !matches!(op, Op::Eq | Op::Ne) {
                return false;
            }
            a.cmp(b)
        }
        (a, Value::Null) => {
            return match op {
                Op::Eq => a.is_null(),
                Op::Ne => !a.is_null(),
                _ => false,
            };
        }
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Co | Op::Sw | Op::Ew => false,
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

impl Filter {
    /// Whether `resource` matches.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::Compare(attr, Op::Ne, want) => {
                // `ne` holds when no value equals (and when the attribute is absent).
                !values_at(resource, attr)
                    .iter()
                    .any(|a| compare(attr, a, Op::Eq, want))
            }
            Filter::Compare(attr, op, want) => values_at(resource, attr)
                .iter()
                .any(|a| compare(attr, a, *op, want)),
            Filter::Present(attr) => values_at(resource, attr).iter().any(|v| present(v)),
            Filter::And(a, b) => a.matches(resource) && b.matches(resource),
            Filter::Or(a, b) => a.matches(resource) || b.matches(resource),
            Filter::Not(a) => !a.matches(resource),
            Filter::Within(attr, f) => values_at(resource, attr).iter().any(|e| f.matches(e)),
        }
    }
}

/// A PATCH path (RFC 7644 §3.5.2): `attr`, `attr.sub`, `attr[filter]`, `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The top-level attribute.
    pub attr: String,
    /// Selects elements of a multi-valued attribute.
    pub filter: Option<Filter>,
    /// A sub-attribute.
    pub sub: Option<String>,
}

/// Parse a PATCH path.
pub fn parse_path(p: &str) -> Result<PatchPath, ScimError> {
    let p = p.trim();
    let (head, filter, tail) = match p.find('[') {
        Some(i) => {
            let close = p
                .rfind(']')
                .ok_or_else(|| err("invalidPath", format!("`{p}`: missing `]`")))?;
            if close < i {
                return Err(err("invalidPath", format!("`{p}`: `]` before `[`")));
            }
            let f = parse_filter(&p[i + 1..close])
                .map_err(|e| err("invalidPath", format!("`{p}`: {}", e.detail)))?;
            let rest = p[close + 1..].trim_start_matches('.');
            (&p[..i], Some(f), (!rest.is_empty()).then_some(rest))
        }
        None => (p, None, None),
    };
    let (attr, head_sub) = resolve(head);
    if attr.is_empty() {
        return Err(err("invalidPath", format!("`{p}` names no attribute")));
    }
    let sub = match (head_sub, tail) {
        (Some(s), None) => Some(s),
        (None, t) => t.map(str::to_string),
        (Some(_), Some(_)) => return Err(err("invalidPath", format!("`{p}` is too deep"))),
    };
    Ok(PatchPath { attr, filter, sub })
}

fn key_ci(o: &serde_json::Map<String, Value>, name: &str) -> String {
    o.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Attributes a client may not change.
const READ_ONLY: [&str; 3] = ["id", "meta", "schemas"];

/// Apply one PATCH operation (`add`, `remove`, `replace`) to `resource`.
pub fn apply_patch(
    resource: &mut Value,
    op: &str,
    path: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let op = op.to_ascii_lowercase();
    let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
        // No path: the value is an object of attributes to add or replace.
        if op == "remove" {
            return Err(err("noTarget", "remove needs a path"));
        }
        let v = value
            .and_then(Value::as_object)
            .ok_or_else(|| err("invalidValue", "without a path the value must be an object"))?
            .clone();
        for (k, x) in &v {
            apply_patch(resource, &op, Some(k), Some(x))?;
        }
        return Ok(());
    };
    let obj = resource
        .as_object_mut()
        .ok_or_else(|| err("invalidValue", "the resource is not an object"))?;
    let pp = parse_path(path)?;
    if READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(&pp.attr)) {
        return Err(err("mutability", format!("`{}` is read-only", pp.attr)));
    }
    let key = key_ci(obj, &pp.attr);
    match (&pp.filter, &pp.sub) {
        (None, None) => match op.as_str() {
            "remove" => {
                obj.remove(&key);
                Ok(())
            }
            "add" => {
                let v = value.ok_or_else(|| err("invalidValue", "add needs a value"))?;
                match (obj.get_mut(&key), v) {
                    (Some(Value::Array(a)), Value::Array(new)) => {
                        for x in new {
                            if !a.contains(x) {
                                a.push(x.clone());
                            }
                        }
                    }
                    (Some(Value::Array(a)), x) => {
                        if !a.contains(x) {
                            a.push(x.clone());
                        }
                    }
                    (Some(Value::Object(o)), Value::Object(new)) => {
                        for (k, x) in new {
                            let kk = key_ci(o, k);
                            o.insert(kk, x.clone());
                        }
                    }
                    _ => {
                        obj.insert(key, v.clone());
                    }
                }
                Ok(())
            }
            "replace" => {
                let v = value.ok_or_else(|| err("invalidValue", "replace needs a value"))?;
                match (obj.get_mut(&key), v) {
                    (Some(Value::Object(o)), Value::Object(new)) => {
                        for (k, x) in new {
                            let kk = key_ci(o, k);
                            o.insert(kk, x.clone());
                        }
                    }
                    _ => {
                        obj.insert(key, v.clone());
                    }
                }
                Ok(())
            }
            other => Err(err("invalidSyntax", format!("unknown op `{other}`"))),
        },
        (None, Some(sub)) => {
            let parent = obj
                .entry(key)
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            let Some(p) = parent.as_object_mut() else {
                return Err(err(
                    "invalidPath",
                    format!("`{path}`: not a complex attribute"),
                ));
            };
            let sk = key_ci(p, sub);
            match op.as_str() {
                "remove" => {
                    p.remove(&sk);
                }
                "add" | "replace" => {
                    let v = value.ok_or_else(|| err("invalidValue", "a value is needed"))?;
                    p.insert(sk, v.clone());
                }
                other => return Err(err("invalidSyntax", format!("unknown op `{other}`"))),
            }
            Ok(())
        }
        (Some(f), sub) => {
            let Some(Value::Array(items)) = obj.get_mut(&key) else {
                return if op == "remove" {
                    Err(err("noTarget", format!("`{path}` matches nothing")))
                } else {
                    Err(err("noTarget", format!("`{}` has no values", pp.attr)))
                };
            };
            let hits: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, e)| f.matches(e))
                .map(|(i, _)| i)
                .collect();
            if hits.is_empty() {
                return Err(err("noTarget", format!("`{path}` matches nothing")));
            }
            match (op.as_str(), sub) {
                ("remove", None) => {
                    for i in hits.into_iter().rev() {
                        items.remove(i);
                    }
                }
                ("remove", Some(s)) => {
                    for i in hits {
                        if let Some(o) = items[i].as_object_mut() {
                            let k = key_ci(o, s);
                            o.remove(&k);
                        }
                    }
                }
                ("add" | "replace", None) => {
                    let v = value.ok_or_else(|| err("invalidValue", "a value is needed"))?;
                    for i in hits {
                        match (&mut items[i], v) {
                            (Value::Object(o), Value::Object(new)) => {
                                for (k, x) in new {
                                    let kk = key_ci(o, k);
                                    o.insert(kk, x.clone());
                                }
                            }
                            (slot, _) => *slot = v.clone(),
                        }
                    }
                }
                ("add" | "replace", Some(s)) => {
                    let v = value.ok_or_else(|| err("invalidValue", "a value is needed"))?;
                    for i in hits {
                        if let Some(o) = items[i].as_object_mut() {
                            let k = key_ci(o, s);
                            o.insert(k, v.clone());
                        }
                    }
                }
                (other, _) => return Err(err("invalidSyntax", format!("unknown op `{other}`"))),
            }
            Ok(())
        }
    }
}

/// Keep only the requested attributes (`attributes`) or drop some (`excludedAttributes`);
/// `id`, `schemas` and `meta` are always returned (RFC 7643 §7, "returned: always").
pub fn project(resource: &Value, attributes: &[String], excluded: &[String]) -> Value {
    let Some(o) = resource.as_object() else {
        return resource.clone();
    };
    let always = |k: &str| {
        ["id", "schemas", "meta"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(k))
    };
    let top = |a: &String| resolve(a).0.to_ascii_lowercase();
    let mut out = serde_json::Map::new();
    for (k, v) in o {
        let kl = k.to_ascii_lowercase();
        let keep = if !attributes.is_empty() {
            always(k) || attributes.iter().any(|a| top(a) == kl)
        } else {
            always(k)
                || !excluded
                    .iter()
                    .any(|a| top(a) == kl && resolve(a).1.is_none())
        };
        if keep {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Order resources by an attribute (first value; missing values last), RFC 7644 §3.4.2.3.
pub fn sort(resources: &mut [Value], by: &str, descending: bool) {
    let key = |r: &Value| -> Option<String> {
        values_at(r, by).first().map(|v| match v {
            Value::String(s) => s.to_lowercase(),
            other => other.to_string(),
        })
    };
    resources.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        let o = match (&ka, &kb) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        if descending && ka.is_some() && kb.is_some() {
            o.reverse()
        } else {
            o
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "id": "2819c223", "userName": "Bjensen", "active": true,
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "meta": {"lastModified": "2026-11-01T10:00:00Z", "resourceType": "User"}
        })
    }

    #[test]
    fn rfc7644_filter_examples_evaluate() {
        let u = user();
        for (f, want) in [
            ("userName eq \"bjensen\"", true),
            ("name.familyName co \"O'Malley\"", false),
            ("userName sw \"J\"", false),
            ("userName sw \"bj\"", true),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"B\"",
                true,
            ),
            ("title pr", false),
            ("meta.lastModified gt \"2011-05-13T04:42:34Z\"", true),
            ("meta.lastModified lt \"2011-05-13T04:42:34Z\"", false),
            ("name.familyName eq \"jensen\" and active eq true", true),
            ("userName eq \"x\" or emails.type eq \"home\"", true),
            (
                "emails[type eq \"work\" and value co \"@example.com\"]",
                true,
            ),
            (
                "emails[type eq \"work\" and value co \"@jensen.org\"]",
                false,
            ),
            ("not (userName eq \"bjensen\")", false),
            (
                "(userName eq \"a\" or userName eq \"bjensen\") and active eq true",
                true,
            ),
            ("id eq \"2819C223\"", false),
            ("nickName ne \"x\"", true),
        ] {
            assert_eq!(parse_filter(f).unwrap().matches(&u), want, "{f}");
        }
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        for f in [
            "",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "(userName pr",
            "userName eq bob",
            "not userName pr",
            "a pr extra",
        ] {
            let e = parse_filter(f).unwrap_err();
            assert_eq!(e.scim_type, "invalidFilter", "{f}");
        }
        let deep = "(".repeat(100) + "a pr" + &")".repeat(100);
        assert!(parse_filter(&deep).is_err());
    }

    #[test]
    fn patch_operations_follow_rfc7644() {
        let mut u = user();
        apply_patch(&mut u, "replace", Some("active"), Some(&json!(false))).unwrap();
        assert_eq!(u["active"], false);
        apply_patch(
            &mut u,
            "add",
            Some("emails"),
            Some(&json!([{"value": "b@city.gov.cn", "type": "other"}])),
        )
        .unwrap();
        assert_eq!(u["emails"].as_array().unwrap().len(), 3);
        apply_patch(&mut u, "remove", Some("emails[type eq \"home\"]"), None).unwrap();
        assert_eq!(u["emails"].as_array().unwrap().len(), 2);
        apply_patch(
            &mut u,
            "replace",
            Some("emails[type eq \"work\"].value"),
            Some(&json!("w@city.gov.cn")),
        )
        .unwrap();
        assert_eq!(u["emails"][0]["value"], "w@city.gov.cn");
        apply_patch(
            &mut u,
            "replace",
            Some("name.givenName"),
            Some(&json!("Babs")),
        )
        .unwrap();
        assert_eq!(u["name"]["givenName"], "Babs");
        apply_patch(
            &mut u,
            "replace",
            None,
            Some(&json!({"displayName": "Babs J", "name": {"familyName": "J"}})),
        )
        .unwrap();
        assert_eq!(
            (
                u["displayName"].as_str(),
                u["name"]["givenName"].as_str(),
                u["name"]["familyName"].as_str()
            ),
            (Some("Babs J"), Some("Babs"), Some("J"))
        );
        assert_eq!(
            apply_patch(&mut u, "replace", Some("id"), Some(&json!("x")))
                .unwrap_err()
                .scim_type,
            "mutability"
        );
        assert_eq!(
            apply_patch(&mut u, "remove", Some("emails[type eq \"fax\"]"), None)
                .unwrap_err()
                .scim_type,
            "noTarget"
        );
        assert_eq!(
            apply_patch(&mut u, "remove", None, None)
                .unwrap_err()
                .scim_type,
            "noTarget"
        );
        apply_patch(&mut u, "remove", Some("name.givenName"), None).unwrap();
        assert!(u["name"].get("givenName").is_none());
    }

    #[test]
    fn extension_attributes_live_under_their_urn() {
        let ext = EXTENSIONS[0];
        let mut u = user();
        apply_patch(
            &mut u,
            "add",
            Some(&format!("{ext}:department")),
            Some(&json!("Water")),
        )
        .unwrap();
        assert_eq!(u[ext]["department"], "Water");
        assert!(
            parse_filter(&format!("{ext}:department eq \"water\""))
                .unwrap()
                .matches(&u)
        );
        apply_patch(
            &mut u,
            "replace",
            Some(ext),
            Some(&json!({"organization": "City"})),
        )
        .unwrap();
        assert_eq!(u[ext]["organization"], "City");
        apply_patch(&mut u, "remove", Some(&format!("{ext}:department")), None).unwrap();
        assert!(u[ext].get("department").is_none());
        apply_patch(&mut u, "remove", Some(ext), None).unwrap();
        assert!(u.get(ext).is_none());
        apply_patch(
            &mut u,
            "replace",
            Some("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName"),
            Some(&json!("K")),
        )
        .unwrap();
        assert_eq!(u["name"]["familyName"], "K");
    }

    #[test]
    fn projection_and_sorting() {
        let u = user();
        let p = project(&u, &["userName".into()], &[]);
        assert_eq!(p.as_object().unwrap().len(), 3, "{p}");
        let p = project(&u, &[], &["emails".into()]);
        assert!(p.get("emails").is_none() && p.get("name").is_some());
        let mut v = vec![
            json!({"userName": "b"}),
            json!({}),
            json!({"userName": "A"}),
        ];
        sort(&mut v, "userName", false);
        assert_eq!(v[0]["userName"], "A");
        assert!(v[2].get("userName").is_none());
        sort(&mut v, "userName", true);
        assert_eq!(v[0]["userName"], "b");
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(s in "\\PC{0,120}") {
            let _ = parse_filter(&s);
            let _ = parse_path(&s);
        }
    }
}
