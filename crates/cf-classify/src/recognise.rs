//! The recognisers and the overlap resolution between them.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::checks;
use crate::sites::{PROVINCES, Pattern, Site, Sites, Window, hand};

/// The entity types of the discovery corpus (shared/datasets/pii/README.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    /// 18-digit resident ID (GB 11643).
    CnResidentId,
    /// Unified social credit code (GB 32100).
    CnUscc,
    /// Payment card (Luhn).
    BankCard,
    /// E-mail address.
    Email,
    /// URL.
    Url,
    /// IPv6 address.
    Ipv6,
    /// MAC address.
    MacAddress,
    /// IPv4 address.
    Ipv4,
    /// Mainland mobile number.
    CnMobile,
    /// Landline number.
    CnLandline,
    /// Vehicle plate.
    CnLicensePlate,
    /// Passport number.
    Passport,
    /// Date of birth (only in a birth-date context).
    DateOfBirth,
    /// Postcode (only in a postcode context).
    Postcode,
    /// Postal address.
    Address,
    /// Person name.
    PersonName,
}

impl EntityType {
    /// Every type.
    pub const ALL: [EntityType; 16] = [
        EntityType::CnResidentId,
        EntityType::CnUscc,
        EntityType::BankCard,
        EntityType::Email,
        EntityType::Url,
        EntityType::Ipv6,
        EntityType::MacAddress,
        EntityType::Ipv4,
        EntityType::CnMobile,
        EntityType::CnLandline,
        EntityType::CnLicensePlate,
        EntityType::Passport,
        EntityType::DateOfBirth,
        EntityType::Postcode,
        EntityType::Address,
        EntityType::PersonName,
    ];

    /// Parse the corpus name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The corpus name, e.g. `CN_RESIDENT_ID`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::CnResidentId => "CN_RESIDENT_ID",
            EntityType::CnUscc => "CN_USCC",
            EntityType::BankCard => "BANK_CARD",
            EntityType::Email => "EMAIL",
            EntityType::Url => "URL",
            EntityType::Ipv6 => "IPV6",
            EntityType::MacAddress => "MAC_ADDRESS",
            EntityType::Ipv4 => "IPV4",
            EntityType::CnMobile => "CN_MOBILE",
            EntityType::CnLandline => "CN_LANDLINE",
            EntityType::CnLicensePlate => "CN_LICENSE_PLATE",
            EntityType::Passport => "PASSPORT",
            EntityType::DateOfBirth => "DATE_OF_BIRTH",
            EntityType::Postcode => "POSTCODE",
            EntityType::Address => "ADDRESS",
            EntityType::PersonName => "PERSON_NAME",
        }
    }
}

/// A finding: byte offsets into the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
    /// Type.
    pub kind: EntityType,
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap_or_else(|e| panic!("built-in pattern {p}: {e}"))
}

const PROV: &str = "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门";

static RID: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::hand(r"\d{6} ?\d{8} ?\d{3}[\dXx]", hand::resident_id));
static USCC: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::hand(r"[0-9A-HJ-NPQRTUWXY]{18}", hand::uscc));
static CARD: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::hand(r"\d(?:[ -]?\d){14,18}", hand::card));
static EMAIL: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::ascii(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
});
static URL: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::ascii(
        r"(?i)(?:https?://)?(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|cn|net|org|gov|edu|io|info)(?::\d{2,5})?(?:/[A-Za-z0-9\-._~%/?#=&+:@!$,;]*)?",
    )
});
static IPV4: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::hand(r"\d{1,3}(?:\.\d{1,3}){3}", hand::ipv4));
static IPV6: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::ascii(
        r"(?:[0-9A-Fa-f]{0,4}:){2,6}\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}",
    )
});
static MAC: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::ascii(
        r"[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
    )
});
static MOBILE: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::hand(
        r"(?:\+86[ -]?|0086[ -]?|86-)?1[3-9]\d(?:\d{8}|[ -]\d{4}[ -]\d{4})",
        hand::mobile,
    )
});
static LANDLINE: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::hand(
        r"\+86[ -]?(?:10|2\d|[3-9]\d{2})[ -]?\d{7,8}|\(0\d{2,3}\)[ -]?\d{7,8}|0\d{2,3}[ -]\d{3,4}[ -]\d{4}|0\d{2,3}[ -]?\d{7,8}",
        hand::landline,
    )
});
static PASSPORT: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::hand(r"[EG]\d{8}|E[A-HJ-NP-Z]\d{7}", hand::passport));
static PLATE: LazyLock<Pattern> = LazyLock::new(|| {
    // Every province is one three-byte character.
    let first: Vec<u8> = PROVINCES.as_bytes().iter().step_by(3).copied().collect();
    Pattern::unicode_hand(
        &format!(
            r"[{PROVINCES}][A-HJ-NP-Z][·• ]?(?:[DF][A-HJ-NP-Z0-9][0-9]{{4}}|[0-9]{{5}}[DF]|[A-HJ-NP-Z0-9]{{4}}[A-HJ-NP-Z0-9挂学警])"
        ),
        hand::plate,
        &first,
    )
});
static DATE: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::ascii(
        r"(?:19|20)[0-9]{2}年[0-9]{1,2}月[0-9]{1,2}日|(?:19|20)[0-9]{2}[-/.][0-9]{1,2}[-/.][0-9]{1,2}|(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])|[0-9]{1,2} (?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec) (?:19|20)[0-9]{2}|(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.? [0-9]{1,2}, (?:19|20)[0-9]{2}|[0-9]{2}/[0-9]{2}/(?:19|20)[0-9]{2}",
    )
});
static SIX: LazyLock<Pattern> = LazyLock::new(|| Pattern::hand(r"\d{6}", hand::six));
static ADDR_ZH: LazyLock<Pattern> = LazyLock::new(|| {
    Pattern::unicode(&format!(
        r"(?:(?:{PROV})(?:省|壮族自治区|回族自治区|维吾尔自治区|自治区|市)?(?:\p{{Han}}{{1,6}}?(?:市|州|盟))?|\p{{Han}}{{2}}市)(?:\p{{Han}}{{1,6}}?(?:区|县|旗))?(?:\p{{Han}}{{1,6}}?(?:街道|镇|乡))?\p{{Han}}{{1,10}}?(?:路|街|大道|巷|道)\d{{1,5}}号(?:\p{{Han}}{{0,8}}?[A-Z\d]{{1,4}}(?:栋|座|幢|号楼))?(?:\d{{1,3}}单元)?(?:\d{{1,5}}室)?"
    ))
});
static ADDR_EN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:Room \d+, )?(?:Block [A-Z], )?(?:Building \d+, )?(?:(?:[A-Z][a-z]+ ){0,2}[A-Z][a-z]+, )?No\. \d+ (?:[A-Z][a-z]+ ){1,3}(?:Road|Street|Avenue|Lane|Lu)(?:, (?:[A-Z][a-z]+ ){1,2}(?:District|County))?(?:, [A-Z][a-z]+){1,2}",
    )
});
/// Context words before a Chinese name, in the pattern's order (`name="` before `name=`, as the
/// greedy `name="?` prefers); no other word is a prefix of another, so the word a match starts
/// with is the one the pattern took.
const ZH_CONTEXT: [&str; 31] = [
    "姓名",
    "name=\"",
    "name=",
    "name：",
    "客户",
    "Customer",
    "用户",
    "我叫",
    "收款人",
    "代办人",
    "网格员",
    "联系人",
    "申请人",
    "报警人",
    "投诉人",
    "法定代表人",
    "持有人",
    "乘客",
    "户主",
    "患者",
    "当事人",
    "负责人",
    "收件人",
    "经办人",
    "举报人",
    "车主",
    "业主",
    "租户",
    "学生",
    "员工",
    "病人",
];
/// Context words before an English name, likewise ordered.
const EN_CONTEXT: [&str; 35] = [
    "Dear",
    "Hi",
    "Hello",
    "From:",
    "To:",
    "Mr.",
    "Ms.",
    "Mrs.",
    "Dr.",
    "registered to",
    "Name:",
    "name:",
    "name=\"",
    "name=",
    "regards,",
    "Regards,",
    "Thanks,",
    "Sincerely,",
    "Applicant:",
    "Employee",
    "Customer",
    "Patient",
    "Passenger",
    "Driver",
    "Owner",
    "Contact:",
    "Ship to:",
    "Report for",
    "applicant",
    "holder",
    "customer",
    "patient",
    "passenger",
    "driver",
    "owner",
];

