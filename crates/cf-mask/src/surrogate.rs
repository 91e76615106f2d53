//! Surrogates (MSK-1): realistic substitutes that pass the same validators as the original
//! (GB 11643 resident IDs, Luhn bank cards, GB 32100 credit codes, mobile prefixes), keyed so one
//! person gets the same surrogate in every table; and synthetic values for the other types.

use cf_classify::checks;

use crate::fpe;
use crate::{EntityType, FpeCipher, MaskError, Masker};

fn na(why: &str) -> MaskError {
    MaskError::NotApplicable {
        rule: "surrogate",
        why: why.into(),
    }
}

// Days since 1970-01-01 of a civil date, and back (H. Hinnant's algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn keyed(m: &Masker, label: &str, v: &str) -> u64 {
    u64::from_be_bytes(
        m.prf(label, v.as_bytes())[..8]
            .try_into()
            .unwrap_or_default(),
    )
}

/// Resident ID: region kept, birth date moved by a keyed 1-365 days, sequence re-drawn with the
/// same gender digit parity, check character recomputed.
fn resident_id(m: &Masker, v: &str) -> Result<String, MaskError> {
    let id: String = v
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if !checks::resident_id(&id) {
        return Err(na("not a valid resident ID"));
    }
    let n = |r: std::ops::Range<usize>| id[r].parse::<i64>().unwrap_or(1);
    let k = keyed(m, "sur-id", &id);
    let days = days_from_civil(n(6..10), n(10..12), n(12..14)) + 1 + (k % 365) as i64;
    let (y, mo, d) = civil_from_days(days);
    let gender = n(16..17) % 2;
    let seq = ((k >> 16) % 500) as i64 * 2 + gender; // 0..999 with the same parity
    let first17 = format!("{}{y:04}{mo:02}{d:02}{seq:03}", &id[..6]);
    let check = checks::resident_id_check(first17.as_bytes())
        .ok_or_else(|| na("internal: not 17 digits"))?;
    Ok(format!("{first17}{}", check as char))
}

/// Bank card: issuer prefix (6) kept, account digits format-preserving encrypted, Luhn recomputed;
/// grouping spaces kept.
fn bank_card(m: &Masker, v: &str) -> Result<String, MaskError> {
    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) || !checks::luhn(digits.as_bytes()) {
        return Err(na("not a Luhn-valid card number"));
    }
    let body = &digits[6..digits.len() - 1];
    let new_body = if body.len() >= 6 {
        fpe::encrypt(m, FpeCipher::Aes, body)?
    } else {
        format!(
            "{:0w$}",
            keyed(m, "sur-card", &digits) % 10u64.pow(body.len() as u32),
            w = body.len()
        )
    };
    let payload = format!("{}{new_body}", &digits[..6]);
    let full = format!(
        "{payload}{}",
        checks::luhn_check(payload.as_bytes()) as char
    );
    let mut it = full.chars();
    Ok(v.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                it.next().unwrap_or(c)
            } else {
                c
            }
        })
        .collect())
}

/// Mobile: country code and the 3-digit carrier prefix kept, the 8 subscriber digits FPE'd.
fn mobile(m: &Masker, v: &str) -> Result<String, MaskError> {
    let digits: Vec<(usize, char)> = v
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .collect();
    if digits.len() < 11 {
        return Err(na("not a mobile number"));
    }
    let sub: String = digits[digits.len() - 8..].iter().map(|(_, c)| *c).collect();
    let enc = fpe::encrypt(m, FpeCipher::Aes, &sub)?;
    let mut out: Vec<char> = v.chars().collect();
    let char_pos: Vec<usize> = v
        .char_indices()
        .enumerate()
        .filter(|(_, (_, c))| c.is_ascii_digit())
        .map(|(ci, _)| ci)
        .collect();
    for (p, c) in char_pos[char_pos.len() - 8..].iter().zip(enc.chars()) {
        out[*p] = c;
    }
    Ok(out.into_iter().collect())
}

/// Credit code: authority, type and region (8) kept; organisation code re-drawn with its
/// GB 11714 check; GB 32100 check recomputed.
fn uscc(m: &Masker, v: &str) -> Result<String, MaskError> {
    let code = v.trim().to_ascii_uppercase();
    if !checks::uscc(&code) {
        return Err(na("not a valid credit code"));
    }
    let k = keyed(m, "sur-uscc", &code);
    let org = format!("{:08}", k % 100_000_000);
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = org
        .bytes()
        .zip(W)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    let c = match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from(b'0' + n as u8),
    };
    let first17 = format!("{}{org}{c}", &code[..8]);
    let check = checks::uscc_check(first17.as_bytes()).ok_or_else(|| na("internal: alphabet"))?;
    Ok(format!("{first17}{}", check as char))
}

