//! Where in a text each recogniser can match: the maximal runs of its alphabet around a trigger
//! (a digit run, a separator, an `@`, a top-level domain, a `号`, a province before a capital).
//!
//! A match of a pattern lies inside one maximal run of the pattern's alphabet (or of any superset of
//! it), and contains the pattern's trigger; so searching only the runs that hold a trigger, each
//! from its start, finds exactly the matches a search of the whole text finds. The triggers come
//! from one loop over the bytes and `memchr`; the patterns then read a few bytes per text instead
//! of all of them — the numeric ones and plates through the hand matchers of [`hand`], the others
//! as DFAs (issue 4, DAT-1: about fifteen regex passes over every text were the scanner's cost).
//! [`Sites::whole`] gives every recogniser the whole text and its regex instead — the reference
//! the tests compare the windows against.

use regex_automata::{Input, dfa, meta, util::syntax};

/// A byte range `[start, end)` of the text.
pub(crate) type Window = (usize, usize);

// One bit per alphabet; `CLASS[b]` holds the alphabets byte `b` belongs to.
const RID: u16 = 1 << 1; // [0-9 Xx]
const CARD: u16 = 1 << 2; // [0-9 -]
const MOBILE: u16 = 1 << 3; // [0-9+ -]
const LANDLINE: u16 = 1 << 4; // [0-9+ ()-]
const IPV4: u16 = 1 << 5; // [0-9.]
const MAC: u16 = 1 << 6; // [0-9A-Fa-f:.-]
const IPV6: u16 = 1 << 7; // [0-9A-Fa-f:.]
const EMAIL: u16 = 1 << 8; // [A-Za-z0-9._%+@-]
const URL: u16 = 1 << 9; // [A-Za-z0-9-._~%/?#=&+:@!$,;]
const UPPER: u16 = 1 << 10; // [0-9A-Z]
// What a byte is to the trigger walk of [`Sites::find`].
const WORD: u16 = 1 << 11; // [0-9A-Za-z_]
const DIGIT: u16 = 1 << 12; // [0-9]
const CAP: u16 = 1 << 13; // [A-Z]
const LOW: u16 = 1 << 14; // [a-z]

/// The union of the alphabets searched around digit runs.
const NUMERIC: u16 = RID | CARD | MOBILE | LANDLINE | IPV4;

static CLASS: [u16; 256] = classes();

const fn classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let digit = c.is_ascii_digit();
        let hex = c.is_ascii_hexdigit();
        let alnum = c.is_ascii_alphanumeric();
        let mut m = 0;
        if digit {
            m |= RID | CARD | MOBILE | LANDLINE | IPV4;
        }
        if c == b'X' || c == b'x' || c == b' ' {
            m |= RID;
        }
        if c == b' ' || c == b'-' {
            m |= CARD | MOBILE | LANDLINE;
        }
        if c == b'+' {
            m |= MOBILE | LANDLINE;
        }
        if c == b'(' || c == b')' {
            m |= LANDLINE;
        }
        if c == b'.' {
            m |= IPV4;
        }
        if hex || c == b':' || c == b'.' {
            m |= MAC | IPV6;
        }
        if c == b'-' {
            m |= MAC;
        }
        if alnum || matches!(c, b'.' | b'_' | b'%' | b'+' | b'@' | b'-') {
            m |= EMAIL;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'/'
                    | b'?'
                    | b'#'
                    | b'='
                    | b'&'
                    | b'+'
                    | b':'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b','
                    | b';'
            )
        {
            m |= URL;
        }
        if digit || c.is_ascii_uppercase() {
            m |= UPPER;
        }
        if alnum || c == b'_' {
            m |= WORD;
        }
        if digit {
            m |= DIGIT;
        }
        if c.is_ascii_uppercase() {
            m |= CAP;
        }
        if c.is_ascii_lowercase() {
            m |= LOW;
        }
        t[b] = m;
        b += 1;
    }
    t
}

/// Whether a province character ends at byte `i` (a plate can start there).
fn province_before(text: &str, i: usize) -> bool {
    i >= 3
        && text.as_bytes()[i - 1] >= 0x80
        && text
            .get(i - 3..i)
            .is_some_and(|p| p.chars().count() == 1 && PROVINCES.contains(p))
}

