//! A fast reader for the block-style YAML Sigma rules are written in (SA-1): mappings, sequences,
//! plain and quoted scalars, literal blocks and comments, read straight into `serde_json::Value`.
//!
//! Loading the 2,407 SigmaHQ Windows rules spent about half its instructions in the general YAML
//! parser. This reader handles only the shapes those rules use and answers `None` for anything
//! else (flow collections, anchors, tags, folded blocks, multi-line quotes, typed scalars other
//! than plain integers and `true`/`false` …); the caller then parses the text with serde-saphyr.
//! Whatever it does accept must read exactly as serde-saphyr reads it: tests hold it to that on
//! every rule file of the dataset and on generated documents.

use serde_json::{Map, Value};

/// One line: its indentation (leading spaces) and the rest, without trailing spaces or `\r`.
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
    /// Whether spaces were trimmed from its end (they belong to a literal block's text).
    trimmed: bool,
}

impl Line<'_> {
    /// Blank or comment-only: not part of the structure (but part of a literal block).
    fn insignificant(&self) -> bool {
        self.text.is_empty() || self.text.starts_with('#')
    }
}

/// Read one YAML document, or `None` when it is outside the subset (or not valid YAML).
pub(crate) fn parse(text: &str) -> Option<Value> {
    // Characters YAML does not allow in a document (controls, a BOM past the start, non-
    // characters) and the Unicode line separators are serde-saphyr's to judge.
    // Printable ASCII, tab and line ends hold none of them: checked a vector at a time first,
    // the characters decoded only when some other byte occurs.
    let plain = |b: u8| (0x20..0x7f).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r');
    let all_plain = text.bytes().fold(true, |a, b| a & plain(b));
    if !all_plain
        && text.chars().any(|c| {
            matches!(c, '\0'..='\x08' | '\x0b' | '\x0c' | '\x0e'..='\x1f' | '\x7f'..='\u{9f}'
            | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
        })
    {
        return None;
    }
    let mut lines = Vec::with_capacity(text.len() / 32 + 1);
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let text = raw.trim_start_matches(' ');
        if text.starts_with(['\t', '\u{feff}']) || text.contains('\r') {
            return None;
        }
        if raw.starts_with("---") || raw.starts_with("...") || raw.starts_with('%') {
            return None;
        }
        let trimmed = text.trim_end_matches(' ');
        lines.push(Line {
            indent: raw.len() - text.len(),
            text: trimmed,
            trimmed: trimmed.len() != text.len(),
        });
    }
    let mut p = Reader {
        lines,
        pos: 0,
        depth: 0,
    };
    let v = match p.peek() {
        None => Value::Null,
        Some(l) if l.indent == 0 => p.block(0)?,
        Some(_) => return None,
    };
    p.peek().is_none().then_some(v)
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    pos: usize,
    /// Collections open around the cursor: deep nesting is left to serde-saphyr, whose budget
    /// refuses it (and whose parser does not recurse on the stack per level).
    depth: usize,
}

/// Nesting beyond which the reader declines (serde-saphyr refuses more than 64 levels).
const MAX_DEPTH: usize = 32;

