//! Check-digit algorithms of the identifiers (a value that fails its check is not reported).

/// The GB 11643 (ISO 7064 MOD 11-2) check character of 17 resident-ID digits; `None` if they are
/// not 17 ASCII digits.
pub fn resident_id_check(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = first17
        .iter()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    Some(b"10X98765432"[(sum % 11) as usize])
}

/// GB 11643-1999 resident ID: ISO 7064 MOD 11-2 over 17 digits, check `0-9` or `X`.
pub fn resident_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 18
        && resident_id_check(&b[..17]) == Some(b[17].to_ascii_uppercase())
        && valid_date(&id[6..14])
}

/// Whether `yyyymmdd` is a plausible calendar date (1900-2100).
pub fn valid_date(yyyymmdd: &str) -> bool {
    let n = |r: std::ops::Range<usize>| {
        yyyymmdd
            .get(r)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    (1900..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// The Luhn check digit (ASCII) to append to `payload` (ASCII digits).
pub fn luhn_check(payload: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, d) in payload.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    b'0' + ((10 - sum % 10) % 10) as u8
}

/// Luhn (ISO/IEC 7812) over the digits of `s`.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

const USCC_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The characters of a unified social credit code, in value order.
pub const USCC_ALPHABET: &[u8] = USCC_CHARS;

/// The GB 32100 mod-31 check character for the first 17 characters; `None` if one is not in
/// the code's alphabet.
pub fn uscc_check(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    const W: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let mut sum = 0;
    for (c, w) in first17.iter().zip(W) {
        sum += USCC_CHARS.iter().position(|x| x == c)? as u32 * w;
    }
    Some(USCC_CHARS[((31 - sum % 31) % 31) as usize])
}

/// GB 32100-2015 unified social credit code: mod-31 check character, with the embedded
/// GB 11714 organisation code check.
pub fn uscc(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 18 && uscc_check(&b[..17]) == Some(b[17]) && b[2..8].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computed_checks_agree_with_the_validators() {
        let id = b"11010519491231002";
        let c = resident_id_check(id).unwrap();
        assert!(resident_id(&format!(
            "{}{}",
            std::str::from_utf8(id).unwrap(),
            c as char
        )));
        for p in ["622202100112345678", "453201511283036", "7992739871"] {
            let d = luhn_check(p.as_bytes());
            assert!(luhn(format!("{p}{}", d as char).as_bytes()), "{p}");
        }
        let u = b"91350100M000100Y4";
        let c = uscc_check(u).unwrap();
        assert!(uscc(&format!(
            "{}{}",
            std::str::from_utf8(u).unwrap(),
            c as char
        )));
    }

    #[test]
    fn known_values() {
        assert!(resident_id("11010219471104386X"));
        assert!(resident_id("420106198608147579"));
        assert!(!resident_id("420106198608147578"));
        assert!(luhn(b"6212261688864991170"));
        assert!(!luhn(b"6212261688864991171"));
        assert!(uscc("91110102291730547F"));
        assert!(uscc("53420106MALB65AK9N"));
        assert!(!uscc("91110101MAL4F3DW3Q"));
    }
}