/// The recognisers that search windows instead of the whole text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// Resident IDs: digit runs widened over `[0-9 Xx]`, with 17 digits or more.
    ResidentId,
    /// Bank cards: over `[0-9 -]`, 15 digits or more.
    Card,
    /// Mobiles: over `[0-9+ -]`, 11 digits or more.
    Mobile,
    /// Landlines: over `[0-9+ ()-]`, 10 digits or more.
    Landline,
    /// IPv4: over `[0-9.]`, three dots or more.
    Ipv4,
    /// Postcodes: digit runs of six or more.
    Postcode,
    /// Credit codes: `[0-9A-Z]` runs of 18 bytes or more.
    Uscc,
    /// Passports: `[0-9A-Z]` runs of 9 bytes or more.
    Passport,
    /// MAC addresses: around `:`, `-` and `.`, over hex digits and those, 14 bytes or more.
    Mac,
    /// IPv6: around `:`, over hex digits, `:` and `.`, two colons or more.
    Ipv6,
    /// E-mail: around `@`.
    Email,
    /// URLs: around a `.` followed by one of the top-level domains the pattern names.
    Url,
    /// Dates: digit runs holding a year `19dd` or `20dd` (every form has one), over ASCII letters
    /// and digits, ` ,./-` and `年月日`.
    Date,
    /// Chinese addresses: around `号`, over Han characters, digits and capitals.
    AddressZh,
    /// Plates: around a province character followed by an ASCII capital.
    Plate,
}

/// The triggers of one text, found once; [`Sites::windows`] widens them per recogniser.
pub(crate) struct Sites<'t> {
    text: &'t str,
    whole: bool,
    /// Maximal runs of ASCII digits.
    digits: Vec<Window>,
    /// Maximal runs of the [`NUMERIC`] alphabet around digit runs: the digit runs they hold (a
    /// range of `digits`), and their count of digits and of dots.
    clusters: Vec<(std::ops::Range<usize>, usize, usize)>,
    /// Maximal `[0-9A-Z]` runs of 9 bytes or more.
    upper: Vec<Window>,
    /// Byte offsets of province characters followed by an ASCII capital.
    plates: Vec<usize>,
    /// The capitalised word pairs of [`latin_pairs`].
    pairs: Vec<(Window, Window)>,
}

/// The searcher for `号`, built once (building one per text cost more than the search).
static HAO: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new("号"));

pub(crate) const PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";
const URL_TLDS: [&[u8]; 8] = [
    b"com", b"cn", b"net", b"org", b"gov", b"edu", b"io", b"info",
];

/// The vectors of a [`Sites`], kept per thread between texts: scanning allocates nothing per text
/// once they have grown to the texts' size.
#[derive(Default)]
struct Buffers {
    digits: Vec<Window>,
    clusters: Vec<(std::ops::Range<usize>, usize, usize)>,
    upper: Vec<Window>,
    plates: Vec<usize>,
    pairs: Vec<(Window, Window)>,
}

thread_local! {
    static SPARE: std::cell::Cell<Option<Buffers>> = const { std::cell::Cell::new(None) };
}

impl Drop for Sites<'_> {
    fn drop(&mut self) {
        SPARE.set(Some(Buffers {
            digits: std::mem::take(&mut self.digits),
            clusters: std::mem::take(&mut self.clusters),
            upper: std::mem::take(&mut self.upper),
            plates: std::mem::take(&mut self.plates),
            pairs: std::mem::take(&mut self.pairs),
        }));
    }
}

