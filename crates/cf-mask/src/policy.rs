//! Masking policies (MSK-2, MSK-3): a default rule per entity type, per-column overrides, and
//! policies bound to roles so that one read yields different masking for different callers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{EntityType, FpeCipher, Level, MaskError, Masker, Rule};

/// One policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Name.
    pub name: String,
    /// Rule per entity type (corpus names such as `CN_RESIDENT_ID`); types not listed are kept.
    #[serde(default)]
    pub entities: BTreeMap<String, Rule>,
    /// Rule per column or JSON key, applied to the whole cell whatever it holds.
    #[serde(default)]
    pub columns: BTreeMap<String, Rule>,
}

/// What was masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Entity type.
    #[serde(rename = "type")]
    pub entity: &'static str,
    /// Rule applied.
    pub rule: &'static str,
}

impl Policy {
    /// The platform's default (MSK-2): what a city's staff see unless a role grants more.
    pub fn standard() -> Self {
        let ke = |first, last| Rule::KeepEnds {
            first,
            last,
            mask: '*',
        };
        let mut e = BTreeMap::new();
        for (t, r) in [
            (EntityType::CnResidentId, ke(6, 4)),
            (EntityType::CnMobile, ke(3, 4)),
            (EntityType::CnLandline, ke(4, 2)),
            (EntityType::BankCard, ke(6, 4)),
            (EntityType::CnUscc, ke(8, 2)),
            (EntityType::Passport, ke(1, 3)),
            (EntityType::CnLicensePlate, ke(2, 1)),
            (EntityType::Email, ke(1, 0)),
            (EntityType::PersonName, ke(1, 0)),
            (EntityType::Address, Rule::Generalize { level: Level::City }),
            (
                EntityType::DateOfBirth,
                Rule::Generalize { level: Level::Year },
            ),
            (
                EntityType::Ipv4,
                Rule::Generalize {
                    level: Level::Network,
                },
            ),
            (
                EntityType::Ipv6,
                Rule::Generalize {
                    level: Level::Network,
                },
            ),
            (EntityType::MacAddress, ke(8, 0)),
            (EntityType::Postcode, ke(2, 0)),
            (
                EntityType::Url,
                Rule::Replace {
                    with: "[URL]".into(),
                },
            ),
        ] {
            e.insert(t.as_str().to_string(), r);
        }
        Policy {
            name: "standard".into(),
            entities: e,
            columns: BTreeMap::new(),
        }
    }

    /// For analysts: consistent pseudonyms and surrogates (joins still work), coarse quasi-identifiers.
    pub fn analytics() -> Self {
        let mut p = Policy::standard();
        p.name = "analytics".into();
        for (t, r) in [
            (EntityType::CnResidentId, Rule::Surrogate),
            (EntityType::CnMobile, Rule::Surrogate),
            (EntityType::BankCard, Rule::Surrogate),
            (EntityType::CnUscc, Rule::Surrogate),
            (
                EntityType::PersonName,
                Rule::Pseudonym {
                    prefix: "P-".into(),
                    len: 12,
                },
            ),
            (
                EntityType::Email,
                Rule::Pseudonym {
                    prefix: "E-".into(),
                    len: 12,
                },
            ),
            (
                EntityType::Passport,
                Rule::Fpe {
                    cipher: FpeCipher::Sm4,
                    mode: crate::FpeMode::Ff1,
                },
            ),
        ] {
            p.entities.insert(t.as_str().to_string(), r);
        }
        p
    }

    /// Everything in clear (for roles with a lawful need, e.g. case officers).
    pub fn clear() -> Self {
        Policy {
            name: "clear".into(),
            entities: BTreeMap::new(),
            columns: BTreeMap::new(),
        }
    }