fn alternation(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| regex::escape(w))
        .collect::<Vec<_>>()
        .join("|")
}

static NAME_ZH_CTX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:{})[：:\s]*(\p{{Han}}{{2,4}})",
        alternation(&ZH_CONTEXT)
    ))
});
static NAME_ZH_BIO: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:^|[。，；;：:\s])(\p{Han}{2,4})(?:[，,](?:男|女|\d{1,3}岁)|[（(]身份证)")
});
static NAME_EN_CTX: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?:{})\s*(\p{{Lu}}\p{{Ll}}+|\p{{Lu}}{{2,}}(?: \p{{Lu}}\p{{Ll}}+)?)(?: (\p{{Lu}}\p{{Ll}}+))?(?: (\p{{Lu}}\p{{Ll}}+))?",
        alternation(&EN_CONTEXT)
    ))
});

/// The byte ranges of the names a context pattern holds, from its groups (the reference path): a
/// name ends where its first group ends, extended by the English pattern's later groups.
fn captured_names(re: &Regex, text: &str) -> Vec<Window> {
    re.captures_iter(text)
        .filter_map(|cap| {
            let first = cap.get(1)?;
            let mut end = first.end();
            for g in [cap.get(2), cap.get(3)].into_iter().flatten() {
                if g.start() == end + 1 {
                    end = g.end();
                }
            }
            Some((first.start(), end))
        })
        .collect()
}

/// The names of bios (`NAME_ZH_BIO`): whole matches (no capture engine) minus the clause
/// delimiter before the name and the `，`/`（` after it — the group's range, as the reference
/// test checks.
fn bio_names(text: &str) -> Vec<Window> {
    NAME_ZH_BIO
        .find_iter(text)
        .map(|m| {
            let t = m.as_str();
            let first = t.chars().next().unwrap_or(' ');
            let skip = if "。，；;：:".contains(first) || first.is_whitespace() {
                first.len_utf8()
            } else {
                0
            };
            let end = t[skip..]
                .find(['，', ',', '（', '('])
                .map_or(t.len(), |i| skip + i);
            (m.start() + skip, m.start() + end)
        })
        .collect()
}

/// A Unicode class of the regex engine (`\p{Han}`, `\s` …) as its sorted ranges, so that the hand
/// matchers below read exactly the characters the patterns they stand for read.
struct UClass(Vec<(char, char)>);

impl UClass {
    fn of(p: &str) -> Self {
        use regex_syntax::hir::{Class, HirKind};
        let hir = regex_syntax::Parser::new()
            .parse(p)
            .unwrap_or_else(|e| panic!("built-in class {p}: {e}"));
        match hir.kind() {
            HirKind::Class(Class::Unicode(c)) => {
                UClass(c.ranges().iter().map(|r| (r.start(), r.end())).collect())
            }
            _ => panic!("built-in class {p} is not a Unicode class"),
        }
    }

    fn has(&self, c: char) -> bool {
        let i = self.0.partition_point(|&(_, z)| z < c);
        self.0.get(i).is_some_and(|&(a, _)| a <= c)
    }

    /// The end of the run of at most `max` characters of the class from byte `i`, and its length.
    fn run(&self, text: &str, i: usize, max: usize) -> (usize, usize) {
        let (mut e, mut n) = (i, 0);
        for c in text[i..].chars() {
            if n == max || !self.has(c) {
                break;
            }
            e += c.len_utf8();
            n += 1;
        }
        (e, n)
    }
}

static HAN: LazyLock<UClass> = LazyLock::new(|| UClass::of(r"\p{Han}"));
static SPACE: LazyLock<UClass> = LazyLock::new(|| UClass::of(r"\s"));
static UPPER: LazyLock<UClass> = LazyLock::new(|| UClass::of(r"\p{Lu}"));
static LOWER: LazyLock<UClass> = LazyLock::new(|| UClass::of(r"\p{Ll}"));