impl<'t> Sites<'t> {
    /// Every recogniser searches all of `text`.
    pub(crate) fn whole(text: &'t str) -> Self {
        Sites {
            text,
            whole: true,
            digits: Vec::new(),
            clusters: Vec::new(),
            upper: Vec::new(),
            plates: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// The triggers of `text`, from one loop over its bytes (which also pairs its capitalised
    /// words, see [`latin_pairs`]).
    pub(crate) fn find(text: &'t str) -> Self {
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let b = text.as_bytes();
        let Buffers {
            mut digits,
            mut clusters,
            mut upper,
            mut plates,
            mut pairs,
        } = SPARE.take().unwrap_or_default();
        digits.clear();
        clusters.clear();
        upper.clear();
        plates.clear();
        pairs.clear();
        let mut prev: Option<Window> = None;
        let mut i = 0;
        while i < b.len() {
            if CLASS[b[i] as usize] & WORD == 0 {
                let high = b[i] >= 0x80;
                i += 1;
                if high {
                    // Chinese text is mostly bytes outside ASCII: skipped eight at a time, and
                    // the run's last few at once, up to the first ASCII byte.
                    while let Some(chunk) = b.get(i..i + 8) {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(chunk);
                        let ascii = !u64::from_le_bytes(w) & HIGH;
                        if ascii != 0 {
                            i += (ascii.trailing_zeros() / 8) as usize;
                            break;
                        }
                        i += 8;
                    }
                }
                continue;
            }
            // One ASCII word: its digit runs, its `[0-9A-Z]` runs (no such run crosses a word's
            // end) and its shape, in one walk.
            let s = i;
            let (mut caps, mut lows) = (0usize, 0usize);
            let (mut run, mut dig): (Option<usize>, Option<usize>) = (None, None);
            while i < b.len() {
                let k = CLASS[b[i] as usize];
                if k & WORD == 0 {
                    break;
                }
                if k & DIGIT != 0 {
                    // A digit run continues both runs: taken whole.
                    dig.get_or_insert(i);
                    run.get_or_insert(i);
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    continue;
                }
                if let Some(d) = dig.take() {
                    digits.push((d, i));
                }
                if k & CAP != 0 {
                    if run.is_none() {
                        run = Some(i);
                        if province_before(text, i) {
                            plates.push(i - 3);
                        }
                    }
                    caps += 1;
                    i += 1;
                    continue;
                }
                // A lower-case letter or `_` ends the `[0-9A-Z]` run; most word bytes are
                // lower-case letters, taken a run at a time.
                if let Some(u) = run.take()
                    && i - u >= 9
                {
                    upper.push((u, i));
                }
                let from = i;
                i += 1;
                if k & LOW != 0 {
                    while i < b.len() && b[i].is_ascii_lowercase() {
                        i += 1;
                    }
                    lows += i - from;
                }
            }
            if let Some(d) = dig {
                digits.push((d, i));
            }
            if let Some(u) = run
                && i - u >= 9
            {
                upper.push((u, i));
            }
            let n = i - s;
            // A capitalised word after a capitalised or all-capitals one and one space pairs.
            let title = n >= 2 && CLASS[b[s] as usize] & CAP != 0 && lows == n - 1;
            prev = match prev {
                Some((ps, pe)) if pe + 1 == s && b[pe] == b' ' && title => {
                    pairs.push(((ps, pe), (s, i)));
                    None
                }
                _ => (title || (n >= 2 && caps == n)).then_some((s, i)),
            };
        }
        // Most digit runs are short numbers whose cluster is too short for every numeric
        // recogniser; counting once per cluster skips them all at once.
        let mut k = 0;
        while k < digits.len() {
            let (a, z) = widen_one(b, digits[k], NUMERIC);
            let first = k;
            while k < digits.len() && digits[k].0 < z {
                k += 1;
            }
            let n: usize = digits[first..k].iter().map(|(s, e)| e - s).sum();
            let dots = b[a..z].iter().filter(|c| **c == b'.').count();
            clusters.push((first..k, n, dots));
        }
        Sites {
            text,
            whole: false,
            digits,
            clusters,
            upper,
            plates,
            pairs,
        }
    }

    /// The capitalised word pairs of [`latin_pairs`], found with the triggers.
    pub(crate) fn latin_pairs(&self) -> std::borrow::Cow<'_, [(Window, Window)]> {
        if self.whole {
            latin_pairs(self.text).into()
        } else {
            self.pairs.as_slice().into()
        }
    }

    /// Whether every window is the whole text (the reference search).
    pub(crate) fn is_whole(&self) -> bool {
        self.whole
    }

    /// The windows `site`'s regex must search, in text order and disjoint.
    #[cfg(test)]
    pub(crate) fn windows(&self, site: Site) -> Vec<Window> {
        let mut out = Vec::new();
        self.windows_into(site, &mut out);
        out
    }

    /// [`Sites::windows`], appended to `out`.
    pub(crate) fn windows_into(&self, site: Site, out: &mut Vec<Window>) {
        if self.whole {
            out.push((0, self.text.len()));
            return;
        }
        let b = self.text.as_bytes();
        let count = |w: &[u8], f: fn(&u8) -> bool| w.iter().filter(|c| f(c)).count();
        let digits = self.digits.iter().copied();
        // The digit runs of the clusters with at least `n` digits and `dots` dots.
        let numeric = |n: usize, dots: usize| {
            self.clusters
                .iter()
                .filter(move |c| c.1 >= n && c.2 >= dots)
                .flat_map(|c| self.digits[c.0.clone()].iter().copied())
        };
        let n_digits = |w: &[u8]| count(w, u8::is_ascii_digit);
        match site {
            Site::ResidentId => widen(out, b, numeric(17, 0), RID, |w| n_digits(w) >= 17),
            Site::Card => widen(out, b, numeric(15, 0), CARD, |w| n_digits(w) >= 15),
            Site::Mobile => widen(out, b, numeric(11, 0), MOBILE, |w| n_digits(w) >= 11),
            Site::Landline => widen(out, b, numeric(10, 0), LANDLINE, |w| n_digits(w) >= 10),
            Site::Ipv4 => widen(out, b, numeric(4, 3), IPV4, |w| {
                count(w, |c| *c == b'.') >= 3
            }),
            Site::Postcode => out.extend(digits.filter(|(s, e)| e - s >= 6)),
            Site::Uscc => out.extend(self.upper.iter().copied().filter(|(s, e)| e - s >= 18)),
            Site::Passport => out.extend_from_slice(&self.upper),
            Site::Mac => widen(
                out,
                b,
                memchr::memchr3_iter(b':', b'-', b'.', b).map(|i| (i, i + 1)),
                MAC,
                |w| w.len() >= 14,
            ),
            Site::Ipv6 => widen(
                out,
                b,
                memchr::memchr_iter(b':', b).map(|i| (i, i + 1)),
                IPV6,
                |w| count(w, |c| *c == b':') >= 2,
            ),
            Site::Email => widen(
                out,
                b,
                memchr::memchr_iter(b'@', b).map(|i| (i, i + 1)),
                EMAIL,
                |w| w.len() >= 6,
            ),
            Site::Url => widen(
                out,
                b,
                memchr::memchr_iter(b'.', b)
                    .filter(|&i| {
                        URL_TLDS.iter().any(|t| {
                            b.get(i + 1..i + 1 + t.len())
                                .is_some_and(|x| x.eq_ignore_ascii_case(t))
                        })
                    })
                    .map(|i| (i, i + 1)),
                URL,
                |_| true,
            ),
            // Every form holds a year `19dd` or `20dd`, inside one digit run.
            Site::Date => widen_chars(out, self.text, digits.filter(|&w| holds_year(b, w)), |c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, ' ' | ',' | '.' | '/' | '-' | '年' | '月' | '日')
            }),
            Site::AddressZh => widen_chars(
                out,
                self.text,
                HAO.find_iter(b)
                    .filter(|&i| before_is_numeric(self.text, i))
                    .map(|i| (i, i + "号".len())),
                |c| c.is_ascii_digit() || c.is_ascii_uppercase() || han_or_digit(c),
            ),
            Site::Plate => widen_chars(
                out,
                self.text,
                self.plates.iter().map(|&i| (i, i + 3)),
                |c| {
                    c.is_ascii_digit()
                        || c.is_ascii_uppercase()
                        || matches!(c, '·' | '•' | ' ' | '挂' | '学' | '警')
                        || PROVINCES.contains(c)
                },
            ),
        }
    }
}

