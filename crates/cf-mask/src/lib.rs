//! Masking and de-identification (MSK-1…MSK-4): rules from keep-first/last to format-preserving
//! encryption, check-digit-valid surrogates, generalisation and perturbation; default policies per
//! entity type; policies bound to roles; text and table masking; k-anonymity and l-diversity.
//!
//! Architecture invariant: pure functions over values; the masking key is handed in (the platform
//! derives it from the KMS), so equal inputs give equal pseudonyms across tables and runs.

pub mod ff3;
pub mod fpe;
pub mod generalize;
pub mod kanon;
pub mod policy;
pub mod surrogate;
pub mod watermark;

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use cf_classify::EntityType;
pub use policy::{Policy, PolicySet};

/// Masking failures; never carry the value being masked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    /// The rule cannot apply to this value (e.g. FPE on a 3-digit value).
    #[error("rule `{rule}` cannot mask this value: {why}")]
    NotApplicable {
        /// Rule name.
        rule: &'static str,
        /// Why.
        why: String,
    },
    /// A policy or rule is invalid.
    #[error("invalid policy: {0}")]
    Policy(String),
}

/// Block cipher under format-preserving encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FpeCipher {
    /// FF1 over AES-256.
    #[default]
    Aes,
    /// FF1 over SM4.
    Sm4,
}

/// Which NIST SP 800-38G mode of format-preserving encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FpeMode {
    /// FF1 (ten rounds, any tweak length).
    #[default]
    #[serde(rename = "ff1")]
    Ff1,
    /// FF3-1 (eight rounds, 56-bit tweak; Rev. 1 of the standard).
    #[serde(rename = "ff3-1")]
    Ff3_1,
}

/// How to generalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Dates to the year.
    Year,
    /// Dates to year and month.
    YearMonth,
    /// Ages (or any integer) to bands of this width, e.g. `30-39`.
    Band(u32),
    /// Addresses to the city (Chinese and English forms).
    City,
    /// IPv4 to /24, IPv6 to /48.
    Network,
}

/// One masking rule (MSK-1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Leave the value as it is.
    Keep,
    /// Keep the first `first` and last `last` characters, mask the rest: `138****5678`.
    KeepEnds {
        /// Characters kept at the start.
        first: usize,
        /// Characters kept at the end.
        last: usize,
        /// Mask character.
        #[serde(default = "star")]
        mask: char,
    },
    /// Mask characters `from..to` (code points, end exclusive, clipped to the value).
    Range {
        /// Start.
        from: usize,
        /// End.
        to: usize,
        /// Mask character.
        #[serde(default = "star")]
        mask: char,
    },
    /// Replace the whole value.
    Replace {
        /// Replacement text.
        with: String,
    },
    /// Keyed pseudonym (HMAC-SHA256): equal inputs give equal tokens in every table.
    Pseudonym {
        /// Token prefix.
        #[serde(default)]
        prefix: String,
        /// Hex characters of the token (8-64).
        #[serde(default = "sixteen")]
        len: usize,
    },
    /// Format-preserving encryption (NIST FF1): digits stay digits, letters stay letters, separators
    /// stay in place; reversible with the key.
    Fpe {
        /// Block cipher.
        #[serde(default)]
        cipher: FpeCipher,
        /// FF1 (default) or FF3-1.
        #[serde(default)]
        mode: FpeMode,
    },
    /// A realistic substitute whose check digits are valid (resident ID, bank card, USCC, mobile),
    /// keyed and consistent; region, bank and gender are kept.
    Surrogate,
    /// Generalise to a coarser value.
    Generalize {
        /// How.
        level: Level,
    },
    /// Remove the value.
    Suppress,
    /// Add keyed bounded noise to a number: at most `pct` percent, same decimals.
    Perturb {
        /// Maximum relative change in percent.
        pct: f64,
    },
    /// Column-level only: permute values across rows (static masking of tables).
    Shuffle,
    /// A synthetic value of the same type (names from tables), keyed and consistent.
    Synthetic,
}

fn star() -> char {
    '*'
}
fn sixteen() -> usize {
    16
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Keep => "keep",
            Rule::KeepEnds { .. } => "keep_ends",
            Rule::Range { .. } => "range",
            Rule::Replace { .. } => "replace",
            Rule::Pseudonym { .. } => "pseudonym",
            Rule::Fpe { .. } => "fpe",
            Rule::Surrogate => "surrogate",
            Rule::Generalize { .. } => "generalize",
            Rule::Suppress => "suppress",
            Rule::Perturb { .. } => "perturb",
            Rule::Shuffle => "shuffle",
            Rule::Synthetic => "synthetic",
        }
    }
}

