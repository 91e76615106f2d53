//! Format-preserving encryption (NIST SP 800-38G FF1, or FF3-1 of Rev. 1, over AES-256 or SM4):
//! digits are encrypted among digits, letters among letters (case kept), every other character
//! stays in place. A class with too small a domain (fewer than 6 digits or 5 letters, under
//! NIST's 10^6 minimum) is left as it is; if nothing can be encrypted the value is refused.

use fpe::ff1::{FF1, FlexibleNumeralString};

use cf_crypto::sm4t::Sm4T;

use crate::ff3::Ff3_1;
use crate::{FpeCipher, FpeMode, MaskError, Masker};

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Digit,
    Letter,
}

fn positions(chars: &[char], c: Class) -> Vec<usize> {
    chars
        .iter()
        .enumerate()
        .filter(|(_, ch)| match c {
            Class::Digit => ch.is_ascii_digit(),
            Class::Letter => ch.is_ascii_alphabetic(),
        })
        .map(|(i, _)| i)
        .collect()
}

/// FF3-1 over `nums` (one class of numerals) with the class as the tweak.
fn ff3_1(
    key: &[u8; 32],
    cipher: FpeCipher,
    radix: u32,
    class: Class,
    nums: &[u16],
    decrypt: bool,
) -> Result<Vec<u16>, crate::ff3::Ff3Error> {
    let tweak = [class as u8, 0, 0, 0, 0, 0, 0];
    match cipher {
        FpeCipher::Aes => Ff3_1::<aes::Aes256>::new(&key[..], radix)?.apply(&tweak, nums, decrypt),
        FpeCipher::Sm4 => Ff3_1::<Sm4T>::new(&key[..16], radix)?.apply(&tweak, nums, decrypt),
    }
}

fn run(
    m: &Masker,
    cipher: FpeCipher,
    mode: FpeMode,
    value: &str,
    decrypt: bool,
) -> Result<String, MaskError> {
    let mut chars: Vec<char> = value.chars().collect();
    let mut done = false;
    for (class, radix, min) in [(Class::Digit, 10u32, 6usize), (Class::Letter, 26, 5)] {
        let pos = positions(&chars, class);
        if pos.len() < min {
            continue;
        }
        let nums: Vec<u16> = pos
            .iter()
            .map(|&i| match class {
                Class::Digit => chars[i] as u16 - '0' as u16,
                Class::Letter => chars[i].to_ascii_lowercase() as u16 - 'a' as u16,
            })
            .collect();
        let key = m.fpe_key(cipher, mode);
        if mode == FpeMode::Ff3_1 {
            let out = ff3_1(&key, cipher, radix, class, &nums, decrypt).map_err(|e| {
                MaskError::NotApplicable {
                    rule: "fpe",
                    why: e.to_string(),
                }
            })?;
            put(&mut chars, &pos, class, out);
            done = true;
            continue;
        }
        let ns = FlexibleNumeralString::from(nums);
        let tweak = [class as u8];
        let out: Vec<u16> = match cipher {
            FpeCipher::Aes => {
                let f = FF1::<aes::Aes256>::new(&key[..], radix)
                    .map_err(|_| MaskError::Policy("FF1 radix".into()))?;
                if decrypt {
                    f.decrypt(&tweak, &ns)
                } else {
                    f.encrypt(&tweak, &ns)
                }
            }
            FpeCipher::Sm4 => {
                let f = FF1::<Sm4T>::new(&key[..16], radix)
                    .map_err(|_| MaskError::Policy("FF1 radix".into()))?;
                if decrypt {
                    f.decrypt(&tweak, &ns)
                } else {
                    f.encrypt(&tweak, &ns)
                }
            }
        }
        .map_err(|e| MaskError::NotApplicable {
            rule: "fpe",
            why: format!("{e:?}"),
        })?
        .into();
        put(&mut chars, &pos, class, out);
        done = true;
    }
    if !done {
        return Err(MaskError::NotApplicable {
            rule: "fpe",
            why: "fewer than 6 digits and 5 letters: the domain is too small for FF1".into(),
        });
    }
    Ok(chars.into_iter().collect())
}