/// A sequence entry: `-` alone or followed by a space.
fn is_item(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

impl<'a> Reader<'a> {
    /// The next significant line, skipping blank and comment lines.
    fn peek(&mut self) -> Option<Line<'a>> {
        while let Some(l) = self.lines.get(self.pos) {
            if !l.insignificant() {
                return Some(*l);
            }
            self.pos += 1;
        }
        None
    }

    /// A mapping or a sequence whose first line is the next one, indented by `indent`. Every
    /// collection is read through here, which keeps the nesting count.
    fn block(&mut self, indent: usize) -> Option<Value> {
        let first = self.peek()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = if is_item(first.text) {
            self.seq(indent)
        } else {
            self.map(indent)
        };
        self.depth -= 1;
        v
    }

    fn map(&mut self, indent: usize) -> Option<Value> {
        let mut m = Map::new();
        while let Some(l) = self.peek() {
            if l.indent < indent {
                break;
            }
            if l.indent > indent || is_item(l.text) {
                return None;
            }
            let (key, rest) = split_key(l.text)?;
            if m.contains_key(&key) {
                return None;
            }
            self.pos += 1;
            let v = self.value(indent, rest)?;
            m.insert(key, v);
        }
        Some(Value::Object(m))
    }

    /// The value after `key:` on a line of a mapping indented by `indent`.
    fn value(&mut self, indent: usize, rest: &'a str) -> Option<Value> {
        if rest.is_empty() || rest.starts_with('#') {
            return match self.peek() {
                Some(l) if l.indent > indent => self.block(l.indent),
                // YAML lets a mapping's sequence sit at the mapping's own indentation.
                Some(l) if l.indent == indent && is_item(l.text) => self.block(indent),
                _ => Some(Value::Null),
            };
        }
        if rest.starts_with('|') {
            return self.literal(indent, rest);
        }
        self.scalar(indent, rest)
    }

    fn seq(&mut self, indent: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(l) = self.peek() {
            if l.indent < indent || (l.indent == indent && !is_item(l.text)) {
                break;
            }
            if l.indent > indent {
                return None;
            }
            let rest = l.text[1..].trim_start_matches(' ');
            let offset = l.text.len() - rest.len();
            if rest.is_empty() || rest.starts_with('#') {
                self.pos += 1;
                items.push(match self.peek() {
                    Some(n) if n.indent > indent => self.block(n.indent)?,
                    _ => Value::Null,
                });
            } else if rest.starts_with('|') {
                self.pos += 1;
                items.push(self.literal(indent, rest)?);
            } else if is_item(rest) || split_key(rest).is_some() {
                // A nested node on the entry's own line: read the rest of the line as if it
                // began a line of its own, indented to where it stands.
                self.lines[self.pos] = Line {
                    indent: indent + offset,
                    text: rest,
                    trimmed: l.trimmed,
                };
                items.push(self.block(indent + offset)?);
            } else {
                self.pos += 1;
                items.push(self.scalar(indent, rest)?);
            }
        }
        Some(Value::Array(items))
    }

    /// A flow scalar starting with `first` (the line it is on is consumed); a plain one may go on
    /// over following lines indented more than `indent`.
    fn scalar(&mut self, indent: usize, first: &'a str) -> Option<Value> {
        match first.as_bytes()[0] {
            b'"' => {
                let (s, after) = double_quoted(first)?;
                trailing_ok(after).then_some(Value::String(s))
            }
            b'\'' => {
                let (s, after) = single_quoted(first)?;
                trailing_ok(after).then_some(Value::String(s))
            }
            _ => {
                let head = plain(first)?;
                // A comment ends a plain scalar: a line that would continue it is an error.
                let cut = head.len() != first.len();
                let mut folded: Option<String> = None;
                let mut blanks = 0;
                let mut at = self.pos;
                while let Some(l) = self.lines.get(at) {
                    if l.text.is_empty() {
                        blanks += 1;
                        at += 1;
                        continue;
                    }
                    if l.indent <= indent || l.text.starts_with('#') {
                        break;
                    }
                    let more = plain(l.text)?;
                    if cut || is_item(l.text) || more.len() != l.text.len() {
                        return None;
                    }
                    let s = folded.get_or_insert_with(|| head.to_string());
                    if blanks == 0 {
                        s.push(' ');
                    }
                    (0..blanks).for_each(|_| s.push('\n'));
                    s.push_str(more);
                    blanks = 0;
                    at += 1;
                    self.pos = at;
                }
                let s = folded.unwrap_or_else(|| head.to_string());
                resolve(&s).map(|v| v.unwrap_or(Value::String(s)))
            }
        }
    }

    /// A literal block (`|` or `|-`) under a node indented by `indent`.
    fn literal(&mut self, indent: usize, header: &str) -> Option<Value> {
        let h = &header[1..];
        // `|+` (keep every trailing line break) is left to serde-saphyr.
        let (chomp, comment) = match h.as_bytes().first() {
            Some(b'-') => (b'-', &h[1..]),
            Some(b'+') => return None,
            _ => (b' ', h),
        };
        if !trailing_ok(comment) {
            return None;
        }
        // The first non-blank line sets the block's indentation.
        let mut at = self.pos;
        let mut width = None;
        while let Some(l) = self.lines.get(at) {
            if !l.text.is_empty() {
                width = Some(l.indent);
                break;
            }
            at += 1;
        }
        let width = match width {
            Some(w) if w > indent => w,
            _ => {
                // Empty content; lines of spaces only might carry content YAML keeps.
                return (self.lines[self.pos..at].iter().all(|l| l.indent <= indent))
                    .then(|| Value::String(String::new()));
            }
        };
        let mut s = String::new();
        let mut at = self.pos;
        while let Some(l) = self.lines.get(at) {
            if l.text.is_empty() {
                if l.indent > width {
                    return None;
                }
                s.push('\n');
            } else if l.indent >= width {
                (width..l.indent).for_each(|_| s.push(' '));
                s.push_str(l.text);
                s.push('\n');
            } else {
                break;
            }
            at += 1;
        }
        // Trailing blank lines are chomped; the cursor leaves them to the structure.
        while at > self.pos && self.lines[at - 1].text.is_empty() {
            at -= 1;
        }
        // Trailing spaces are part of a literal line: leave such blocks to serde-saphyr.
        if self.lines[self.pos..at]
            .iter()
            .any(|l| l.trimmed && !l.text.is_empty())
        {
            return None;
        }
        self.pos = at;
        match chomp {
            b'-' => s.truncate(s.trim_end_matches('\n').len()),
            _ => {
                s.truncate(s.trim_end_matches('\n').len());
                if !s.is_empty() {
                    s.push('\n');
                }
            }
        }
        Some(Value::String(s))
    }
}

