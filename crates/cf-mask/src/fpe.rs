//! Format-preserving encryption (NIST SP 800-38G FF1 over AES-256 or SM4): digits are encrypted
//! among digits, letters among letters (case kept), every other character stays in place.
//! A class with too small a domain (fewer than 6 digits or 5 letters, under NIST's 10^6 minimum)
//! is left as it is; if nothing can be encrypted the value is refused.

use fpe::ff1::{FF1, FlexibleNumeralString};

use crate::{FpeCipher, MaskError, Masker};

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

fn run(m: &Masker, cipher: FpeCipher, value: &str, decrypt: bool) -> Result<String, MaskError> {
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
        let ns = FlexibleNumeralString::from(nums);
        let key = m.fpe_key(cipher);
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
                let f = FF1::<sm4::Sm4>::new(&key[..16], radix)
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
        for (&i, n) in pos.iter().zip(out) {
            chars[i] = match class {
                Class::Digit => char::from(b'0' + n as u8),
                Class::Letter if chars[i].is_ascii_uppercase() => char::from(b'A' + n as u8),
                Class::Letter => char::from(b'a' + n as u8),
            };
        }
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

/// Encrypt keeping the format.
pub fn encrypt(m: &Masker, cipher: FpeCipher, value: &str) -> Result<String, MaskError> {
    run(m, cipher, value, false)
}

/// Decrypt what [`encrypt`] produced (authorised re-identification).
pub fn decrypt(m: &Masker, cipher: FpeCipher, value: &str) -> Result<String, MaskError> {
    run(m, cipher, value, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_format_and_reverses() {
        let m = Masker::new([3; 32]);
        for c in [FpeCipher::Aes, FpeCipher::Sm4] {
            for v in [
                "13800138000",
                "6222 0212 3456 7890",
                "E12345678",
                "+86-138-0013-8000",
                "AbCdEf-123456",
            ] {
                let e = encrypt(&m, c, v).unwrap();
                assert_ne!(e, v);
                assert_eq!(e.len(), v.len());
                for (a, b) in v.chars().zip(e.chars()) {
                    assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{v} -> {e}");
                    assert_eq!(a.is_ascii_uppercase(), b.is_ascii_uppercase());
                    if !a.is_ascii_alphanumeric() {
                        assert_eq!(a, b);
                    }
                }
                assert_eq!(decrypt(&m, c, &e).unwrap(), v);
            }
        }
        assert!(encrypt(&m, FpeCipher::Aes, "12-34").is_err());
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
