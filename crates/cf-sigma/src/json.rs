//! A fast JSON reader for the event lines a hunt reads (SA-2): strings are scanned sixteen bytes
//! at a time and borrowed from the line; [`crate::FlatEvent::from_line`] walks objects with it
//! straight into member lists, and other values go through its serde `Deserializer`.
//! serde_json stays the reference: anything this reader does not take (a surrogate escape, a
//! control character, a syntax error, nesting deeper than [`MAX_DEPTH`], a type the target
//! refuses) is declined and the whole line read again by serde_json, so results and error
//! messages are serde_json's; numbers other than plain unsigned integers are read by serde_json
//! itself. Tests, proptests and the `event_line` fuzz oracle hold the two alike.

use std::borrow::Cow;

use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Deeper documents are declined (serde_json accepts 127 levels).
const MAX_DEPTH: usize = 64;

/// The fast reader alone, through serde: `None` when it declines `s`.
#[cfg(test)]
fn fast<'de, T: serde::Deserialize<'de>>(s: &'de str) -> Option<T> {
    let mut r = Reader::new(s);
    let v = T::deserialize(&mut r).ok()?;
    r.at_end().then_some(v)
}

/// Why the fast reader stopped; never shown (serde_json reads the document again).
#[derive(Debug)]
pub(crate) struct Decline;

impl std::fmt::Display for Decline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("declined by the fast JSON reader")
    }
}

impl std::error::Error for Decline {}

impl de::Error for Decline {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Decline
    }
}

/// A document being read: serde's `Deserializer`, and the object walk of
/// [`crate::FlatEvent::from_line`].
pub(crate) struct Reader<'de> {
    s: &'de str,
    b: &'de [u8],
    i: usize,
    depth: usize,
}

/// The offset of the first quote, backslash or control byte of `b` (a string's end, an escape or
/// an error), sixteen bytes at a time: event strings are short, and `memchr` plus a separate
/// control-byte check cost more than serde_json's own scan.
fn stop(b: &[u8]) -> Option<usize> {
    // SAFETY: the target has SSE2 (the cfg says so; every x86-64 does).
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let i = unsafe { sse2_blocks(b) };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    let i = Err(0);
    match i {
        Ok(n) => Some(n),
        Err(i) => b[i..]
            .iter()
            .position(|c| matches!(c, b'"' | b'\\' | 0..0x20))
            .map(|n| i + n),
    }
}

