//! Password hashing and policy (PWD-1…PWD-4).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

/// Hashing failures (never with the password).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Costs out of range.
    #[error("argon2 parameters: {0}")]
    Params(String),
    /// A stored hash is not a PHC string this build reads.
    #[error("stored password hash is malformed")]
    Malformed,
    /// Randomness unavailable.
    #[error("random source unavailable")]
    Rng,
}

/// Argon2id costs (OWASP: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Costs {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

fn hasher(c: Costs) -> Result<argon2::Argon2<'static>, PasswordError> {
    let params = argon2::Params::new(c.m_kib, c.t, c.p, None)
        .map_err(|e| PasswordError::Params(e.to_string()))?;
    Ok(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

/// Hash a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn hash(
    password: &str,
    costs: Costs,
    rng: &dyn cf_crypto::Rng,
) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| PasswordError::Rng)?;
    let h: PasswordHash = hasher(costs)?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Params(e.to_string()))?;
    Ok(h.to_string())
}

/// Whether `password` matches the PHC string (costs are read from the string, so old hashes keep
/// verifying after the configured costs change; see [`needs_rehash`]).
pub fn verify(password: &str, phc: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::Malformed)?;
    Ok(argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// Whether a stored hash uses other costs than the configured ones (rehash at next login).
pub fn needs_rehash(phc: &str, costs: Costs) -> bool {
    let want = format!("m={},t={},p={}", costs.m_kib, costs.t, costs.p);
    !phc.starts_with("$argon2id$v=19$") || !phc.contains(&want)
}

/// Policy of an identity domain (PWD-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Minimum length in characters.
    pub min_length: usize,
    /// How many of the four classes (lower, upper, digit, other) must appear.
    pub min_classes: usize,
    /// Minimum zxcvbn score (0-4): rejects common passwords, keyboard walks, dates, l33t variants.
    pub min_strength: u8,
    /// Previous passwords that may not be reused.
    pub history: usize,
    /// Days before a password must be changed (0: never).
    pub max_age_days: u32,
}

impl Policy {
    /// Defaults per identity domain: government and enterprise staff stricter than the public.
    pub fn for_domain(domain: &str) -> Policy {
        match domain {
            "government" | "enterprise" => Policy {
                min_length: 12,
                min_classes: 3,
                min_strength: 3,
                history: 5,
                max_age_days: 180,
            },
            "partner" | "supplier" | "contractor" => Policy {
                min_length: 12,
                min_classes: 3,
                min_strength: 3,
                history: 3,
                max_age_days: 90,
            },
            _ => Policy {
                min_length: 10,
                min_classes: 2,
                min_strength: 2,
                history: 1,
                max_age_days: 0,
            },
        }
    }
}

/// One reason a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Violation {
    /// Too short.
    TooShort {
        /// Required.
        min: usize,
    },
    /// Too few character classes.
    TooFewClasses {
        /// Required.
        min: usize,
    },
    /// Too easy to guess.
    TooWeak {
        /// Score 0-4.
        score: u8,
        /// Required.
        min: u8,
        /// Why, from the estimator (e.g. "This is a top-100 common password").
        hint: Option<String>,
    },
    /// Contains one of the user's own attributes (name, e-mail, phone …).
    ContainsPersonalData,
    /// Equal to a recent password.
    Reused,
}

fn classes(p: &str) -> usize {
    let lower = p.chars().any(|c| c.is_lowercase());
    let upper = p.chars().any(|c| c.is_uppercase());
    let digit = p.chars().any(|c| c.is_ascii_digit());
    let other = p.chars().any(|c| !c.is_alphanumeric());
    [lower, upper, digit, other].iter().filter(|x| **x).count()
}

/// Keyboard columns of a US/Chinese layout; Chinese users' favourite walks run down them.
const COLUMNS: [&str; 10] = [
    "1qaz", "2wsx", "3edc", "4rfv", "5tgb", "6yhn", "7ujm", "8ik,", "9ol.", "0p;/",
];

fn unshift(c: char) -> char {
    match c {
        '!' => '1',
        '@' => '2',
        '#' => '3',
        '$' => '4',
        '%' => '5',
        '^' => '6',
        '&' => '7',
        '*' => '8',
        '(' => '9',
        ')' => '0',
        '<' => ',',
        '>' => '.',
        ':' => ';',
        '?' => '/',
        c => c.to_ascii_lowercase(),
    }
}