/// Whether the digit run `(s, e)` holds four digits starting `19` or `20`.
fn holds_year(b: &[u8], (s, e): Window) -> bool {
    e - s >= 4 && b[s..e - 2].windows(2).any(|p| p == b"19" || p == b"20")
}

/// The maximal run of bytes of alphabet `mask` around `(s, e)`.
fn widen_one(b: &[u8], (s, e): Window, mask: u16) -> Window {
    let in_alphabet = |c: u8| CLASS[c as usize] & mask != 0;
    let mut a = s;
    while a > 0 && in_alphabet(b[a - 1]) {
        a -= 1;
    }
    let mut z = e;
    while z < b.len() && in_alphabet(b[z]) {
        z += 1;
    }
    (a, z)
}

/// Widen each trigger to the maximal run of bytes of alphabet `mask` around it; keep the runs
/// `keep` accepts. Triggers come in text order, so one inside the last run is skipped.
fn widen(
    out: &mut Vec<Window>,
    b: &[u8],
    triggers: impl Iterator<Item = Window>,
    mask: u16,
    keep: impl Fn(&[u8]) -> bool,
) {
    let mut end = 0;
    for t in triggers {
        if t.0 < end {
            continue;
        }
        let (a, z) = widen_one(b, t, mask);
        end = z;
        if keep(&b[a..z]) {
            out.push((a, z));
        }
    }
}

/// [`widen`] over characters, for alphabets outside ASCII.
fn widen_chars(
    out: &mut Vec<Window>,
    text: &str,
    triggers: impl Iterator<Item = Window>,
    in_alphabet: impl Fn(char) -> bool,
) {
    let mut end = 0;
    for (s, e) in triggers {
        if s < end {
            continue;
        }
        let a = text[..s]
            .char_indices()
            .rev()
            .take_while(|(_, c)| in_alphabet(*c))
            .last()
            .map_or(s, |(i, _)| i);
        let z = text[e..]
            .char_indices()
            .find(|(_, c)| !in_alphabet(*c))
            .map_or(text.len(), |(i, _)| e + i);
        end = z;
        out.push((a, z));
    }
}

/// Whether the character before byte `i` is numeric (a superset of the `\d` before `号`).
fn before_is_numeric(text: &str, i: usize) -> bool {
    text[..i].chars().next_back().is_some_and(char::is_numeric)
}

/// A superset of `\p{Han}` and of the non-ASCII decimal digits: every character outside ASCII but
/// Latin letters and symbols, general punctuation and the CJK and full-width punctuation that
/// separates Chinese clauses.
fn han_or_digit(c: char) -> bool {
    let u = c as u32;
    u >= 0x300
        && !(0x2000..=0x206f).contains(&u)
        && !matches!(u, 0x3000..=0x3004 | 0x3008..=0x3020)
        && !matches!(u, 0xff01..=0xff0f | 0xff1a..=0xff20 | 0xff3b..=0xff40 | 0xff5b..=0xff65)
}