/// [`stop`] over whole 16-byte blocks (SSE2 is part of every x86-64): `Err` with the offset
/// of the tail left to read byte by byte.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn sse2_blocks(b: &[u8]) -> Result<usize, usize> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 16) {
        // SAFETY: `chunk` is 16 readable bytes, and the load is an unaligned one.
        let x = unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) };
        let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
        let slash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
        // min(x, 0x1f) == x exactly when x <= 0x1f (unsigned).
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
        let m = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, slash), control));
        if m != 0 {
            return Ok(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    Err(i)
}

impl<'de> Reader<'de> {
    pub(crate) fn new(s: &'de str) -> Self {
        Reader {
            s,
            b: s.as_bytes(),
            i: 0,
            depth: 0,
        }
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// Enter an object whose `{` is next: its members are read with [`Reader::key`] (and a
    /// value after each), until `key` gives `None`.
    pub(crate) fn object(&mut self) -> Result<Object, Decline> {
        self.open(b'{')
    }

    /// Enter the object or array whose opening bracket `open` is next.
    fn open(&mut self, open: u8) -> Result<Object, Decline> {
        if self.peek()? != open {
            return Err(Decline);
        }
        self.depth += 1;
        self.i += 1;
        if self.depth > MAX_DEPTH {
            return Err(Decline);
        }
        Ok(Object { first: true })
    }

    /// Whether another item of the object or array `o`, ending with `close`, follows (the
    /// reader past its opening bracket or its last item); past the end when not.
    fn item(&mut self, o: &mut Object, close: u8) -> Result<bool, Decline> {
        let c = self.peek()?;
        if c == close {
            self.i += 1;
            self.depth -= 1;
            return Ok(false);
        }
        if !std::mem::take(&mut o.first) {
            if c != b',' {
                return Err(Decline);
            }
            self.i += 1;
            // No trailing comma.
            if self.peek()? == close {
                return Err(Decline);
            }
        }
        Ok(true)
    }

    /// The next member's name (the reader then at its value), or `None` past the object's end.
    pub(crate) fn key(&mut self, o: &mut Object) -> Result<Option<Cow<'de, str>>, Decline> {
        // Compact JSON first: the name's quote next, after a comma unless it is the first.
        let quote = match self.b.get(self.i..self.i + 2) {
            Some([b'"', _]) if o.first => Some(self.i),
            Some([b',', b'"']) if !o.first => Some(self.i + 1),
            _ => None,
        };
        match quote {
            Some(at) => {
                o.first = false;
                self.i = at;
            }
            None => {
                if !self.item(o, b'}')? {
                    return Ok(None);
                }
                if self.peek()? != b'"' {
                    return Err(Decline);
                }
            }
        }
        let k = self.string()?;
        if self.b.get(self.i) != Some(&b':') && self.peek()? != b':' {
            return Err(Decline);
        }
        self.i += 1;
        Ok(Some(k))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte that is not whitespace.
    pub(crate) fn peek(&mut self) -> Result<u8, Decline> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Decline)
    }

    /// The unescaped run from `self.i` to the next quote or backslash, which it stops at.
    #[inline]
    fn run(&mut self) -> Result<&'de str, Decline> {
        let start = self.i;
        let n = stop(&self.b[start..]).ok_or(Decline)?;
        if self.b[start + n] < 0x20 {
            return Err(Decline);
        }
        self.i = start + n;
        // Both ends are next to ASCII bytes, so on character boundaries.
        Ok(&self.s[start..start + n])
    }

    /// A string, the reader at its opening quote.
    #[inline]
    pub(crate) fn string(&mut self) -> Result<Cow<'de, str>, Decline> {
        self.i += 1;
        let first = self.run()?;
        if self.b[self.i] == b'"' {
            self.i += 1;
            return Ok(Cow::Borrowed(first));
        }
        self.escaped(first).map(Cow::Owned)
    }

    /// The rest of a string from its first backslash, `first` the text before it (apart, so
    /// that the common string without escapes stays a small inlined function).
    #[inline(never)]
    fn escaped(&mut self, first: &str) -> Result<String, Decline> {
        let mut out = String::with_capacity(first.len() + 16);
        out.push_str(first);
        loop {
            // At a backslash.
            let e = *self.b.get(self.i + 1).ok_or(Decline)?;
            self.i += 2;
            out.push(match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\x08',
                b'f' => '\x0c',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hex = self.b.get(self.i..self.i + 4).ok_or(Decline)?;
                    let mut u = 0u32;
                    for &h in hex {
                        u = u * 16 + char::from(h).to_digit(16).ok_or(Decline)?;
                    }
                    self.i += 4;
                    // Surrogates (pairs and lone ones) are left to serde_json.
                    char::from_u32(u).ok_or(Decline)?
                }
                _ => return Err(Decline),
            });
            out.push_str(self.run()?);
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok(out);
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Decline> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Decline)
        }
    }

    /// A number: a plain unsigned integer read here, anything else by serde_json itself (its
    /// float parsing and its choice between integer and float are the reference's).
    fn number<V: Visitor<'de>>(&mut self, v: V) -> Result<V::Value, Decline> {
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
        }
        let t = &self.b[start..self.i];
        if t.len() <= 19 && t.iter().all(u8::is_ascii_digit) && (t.len() == 1 || t[0] != b'0') {
            return v.visit_u64(t.iter().fold(0, |a, &d| a * 10 + u64::from(d - b'0')));
        }
        let mut d = serde_json::Deserializer::from_str(&self.s[start..self.i]);
        let out = serde::Deserializer::deserialize_any(&mut d, v).map_err(|_| Decline)?;
        d.end().map_err(|_| Decline)?;
        Ok(out)
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = Decline;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Decline> {
        match self.peek()? {
            b'"' => match self.string()? {
                Cow::Borrowed(s) => v.visit_borrowed_str(s),
                Cow::Owned(s) => v.visit_string(s),
            },
            b'{' => {
                let o = self.object()?;
                let mut m = Items {
                    r: self,
                    o,
                    done: false,
                };
                let out = v.visit_map(&mut m)?;
                // A visitor may stop before the end (serde_json's `Value` does on a raw-value
                // key, with the `raw_value` feature the binary has): the rest is serde_json's.
                m.done.then_some(out).ok_or(Decline)
            }
            b'[' => {
                let o = self.open(b'[')?;
                let mut a = Items {
                    r: self,
                    o,
                    done: false,
                };
                let out = v.visit_seq(&mut a)?;
                a.done.then_some(out).ok_or(Decline)
            }
            b't' => self.literal(b"true").and_then(|()| v.visit_bool(true)),
            b'f' => self.literal(b"false").and_then(|()| v.visit_bool(false)),
            b'n' => self.literal(b"null").and_then(|()| v.visit_unit()),
            b'-' | b'0'..=b'9' => self.number(v),
            _ => Err(Decline),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// An object (or, inside the reader, an array) being read item by item.
pub(crate) struct Object {
    first: bool,
}

/// The items of an object or array being read through serde.
struct Items<'a, 'de> {
    r: &'a mut Reader<'de>,
    o: Object,
    /// Whether the closing bracket was read.
    done: bool,
}

impl<'de> MapAccess<'de> for &mut Items<'_, 'de> {
    type Error = Decline;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        k: K,
    ) -> Result<Option<K::Value>, Decline> {
        if self.done {
            return Ok(None);
        }
        let name = match self.r.key(&mut self.o)? {
            None => {
                self.done = true;
                return Ok(None);
            }
            Some(name) => name,
        };
        match name {
            Cow::Borrowed(s) => k.deserialize(BorrowedStrDeserializer::new(s)),
            Cow::Owned(s) => k.deserialize(StringDeserializer::new(s)),
        }
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, v: V) -> Result<V::Value, Decline> {
        v.deserialize(&mut *self.r)
    }
}

impl<'de> SeqAccess<'de> for &mut Items<'_, 'de> {
    type Error = Decline;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        t: T,
    ) -> Result<Option<T::Value>, Decline> {
        if self.done || !self.r.item(&mut self.o, b']')? {
            self.done = true;
            return Ok(None);
        }
        t.deserialize(&mut *self.r).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The fast reader and serde_json agree on `s`: same value, or both refuse it.
    fn agree(s: &str) {
        let want = serde_json::from_str::<Value>(s).ok();
        if let Some(got) = fast::<Value>(s) {
            assert_eq!(Some(&got), want.as_ref(), "fast reader on {s:?}");
            assert_eq!(
                got.to_string(),
                want.unwrap().to_string(),
                "member order on {s:?}"
            );
        }
        // Read as a flat event: the same event, or the same error.
        let flat = crate::FlatEvent::from_line(s).map_err(|e| e.to_string());
        let slow = serde_json::from_str::<crate::FlatEvent>(s).map_err(|e| e.to_string());
        assert_eq!(flat, slow, "flat event from {s:?}");
    }

    #[test]
    fn takes_what_events_hold() {
        for s in [
            r#"{"a":"b","c":{"d":[1,2,"x"],"e":null,"f":true,"g":false},"h":-3,"i":1.5}"#,
            r#" { "Event" : { "System" : { "EventID" : 4688 } } } "#,
            r#"{"p":"C:\\Windows\\System32\\cmd.exe","q":"\"quoted\"\t\u00e9\u4e2d"}"#,
            r#"{"k":"","":"v","n":0,"m":18446744073709551615,"o":9999999999999999999}"#,
            r#"{"dup":1,"dup":2}"#,
            r#"{"z":-0,"e":1E5,"f":-1.5e-3,"big":123456789012345678901234}"#,
            "[]",
            "{}",
            r#""s""#,
            "12",
        ] {
            assert!(fast::<Value>(s).is_some(), "declined {s}");
            agree(s);
        }
    }

    #[test]
    fn declines_what_serde_json_refuses_or_reads_otherwise() {
        for s in [
            r#"{"a":1,}"#,
            "[1,]",
            r#"{"a" 1}"#,
            r#"{"a":01}"#,
            r#"{"a":1}x"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\ud83d"}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a":nul}"#,
            "[,1]",
            "{,}",
            "[1,,2]",
            r#"{"a":1 "b":2}"#,
            r#"{"a":1]"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1e999}"#,
            r#"{"x":[{"$serde_json::private::RawValue":"1"}]}"#,
            r#"{"a":-}"#,
            r#"{"a":1e}"#,
            r#"{"a":"unterminated}"#,
            "",
            "   ",
            "{",
            "[[[",
            &"[".repeat(100),
            &format!("{}{}", "[".repeat(200), "]".repeat(200)),
        ] {
            agree(s);
        }
        assert!(fast::<Value>(r#"{"a":1,}"#).is_none());
        assert!(fast::<Value>(&format!("{}{}", "[".repeat(65), "]".repeat(65))).is_none());
        assert!(fast::<Value>(&format!("{}{}", "[".repeat(64), "]".repeat(64))).is_some());
    }

    /// Every line of the detection dataset takes the fast path and reads as serde_json reads
    /// it, as a [`crate::FlatEvent`] and as a `Value`.
    #[test]
    fn the_dataset_lines_take_the_fast_path() {
        let Some(data) = cf_testkit::datasets() else {
            return;
        };
        let raw = cf_testkit::read_zstd(&data.join("detection/events.jsonl.zst"));
        let text = String::from_utf8(raw).unwrap();
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let slow = serde_json::from_str::<crate::FlatEvent>(line).unwrap();
            let got = crate::FlatEvent::fast(line);
            assert_eq!(got.as_ref(), Some(&slow), "line {}", i + 1);
            assert_eq!(
                fast::<Value>(line),
                serde_json::from_str(line).ok(),
                "line {}",
                i + 1
            );
            n += 1;
        }
        assert!(n > 8_000, "{n} lines");
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just(" ".to_string()),
            Just("\n".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("fals".to_string()),
            Just("\\".to_string()),
            Just("\\u00".to_string()),
            Just("\\ud800".to_string()),
            Just("\\udc00".to_string()),
            Just("\"".to_string()),
            "-?[0-9]{1,22}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,3})?",
            "\"[a-zA-Z0-9 \\\\/\"é中\u{1}\t]{0,8}\"",
            "\"(\\\\[\"\\\\/bfnrtu]|\\\\u[0-9a-fA-F]{4}|[a-z\u{7f}\u{10000}]){0,6}\"",
        ]
    }

    /// Generated documents shaped like events: objects whose names are those the flat event
    /// places (`Event`, `System`, `EventData`), repeated and of every kind, or other names.
    fn event_document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("[1,\"a\"]".to_string()),
            "-?[0-9]{1,3}(\\.[0-9])?",
            "\"(\\\\[\"\\\\nu]|[a-z\u{e9}]){0,6}\"",
        ];
        let name = prop_oneof![
            Just("Event"),
            Just("System"),
            Just("EventData"),
            Just("UserData"),
            Just("x"),
            Just("Ev\\u0065nt"),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop::collection::vec((name.clone(), inner), 0..6).prop_map(|v| {
                let m: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\":{x}")).collect();
                format!("{{{}}}", m.join(","))
            })
        })
    }

    /// Generated near-JSON: mostly valid documents, with every kind of error between.
    fn document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            "-?[0-9]{1,21}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?",
            "\"(\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4}|[a-zA-Z:/ é中\u{1f600}]){0,12}\"",
        ];
        let value = leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-cA-C]{0,3}", inner), 0..8).prop_map(|v| {
                    let m: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\" : {x}")).collect();
                    format!("{{ {} }}", m.join(", "))
                }),
            ]
        });
        (value, prop::collection::vec((0usize..400, piece()), 0..3)).prop_map(|(mut s, edits)| {
            for (at, p) in edits {
                let mut at = at.min(s.len());
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, &p);
            }
            s
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn reads_as_serde_json_reads(s in document()) {
            agree(&s);
        }

        #[test]
        fn stop_finds_the_first_quote_backslash_or_control_byte(
            b in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1f), Just(0x20), Just(0x7f), Just(0x80), Just(0xff), any::<u8>()], 0..80),
            skip in 0usize..80,
        ) {
            let b = &b[skip.min(b.len())..];
            let want = b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(stop(b), want);
        }

        #[test]
        fn flat_events_read_as_serde_reads_them(s in event_document()) {
            let want = serde_json::from_str::<crate::FlatEvent>(&s).ok();
            if let Some(got) = crate::FlatEvent::fast(&s) {
                prop_assert_eq!(Some(&got), want.as_ref());
                prop_assert_eq!(got.to_value().to_string(), want.unwrap().to_value().to_string());
            }
            prop_assert_eq!(crate::FlatEvent::from_line(&s).ok(), serde_json::from_str::<crate::FlatEvent>(&s).ok());
        }

        #[test]
        fn pieces_glued_read_as_serde_json_reads(p in prop::collection::vec(piece(), 0..12)) {
            agree(&p.concat());
        }
    }
}