/// Every context word of both languages, in two searchers whose hits, merged, are every place
/// where either name pattern can start.
static CONTEXT_WORDS: LazyLock<[ContextWords; 2]> = LazyLock::new(|| {
    // Two searchers, for the words that start with an ASCII byte and for those that do not: the
    // Chinese words are all at least one whole character long, so their SIMD (Teddy) search
    // keys on three bytes instead of the two "Hi" allows, and the ASCII words' search finds
    // nothing to verify in Chinese text. Without duplicates, up to 64 words each.
    let mut words: Vec<&str> = ZH_CONTEXT
        .iter()
        .chain(EN_CONTEXT.iter())
        .copied()
        .collect();
    words.sort_unstable();
    words.dedup();
    let related = |list: &[&'static str], w: &str| -> Vec<&'static str> {
        list.iter()
            .copied()
            .filter(|x| x.starts_with(w) || w.starts_with(x))
            .collect()
    };
    [true, false].map(|ascii| {
        let words: Vec<&str> = words
            .iter()
            .copied()
            .filter(|w| w.as_bytes()[0].is_ascii() == ascii)
            .collect();
        let along = words
            .iter()
            .map(|w| (related(&ZH_CONTEXT, w), related(&EN_CONTEXT, w)))
            .collect();
        let ac = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostFirst)
            .build(&words)
            .unwrap_or_else(|e| panic!("built-in context words: {e}"));
        ContextWords { ac, along }
    })
});

/// One searcher of context words.
struct ContextWords {
    ac: aho_corasick::AhoCorasick,
    /// Per word of `ac`: the Chinese and the English context words that can start where it does
    /// (those it is a prefix of or that are a prefix of it, in the list's order), so a hit tries
    /// only those.
    along: Vec<(Vec<&'static str>, Vec<&'static str>)>,
}

impl ContextWords {
    /// The first context word at or after `at`: its start and its index in `along`.
    fn next(&self, text: &str, at: usize) -> Option<(usize, usize)> {
        let m = self
            .ac
            .find(aho_corasick::Input::new(text).span(at..text.len()))?;
        Some((m.start(), m.pattern().as_usize()))
    }
}

/// The names after a Chinese context word (`NAME_ZH_CTX`) and after an English one
/// (`NAME_EN_CTX`), as their groups would give them, from one search for the context words and a
/// hand match of each pattern's tail. The patterns' `find_iter` is emulated exactly: the next
/// match starts at the leftmost position at or after the previous match's end where the pattern
/// matches; there, the first context word in the pattern's order whose tail matches wins; and
/// each tail is greedy with nothing to give back (a separator is never Han or upper case).
fn context_word_names(text: &str) -> (Vec<Window>, Vec<Window>) {
    let (mut zh, mut en) = (Vec::new(), Vec::new());
    let (mut zh_from, mut en_from) = (0, 0);
    let [ascii, other] = &*CONTEXT_WORDS;
    // Each searcher's next hit; a hit stays the next one until the walk passes its start.
    let (mut a, mut o) = (ascii.next(text, 0), other.next(text, 0));
    loop {
        // The leftmost of the two (they never start at the same byte).
        let (p, (zh_words, en_words)) = match (a, o) {
            (None, None) => break,
            (Some((p, k)), None) => (p, &ascii.along[k]),
            (None, Some((q, k))) => (q, &other.along[k]),
            (Some((p, k)), Some((q, _))) if p < q => (p, &ascii.along[k]),
            (Some(_), Some((q, k))) => (q, &other.along[k]),
        };
        if p >= zh_from
            && let Some(w) = zh_name_at(text, p, zh_words)
        {
            zh.push(w);
            zh_from = w.1;
        }
        if p >= en_from
            && let Some(w) = en_name_at(text, p, en_words)
        {
            en.push(w);
            en_from = w.1;
        }
        // Every context word starts with a whole character, so the next one starts after it.
        let at = p + text[p..].chars().next().map_or(1, char::len_utf8);
        if a.is_some_and(|(q, _)| q < at) {
            a = ascii.next(text, at);
        }
        if o.is_some_and(|(q, _)| q < at) {
            o = other.next(text, at);
        }
    }
    (zh, en)
}

/// `(?:ZH_CONTEXT)[：:\s]*(\p{Han}{2,4})` at `p`: the group's range.
/// `words`: the context words that can start at `p`, in the pattern's order.
fn zh_name_at(text: &str, p: usize, words: &[&str]) -> Option<Window> {
    words.iter().find_map(|w| {
        let rest = text[p..].strip_prefix(w)?;
        let s = text.len()
            - rest
                .trim_start_matches(|c| c == '：' || c == ':' || SPACE.has(c))
                .len();
        let (e, n) = HAN.run(text, s, 4);
        (n >= 2).then_some((s, e))
    })
}

/// `(?:EN_CONTEXT)\s*(\p{Lu}\p{Ll}+|\p{Lu}{2,}(?: \p{Lu}\p{Ll}+)?)(?: (\p{Lu}\p{Ll}+))?(?: (\p{Lu}\p{Ll}+))?`
/// at `p`: from the first group's start to the end of the last group present.
/// `words`: the context words that can start at `p`, in the pattern's order.
fn en_name_at(text: &str, p: usize, words: &[&str]) -> Option<Window> {
    // `\p{Lu}\p{Ll}+` at `i`, greedy.
    let title = |i: usize| {
        let c = text[i..].chars().next().filter(|c| UPPER.has(*c))?;
        let (e, n) = LOWER.run(text, i + c.len_utf8(), usize::MAX);
        (n >= 1).then_some(e)
    };
    // ` \p{Lu}\p{Ll}+` at `i`.
    let spaced = |i: usize| text[i..].starts_with(' ').then(|| title(i + 1)).flatten();
    words.iter().find_map(|w| {
        let rest = text[p..].strip_prefix(w)?;
        let s = text.len() - rest.trim_start_matches(|c| SPACE.has(c)).len();
        let mut e = title(s).or_else(|| {
            let (e, n) = UPPER.run(text, s, usize::MAX);
            (n >= 2).then(|| spaced(e).unwrap_or(e))
        })?;
        for _ in 0..2 {
            match spaced(e) {
                Some(z) => e = z,
                None => break,
            }
        }
        Some((s, e))
    })
}

const ZH_SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝";
const COMPOUND_SURNAMES: [&str; 14] = [
    "欧阳", "令狐", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文",
    "司徒", "夏侯",
];
const PINYIN_SURNAMES: &[&str] = &[
    "wang",
    "li",
    "zhang",
    "liu",
    "chen",
    "yang",
    "huang",
    "zhao",
    "wu",
    "zhou",
    "xu",
    "sun",
    "ma",
    "zhu",
    "hu",
    "guo",
    "he",
    "lin",
    "luo",
    "gao",
    "zheng",
    "liang",
    "xie",
    "song",
    "tang",
    "han",
    "feng",
    "deng",
    "cao",
    "peng",
    "zeng",
    "xiao",
    "tian",
    "dong",
    "pan",
    "yuan",
    "cai",
    "jiang",
    "yu",
    "du",
    "ye",
    "cheng",
    "wei",
    "su",
    "lu",
    "ding",
    "ren",
    "shen",
    "yao",
    "jin",
    "fu",
    "zhong",
    "dai",
    "jia",
    "hou",
    "qin",
    "fan",
    "shi",
    "xue",
    "lei",
    "bai",
    "long",
    "duan",
    "hao",
    "kong",
    "shao",
    "mao",
    "qiu",
    "wan",
    "gu",
    "lai",
    "kang",
    "yin",
    "qian",
    "niu",
    "hong",
    "gong",
    "tan",
    "lv",
    "lyu",
    "yan",
    "qi",
    "fang",
    "meng",
    "mo",
    "wen",
    "xiong",
    "zou",
    "huo",
    "ouyang",
    "situ",
    "zhuge",
    "shangguan",
    "murong",
];