/// Holds the masking key (32 bytes, zeroised on drop) and applies rules.
pub struct Masker {
    _key: Zeroizing<[u8; 32]>,
    // Keyed HMAC state computed once; each call clones it instead of re-hashing the key pads.
    mac: hmac::Hmac<sha2::Sha256>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker([redacted])")
    }
}

impl Masker {
    /// A masker over a 32-byte key (derive it per dataset from the KMS).
    pub fn new(key: [u8; 32]) -> Self {
        let mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key)
            .expect("HMAC takes any key length");
        Masker {
            _key: Zeroizing::new(key),
            mac,
        }
    }

    /// HMAC-SHA256 of `data` under a purpose-labelled subkey.
    pub(crate) fn prf(&self, label: &str, data: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(label.as_bytes());
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    pub(crate) fn fpe_key(&self, cipher: FpeCipher, mode: FpeMode) -> Zeroizing<[u8; 32]> {
        // One key per cipher and mode, so FF1 and FF3-1 outputs never share a key.
        Zeroizing::new(self.prf(
            match (cipher, mode) {
                (FpeCipher::Sm4, FpeMode::Ff1) => "fpe-sm4",
                (FpeCipher::Aes, FpeMode::Ff1) => "fpe-aes",
                (FpeCipher::Sm4, FpeMode::Ff3_1) => "fpe-ff3-1-sm4",
                (FpeCipher::Aes, FpeMode::Ff3_1) => "fpe-ff3-1-aes",
            },
            b"",
        ))
    }

    /// Mask one value (of `entity` type, if known) by `rule`.
    pub fn apply(
        &self,
        rule: &Rule,
        entity: Option<EntityType>,
        value: &str,
    ) -> Result<String, MaskError> {
        if entity == Some(EntityType::Email)
            && matches!(rule, Rule::KeepEnds { .. } | Rule::Range { .. })
            && let Some((local, domain)) = value.rsplit_once('@')
        {
            // Mask the mailbox, keep the domain: z***@163.com.
            return Ok(format!("{}@{domain}", self.apply(rule, None, local)?));
        }
        let chars: Vec<char> = value.chars().collect();
        Ok(match rule {
            Rule::Keep => value.to_string(),
            Rule::KeepEnds { first, last, mask } => {
                if chars.len() <= first + last {
                    // Too short to keep both ends: keep only the first character.
                    chars
                        .iter()
                        .enumerate()
                        .map(|(i, c)| if i == 0 && chars.len() > 1 { *c } else { *mask })
                        .collect()
                } else {
                    chars
                        .iter()
                        .enumerate()
                        .map(|(i, c)| {
                            if i < *first || i >= chars.len() - last {
                                *c
                            } else {
                                *mask
                            }
                        })
                        .collect()
                }
            }
            Rule::Range { from, to, mask } => chars
                .iter()
                .enumerate()
                .map(|(i, c)| if i >= *from && i < *to { *mask } else { *c })
                .collect(),
            Rule::Replace { with } => with.clone(),
            Rule::Pseudonym { prefix, len } => {
                let len = (*len).clamp(8, 64);
                let h = self.prf("pseudonym", value.as_bytes());
                let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
                format!("{prefix}{}", &hex[..len])
            }
            Rule::Fpe { cipher, mode } => fpe::encrypt_with(self, *cipher, *mode, value)?,
            Rule::Surrogate => surrogate::surrogate(self, entity, value)?,
            Rule::Generalize { level } => generalize::generalize(*level, entity, value)?,
            Rule::Suppress => String::new(),
            Rule::Perturb { pct } => perturb(self, value, *pct)?,
            Rule::Shuffle => {
                return Err(MaskError::NotApplicable {
                    rule: "shuffle",
                    why: "shuffling permutes a whole column; use it in table masking".into(),
                });
            }
            Rule::Synthetic => surrogate::synthetic(self, entity, value),
        })
    }
}

fn perturb(m: &Masker, value: &str, pct: f64) -> Result<String, MaskError> {
    if !(0.0..=100.0).contains(&pct) {
        return Err(MaskError::Policy("perturb pct must be 0-100".into()));
    }
    let v: f64 = value.trim().parse().map_err(|_| MaskError::NotApplicable {
        rule: "perturb",
        why: "not a number".into(),
    })?;
    let decimals = value.trim().split_once('.').map_or(0, |(_, d)| d.len());
    let h = m.prf("perturb", value.as_bytes());
    let u = u64::from_be_bytes(h[..8].try_into().unwrap_or_default()) as f64 / u64::MAX as f64; // [0,1]
    let noisy = v * (1.0 + (2.0 * u - 1.0) * pct / 100.0);
    Ok(format!("{noisy:.decimals$}"))
}