    /// Check names and rules.
    pub fn validate(&self) -> Result<(), MaskError> {
        for k in self.entities.keys() {
            if EntityType::parse(k).is_none() {
                return Err(MaskError::Policy(format!(
                    "policy `{}`: unknown entity type `{k}`",
                    self.name
                )));
            }
        }
        for (k, r) in self.entities.iter() {
            if matches!(r, Rule::Shuffle) {
                return Err(MaskError::Policy(format!(
                    "policy `{}`: shuffle applies to columns, not to {k}",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// The rule for an entity type.
    pub fn entity_rule(&self, t: EntityType) -> Option<&Rule> {
        self.entities.get(t.as_str())
    }

    /// Mask every finding in free text (`hint`: the column or key it came from). A value a rule
    /// cannot handle is replaced by `*` of its length rather than left in clear.
    pub fn mask_text(&self, m: &Masker, text: &str, hint: Option<&str>) -> (String, Vec<Finding>) {
        if let Some(r) = hint.and_then(|h| self.columns.get(h)) {
            let out = m
                .apply(r, None, text)
                .unwrap_or_else(|_| "*".repeat(text.chars().count()));
            return (
                out,
                vec![Finding {
                    entity: "COLUMN",
                    rule: r.name(),
                }],
            );
        }
        let mut spans = cf_classify::scan(text, hint);
        spans.sort_by_key(|s| s.start);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        let mut found = Vec::new();
        for s in spans {
            if s.start < at {
                continue;
            }
            let Some(rule) = self.entity_rule(s.kind) else {
                continue;
            };
            let v = &text[s.start..s.end];
            out.push_str(&text[at..s.start]);
            out.push_str(
                &m.apply(rule, Some(s.kind), v)
                    .unwrap_or_else(|_| "*".repeat(v.chars().count())),
            );
            at = s.end;
            found.push(Finding {
                entity: s.kind.as_str(),
                rule: rule.name(),
            });
        }
        out.push_str(&text[at..]);
        (out, found)
    }
}

/// Policies bound to roles (MSK-3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    /// Policies by name.
    pub policies: Vec<Policy>,
    /// Role → policy name, in precedence order: the first binding whose role the caller holds wins.
    pub bindings: Vec<Binding>,
    /// Policy for callers with no bound role (the strictest).
    pub fallback: String,
}

/// A role bound to a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Role.
    pub role: String,
    /// Policy name.
    pub policy: String,
}

impl Default for PolicySet {
    fn default() -> Self {
        PolicySet {
            policies: vec![Policy::standard(), Policy::analytics(), Policy::clear()],
            bindings: vec![
                Binding {
                    role: "case-officer".into(),
                    policy: "clear".into(),
                },
                Binding {
                    role: "analyst".into(),
                    policy: "analytics".into(),
                },
            ],
            fallback: "standard".into(),
        }
    }
}

impl PolicySet {
    /// Parse and validate (JSON).
    pub fn parse(s: &str) -> Result<Self, MaskError> {
        let p: PolicySet = serde_json::from_str(s).map_err(|e| MaskError::Policy(e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Every policy valid, every binding and the fallback resolvable.
    pub fn validate(&self) -> Result<(), MaskError> {
        for p in &self.policies {
            p.validate()?;
        }
        for n in self
            .bindings
            .iter()
            .map(|b| &b.policy)
            .chain(std::iter::once(&self.fallback))
        {
            if !self.policies.iter().any(|p| &p.name == n) {
                return Err(MaskError::Policy(format!("no policy named `{n}`")));
            }
        }
        Ok(())
    }

    /// The policy for a caller holding `roles`.
    pub fn for_roles(&self, roles: &[&str]) -> &Policy {
        let name = self
            .bindings
            .iter()
            .find(|b| roles.contains(&b.role.as_str()))
            .map_or(&self.fallback, |b| &b.policy);
        self.policies
            .iter()
            .find(|p| &p.name == name)
            .unwrap_or(&self.policies[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_masks_differently_per_role() {
        let set = PolicySet::default();
        set.validate().unwrap();
        let m = Masker::new([5; 32]);
        let text =
            "居民张伟，身份证号11010519491231002X，手机13800138000，住址北京市朝阳区建国路88号。";
        let (std_out, f) = set.for_roles(&["operator"]).mask_text(&m, text, None);
        assert!(
            std_out.contains("110105********002X")
                && std_out.contains("138****8000")
                && std_out.contains("北京市"),
            "{std_out}"
        );
        assert!(!std_out.contains("建国路"), "{std_out}");
        assert!(f.iter().any(|x| x.entity == "CN_RESIDENT_ID"));
        let (ana, _) = set
            .for_roles(&["analyst", "operator"])
            .mask_text(&m, text, None);
        assert!(
            !ana.contains("11010519491231002X") && ana.contains("110105"),
            "{ana}"
        );
        assert_ne!(ana, std_out);
        let (clear, _) = set.for_roles(&["case-officer"]).mask_text(&m, text, None);
        assert_eq!(clear, text);
        // Masked output is not found again as personal data.
        let again = cf_classify::scan(&std_out, None);
        assert!(
            again
                .iter()
                .all(|s| !matches!(s.kind, EntityType::CnResidentId | EntityType::CnMobile)),
            "{again:?}"
        );
    }

    #[test]
    fn invalid_policies_are_refused_with_the_reason() {
        let e = PolicySet::parse(r#"{"policies":[{"name":"a","entities":{"SSN":{"rule":"suppress"}}}],"bindings":[],"fallback":"a"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid policy: policy `a`: unknown entity type `SSN`"
        );
        let e = PolicySet::parse(r#"{"policies":[],"bindings":[],"fallback":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("no policy named `x`"));
        assert!(PolicySet::parse(r#"{"policies":[],"bogus":1}"#).is_err());
    }
}