static PINYIN_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:(?:zh|ch|sh|[bpmfdtnlgkhjqxzcsryw])?(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|ai|ei|ao|ou|an|en|in|un|ia|ie|iu|ua|uo|ui|ue|er|a|e|i|o|u|v)){1,3}$",
    )
});
fn zh_name_shaped(t: &str) -> bool {
    let n = t.chars().count();
    let han = t.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    han && if COMPOUND_SURNAMES.iter().any(|c| t.starts_with(c)) {
        (3..=4).contains(&n)
    } else {
        (2..=3).contains(&n) && t.chars().next().is_some_and(|c| ZH_SURNAMES.contains(c))
    }
}

fn pinyin_name(a: &str, b: &str) -> bool {
    // ASCII case folding: the longest surname is nine letters.
    let sur = |w: &str| w.len() <= 9 && PINYIN_SURNAMES.iter().any(|s| s.eq_ignore_ascii_case(w));
    let py = |w: &str| PINYIN_WORD.is_match(w);
    (sur(a) && py(b)) || (sur(b) && py(a))
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric())
}

fn before(t: &str, i: usize) -> Option<char> {
    t[..i].chars().next_back()
}

fn after(t: &str, i: usize) -> Option<char> {
    t[i..].chars().next()
}

/// The last `n` characters of `text[..i]`.
fn tail(text: &str, i: usize, n: usize) -> &str {
    let start = text[..i]
        .char_indices()
        .rev()
        .nth(n - 1)
        .map_or(0, |(j, _)| j);
    &text[start..i]
}

/// Whether `hay` contains one of the lower-case `words`, ASCII letters compared without case (as
/// lower-casing `hay` would: no other character lower-cases into these words' letters).
fn has_word(hay: &str, words: &[&str]) -> bool {
    words.iter().any(|w| {
        hay.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    })
}

/// The bytes of `s` that `keep` accepts, on the stack: a resident ID without its spaces, a card
/// candidate's digits. Both are ASCII and at most 19 bytes; past 24 the rest is dropped, which
/// leaves a length no check accepts.
fn kept(s: &str, keep: fn(&u8) -> bool) -> Kept {
    let mut k = Kept {
        buf: [0; 24],
        len: 0,
    };
    for (slot, x) in k.buf.iter_mut().zip(s.bytes().filter(keep)) {
        *slot = x;
        k.len += 1;
    }
    k
}

/// What [`kept`] kept.
struct Kept {
    buf: [u8; 24],
    len: usize,
}

impl std::ops::Deref for Kept {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The hint lists a column name or key is in, one bit each.
const H_NAME: u8 = 1;
const H_ADDR: u8 = 2;
const H_DOB: u8 = 4;
const H_POST: u8 = 8;

/// Every hint word with its list's bit: a hint is in a list when it equals one of its words or
/// contains one of more than three characters.
static HINT_WORDS: LazyLock<(
    HashMap<&'static str, u8>,
    aho_corasick::AhoCorasick,
    Vec<u8>,
)> = LazyLock::new(|| {
    let lists = [
        (NAME_HINTS, H_NAME),
        (ADDR_HINTS, H_ADDR),
        (DOB_HINTS, H_DOB),
        (POST_HINTS, H_POST),
    ];
    let mut exact: HashMap<&'static str, u8> = HashMap::new();
    let (mut long, mut bits) = (Vec::new(), Vec::new());
    for (words, bit) in lists {
        for w in words {
            *exact.entry(w).or_default() |= bit;
            if w.chars().count() > 3 {
                long.push(*w);
                bits.push(bit);
            }
        }
    }
    let ac = aho_corasick::AhoCorasick::new(&long)
        .unwrap_or_else(|e| panic!("built-in hint words: {e}"));
    (exact, ac, bits)
});

/// The lists `hint` is in (`H_*` bits), from one lower-casing and one pass over it.
fn hinted(hint: Option<&str>) -> u8 {
    let Some(h) = hint.map(str::to_lowercase) else {
        return 0;
    };
    let (exact, ac, bits) = &*HINT_WORDS;
    let mut b = exact.get(h.as_str()).copied().unwrap_or(0);
    for m in ac.find_overlapping_iter(&h) {
        b |= bits[m.pattern().as_usize()];
    }
    b
}

const NAME_HINTS: &[&str] = &[
    "所有人",
    "syr",
    "代办人",
    "收款人",
    "持卡人",
    "姓名",
    "xm",
    "name",
    "联系人",
    "lxr",
    "法定代表人",
    "fddbr",
    "owner",
    "owner_name",
    "持有人",
    "户主",
    "hzxm",
    "cardholder",
    "holder",
    "customer_name",
    "full_name",
    "person_name",
    "username_cn",
    "czxm",
    "车主",
    "contact",
    "contact_name",
    "applicant",
    "patient",
    "driver",
    "fullname",
];
const ADDR_HINTS: &[&str] = &[
    "地址",
    "户籍地址",
    "住址",
    "现住址",
    "家庭住址",
    "通讯地址",
    "zz",
    "dz",
    "hjdz",
    "jzdz",
    "address",
    "addr",
    "home_address",
    "reg_address",
];
const DOB_HINTS: &[&str] = &[
    "出生日期",
    "出生年月",
    "生日",
    "csrq",
    "dob",
    "birth",
    "birthday",
    "birth_date",
    "date_of_birth",
    "birthdate",
];
const POST_HINTS: &[&str] = &[
    "邮编",
    "邮政编码",
    "yb",
    "yzbm",
    "postcode",
    "zip",
    "zipcode",
    "post_code",
    "postal_code",
];

/// Words whose absence rules recognisers out; the gate bit each one sets.
const GATE_WORDS: [(&str, u8); 15] = [
    ("生", DOB),
    ("dob", DOB),
    ("d.o.b", DOB),
    ("born", DOB),
    ("birth", DOB),
    ("邮编", POST),
    ("邮政编码", POST),
    ("postcode", POST),
    ("post code", POST),
    ("postal code", POST),
    ("zip", POST),
    ("男", BIO),
    ("女", BIO),
    ("岁", BIO),
    ("身份证", BIO),
];
const DOB: u8 = 1;
const POST: u8 = 2;
const BIO: u8 = 4;

/// The gate words (all lower case) for a search of the text with its ASCII letters lower-cased:
/// the same matches as a search without ASCII case, but on the SIMD (Teddy) searcher, which a
/// case-insensitive automaton cannot use.
static GATES: LazyLock<aho_corasick::AhoCorasick> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(GATE_WORDS.map(|(w, _)| w))
        .unwrap_or_else(|e| panic!("built-in gate words: {e}"))
});