/// Static masking of a table (MSK-1, MSK-4): every cell through the policy, with the column name
/// as the hint; column rules apply to whole cells, and `shuffle` permutes a column with a keyed
/// permutation (same key, same order). Returns per-column counts of what was masked.
pub fn mask_table(
    m: &Masker,
    policy: &Policy,
    header: &[String],
    rows: &mut [Vec<String>],
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, usize>> {
    let mut counts: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<&'static str, usize>,
    > = Default::default();
    for (c, name) in header.iter().enumerate() {
        let col = counts.entry(name.clone()).or_default();
        if matches!(policy.columns.get(name), Some(Rule::Shuffle)) {
            let mut order: Vec<(usize, [u8; 32])> = (0..rows.len())
                .map(|i| (i, m.prf("shuffle", format!("{name}\u{0}{i}").as_bytes())))
                .collect();
            order.sort_by_key(|o| o.1);
            let values: Vec<String> = order
                .iter()
                .map(|(i, _)| rows[*i].get(c).cloned().unwrap_or_default())
                .collect();
            for (r, v) in rows.iter_mut().zip(values) {
                if let Some(cell) = r.get_mut(c) {
                    *cell = v;
                }
            }
            *col.entry("COLUMN").or_default() += rows.len();
            continue;
        }
        for r in rows.iter_mut() {
            if let Some(cell) = r.get_mut(c) {
                if cell.is_empty() {
                    continue;
                }
                let (out, found) = policy.mask_text(m, cell, Some(name));
                for f in found {
                    *col.entry(f.entity).or_default() += 1;
                }
                *cell = out;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m() -> Masker {
        Masker::new([7; 32])
    }

    #[test]
    fn keep_ends_range_replace_suppress() {
        let r = Rule::KeepEnds {
            first: 3,
            last: 4,
            mask: '*',
        };
        assert_eq!(m().apply(&r, None, "13800138000").unwrap(), "138****8000");
        assert_eq!(
            m().apply(
                &Rule::KeepEnds {
                    first: 1,
                    last: 0,
                    mask: '*'
                },
                None,
                "张三丰"
            )
            .unwrap(),
            "张**"
        );
        assert_eq!(
            m().apply(
                &Rule::KeepEnds {
                    first: 3,
                    last: 4,
                    mask: '*'
                },
                None,
                "abc"
            )
            .unwrap(),
            "a**"
        );
        assert_eq!(
            m().apply(
                &Rule::Range {
                    from: 6,
                    to: 14,
                    mask: '*'
                },
                None,
                "11010519491231002X"
            )
            .unwrap(),
            "110105********002X"
        );
        assert_eq!(
            m().apply(
                &Rule::Replace {
                    with: "[已脱敏]".into()
                },
                None,
                "x"
            )
            .unwrap(),
            "[已脱敏]"
        );
        assert_eq!(m().apply(&Rule::Suppress, None, "x").unwrap(), "");
        assert_eq!(
            m().apply(
                &Rule::KeepEnds {
                    first: 1,
                    last: 0,
                    mask: '*'
                },
                Some(EntityType::Email),
                "zhangsan@163.com"
            )
            .unwrap(),
            "z*******@163.com"
        );
    }

    #[test]
    fn pseudonyms_are_keyed_and_consistent() {
        let r = Rule::Pseudonym {
            prefix: "P-".into(),
            len: 12,
        };
        let a = m().apply(&r, None, "张三").unwrap();
        assert_eq!(a, m().apply(&r, None, "张三").unwrap());
        assert_ne!(a, m().apply(&r, None, "李四").unwrap());
        assert_ne!(a, Masker::new([8; 32]).apply(&r, None, "张三").unwrap());
        assert_eq!(a.len(), 14);
    }

    #[test]
    fn perturbation_is_bounded_and_keeps_decimals() {
        for v in ["100", "2500.50", "37"] {
            let out = m().apply(&Rule::Perturb { pct: 10.0 }, None, v).unwrap();
            let (a, b): (f64, f64) = (v.parse().unwrap(), out.parse().unwrap());
            assert!((b - a).abs() <= a * 0.1 + 1.0, "{v} -> {out}");
            assert_eq!(v.contains('.'), out.contains('.'));
        }
        assert!(
            m().apply(&Rule::Perturb { pct: 10.0 }, None, "abc")
                .is_err()
        );
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rules = vec![
            Rule::KeepEnds {
                first: 3,
                last: 4,
                mask: '*',
            },
            Rule::Fpe {
                cipher: FpeCipher::Sm4,
                mode: FpeMode::Ff1,
            },
            Rule::Generalize {
                level: Level::Band(10),
            },
            Rule::Surrogate,
        ];
        let j = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Rule>>(&j).unwrap(), rules);
        let r: Rule = serde_json::from_str(r#"{"rule":"keep_ends","first":1,"last":1}"#).unwrap();
        assert_eq!(
            r,
            Rule::KeepEnds {
                first: 1,
                last: 1,
                mask: '*'
            }
        );
    }
}