/// After a quoted scalar: nothing, or a comment.
fn trailing_ok(after: &str) -> bool {
    let t = after.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < after.len())
}

/// The text of a plain scalar on one line: up to a comment, trimmed; `None` if it starts with an
/// indicator this reader does not handle or holds `: ` (a mapping where a value must be).
fn plain(t: &str) -> Option<&str> {
    let first = *t.as_bytes().first()?;
    if b"-?:,[]{}#&*!|>'\"%@`".contains(&first) {
        return None;
    }
    let end = t.find(" #").unwrap_or(t.len());
    let s = t[..end].trim_end_matches(' ');
    if s.contains(": ") || s.ends_with(':') || s.contains('\t') {
        return None;
    }
    Some(s)
}

/// A plain scalar's type as serde-saphyr resolves it: `Some(Some(v))` for null, booleans and
/// decimal integers, `Some(None)` for a string, `None` for spellings left to serde-saphyr.
fn resolve(s: &str) -> Option<Option<Value>> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Some(Value::Null)),
        "true" => return Some(Some(Value::Bool(true))),
        "false" => return Some(Some(Value::Bool(false))),
        _ => {}
    }
    let words = ["y", "yes", "true", "on", "n", "no", "false", "off"];
    if words.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        return None;
    }
    match s.as_bytes()[0] {
        // `.inf`, `.nan` and other dotted spellings are floats to serde-saphyr.
        _ if s.trim_start_matches(['+', '-']).starts_with('.') => None,
        b'0'..=b'9' | b'+' | b'-' => {
            let b = s.as_bytes();
            if b.iter().all(u8::is_ascii_digit) && (s == "0" || !s.starts_with('0')) {
                s.parse::<u64>().ok().map(|n| Some(Value::from(n)))
            } else if is_date(b) || !number_like(b) {
                // Every rule's `date:`, ids, and text no number spelling can hold.
                Some(None)
            } else {
                None
            }
        }
        _ => Some(None),
    }
}

/// Whether `b` might be one of the integer or float spellings serde-saphyr resolves (hex, octal,
/// binary, underscores, exponents, sexagesimal …): if not, it is certainly a string.
fn number_like(b: &[u8]) -> bool {
    let sign_ok = b
        .iter()
        .enumerate()
        .all(|(i, c)| !matches!(c, b'+' | b'-') || i == 0 || matches!(b[i - 1], b'e' | b'E'));
    sign_ok
        && b.iter().filter(|&&c| c == b'.').count() <= 1
        && b.iter()
            .all(|c| b"0123456789abcdefABCDEFxXoO+-._:".contains(c))
}