thread_local! {
    /// The lower-cased copy of the text [`gates`] searches, kept between calls.
    static LOWERED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Which recognisers can keep a span in `text`, from one pass of its bytes: each bit is a
/// condition every kept span of that recogniser needs — a birth-date context word (`生` covers
/// 出生/生日/生于; the others are matched as the date check matches them, ASCII case folded), a
/// postcode context word, the `男`/`女`/`岁`/`身份证` after a name in a bio. The corpus's
/// documents average 430 bytes with about eight entities, so most lack several types and their
/// regex passes are skipped without changing any result.
fn gates(text: &str) -> u8 {
    LOWERED.with_borrow_mut(|low| {
        low.clear();
        low.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        let mut bits = 0;
        // Non-overlapping: no gate word overlaps another of a different bit (no word's ending
        // begins another), so the bits are those an overlapping search would set, found faster.
        for m in GATES.find_iter(low.as_slice()) {
            bits |= GATE_WORDS[m.pattern().as_usize()].1;
            if bits == DOB | POST | BIO {
                break;
            }
        }
        bits
    })
}

/// Find every entity in `text`. `hint` is the column name or JSON key the text came from, if any.
pub fn scan(text: &str, hint: Option<&str>) -> Vec<Span> {
    folded(text, |t| scan_in(t, hint, &Sites::find(t)))
}

/// [`scan`] with every recogniser searching the whole text instead of the windows around its
/// triggers: slower, and the reference the tests hold [`scan`] to, span for span.
pub fn scan_reference(text: &str, hint: Option<&str>) -> Vec<Span> {
    folded(text, |t| scan_in(t, hint, &Sites::whole(t)))
}

/// Run `f` on `text` with its full-width digits and Latin letters (`１３８`, `ＡＢ`, as Chinese
/// input methods type them in full-width mode) folded to ASCII, so an identifier typed that way
/// is read — and checked — like any other; the spans come back as offsets into `text`. Texts
/// without such characters (nearly all) are passed through untouched.
fn folded(text: &str, f: impl Fn(&str) -> Vec<Span>) -> Vec<Span> {
    let b = text.as_bytes();
    // U+FF10–FF19, FF21–FF3A are EF BC 90–99, A1–BA; U+FF41–FF5A are EF BD 81–9A.
    let full_width = |i: usize| {
        b.get(i + 1..i + 3).is_some_and(|x| {
            matches!(
                (x[0], x[1]),
                (0xbc, 0x90..=0x99) | (0xbc, 0xa1..=0xba) | (0xbd, 0x81..=0x9a)
            )
        })
    };
    if !memchr::memchr_iter(0xef, b).any(full_width) {
        return f(text);
    }
    let mut ascii = String::with_capacity(text.len());
    // The byte of `text` each byte of `ascii` came from, and one past the end.
    let mut from = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        let u = c as u32;
        match u {
            0xff10..=0xff19 | 0xff21..=0xff3a | 0xff41..=0xff5a => {
                from.push(i);
                ascii.push(char::from_u32(u - 0xfee0).unwrap_or(c));
            }
            _ => {
                from.extend(i..i + c.len_utf8());
                ascii.push(c);
            }
        }
    }
    from.push(text.len());
    f(&ascii)
        .into_iter()
        .map(|s| Span {
            start: from[s.start],
            end: from[s.end],
            kind: s.kind,
        })
        .collect()
}