/// A check-digit-valid surrogate for identifiers; other types get a synthetic value.
pub fn surrogate(m: &Masker, entity: Option<EntityType>, v: &str) -> Result<String, MaskError> {
    match entity {
        Some(EntityType::CnResidentId) => resident_id(m, v),
        Some(EntityType::BankCard) => bank_card(m, v),
        Some(EntityType::CnMobile) => mobile(m, v),
        Some(EntityType::CnUscc) => uscc(m, v),
        _ => Ok(synthetic(m, entity, v)),
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "华", "建国",
];
const PINYIN_SUR: &[&str] = &[
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou",
];
const PINYIN_GIVEN: &[&str] = &[
    "Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang",
];
const STREETS: &[&str] = &[
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "和平路",
    "新华路",
    "文化路",
    "胜利路",
];

/// A synthetic value of the same type, keyed and consistent; unknown types keep their shape
/// (digits become keyed digits, letters keyed letters).
pub fn synthetic(m: &Masker, entity: Option<EntityType>, v: &str) -> String {
    let k = keyed(m, "synthetic", v);
    let pick = |t: &[&'static str], s: u64| t[(s % t.len() as u64) as usize];
    match entity {
        Some(EntityType::PersonName) => {
            if v.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) {
                format!("{}{}", pick(SURNAMES, k), pick(GIVEN, k >> 8))
            } else {
                format!("{} {}", pick(PINYIN_SUR, k), pick(PINYIN_GIVEN, k >> 8))
            }
        }
        Some(EntityType::Email) => {
            let domain = v.rsplit_once('@').map_or("example.com", |(_, d)| d);
            format!("user{:06x}@{domain}", k & 0xFF_FFFF)
        }
        Some(EntityType::Address) => match v.find('市') {
            Some(i) => format!(
                "{}{}{}号",
                &v[..i + '市'.len_utf8()],
                pick(STREETS, k),
                k % 300 + 1
            ),
            None => format!("{} {} Road", k % 300 + 1, pick(PINYIN_SUR, k >> 4)),
        },
        Some(EntityType::Ipv4) => format!(
            "10.{}.{}.{}",
            (k >> 8) & 0xFF,
            (k >> 16) & 0xFF,
            (k >> 24) & 0xFE | 1
        ),
        _ => {
            let mut s = k;
            v.chars()
                .map(|c| {
                    s = s.rotate_left(7) ^ 0x9E37_79B9_7F4A_7C15;
                    if c.is_ascii_digit() {
                        char::from(b'0' + (s % 10) as u8)
                    } else if c.is_ascii_uppercase() {
                        char::from(b'A' + (s % 26) as u8)
                    } else if c.is_ascii_lowercase() {
                        char::from(b'a' + (s % 26) as u8)
                    } else {
                        c
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Masker {
        Masker::new([1; 32])
    }

    #[test]
    fn dates_convert_both_ways() {
        for (y, mo, d) in [(1970, 1, 1), (2000, 2, 29), (1949, 12, 31), (2100, 3, 1)] {
            assert_eq!(civil_from_days(days_from_civil(y, mo, d)), (y, mo, d));
        }
    }

    #[test]
    fn surrogates_pass_the_validators_and_are_consistent() {
        let id = "11010519491231002X";
        let s = surrogate(&m(), Some(EntityType::CnResidentId), id).unwrap();
        assert!(checks::resident_id(&s), "{s}");
        assert_ne!(s, id);
        assert_eq!(&s[..6], "110105");
        assert_eq!(s.as_bytes()[16] % 2, id.as_bytes()[16] % 2, "gender kept");
        assert_eq!(
            s,
            surrogate(&m(), Some(EntityType::CnResidentId), id).unwrap()
        );
        assert!(
            cf_classify::scan(&s, None)
                .iter()
                .any(|sp| sp.kind == EntityType::CnResidentId),
            "the surrogate still looks real"
        );

        let card = "6222 0212 3456 7890 128";
        let digits: String = card.chars().filter(char::is_ascii_digit).collect();
        let fixed = format!(
            "{}{}",
            &digits[..digits.len() - 1],
            checks::luhn_check(&digits.as_bytes()[..digits.len() - 1]) as char
        );
        let s = surrogate(&m(), Some(EntityType::BankCard), &fixed).unwrap();
        assert!(
            checks::luhn(s.as_bytes()) && s.starts_with("622202") && s != fixed,
            "{s}"
        );

        let s = surrogate(&m(), Some(EntityType::CnMobile), "+86 138-0013-8000").unwrap();
        assert!(
            s.starts_with("+86 138-")
                && s.len() == "+86 138-0013-8000".len()
                && s != "+86 138-0013-8000",
            "{s}"
        );

        let code = "91350100M000100Y4";
        let full = format!(
            "{code}{}",
            checks::uscc_check(code.as_bytes()).unwrap() as char
        );
        let s = surrogate(&m(), Some(EntityType::CnUscc), &full).unwrap();
        assert!(
            checks::uscc(&s) && s.starts_with("91350100") && s != full,
            "{s}"
        );
        assert!(surrogate(&m(), Some(EntityType::CnResidentId), "110105194912310021").is_err());
    }

    #[test]
    fn synthetic_values_keep_type_and_shape() {
        let n = synthetic(&m(), Some(EntityType::PersonName), "张三丰");
        assert!(n.chars().all(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)) && n != "张三丰");
        assert_eq!(n, synthetic(&m(), Some(EntityType::PersonName), "张三丰"));
        assert!(synthetic(&m(), Some(EntityType::Email), "zhangsan@163.com").ends_with("@163.com"));
        let p = synthetic(&m(), Some(EntityType::Passport), "E12345678");
        assert!(
            p.len() == 9
                && p.as_bytes()[0].is_ascii_uppercase()
                && p[1..].chars().all(|c| c.is_ascii_digit())
        );
    }
}