/// `YYYY-MM-DD`: read as text (serde-saphyr resolves no timestamps without a tag).
fn is_date(b: &[u8]) -> bool {
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// A mapping key and what follows its `: ` (trimmed), if `t` is a `key: …` line.
fn split_key(t: &str) -> Option<(String, &str)> {
    let (key, after) = match t.as_bytes()[0] {
        b'"' => {
            let (k, after) = double_quoted(t)?;
            (k, after.strip_prefix(':')?)
        }
        b'\'' => {
            let (k, after) = single_quoted(t)?;
            (k, after.strip_prefix(':')?)
        }
        _ => {
            let bytes = t.as_bytes();
            let colon = (0..bytes.len()).find(|&i| {
                bytes[i] == b':' && bytes.get(i + 1).is_none_or(|&b| b == b' ')
                    || bytes[i] == b'#' && i > 0 && bytes[i - 1] == b' '
            })?;
            if bytes[colon] != b':' {
                return None;
            }
            let k = t[..colon].trim_end_matches(' ');
            // Keys that would not read as plain strings go to serde-saphyr.
            if k.is_empty() || k == "<<" || plain(k)? != k || resolve(k)?.is_some() {
                return None;
            }
            (k.to_string(), &t[colon + 1..])
        }
    };
    // serde-saphyr's scanner gives up on a key longer than 1,024 characters.
    if t.len() - after.len() > 1000 || !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((key, after.trim_start_matches(' ')))
}

/// A single-quoted scalar closed on this line, and the text after it.
fn single_quoted(t: &str) -> Option<(String, &str)> {
    let body = &t[1..];
    let mut s = String::new();
    let mut rest = body;
    loop {
        let q = rest.find('\'')?;
        s.push_str(&rest[..q]);
        rest = &rest[q + 1..];
        match rest.strip_prefix('\'') {
            Some(r) => {
                s.push('\'');
                rest = r;
            }
            None => return Some((s, rest)),
        }
    }
}

/// A double-quoted scalar closed on this line (common escapes only), and the text after it.
fn double_quoted(t: &str) -> Option<(String, &str)> {
    let mut s = String::new();
    let mut chars = t[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((s, &t[1 + i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                let hex = |n: usize, chars: &mut std::str::CharIndices<'_>| -> Option<char> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.1.to_digit(16)?;
                    }
                    char::from_u32(v)
                };
                s.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'x' => hex(2, &mut chars)?,
                    'u' => hex(4, &mut chars)?,
                    'U' => hex(8, &mut chars)?,
                    _ => return None,
                });
            }
            _ => s.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::parse;
    use proptest::prelude::*;
    use serde_json::Value;

    fn saphyr(text: &str) -> Option<Value> {
        serde_saphyr::from_str::<Value>(text).ok()
    }

    /// The fast reader either declines or reads exactly what serde-saphyr reads, member order
    /// included (compared as JSON text: maps compare equal regardless of order).
    fn agrees(text: &str) -> Result<bool, String> {
        let Some(fast) = parse(text) else {
            return Ok(false);
        };
        let slow =
            saphyr(text).ok_or_else(|| format!("accepted what serde-saphyr refuses:\n{text}"))?;
        let (f, s) = (fast.to_string(), slow.to_string());
        if f != s {
            return Err(format!("{text}\nfast: {f}\nslow: {s}"));
        }
        Ok(true)
    }

    #[test]
    fn reads_the_shapes_of_a_sigma_rule() {
        let text = r#"title: Suspicious thing # a comment
id: 1234-abcd
status: test
description: |
    Detects a thing.

    Second paragraph: with colon
references:
    - https://example.org/a#b
author: 'O''Brien'
date: 2023-01-01
tags:
- attack.t1059
- "attack.\u0074"
logsource:
    product: windows
    category: process_creation
detection:
    selection:
        - Image|endswith: '\cmd.exe'
          CommandLine|contains|all:
              - ' /c '
              - 'echo'
        - EventID: 4688
    filter:
        Enabled: true
        Empty:
        Nothing: ~
    condition: selection and not filter
falsepositives:
    - Unknown
      and continued

      after a blank
level: high
"#;
        assert_eq!(agrees(text), Ok(true));
        let v = parse(text).unwrap();
        assert_eq!(
            v["description"],
            "Detects a thing.\n\nSecond paragraph: with colon\n"
        );
        assert_eq!(
            v["falsepositives"][0],
            "Unknown and continued\nafter a blank"
        );
        assert_eq!(v["detection"]["selection"][1]["EventID"], 4688);
        assert_eq!(v["author"], "O'Brien");
    }

    #[test]
    fn declines_what_it_does_not_read() {
        for text in [
            "a: [1, 2]\n",
            "a: {b: c}\n",
            "a: &x b\nc: *x\n",
            "a: !!str 12\n",
            "a: >\n  folded\n",
            "a: 0x1F\n",
            "a: 1.5\n",
            "a: yes\n",
            "a: 'unterminated\n  quote'\n",
            "a: b\na: c\n",
            "a:\n\t- tab\n",
            "a: b: c\n",
            "  indented: root\n",
            "a: \"\\q\"\n",
            "a: |2\n   x\n",
            "4688: x\n",
            "a: .inf\n",
            "a: -.NaN\n",
            "a: foo # c\n  bar\n",
            "- foo # c\n  bar\n",
            "a: x\u{1}y\n",
            "a: \u{feff}x\n",
            "a: x\u{7f}\n",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn declines_deep_nesting_and_long_keys() {
        // Deep enough to overflow the stack if it recursed level by level.
        assert_eq!(parse(&format!("{}x\n", "- ".repeat(200_000))), None);
        assert_eq!(parse(&format!("{}x\n", "- ".repeat(65))), None);
        assert_eq!(parse(&format!("{}: v\n", "k".repeat(1100))), None);
        assert!(parse(&format!("{}x\n", "- ".repeat(10))).is_some());
    }

    #[test]
    fn agrees_on_every_rule_file_of_the_dataset() {
        let Some(data) = cf_testkit::datasets() else {
            return;
        };
        let root = data.join("detection/rules");
        let mut files = Vec::new();
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                    files.push(p);
                }
            }
        }
        let (mut fast, mut docs) = (0, 0);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for d in crate::rule::split_documents(&text) {
                docs += 1;
                match agrees(d) {
                    Ok(true) => fast += 1,
                    Ok(false) => {}
                    Err(e) => panic!("{}: {e}", f.display()),
                }
            }
        }
        // The point of the reader is that nearly every rule takes it.
        eprintln!("{fast} of {docs} documents read by the fast path");
        assert!(docs > 2500, "only {docs} documents");
        assert!(
            fast * 100 >= docs * 97,
            "only {fast} of {docs} documents read by the fast path"
        );
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[a-zA-Z_\\\\][a-zA-Z0-9_\\\\/.*() -]{0,12}",
            2 => "[a-zA-Z_\\\\/.*:# -]{0,12}",
            2 => "[0-9]{1,21}",
            1 => "[-+.0-9eExXoO_]{1,6}",
            2 => "[0-9][0-9a-fA-FxXoO.:_+-]{0,9}",
            1 => prop::sample::select(vec!["~", "null", "True", "yes", "no", "false", "true", "NULL", "off"])
                .prop_map(String::from),
            2 => "'[a-z' :#]{0,8}'",
            2 => "\"[a-z\\\\\"nt :#]{0,8}\"",
            1 => "[a-z]{1,5} #[a-z ]{0,5}",
        ]
    }

    fn map(depth: u32) -> BoxedStrategy<Vec<String>> {
        let key = "[a-zA-Z_][a-zA-Z_|]{1,8}";
        prop::collection::vec((key, node(depth), 1usize..4), 1..4)
            .prop_map(|es| {
                let mut out = Vec::new();
                for (k, v, ind) in es {
                    if v.len() == 1 && !v[0].starts_with("- ") && !v[0].contains(": ") {
                        out.push(format!("{k}: {}", v[0]));
                    } else {
                        out.push(format!("{k}:"));
                        // A sequence may also sit at its key's own indentation.
                        let ind = if v[0].starts_with("- ") { ind - 1 } else { ind };
                        out.extend(v.iter().map(|l| format!("{}{l}", " ".repeat(ind))));
                    }
                }
                out
            })
            .boxed()
    }

    /// The lines of a node, indented from column 0 (a scalar is a single line).
    fn node(depth: u32) -> BoxedStrategy<Vec<String>> {
        let leaf = scalar().prop_map(|s| vec![s]).boxed();
        if depth == 0 {
            return leaf;
        }
        let seq = prop::collection::vec(node(depth - 1), 1..4).prop_map(|es| {
            let mut out = Vec::new();
            for v in es {
                let mut it = v.iter();
                if let Some(f) = it.next() {
                    out.push(format!("- {f}"));
                }
                out.extend(it.map(|l| format!("  {l}")));
            }
            out
        });
        prop_oneof![2 => leaf, 1 => map(depth - 1), 1 => seq].boxed()
    }

    // About a quarter of the generated documents take the fast path (the rest hold shapes it
    // declines); every one of those must read as serde-saphyr reads it.
    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn agrees_with_serde_saphyr_on_generated_documents(
            lines in map(3),
            blank in prop::collection::vec(any::<bool>(), 16),
            literal in "[a-z :#]{0,9}[a-z]",
            chomp in prop::sample::select(vec!["", "-", "+"]),
        ) {
            let mut text = String::new();
            for (i, l) in lines.iter().enumerate() {
                if blank[i % blank.len()] && i % 3 == 0 {
                    text.push_str("\n# note\n");
                }
                text.push_str(l);
                text.push('\n');
            }
            text.push_str(&format!("zz: |{chomp}\n  {literal}\n\n  tail\n\n"));
            if let Err(e) = agrees(&text) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