thread_local! {
    /// The window and match buffers of [`Found`], kept between texts.
    static FOUND: std::cell::Cell<(Vec<Window>, Vec<Window>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// The matches of one recogniser at a time, in buffers reused for every recogniser and text.
struct Found<'a, 't> {
    text: &'a str,
    sites: &'a Sites<'t>,
    windows: Vec<Window>,
    hits: Vec<Window>,
}

impl<'a, 't> Found<'a, 't> {
    fn new(text: &'a str, sites: &'a Sites<'t>) -> Self {
        let (windows, hits) = FOUND.take();
        Found {
            text,
            sites,
            windows,
            hits,
        }
    }

    /// The matches of `re` in the windows of `site`.
    fn get(&mut self, re: &Pattern, site: Site) -> &[Window] {
        self.windows.clear();
        self.hits.clear();
        self.sites.windows_into(site, &mut self.windows);
        re.matches_into(
            self.text,
            &self.windows,
            self.sites.is_whole(),
            &mut self.hits,
        );
        &self.hits
    }

    /// [`Found::get`] if `open`: a recogniser whose context word is absent cannot keep a span,
    /// so its search is skipped.
    fn get_if(&mut self, open: bool, re: &Pattern, site: Site) -> &[Window] {
        if open { self.get(re, site) } else { &[] }
    }
}

impl Drop for Found<'_, '_> {
    fn drop(&mut self) {
        FOUND.set((
            std::mem::take(&mut self.windows),
            std::mem::take(&mut self.hits),
        ));
    }
}

fn scan_in(text: &str, hint: Option<&str>, sites: &Sites) -> Vec<Span> {
    let gate = gates(text);
    let hinted = hinted(hint);
    let mut f = Found::new(text, sites);
    let mut c: Vec<(u8, Span)> = Vec::with_capacity(32);
    let mut add = |prio: u8, start: usize, end: usize, kind: EntityType| {
        c.push((prio, Span { start, end, kind }))
    };
    let bounded = |s: usize, e: usize| !is_word(before(text, s)) && !is_word(after(text, e));

    for &(s, e) in f.get(&RID, Site::ResidentId) {
        let id = kept(&text[s..e], |x| *x != b' ');
        if bounded(s, e) && std::str::from_utf8(&id).is_ok_and(checks::resident_id) {
            add(100, s, e, EntityType::CnResidentId);
        }
    }
    for &(s, e) in f.get(&USCC, Site::Uscc) {
        if bounded(s, e) && checks::uscc(&text[s..e]) {
            add(95, s, e, EntityType::CnUscc);
        }
    }
    for &(s, e) in f.get(&CARD, Site::Card) {
        let d = kept(&text[s..e], u8::is_ascii_digit);
        // The separators are ASCII (` ` or `-`): consistent when all equal, none when absent.
        let mut seps = text.as_bytes()[s..e]
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_digit());
        let first_sep = seps.next();
        let consistent = seps.all(|c| Some(c) == first_sep);
        let no_seps = first_sep.is_none();
        let prefix_ok = d.starts_with(b"62")
            || d.starts_with(b"60")
            || d[0] == b'4'
            || d[0] == b'5'
            || d.starts_with(b"35")
            || d.starts_with(b"34")
            || d.starts_with(b"37");
        let id_shaped = d.len() == 18 && no_seps && {
            let y: u32 = std::str::from_utf8(&d[6..10])
                .ok()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            let mo: u32 = std::str::from_utf8(&d[10..12])
                .ok()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            (1900..=2030).contains(&y) && (1..=12).contains(&mo)
        };
        if !id_shaped
            && bounded(s, e)
            && !after(text, e).is_some_and(|c| c.is_ascii_digit())
            && consistent
            && prefix_ok
            && (15..=19).contains(&d.len())
            && checks::luhn(&d)
        {
            add(90, s, e, EntityType::BankCard);
        }
    }
    for &(s, e) in f.get(&EMAIL, Site::Email) {
        add(85, s, e, EntityType::Email);
    }
    for &(s, e) in f.get(&URL, Site::Url) {
        let u = text[s..e].trim_end_matches(['.', ',', ';', ':', '!', '?', ')']);
        let prev = before(text, s);
        if prev != Some('@')
            && !is_word(prev)
            && prev != Some('.')
            && (u.contains("://")
                || u.starts_with("www.")
                || u.contains('/')
                || u.matches('.').count() >= 2)
        {
            add(80, s, s + u.len(), EntityType::Url);
        }
    }
    for &(s, e) in f.get(&MAC, Site::Mac) {
        let m = &text[s..e];
        let consistent = !m.contains(':') || !m.contains('-');
        if consistent
            && !is_word(before(text, s))
            && !is_word(after(text, e))
            && !after(text, e).is_some_and(|c| c == ':' || c == '-')
        {
            add(76, s, e, EntityType::MacAddress);
        }
    }
    for &(s, e) in f.get(&IPV6, Site::Ipv6) {
        let m = &text[s..e];
        // Every IPv6 address has a `::` or at least six colons (eight groups, or six and an
        // IPv4 tail): times such as `10:30:00` are refused before the parser.
        if (m.contains("::") || m.bytes().filter(|c| *c == b':').count() >= 6)
            && m.parse::<std::net::Ipv6Addr>().is_ok()
            && !is_word(before(text, s))
            && !is_word(after(text, e))
        {
            add(75, s, e, EntityType::Ipv6);
        }
    }
    for &(s, e) in f.get(&IPV4, Site::Ipv4) {
        let ok = text[s..e].split('.').all(|o| {
            o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0'))
        });
        let (b, a) = (before(text, s), after(text, e));
        let a2 = text[e..].chars().nth(1);
        if ok
            && !is_word(b)
            && b != Some('.')
            && !is_word(a)
            && !(a == Some('.') && a2.is_some_and(|c| c.is_ascii_digit()))
        {
            add(70, s, e, EntityType::Ipv4);
        }
    }
    for &(s, e) in f.get(&MOBILE, Site::Mobile) {
        if !before(text, s).is_some_and(|c| c.is_ascii_digit() || c.is_ascii_alphabetic())
            && !after(text, e).is_some_and(|c| c.is_ascii_digit() || c.is_ascii_alphabetic())
        {
            add(65, s, e, EntityType::CnMobile);
        }
    }
    for &(s, e) in f.get(&LANDLINE, Site::Landline) {
        if !before(text, s)
            .is_some_and(|c| c.is_ascii_digit() || c.is_ascii_alphabetic() || c == '+')
            && !after(text, e).is_some_and(|c| c.is_ascii_digit())
        {
            add(60, s, e, EntityType::CnLandline);
        }
    }
    for &(s, e) in f.get(&PLATE, Site::Plate) {
        if !is_word(after(text, e)) {
            add(60, s, e, EntityType::CnLicensePlate);
        }
    }
    for &(s, e) in f.get(&PASSPORT, Site::Passport) {
        if bounded(s, e) {
            add(55, s, e, EntityType::Passport);
        }
    }
    let dob_hint = hinted & H_DOB != 0;
    for &(s, e) in f.get_if(dob_hint || gate & DOB != 0, &DATE, Site::Date) {
        if !bounded(s, e) {
            continue;
        }
        let ctx = has_word(
            tail(text, s, 16),
            &["出生", "生日", "dob", "d.o.b", "born", "birth", "生于"],
        ) || text[e..].starts_with("出生")
            || text[e..].starts_with("生");
        if dob_hint || ctx {
            add(50, s, e, EntityType::DateOfBirth);
        }
    }
    let post_hint = hinted & H_POST != 0;
    for &(s, e) in f.get_if(post_hint || gate & POST != 0, &SIX, Site::Postcode) {
        if !bounded(s, e) {
            continue;
        }
        if post_hint
            || has_word(
                tail(text, s, 12),
                &[
                    "邮编",
                    "邮政编码",
                    "postcode",
                    "post code",
                    "postal code",
                    "zip",
                ],
            )
        {
            add(45, s, e, EntityType::Postcode);
        }
    }
    if hinted & H_ADDR != 0 && text.chars().count() >= 6 && !text.contains('*') {
        add(42, 0, text.len(), EntityType::Address);
    }
    for &(s, e) in f.get(&ADDR_ZH, Site::AddressZh) {
        add(40, s, e, EntityType::Address);
    }
    for m in ADDR_EN.find_iter(text) {
        add(40, m.start(), m.end(), EntityType::Address);
    }
    // Names: from a name column, from context words, then every other occurrence of a found name.
    // Every name is a slice of the text: no copies.
    let mut names: Vec<&str> = Vec::new();
    let mut zh: Vec<&str> = Vec::new();
    let trimmed = text.trim();
    if hinted & H_NAME != 0 && !trimmed.is_empty() && !trimmed.contains('*') {
        let han = trimmed
            .chars()
            .all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || c == '·');
        let latin = trimmed.split(' ').all(|w| {
            w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && w.chars()
                    .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '\'')
        });
        if (han && (2..=6).contains(&trimmed.chars().count())) || (latin && trimmed.len() <= 40) {
            let s = text.find(trimmed).unwrap_or(0);
            add(30, s, s + trimmed.len(), EntityType::PersonName);
        }
    }
    // A cell that is nothing but a name, by its shape alone (opaque columns); no name shape is
    // longer than 40 bytes (four Han characters, or a nine-letter surname and a three-syllable
    // given name).
    if hint.is_some()
        && !trimmed.is_empty()
        && trimmed.len() <= 40
        && (zh_name_shaped(trimmed)
            || trimmed
                .split_once(' ')
                .is_some_and(|(a, b)| !b.contains(' ') && pinyin_name(a, b)))
    {
        let s = text.find(trimmed).unwrap_or(0);
        add(29, s, s + trimmed.len(), EntityType::PersonName);
    }
    for &((a, z), (b, y)) in sites.latin_pairs().iter() {
        if pinyin_name(&text[a..z], &text[b..y]) {
            names.push(&text[a..y]);
        }
    }
    let whole = sites.is_whole();
    let (zh_ctx, en_ctx) = if whole {
        (
            captured_names(&NAME_ZH_CTX, text),
            captured_names(&NAME_EN_CTX, text),
        )
    } else {
        context_word_names(text)
    };
    let bio = match (gate & BIO != 0, whole) {
        (false, _) => Vec::new(),
        (true, true) => captured_names(&NAME_ZH_BIO, text),
        (true, false) => bio_names(text),
    };
    for (gs, ge) in zh_ctx.into_iter().chain(bio) {
        let g = &text[gs..ge];
        let stop = g
            .char_indices()
            .find(|(_, c)| "的是在于和与及男女先生士岁号市省区".contains(*c))
            .map_or(g.len(), |(i, _)| i);
        let name = &g[..stop];
        let max = if COMPOUND_SURNAMES.iter().any(|c| name.starts_with(c)) {
            4
        } else {
            3
        };
        let end = name.char_indices().nth(max).map_or(name.len(), |(i, _)| i);
        let name = &name[..end];
        if name.chars().count() >= 2 {
            zh.push(name);
        }
    }
    // A three-character capture whose first two characters are a name found elsewhere in the text
    // is that name followed by a verb or noun ("侯宏反映").
    let short: Vec<&str> = zh
        .iter()
        .copied()
        .filter(|n| n.chars().count() == 2)
        .collect();
    for n in zh {
        match short
            .iter()
            .find(|s| n.chars().count() == 3 && n.starts_with(**s))
        {
            Some(s) => names.push(s),
            None => names.push(n),
        }
    }
    for (s, e) in en_ctx {
        let name = &text[s..e];
        const NOT: [&str; 8] = [
            "The", "This", "Our", "Your", "Please", "Team", "Service", "Support",
        ];
        if !NOT.iter().any(|w| name.starts_with(w)) && !name.eq_ignore_ascii_case("all") {
            names.push(name);
        }
    }
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    names.dedup();
    for n in &names {
        let latin = n.is_ascii();
        // Non-overlapping occurrences, leftmost first.
        for s in memchr::memmem::find_iter(text.as_bytes(), n.as_bytes()) {
            let e = s + n.len();
            if !latin || (!is_word(before(text, s)) && !is_word(after(text, e))) {
                add(30, s, e, EntityType::PersonName);
            }
        }
    }
    resolve(c)
}