static PINYIN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^(?:(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?(?:iang|iong|uang|ang|eng|ing|ong|uai|uan|ian|iao|ai|ei|ao|ou|an|en|in|un|ia|ie|iu|ua|uo|ue|ui|er|a|o|e|i|u|v))+$")
        .unwrap_or_else(|e| panic!("built-in pinyin pattern: {e}"))
});

/// Patterns zxcvbn's English dictionaries miss but Chinese password lists are full of: walks down
/// keyboard columns (`1qaz2wsx`, `1qaz@WSX`) and pinyin names or words with a year, date or short
/// number (`zhangwei1988`, `nihao123`).
pub fn chinese_weak_pattern(password: &str) -> Option<&'static str> {
    let flat: String = password.chars().map(unshift).collect();
    if COLUMNS
        .windows(2)
        .any(|w| flat.contains(&format!("{}{}", w[0], w[1])))
    {
        return Some("a walk down keyboard columns");
    }
    let lower = password.to_ascii_lowercase();
    let letters: String = lower.chars().filter(|c| c.is_ascii_lowercase()).collect();
    let digits: String = lower.chars().filter(|c| c.is_ascii_digit()).collect();
    let split = lower.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let letters_then_digits = lower[..split].chars().all(|c| c.is_ascii_lowercase())
        && lower[split..].chars().all(|c| c.is_ascii_digit());
    let datey = digits.len() <= 4
        || (digits.len() <= 8 && (digits.starts_with("19") || digits.starts_with("20")));
    if letters_then_digits
        && letters.len() >= 4
        && !digits.is_empty()
        && datey
        && PINYIN.is_match(&letters)
    {
        return Some("a pinyin name or word with a date or short number");
    }
    None
}

/// Every way `password` breaks `policy`. `attributes` are the user's own strings (names, e-mail,
/// phone, account id); `history` their previous hashes, newest first.
pub fn check(
    policy: &Policy,
    password: &str,
    attributes: &[&str],
    history: &[String],
) -> Vec<Violation> {
    let mut out = Vec::new();
    if password.chars().count() < policy.min_length {
        out.push(Violation::TooShort {
            min: policy.min_length,
        });
    }
    if classes(password) < policy.min_classes {
        out.push(Violation::TooFewClasses {
            min: policy.min_classes,
        });
    }
    let lower = password.to_lowercase();
    let personal: Vec<String> = attributes
        .iter()
        .flat_map(|a| a.split(['@', ' ', '.', '_', '-']))
        .map(str::to_lowercase)
        .filter(|a| a.chars().count() >= 4)
        .collect();
    if personal.iter().any(|a| lower.contains(a.as_str())) {
        out.push(Violation::ContainsPersonalData);
    }
    let inputs: Vec<&str> = personal.iter().map(String::as_str).collect();
    let est = zxcvbn::zxcvbn(password, &inputs);
    let mut score = u8::from(est.score());
    let chinese = chinese_weak_pattern(password);
    if chinese.is_some() {
        score = score.min(1);
    }
    if score < policy.min_strength {
        let hint = est
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| w.to_string());
        out.push(Violation::TooWeak {
            score,
            min: policy.min_strength,
            hint,
        });
    }
    if history
        .iter()
        .take(policy.history)
        .any(|h| verify(password, h).unwrap_or(false))
    {
        out.push(Violation::Reused);
    }
    out
}