/// A pattern searched in windows. ASCII patterns are compiled to full DFAs: a search needs no
/// cache from a pool, and on windows of a few bytes that setup costs more than the search itself.
pub(crate) enum Pattern {
    /// Forward and reverse dense DFAs (boxed: the two DFAs' headers are large).
    Dfa(Box<dfa::regex::Regex>),
    /// The DFAs for the whole-text reference, and for windows a hand matcher that gives the
    /// match the regex prefers at a start, if any: no search setup at all per window. The table
    /// holds the bytes a match can start with, read off the DFA, so other positions are skipped
    /// without calling the matcher.
    Hand(Box<dfa::regex::Regex>, Matcher, Box<[bool; 256]>),
    /// The meta engine, for patterns over Unicode classes (Han characters).
    Meta(meta::Regex),
    /// [`Pattern::Hand`] for a pattern over Unicode classes: the meta engine for the reference.
    MetaHand(meta::Regex, Matcher, Box<[bool; 256]>),
}

/// `p` on the meta engine, with Unicode classes and a lazy DFA cache large enough not to be
/// rebuilt while scanning.
fn meta_regex(p: &str) -> meta::Regex {
    meta::Regex::builder()
        .configure(meta::Config::new().hybrid_cache_capacity(32 << 20))
        .build(p)
        .unwrap_or_else(|e| panic!("built-in pattern {p}: {e}"))
}

/// `p` as forward and reverse dense DFAs with ASCII classes.
fn dense(p: &str) -> Box<dfa::regex::Regex> {
    Box::new(
        dfa::regex::Regex::builder()
            .syntax(syntax::Config::new().unicode(false))
            .build(p)
            .unwrap_or_else(|e| panic!("built-in pattern {p}: {e}")),
    )
}

/// The bytes a match of `re` can start with: those on which its anchored forward DFA leaves the
/// start state for a live one (the hand patterns have no look-behind, so one start state serves).
fn first_bytes(re: &dfa::regex::Regex) -> Box<[bool; 256]> {
    use regex_automata::dfa::Automaton;
    let fwd = re.forward();
    let config = regex_automata::util::start::Config::new().anchored(regex_automata::Anchored::Yes);
    let mut t = Box::new([true; 256]);
    if let Ok(start) = fwd.start_state(&config) {
        for (b, slot) in t.iter_mut().enumerate() {
            let next = fwd.next_state(start, b as u8);
            *slot = !fwd.is_dead_state(next);
        }
    }
    t
}

/// The end of the match a pattern's regex prefers (leftmost-first) starting at `b[p]`, if any;
/// `b` ends where the window ends.
pub(crate) type Matcher = fn(b: &[u8], p: usize) -> Option<usize>;

impl Pattern {
    /// `p` with ASCII `\d`, classes and case folding — all a window of an ASCII alphabet holds.
    pub(crate) fn ascii(p: &str) -> Self {
        Pattern::Dfa(dense(p))
    }

    /// `p` as [`Pattern::ascii`], with `at` matching in windows; the tests hold `at` to `p`.
    pub(crate) fn hand(p: &str, at: Matcher) -> Self {
        let re = dense(p);
        let starts = first_bytes(&re);
        Pattern::Hand(re, at, starts)
    }

    /// `p` with Unicode classes.
    pub(crate) fn unicode(p: &str) -> Self {
        Pattern::Meta(meta_regex(p))
    }

    /// `p` as [`Pattern::unicode`], with `at` matching in windows at positions whose byte is in
    /// `first` (the first bytes of every match); the tests hold `at` to `p`.
    pub(crate) fn unicode_hand(p: &str, at: Matcher, first: &[u8]) -> Self {
        let mut starts = Box::new([false; 256]);
        for &b in first {
            starts[b as usize] = true;
        }
        Pattern::MetaHand(meta_regex(p), at, starts)
    }

    /// The matches in `windows` of `text`, as byte ranges of `text`.
    /// `whole`: the windows are the whole text, the reference search (regexes only).
    #[cfg(test)]
    pub(crate) fn matches(&self, text: &str, windows: &[Window], whole: bool) -> Vec<Window> {
        let mut out = Vec::new();
        self.matches_into(text, windows, whole, &mut out);
        out
    }

    /// [`Pattern::matches`], appended to `out`.
    pub(crate) fn matches_into(
        &self,
        text: &str,
        windows: &[Window],
        whole: bool,
        out: &mut Vec<Window>,
    ) {
        for &(s, e) in windows {
            let input = || Input::new(text).span(s..e);
            match self {
                Pattern::Hand(_, at, starts) | Pattern::MetaHand(_, at, starts) if !whole => {
                    let b = &text.as_bytes()[..e];
                    let mut p = s;
                    while p < e {
                        if !starts[b[p] as usize] {
                            p += 1;
                            continue;
                        }
                        match at(b, p) {
                            Some(z) => {
                                out.push((p, z));
                                p = z;
                            }
                            None => p += 1,
                        }
                    }
                }
                Pattern::Dfa(re) | Pattern::Hand(re, ..) => {
                    out.extend(re.find_iter(input()).map(|m| (m.start(), m.end())))
                }
                Pattern::Meta(re) | Pattern::MetaHand(re, ..) => {
                    out.extend(re.find_iter(input()).map(|m| (m.start(), m.end())))
                }
            }
        }
    }
}