/// The column or key name at the end of a unit key (`residents:0:姓名`, `rec-1:/person/name`),
/// used as the hint of [`scan`].
pub fn hint_from_key(key: &str) -> Option<&str> {
    let (_, tail) = key.rsplit_once(':')?;
    let last = tail.rsplit('/').next().unwrap_or(tail);
    (!last.is_empty()).then_some(last)
}

/// The spans with Unicode code-point offsets (Python `str` indices, as the corpus and the
/// `scan` contract use) instead of byte offsets.
pub fn code_point_spans(text: &str, spans: &[Span]) -> Vec<(usize, usize, EntityType)> {
    // Spans come sorted and disjoint from `scan`, so one walk counts every offset; an offset
    // behind the walk (spans from elsewhere) is counted from the start.
    let (mut byte, mut cp) = (0usize, 0usize);
    let mut at = |off: usize| {
        if off < byte {
            return text[..off].chars().count();
        }
        cp += text[byte..off].chars().count();
        byte = off;
        cp
    };
    spans
        .iter()
        .map(|s| (at(s.start), at(s.end), s.kind))
        .collect()
}

/// Keep the best candidate where candidates overlap: higher priority, then longer.
fn resolve(mut c: Vec<(u8, Span)>) -> Vec<Span> {
    c.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then((b.1.end - b.1.start).cmp(&(a.1.end - a.1.start)))
            .then(a.1.start.cmp(&b.1.start))
    });
    let mut kept: Vec<Span> = Vec::new();
    for (_, s) in c {
        if s.start < s.end && kept.iter().all(|k| s.end <= k.start || s.start >= k.end) {
            kept.push(s);
        }
    }
    kept.sort_by_key(|s| s.start);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Each hand matcher finds what its regex finds, on strings dense in digits, separators
        /// and prefixes.
        #[test]
        fn hand_matchers_equal_their_regexes(
            v in prop::collection::vec(prop::sample::select(vec![
                "0", "1", "3", "8", "9", "86", "+86", "0086", "86-", " ", "-", ".", "(", ")", "X",
                "x", "E", "G", "A", "I", "Z", "12345", "2345678", "13812345678", "010", "0755",
                "(0755)", "1.2.3.4", "999.", "420106198608147579", "4201 0619860814 757X",
            ]), 0..14)
        ) {
            let t = v.concat();
            let all = [(0, t.len())];
            for re in [&*RID, &*USCC, &*CARD, &*IPV4, &*SIX, &*PASSPORT, &*MOBILE, &*LANDLINE] {
                prop_assert_eq!(re.matches(&t, &all, false), re.matches(&t, &all, true), "{}", t);
            }
        }

        /// The plate matcher finds what the plate regex finds, on strings dense in provinces,
        /// plate letters, digits, separators and the special last characters.
        #[test]
        fn plate_matcher_equals_its_regex(
            v in prop::collection::vec(prop::sample::select(vec![
                "京", "浙", "粤", "琼", "中", "A", "B", "D", "F", "I", "O", "Z", "K", "0", "1", "5",
                "12345", "1234", "DL", "·", "•", " ", "-", "挂", "学", "警", "领", "京A", "浙KDL465",
                "粤B", "京AD", "沪A·", "é",
            ]), 0..14)
        ) {
            let t = v.concat();
            let all = [(0, t.len())];
            prop_assert_eq!(PLATE.matches(&t, &all, false), PLATE.matches(&t, &all, true), "{}", t);
        }
    }

    proptest! {
        /// The gates of the lower-cased search are those of a search without ASCII case.
        #[test]
        fn gates_equal_a_case_insensitive_search(
            v in prop::collection::vec(prop::sample::select(vec![
                "生", "出生", "DOB", "dOb", "D.O.B", "d.o.", "b", "Born", "BIRTH", "birthday",
                "邮编", "邮政编码", "POSTCODE", "Post Code", "postal", "Postal Code", "code", "ZIP",
                "zi", "p", "男", "女", "岁", "身份证", "身份", "x", " ", ".", "Ａ", "é",
            ]), 0..10)
        ) {
            let t = v.concat();
            let ac = aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(GATE_WORDS.map(|(w, _)| w))
                .expect("gate words");
            let want = ac
                .find_overlapping_iter(&t)
                .fold(0, |b, m| b | GATE_WORDS[m.pattern().as_usize()].1);
            prop_assert_eq!(gates(&t), want, "{}", t);
        }
    }

    fn kinds(t: &str, hint: Option<&str>) -> Vec<(String, &'static str)> {
        scan(t, hint)
            .into_iter()
            .map(|s| (t[s.start..s.end].to_string(), s.kind.as_str()))
            .collect()
    }

    fn assert_found(k: &[(String, &'static str)], want: (&str, &str)) {
        assert!(
            k.iter().any(|(t, kind)| t == want.0 && *kind == want.1),
            "{want:?} not in {k:?}"
        );
    }

    #[test]
    fn finds_the_identifiers_of_a_record() {
        let t = "张琳，男，1986年8月14日出生，公民身份号码420106198608147579，手机+86 153 3877 7836，卡号6212261688864991170，代码53420106MALB65AK9N，车牌浙KDL4654，邮编430061。";
        let k = kinds(t, None);
        for want in [
            ("张琳", "PERSON_NAME"),
            ("1986年8月14日", "DATE_OF_BIRTH"),
            ("420106198608147579", "CN_RESIDENT_ID"),
            ("+86 153 3877 7836", "CN_MOBILE"),
            ("6212261688864991170", "BANK_CARD"),
            ("53420106MALB65AK9N", "CN_USCC"),
            ("浙KDL4654", "CN_LICENSE_PLATE"),
            ("430061", "POSTCODE"),
        ] {
            assert_found(&k, want);
        }
    }

    #[test]
    fn full_width_identifiers_are_read_like_ascii_ones() {
        let t = "手机１３８１２３４５６７８，身份证４２０１０６１９８６０８１４７５７９，车牌京Ａ１２３４５。";
        let k = kinds(t, None);
        for want in [
            ("１３８１２３４５６７８", "CN_MOBILE"),
            ("４２０１０６１９８６０８１４７５７９", "CN_RESIDENT_ID"),
            ("京Ａ１２３４５", "CN_LICENSE_PLATE"),
        ] {
            assert_found(&k, want);
        }
        // A wrong check digit is refused in full width too, and offsets stay in the original.
        assert!(kinds("证件４２０１０６１９８６０８１４７５７８", None).is_empty());
        let spans = code_point_spans(t, &scan(t, None));
        assert!(spans.contains(&(2, 13, EntityType::CnMobile)), "{spans:?}");
    }

    #[test]
    fn ignores_hard_negatives() {
        for t in [
            "合同编号420106198608147578",
            "流水号6212261688864991171",
            "工单编号10012345678",
            "IP 300.1.2.3",
            "手机138****5678",
            "身份证110105********123X",
            "预约日期2023-02-09",
        ] {
            assert!(scan(t, None).is_empty(), "{t}: {:?}", kinds(t, None));
        }
    }

    #[test]
    fn network_and_contact() {
        let t = "From: Zheng Yuling <zhengyuling115@yahoo.com> MAC 0C-A6-C0-D6-7B-94 got 10.14.139.7 and fe80::1c2b:3dff:fe4a:5e6f; Tel: 010 4032 0837; see https://www.metro-demo.com/case/query.";
        let k = kinds(t, None);
        for want in [
            ("Zheng Yuling", "PERSON_NAME"),
            ("zhengyuling115@yahoo.com", "EMAIL"),
            ("0C-A6-C0-D6-7B-94", "MAC_ADDRESS"),
            ("10.14.139.7", "IPV4"),
            ("fe80::1c2b:3dff:fe4a:5e6f", "IPV6"),
            ("010 4032 0837", "CN_LANDLINE"),
            ("https://www.metro-demo.com/case/query", "URL"),
        ] {
            assert_found(&k, want);
        }
    }

    #[test]
    fn pinyin_names_without_a_context_word() {
        let k = kinds(
            "The report was filed by Zhang Wei and LI Mingzhen on Monday.",
            None,
        );
        assert!(
            k.contains(&("Zhang Wei".to_string(), "PERSON_NAME")),
            "{k:?}"
        );
        assert!(
            k.contains(&("LI Mingzhen".to_string(), "PERSON_NAME")),
            "{k:?}"
        );
        // Capitalised words that are not a pinyin surname and given name stay unflagged.
        assert!(kinds("Meeting Room Booking System", None).is_empty());
    }

    #[test]
    fn addresses_and_hints() {
        let k = kinds("户籍地湖北省武汉市武昌区迎宾大道467号。", None);
        assert!(
            k.contains(&("湖北省武汉市武昌区迎宾大道467号".to_string(), "ADDRESS")),
            "{k:?}"
        );
        let k = kinds(
            "Room 1704, Block D, No. 487 Jiefang East Road, Xuhui District, Shanghai",
            None,
        );
        assert_eq!(k.len(), 1, "{k:?}");
        assert_eq!(
            kinds("秦燕铭", Some("姓名")),
            vec![("秦燕铭".to_string(), "PERSON_NAME")]
        );
        assert_eq!(
            kinds("410006", Some("postcode")),
            vec![("410006".to_string(), "POSTCODE")]
        );
        assert!(kinds("410006", None).is_empty());
    }
}
