//! Check-digit algorithms of the identifiers (a value that fails its check is not reported).

/// GB 11643-1999 resident ID: ISO 7064 MOD 11-2 over 17 digits, check `0-9` or `X`.
pub(crate) fn resident_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = b[..17]
        .iter()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    b[17].to_ascii_uppercase() == check && valid_date(&id[6..14])
}

fn valid_date(yyyymmdd: &str) -> bool {
    let n = |r: std::ops::Range<usize>| {
        yyyymmdd
            .get(r)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    (1900..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// Luhn (ISO/IEC 7812) over the digits of `s`.
pub(crate) fn luhn(digits: &[u8]) -> bool {
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

/// GB 32100-2015 unified social credit code: mod-31 check character, with the embedded
/// GB 11714 organisation code check.
pub(crate) fn uscc(code: &str) -> bool {
    let b = code.as_bytes();
    if b.len() != 18 {
        return false;
    }
    let val = |c: u8| USCC_CHARS.iter().position(|&x| x == c).map(|p| p as u32);
    const W: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let mut sum = 0;
    for (c, w) in b[..17].iter().zip(W) {
        match val(*c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    let check = (31 - sum % 31) % 31;
    val(b[17]) == Some(check) && b[2..8].iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

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