/// Hand matchers of the numeric patterns (`\d` is ASCII): each returns the end of the match its
/// regex prefers at `p`. Optional separators are taken greedily — giving one back never helps, as
/// a digit must follow — and bounded repeats try their longer count first, as the regex does.
pub(crate) mod hand {
    fn d(b: &[u8], i: usize) -> bool {
        b.get(i).is_some_and(u8::is_ascii_digit)
    }
    fn ds(b: &[u8], i: usize, n: usize) -> bool {
        (i..i + n).all(|k| d(b, k))
    }
    fn sep(b: &[u8], i: usize) -> bool {
        matches!(b.get(i), Some(b' ' | b'-'))
    }
    fn skip_sep(b: &[u8], i: usize) -> usize {
        if sep(b, i) { i + 1 } else { i }
    }
    /// `\d{7,8}` at `i`.
    fn seven_or_eight(b: &[u8], i: usize) -> Option<usize> {
        if ds(b, i, 8) {
            Some(i + 8)
        } else {
            ds(b, i, 7).then_some(i + 7)
        }
    }

    /// `\d{6} ?\d{8} ?\d{3}[\dXx]`
    pub(crate) fn resident_id(b: &[u8], p: usize) -> Option<usize> {
        ds(b, p, 6).then_some(())?;
        let i = if b.get(p + 6) == Some(&b' ') {
            p + 7
        } else {
            p + 6
        };
        ds(b, i, 8).then_some(())?;
        let i = if b.get(i + 8) == Some(&b' ') {
            i + 9
        } else {
            i + 8
        };
        (ds(b, i, 3)
            && b.get(i + 3)
                .is_some_and(|c| c.is_ascii_digit() || *c == b'X' || *c == b'x'))
        .then_some(i + 4)
    }

    /// `[0-9A-HJ-NPQRTUWXY]{18}`
    pub(crate) fn uscc(b: &[u8], p: usize) -> Option<usize> {
        let ok = |c: &u8| c.is_ascii_digit() || (c.is_ascii_uppercase() && !b"IOZSV".contains(c));
        b.get(p..p + 18)
            .is_some_and(|w| w.iter().all(ok))
            .then_some(p + 18)
    }

    /// `\d(?:[ -]?\d){14,18}`
    pub(crate) fn card(b: &[u8], p: usize) -> Option<usize> {
        d(b, p).then_some(())?;
        let (mut i, mut n) = (p + 1, 0);
        while n < 18 {
            if sep(b, i) && d(b, i + 1) {
                i += 2;
            } else if d(b, i) {
                i += 1;
            } else {
                break;
            }
            n += 1;
        }
        (n >= 14).then_some(i)
    }

    /// `\d{1,3}(?:\.\d{1,3}){3}`
    pub(crate) fn ipv4(b: &[u8], p: usize) -> Option<usize> {
        let group = |i: usize| {
            let k = (0..3).take_while(|k| d(b, i + k)).count();
            (k > 0).then_some(i + k)
        };
        let mut i = group(p)?;
        for _ in 0..3 {
            (b.get(i) == Some(&b'.')).then_some(())?;
            i = group(i + 1)?;
        }
        Some(i)
    }

    /// `\d{6}`
    pub(crate) fn six(b: &[u8], p: usize) -> Option<usize> {
        ds(b, p, 6).then_some(p + 6)
    }

    /// `[PROVINCES][A-HJ-NP-Z][·• ]?(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警])`
    /// (every province is one three-byte character). The separator is taken when present: not
    /// taking it leaves it first in the rest, which no alternative accepts. Each alternative has
    /// one length, so the first that matches is the regex's.
    pub(crate) fn plate(b: &[u8], p: usize) -> Option<usize> {
        let at = |i: usize| b.get(i).copied();
        let letter =
            |c: Option<u8>| c.is_some_and(|c| c.is_ascii_uppercase() && c != b'I' && c != b'O');
        let alnum = |c: Option<u8>| c.is_some_and(|x| x.is_ascii_digit()) || letter(c);
        let prov = b.get(p..p + 3).and_then(|x| std::str::from_utf8(x).ok())?;
        (super::PROVINCES.contains(prov) && letter(at(p + 3))).then_some(())?;
        let mut i = p + 4;
        let rest = b.get(i..).unwrap_or_default();
        if rest.starts_with("·".as_bytes()) {
            i += 2;
        } else if rest.starts_with("•".as_bytes()) {
            i += 3;
        } else if at(i) == Some(b' ') {
            i += 1;
        }
        let df = |c: Option<u8>| matches!(c, Some(b'D' | b'F'));
        if df(at(i)) && alnum(at(i + 1)) && ds(b, i + 2, 4) {
            return Some(i + 6);
        }
        if ds(b, i, 5) && df(at(i + 5)) {
            return Some(i + 6);
        }
        if (i..i + 4).all(|k| alnum(at(k))) {
            if alnum(at(i + 4)) {
                return Some(i + 5);
            }
            let tail = b.get(i + 4..).unwrap_or_default();
            if ["挂", "学", "警"]
                .iter()
                .any(|w| tail.starts_with(w.as_bytes()))
            {
                return Some(i + 7);
            }
        }
        None
    }