/// Whether a password set at `set_unix_days` has expired by `today_unix_days`.
pub fn expired(policy: &Policy, set_unix_days: i64, today_unix_days: i64) -> bool {
    policy.max_age_days > 0 && today_unix_days - set_unix_days >= i64::from(policy.max_age_days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Costs {
        Costs {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn hashes_verify_and_carry_their_costs() {
        let rng = cf_crypto::SeededRng::new(1);
        let h = hash("correct horse battery staple", cheap(), &rng).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        assert!(verify("correct horse battery staple", &h).unwrap());
        assert!(!verify("correct horse battery stapler", &h).unwrap());
        assert_ne!(
            h,
            hash("correct horse battery staple", cheap(), &rng).unwrap(),
            "salted"
        );
        assert!(needs_rehash(&h, Costs::default()) && !needs_rehash(&h, cheap()));
        assert_eq!(verify("x", "not-a-hash"), Err(PasswordError::Malformed));
    }

    #[test]
    fn every_violation_is_reported() {
        let gov = Policy::for_domain("government");
        let v = check(
            &gov,
            "password1",
            &["Zhang Wei", "zhangwei@city.gov.cn"],
            &[],
        );
        assert!(v.contains(&Violation::TooShort { min: 12 }), "{v:?}");
        assert!(v.contains(&Violation::TooFewClasses { min: 3 }), "{v:?}");
        assert!(
            v.iter().any(|x| matches!(x, Violation::TooWeak { .. })),
            "{v:?}"
        );
        let v = check(
            &gov,
            "Zhangwei#2026!",
            &["Zhang Wei", "zhangwei@city.gov.cn"],
            &[],
        );
        assert!(v.contains(&Violation::ContainsPersonalData), "{v:?}");
        assert!(check(&gov, "Qp7#vL9!mZ2$wR", &["Zhang Wei"], &[]).is_empty());
        let rng = cf_crypto::SeededRng::new(2);
        let old = hash("Qp7#vL9!mZ2$wR", cheap(), &rng).unwrap();
        assert_eq!(
            check(&gov, "Qp7#vL9!mZ2$wR", &[], &[old]),
            vec![Violation::Reused]
        );
        assert!(expired(&gov, 0, 180) && !expired(&gov, 0, 179));
        assert!(!expired(&Policy::for_domain("public"), 0, 10_000));
    }

    #[test]
    fn common_passwords_and_walks_are_weak_whatever_their_classes() {
        let p = Policy {
            min_length: 8,
            min_classes: 1,
            min_strength: 3,
            history: 0,
            max_age_days: 0,
        };
        for weak in [
            "Password123!",
            "Qwerty123456",
            "P@ssw0rd2024",
            "1qaz@WSX3edc",
            "zhangwei1988",
            "Nihao123456",
            "liuyang19880101",
        ] {
            assert!(
                check(&p, weak, &[], &[])
                    .iter()
                    .any(|v| matches!(v, Violation::TooWeak { .. })),
                "{weak}"
            );
        }
    }

    #[test]
    fn chinese_patterns_do_not_catch_strong_passwords() {
        for ok in [
            "Qp7#vL9!mZ2$wR",
            "correct horse battery staple",
            "Tr0ub4dor&3xyzW",
            "qazwsx-is-not-a-column",
        ] {
            assert_eq!(chinese_weak_pattern(ok), None, "{ok}");
        }
        assert_eq!(
            chinese_weak_pattern("1qaz2wsx"),
            Some("a walk down keyboard columns")
        );
    }

    #[test]
    fn argon2id_matches_rfc_9106() {
        // RFC 9106 section 5.3 (with secret and associated data), through the raw interface the
        // PHC path uses; read from shared/datasets/vectors/kdf-and-gm-crypto.json.
        let Some(dir) = cf_testkit::datasets() else {
            return;
        };
        let text = std::fs::read_to_string(dir.join("vectors/kdf-and-gm-crypto.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let t = v["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["alg"] == "Argon2id")
            .unwrap();
        let h = |k: &str| hex::decode(t[k].as_str().unwrap()).unwrap();
        let secret = h("secret_hex");
        let mut params_b = argon2::ParamsBuilder::new();
        params_b
            .m_cost(t["m_cost_kib"].as_u64().unwrap() as u32)
            .t_cost(t["t_cost"].as_u64().unwrap() as u32)
            .p_cost(t["parallelism"].as_u64().unwrap() as u32)
            .output_len(32)
            .data(argon2::AssociatedData::new(&h("associated_data_hex")).unwrap());
        let a = argon2::Argon2::new_with_secret(
            &secret,
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params_b.build().unwrap(),
        )
        .unwrap();
        let mut out = [0u8; 32];
        a.hash_password_into(&h("password_hex"), &h("salt_hex"), &mut out)
            .unwrap();
        assert_eq!(hex::encode(out), t["tag_hex"].as_str().unwrap());
    }
}