/// Write a class's numerals back into their places (letters keep their case).
fn put(chars: &mut [char], pos: &[usize], class: Class, out: Vec<u16>) {
    for (&i, n) in pos.iter().zip(out) {
        // Numerals are below the radix (10 or 26): they fit a byte.
        let n = n as u8;
        chars[i] = match class {
            Class::Digit => char::from(b'0' + n),
            Class::Letter if chars[i].is_ascii_uppercase() => char::from(b'A' + n),
            Class::Letter => char::from(b'a' + n),
        };
    }
}

/// Encrypt keeping the format (FF1).
pub fn encrypt(m: &Masker, cipher: FpeCipher, value: &str) -> Result<String, MaskError> {
    run(m, cipher, FpeMode::Ff1, value, false)
}

/// Decrypt what [`encrypt`] produced (authorised re-identification).
pub fn decrypt(m: &Masker, cipher: FpeCipher, value: &str) -> Result<String, MaskError> {
    run(m, cipher, FpeMode::Ff1, value, true)
}

/// Encrypt keeping the format, in FF1 or FF3-1.
pub fn encrypt_with(
    m: &Masker,
    cipher: FpeCipher,
    mode: FpeMode,
    value: &str,
) -> Result<String, MaskError> {
    run(m, cipher, mode, value, false)
}

/// Decrypt what [`encrypt_with`] produced with the same cipher and mode.
pub fn decrypt_with(
    m: &Masker,
    cipher: FpeCipher,
    mode: FpeMode,
    value: &str,
) -> Result<String, MaskError> {
    run(m, cipher, mode, value, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_format_and_reverses() {
        let m = Masker::new([3; 32]);
        for (c, mode) in [
            (FpeCipher::Aes, FpeMode::Ff1),
            (FpeCipher::Sm4, FpeMode::Ff1),
            (FpeCipher::Aes, FpeMode::Ff3_1),
            (FpeCipher::Sm4, FpeMode::Ff3_1),
        ] {
            for v in [
                "13800138000",
                "6222 0212 3456 7890",
                "E12345678",
                "+86-138-0013-8000",
                "AbCdEf-123456",
            ] {
                let e = encrypt_with(&m, c, mode, v).unwrap();
                assert_ne!(e, v);
                assert_eq!(e.len(), v.len());
                for (a, b) in v.chars().zip(e.chars()) {
                    assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{v} -> {e}");
                    assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
                    if !a.is_ascii_alphanumeric() {
                        assert_eq!(a, b);
                    }
                }
                assert_eq!(decrypt_with(&m, c, mode, &e).unwrap(), v);
            }
        }
        assert!(encrypt(&m, FpeCipher::Aes, "12-34").is_err());
        // The two modes are different functions under different keys.
        assert_ne!(
            encrypt_with(&m, FpeCipher::Aes, FpeMode::Ff1, "13800138000").unwrap(),
            encrypt_with(&m, FpeCipher::Aes, FpeMode::Ff3_1, "13800138000").unwrap()
        );
        // FF3-1 takes at most 56 digits (2·⌊log10 2^96⌋): a longer run is refused, not cut.
        let long = "1".repeat(57);
        let e = encrypt_with(&m, FpeCipher::Aes, FpeMode::Ff3_1, &long).unwrap_err();
        assert!(e.to_string().contains("6..=56"), "{e}");
    }

    #[test]
    fn nist_ff1_sample_1_through_the_fpe_crate() {
        // NIST SP 800-38G FF1 sample 1 (AES-128, radix 10): checks the crate we build on.
        let key = [
            0x2B, 0x7E, 0x15, 0x16, 0x28, 0xAE, 0xD2, 0xA6, 0xAB, 0xF7, 0x15, 0x88, 0x09, 0xCF,
            0x4F, 0x3C,
        ];
        let f = FF1::<aes::Aes128>::new(&key, 10).unwrap();
        let pt = FlexibleNumeralString::from(vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let ct: Vec<u16> = f.encrypt(&[], &pt).unwrap().into();
        assert_eq!(ct, vec![2, 4, 3, 3, 4, 7, 7, 4, 8, 4]);
    }

    proptest! {
        #[test]
        fn round_trips(v in "[0-9]{6,20}") {
            let m = Masker::new([9; 32]);
            let e = encrypt(&m, FpeCipher::Sm4, &v).unwrap();
            prop_assert_eq!(decrypt(&m, FpeCipher::Sm4, &e).unwrap(), v);
        }
    }
}