    /// `[EG]\d{8}|E[A-HJ-NP-Z]\d{7}`
    pub(crate) fn passport(b: &[u8], p: usize) -> Option<usize> {
        match b.get(p) {
            Some(b'E' | b'G') if ds(b, p + 1, 8) => Some(p + 9),
            Some(b'E')
                if b.get(p + 1)
                    .is_some_and(|c| c.is_ascii_uppercase() && !b"IO".contains(c))
                    && ds(b, p + 2, 7) =>
            {
                Some(p + 9)
            }
            _ => None,
        }
    }

    /// `(?:\+86[ -]?|0086[ -]?|86-)?1[3-9]\d(?:\d{8}|[ -]\d{4}[ -]\d{4})`
    pub(crate) fn mobile(b: &[u8], p: usize) -> Option<usize> {
        let body = |i: usize| {
            (b.get(i) == Some(&b'1')
                && b.get(i + 1).is_some_and(|c| (b'3'..=b'9').contains(c))
                && d(b, i + 2))
            .then_some(())?;
            let j = i + 3;
            if ds(b, j, 8) {
                Some(j + 8)
            } else {
                (sep(b, j) && ds(b, j + 1, 4) && sep(b, j + 5) && ds(b, j + 6, 4)).then_some(j + 10)
            }
        };
        let rest = &b[p.min(b.len())..];
        let prefixed = if rest.starts_with(b"+86") {
            body(skip_sep(b, p + 3))
        } else {
            None
        };
        let prefixed = prefixed.or_else(|| {
            rest.starts_with(b"0086")
                .then(|| body(skip_sep(b, p + 4)))
                .flatten()
        });
        let prefixed = prefixed.or_else(|| rest.starts_with(b"86-").then(|| body(p + 3)).flatten());
        prefixed.or_else(|| body(p))
    }

    /// `\+86[ -]?(?:10|2\d|[3-9]\d{2})[ -]?\d{7,8}|\(0\d{2,3}\)[ -]?\d{7,8}|0\d{2,3}[ -]\d{3,4}[ -]\d{4}|0\d{2,3}[ -]?\d{7,8}`
    pub(crate) fn landline(b: &[u8], p: usize) -> Option<usize> {
        let at = |i: usize| b.get(i).copied();
        if b[p.min(b.len())..].starts_with(b"+86") {
            let j = skip_sep(b, p + 3);
            let area = match at(j) {
                Some(b'1') if at(j + 1) == Some(b'0') => Some(j + 2),
                Some(b'2') if d(b, j + 1) => Some(j + 2),
                Some(b'3'..=b'9') if ds(b, j + 1, 2) => Some(j + 3),
                _ => None,
            };
            if let Some(e) = area.and_then(|a| seven_or_eight(b, skip_sep(b, a))) {
                return Some(e);
            }
        }
        if at(p) == Some(b'(') && at(p + 1) == Some(b'0') {
            for k in [3, 2] {
                if ds(b, p + 2, k)
                    && at(p + 2 + k) == Some(b')')
                    && let Some(e) = seven_or_eight(b, skip_sep(b, p + 3 + k))
                {
                    return Some(e);
                }
            }
        }
        if at(p) != Some(b'0') {
            return None;
        }
        for k in [3, 2] {
            let j = p + 1 + k;
            if ds(b, p + 1, k) && sep(b, j) {
                for m in [4, 3] {
                    if ds(b, j + 1, m) && sep(b, j + 1 + m) && ds(b, j + 2 + m, 4) {
                        return Some(j + 6 + m);
                    }
                }
            }
        }
        for k in [3, 2] {
            if ds(b, p + 1, k)
                && let Some(e) = seven_or_eight(b, skip_sep(b, p + 1 + k))
            {
                return Some(e);
            }
        }
        None
    }
}

