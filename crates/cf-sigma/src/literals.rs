//! Which of many literals occur in a text: the prefilter's search of an event field for the
//! required literals of its rules (SA-2), one bitset probe per byte instead of an automaton walk.
//!
//! Each literal is keyed by one of its grams (four bytes, or the whole literal when shorter),
//! chosen to be rare among the set's literals. A text is walked position by position: the gram
//! there is hashed into a bitset, and only where a bit is set are the literals of that gram
//! compared. Every occurrence of every literal is reported, as an overlapping Aho-Corasick search
//! reports it (a proptest holds the two alike); building is a hash per literal rather than a
//! trie with failure links, which for the 5,609 hashes of the Sysmon `Hashes` rules cost more
//! than searching every event of a hunt.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A hasher for the `u32` grams: one multiplication (SipHash cost more than the lookup it serves).
#[derive(Default, Clone, Copy)]
struct GramHash(u64);

impl Hasher for GramHash {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl BuildHasher for GramHash {
    type Hasher = GramHash;
    fn build_hasher(&self) -> GramHash {
        GramHash(0)
    }
}

/// The multiplier of the grams' bitset hash (Knuth's, 2^32 / φ).
const GOLDEN: u32 = 0x9E37_79B1;

/// The literals keyed by grams of one length.
#[derive(Debug)]
struct Table {
    /// The key length in bytes: 4, or 1 to 3 for literals that short.
    k: usize,
    /// `32 - log2(bits)`: a gram's bit is the top bits of its product with a constant.
    shift: u32,
    bits: Box<[u64]>,
    /// Each key gram's run in `entries`.
    index: HashMap<u32, (u32, u32), GramHash>,
    /// (literal, offset of its key gram), grouped by key gram.
    entries: Vec<(u32, u32)>,
}

/// A gram's bit in a table's bitset: the top bits of its product with [`GOLDEN`].
#[inline(always)]
fn slot(g: u32, shift: u32) -> usize {
    (g.wrapping_mul(GOLDEN) >> shift) as usize
}

/// Whether the bit of gram `g` is set.
#[inline(always)]
fn may_hold(bits: &[u64], shift: u32, g: u32) -> bool {
    let h = slot(g, shift);
    bits[h >> 6] & (1 << (h & 63)) != 0
}

/// A set of literals, searched for all at once.
#[derive(Debug)]
pub(crate) struct LiteralSet {
    /// Every literal's bytes, one after another.
    bytes: Vec<u8>,
    /// Each literal's range in `bytes`.
    spans: Vec<(u32, u32)>,
    tables: Vec<Table>,
    /// Empty literals: they occur in every text.
    empty: Vec<usize>,
}

/// The gram of the first `k` (at most 4) bytes of `b`, little-endian.
fn gram(b: &[u8], k: usize) -> u32 {
    match b.first_chunk::<4>() {
        Some(w) if k == 4 => u32::from_le_bytes(*w),
        _ => b
            .iter()
            .take(k)
            .enumerate()
            .fold(0, |g, (i, &x)| g | u32::from(x) << (8 * i)),
    }
}

/// How often a byte is likely in event text (2: very, 1: often, 0: rarely), to prefer keys of
/// rarer bytes among grams equally rare in the set.
fn commonness(b: u8) -> u32 {
    match b {
        b' ' | b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'r' | b'l' | b'c' | b'-'
        | b'.' | b'\\' | b'/' | b':' | b'0' => 2,
        b'a'..=b'z' | b'1'..=b'9' | b'"' | b'\'' | b'(' | b')' | b'$' | b'=' | b'_' => 1,
        _ => 0,
    }
}

impl LiteralSet {
    /// Index `lits`; literal `i` is reported as `i`.
    pub(crate) fn new<S: AsRef<[u8]>>(lits: &[S]) -> Self {
        let mut bytes = Vec::with_capacity(lits.iter().map(|l| l.as_ref().len()).sum());
        let mut spans = Vec::with_capacity(lits.len());
        for l in lits {
            let start = bytes.len();
            bytes.extend_from_slice(l.as_ref());
            spans.push((start as u32, bytes.len() as u32));
        }
        let lit = |i: usize| {
            let (s, e) = spans[i];
            &bytes[s as usize..e as usize]
        };
        // How many literals hold each 4-byte gram: a key shared by few literals is compared
        // rarely, whatever the text.
        let mut shared: HashMap<u32, u32, GramHash> = HashMap::default();
        for i in 0..spans.len() {
            for w in lit(i).windows(4) {
                *shared.entry(gram(w, 4)).or_default() += 1;
            }
        }
        let mut keyed: [Vec<(u32, u32, u32)>; 5] = Default::default();
        let mut empty = Vec::new();
        for i in 0..spans.len() {
            let l = lit(i);
            if l.is_empty() {
                empty.push(i);
                continue;
            }
            let k = l.len().min(4);
            let off = (0..=l.len() - k)
                .min_by_key(|&o| {
                    let w = &l[o..o + k];
                    let set = shared.get(&gram(w, k)).copied().unwrap_or(0);
                    (set, w.iter().map(|&b| commonness(b)).sum::<u32>())
                })
                .unwrap_or(0);
            keyed[k].push((gram(&l[off..], k), i as u32, off as u32));
        }
        let tables = keyed
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, mut v)| {
                // About one bit in 32 set: a text position is compared rarely.
                let log = (v.len() * 32)
                    .next_power_of_two()
                    .trailing_zeros()
                    .clamp(9, 20);
                v.sort_unstable();
                let mut t = Table {
                    k,
                    shift: 32 - log,
                    bits: vec![0; 1 << (log - 6)].into_boxed_slice(),
                    index: HashMap::default(),
                    entries: Vec::with_capacity(v.len()),
                };
                for (g, i, off) in v {
                    let h = slot(g, t.shift);
                    t.bits[h >> 6] |= 1 << (h & 63);
                    let n = t.entries.len() as u32;
                    t.index.entry(g).or_insert((n, 0)).1 += 1;
                    t.entries.push((i, off));
                }
                t
            })
            .collect();
        LiteralSet {
            bytes,
            spans,
            tables,
            empty,
        }
    }

    /// Call `f` with the index of each literal at each place it occurs in `text`.
    pub(crate) fn each_match(&self, text: &[u8], mut f: impl FnMut(usize)) {
        for &i in &self.empty {
            f(i);
        }
        for t in &self.tables {
            let n = text.len();
            if n < t.k {
                continue;
            }
            let mask = if t.k == 4 {
                u32::MAX
            } else {
                (1 << (8 * t.k)) - 1
            };
            // Kept in locals so that the loop holds them in registers.
            let (bits, shift) = (&t.bits[..], t.shift);
            let mut p = 0;
            while let Some(w) = text.get(p..).and_then(<[u8]>::first_chunk::<4>) {
                let g = u32::from_le_bytes(*w) & mask;
                if may_hold(bits, shift, g) {
                    self.compare(t, text, p, g, &mut f);
                }
                p += 1;
            }
            // The last positions, where fewer than four bytes are left (keys shorter than four).
            while p + t.k <= n {
                let g = gram(&text[p..], t.k);
                if may_hold(bits, shift, g) {
                    self.compare(t, text, p, g, &mut f);
                }
                p += 1;
            }
        }
    }

    /// Compare the literals keyed by `g` with the text around position `p`.
    #[inline(never)]
    fn compare(&self, t: &Table, text: &[u8], p: usize, g: u32, f: &mut impl FnMut(usize)) {
        let Some(&(first, n)) = t.index.get(&g) else {
            return;
        };
        let run = t.entries.get(first as usize..(first + n) as usize);
        for &(i, off) in run.into_iter().flatten() {
            let (s, e) = self.spans[i as usize];
            let lit = &self.bytes[s as usize..e as usize];
            let Some(start) = p.checked_sub(off as usize) else {
                continue;
            };
            if text.get(start..start + lit.len()) == Some(lit) {
                f(i as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every occurrence of every literal, found by comparing at every position.
    fn naive(lits: &[Vec<u8>], text: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, l) in lits.iter().enumerate() {
            for p in 0..=text.len() {
                if text[p..].starts_with(l) && (!l.is_empty() || p == 0) {
                    out.push(i);
                }
            }
        }
        out.sort_unstable();
        out
    }

    fn found(set: &LiteralSet, text: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        set.each_match(text, |i| out.push(i));
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_each_occurrence_of_long_and_short_literals() {
        let lits = ["invoke-mimikatz", "mimi", "~1\\", "0x9", "x", "katz", "z"];
        let set = LiteralSet::new(&lits);
        let text = b"iex (invoke-mimikatz); c:\\progra~1\\ 0x9 mimikatz";
        // invoke-mimikatz, mimi ×2, ~1\, 0x9, x ×2 (iex, 0x9), katz ×2, z ×2.
        assert_eq!(found(&set, text), vec![0, 1, 1, 2, 3, 4, 4, 5, 5, 6, 6]);
        assert_eq!(found(&set, b""), Vec::<usize>::new());
        assert_eq!(found(&set, b"z"), vec![6]);
        assert_eq!(found(&set, b"mim"), Vec::<usize>::new());
    }

    #[test]
    fn an_empty_literal_is_in_every_text() {
        let set = LiteralSet::new(&["", "ab"]);
        assert_eq!(found(&set, b""), vec![0]);
        assert_eq!(found(&set, b"xaby"), vec![0, 1]);
    }

    #[test]
    fn literals_sharing_a_key_are_all_compared() {
        // Hashes of one prefix: every key candidate is shared, so one gram keys many literals.
        let lits: Vec<String> = (0..300).map(|i| format!("sha256={i:04}")).collect();
        let set = LiteralSet::new(&lits);
        assert_eq!(found(&set, b"md5=1,sha256=0299,x"), vec![299]);
        assert_eq!(found(&set, b"sha256=0000sha256=0001"), vec![0, 1]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The set finds what a comparison at every position finds, and what an overlapping
        /// Aho-Corasick search finds (the automaton it replaced), on a small alphabet so that
        /// literals overlap, share grams and repeat.
        #[test]
        fn agrees_with_a_naive_search_and_aho_corasick(
            lits in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(0xC3u8), Just(0xA9u8)], 0..9), 1..40),
            text in proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(0xC3u8), Just(0xA9u8)], 0..80),
        ) {
            let set = LiteralSet::new(&lits);
            let want = naive(&lits, &text);
            prop_assert_eq!(found(&set, &text), want.clone());
            let ac = aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
                .build(&lits)
                .expect("small automaton");
            let mut by_ac: Vec<usize> = ac
                .find_overlapping_iter(&text[..])
                .map(|m| m.pattern().as_usize())
                .collect();
            // The automaton reports an empty literal at every position; membership is what the
            // prefilter reads.
            by_ac.sort_unstable();
            by_ac.dedup();
            let mut members = want;
            members.dedup();
            prop_assert_eq!(by_ac, members);
        }
    }
}