/// The capitalised ASCII word pairs `(?-u:\b)([A-Z][a-z]+|[A-Z]{2,}) ([A-Z][a-z]+)(?-u:\b)` finds,
/// leftmost first and without overlap, as the two words' ranges — found by the trigger walk of
/// [`Sites::find`], which the proptest below holds to that regex.
pub(crate) fn latin_pairs(text: &str) -> Vec<(Window, Window)> {
    std::mem::take(&mut Sites::find(text).pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_class_table_holds_each_alphabet() {
        assert_eq!(
            CLASS[b'7' as usize] & (RID | CARD | UPPER),
            RID | CARD | UPPER
        );
        assert_eq!(CLASS[b'x' as usize] & (RID | UPPER), RID);
        assert_eq!(CLASS[b'f' as usize] & (MAC | IPV6 | UPPER), MAC | IPV6);
        assert_eq!(CLASS[0xe5], 0);
    }

    #[test]
    fn every_province_is_one_three_byte_character() {
        // The plate matcher and its first-byte table read provinces three bytes at a time.
        assert!(PROVINCES.chars().all(|c| c.len_utf8() == 3));
    }

    #[test]
    fn windows_are_the_runs_around_triggers() {
        let t = "手机 138 1234 5678，IP 10.0.0.1，no digits here";
        let s = Sites::find(t);
        let w = s.windows(Site::Mobile);
        assert_eq!(w.len(), 1);
        assert_eq!(&t[w[0].0..w[0].1], " 138 1234 5678");
        let w = s.windows(Site::Ipv4);
        assert_eq!(&t[w[0].0..w[0].1], "10.0.0.1");
        assert!(s.windows(Site::ResidentId).is_empty());
        let t = "车牌京A12345和浙KDL4654";
        let w = Sites::find(t).windows(Site::Plate);
        let got: Vec<&str> = w.iter().map(|&(a, z)| &t[a..z]).collect();
        assert_eq!(got, ["京A12345", "浙KDL4654"]);
        let t = "住在湖北省武汉市迎宾大道467号，电话";
        let w = Sites::find(t).windows(Site::AddressZh);
        assert_eq!(&t[w[0].0..w[0].1], "住在湖北省武汉市迎宾大道467号");
    }

    /// Texts made of the pieces the recognisers look for, glued in any order.
    fn pieces() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "420106198608147579",
            "4201 0619 8608 1475 79",
            "6212261688864991170",
            "6212-2616-8886-4991",
            "+86 153 3877 7836",
            "15338777836",
            "(010)4032 0837",
            "010-4032-0837",
            "10.14.139.7",
            "0C-A6-C0-D6-7B-94",
            "0ca6.c0d6.7b94",
            "fe80::1c2b:3dff:fe4a:5e6f",
            "::1",
            "53420106MALB65AK9N",
            "E17831819",
            "EA1234567",
            "430061",
            "zhengyuling115@yahoo.com",
            "www.metro-demo.com/a?b=1",
            "https://x.gov.cn",
            "浙KDL4654",
            "京A·12345",
            "粤B 1234D",
            "湖北省武汉市武昌区迎宾大道467号",
            "北京市朝阳区建国路88号3单元1201室",
            "Zhang Wei",
            "LI Mingzhen",
            "No. 487 Jiefang East Road, Shanghai",
            "1986年8月14日",
            "1986-08-14",
            "出生",
            "邮编",
            "号",
            "，",
            "。",
            " ",
            "-",
            ".",
            ":",
            "@",
            "X",
            "7",
            "12",
            "A",
            "a",
            "张琳",
            "男",
            "姓名",
            "Dear",
            "name=\"",
            "name=",
            "客户：",
            "联系人 ",
            "，男",
            "，女，",
            "，35岁",
            "（身份证",
            "(身份证",
            "欧阳娜娜",
            "王小明的",
            "Mr. ",
            "Mrs.",
            "Hi",
            "Hello ",
            "ZHANG Wei",
            "Zhang",
            "Wei",
            "Li",
            "\n",
            "\u{3000}",
            "\u{2003}",
            "Customer",
            "customer ",
            "Name:",
            "Thanks,",
            "ABc",
            "DE",
            "Jones",
            "Émile",
            "Ödön",
            "：",
            "龘",
            ";",
            "１２３",
            "の",
            "é",
        ]);
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn windows_find_what_the_whole_text_search_finds(t in pieces()) {
            prop_assert_eq!(crate::scan(&t, None), crate::scan_reference(&t, None));
        }

        #[test]
        fn latin_pairs_equal_the_regex(t in "[A-Za-z _.,9张]{0,60}") {
            let re = regex::Regex::new(r"(?-u:\b)([A-Z][a-z]+|[A-Z]{2,}) ([A-Z][a-z]+)(?-u:\b)")
                .expect("pattern");
            let want: Vec<(Window, Window)> = re
                .captures_iter(&t)
                .filter_map(|c| {
                    let (a, b) = (c.get(1)?, c.get(2)?);
                    Some(((a.start(), a.end()), (b.start(), b.end())))
                })
                .collect();
            prop_assert_eq!(latin_pairs(&t), want);
        }
    }
}
