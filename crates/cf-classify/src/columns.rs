//! Column-level discovery and grading (DAT-1, DAT-2): what a column holds, judged from its
//! values (the column name is only a hint), and the grade a configurable scheme gives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{EntityType, scan};

/// A grading scheme: ordered levels, a level per entity type, and an escalation rule for volume
/// (GB/T 43697: personal information about many people is important data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeScheme {
    /// Levels from lowest to highest.
    pub levels: Vec<String>,
    /// Level per entity type (corpus names); types not listed get `default_level`.
    pub types: BTreeMap<String, String>,
    /// Level of a column holding nothing recognised.
    pub default_level: String,
    /// Escalate a table with at least `rows` rows at level `from` or above to level `to`.
    pub escalate: Option<Escalation>,
}

/// Volume escalation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Row count that triggers it.
    pub rows: u64,
    /// Lowest level it applies to.
    pub from: String,
    /// Level it raises to.
    pub to: String,
}

impl Default for GradeScheme {
    /// Public / internal / personal / sensitive personal / important (GB/T 43697-2024 with the
    /// PIPL's sensitive categories: identity documents and financial accounts).
    fn default() -> Self {
        let mut types = BTreeMap::new();
        for (t, l) in [
            (EntityType::CnResidentId, "sensitive_personal"),
            (EntityType::BankCard, "sensitive_personal"),
            (EntityType::Passport, "sensitive_personal"),
            (EntityType::PersonName, "personal"),
            (EntityType::CnMobile, "personal"),
            (EntityType::CnLandline, "personal"),
            (EntityType::Email, "personal"),
            (EntityType::Address, "personal"),
            (EntityType::DateOfBirth, "personal"),
            (EntityType::CnLicensePlate, "personal"),
            (EntityType::Ipv4, "internal"),
            (EntityType::Ipv6, "internal"),
            (EntityType::MacAddress, "internal"),
            (EntityType::Postcode, "internal"),
            (EntityType::Url, "internal"),
            (EntityType::CnUscc, "public"),
        ] {
            types.insert(t.as_str().to_string(), l.to_string());
        }
        GradeScheme {
            levels: [
                "public",
                "internal",
                "personal",
                "sensitive_personal",
                "important",
            ]
            .map(String::from)
            .to_vec(),
            types,
            default_level: "internal".into(),
            escalate: Some(Escalation {
                rows: 1_000_000,
                from: "personal".into(),
                to: "important".into(),
            }),
        }
    }
}

impl GradeScheme {
    /// Every level named exists and every type is known.
    pub fn validate(&self) -> Result<(), String> {
        let known = |l: &str| self.levels.iter().any(|x| x == l);
        if self.levels.is_empty() {
            return Err("levels: at least one level is needed".into());
        }
        for (t, l) in &self.types {
            if EntityType::parse(t).is_none() {
                return Err(format!("types.{t}: unknown entity type"));
            }
            if !known(l) {
                return Err(format!("types.{t}: unknown level `{l}`"));
            }
        }
        if !known(&self.default_level) {
            return Err(format!(
                "default_level: unknown level `{}`",
                self.default_level
            ));
        }
        if let Some(e) = &self.escalate
            && (!known(&e.from) || !known(&e.to))
        {
            return Err("escalate: unknown level".into());
        }
        Ok(())
    }

    fn rank(&self, l: &str) -> usize {
        self.levels.iter().position(|x| x == l).unwrap_or(0)
    }

    /// Level of an entity type.
    pub fn level_of(&self, t: EntityType) -> &str {
        self.types
            .get(t.as_str())
            .map_or(&self.default_level, String::as_str)
    }

    /// The higher of two levels.
    pub fn max<'a>(&self, a: &'a str, b: &'a str) -> &'a str {
        if self.rank(b) > self.rank(a) { b } else { a }
    }

    /// Grade of a table from its columns' levels and its row count.
    pub fn table_level(&self, column_levels: &[&str], rows: u64) -> String {
        let mut g = self.levels.first().map_or("", String::as_str);
        for l in column_levels {
            g = self.max(g, l);
        }
        if let Some(e) = &self.escalate
            && rows >= e.rows
            && self.rank(g) >= self.rank(&e.from)
        {
            g = self.max(g, &e.to);
        }
        g.to_string()
    }
}

/// What a column holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnProfile {
    /// Column name (or JSON path).
    pub name: String,
    /// Non-empty values seen.
    pub values: usize,
    /// The type most whole values are, with its share of non-empty values (≥ 0.5), if any.
    #[serde(rename = "type")]
    pub majority: Option<&'static str>,
    /// Share of non-empty values of the majority type.
    pub share: f64,
    /// Whole-value counts per type.
    pub whole: BTreeMap<&'static str, usize>,
    /// Findings inside longer text (free-text columns), per type.
    pub embedded: BTreeMap<&'static str, usize>,
    /// Level under the scheme.
    pub level: String,
}

/// Accumulates one column's values.
#[derive(Debug, Clone)]
pub struct ColumnProfiler {
    name: String,
    hint: String,
    values: usize,
    whole: BTreeMap<EntityType, usize>,
    embedded: BTreeMap<EntityType, usize>,
}

impl ColumnProfiler {
    /// A profiler for column `name`; the part after the last `/` or `.` is the hint.
    pub fn new(name: &str) -> Self {
        let hint = name.rsplit(['/', '.']).next().unwrap_or(name).to_string();
        ColumnProfiler {
            name: name.to_string(),
            hint,
            values: 0,
            whole: BTreeMap::new(),
            embedded: BTreeMap::new(),
        }
    }

    /// Add one value.
    pub fn add(&mut self, value: &str) {
        let v = value.trim();
        if v.is_empty() {
            return;
        }
        self.values += 1;
        for s in scan(v, Some(&self.hint)) {
            if s.start == 0 && s.end == v.len() {
                *self.whole.entry(s.kind).or_default() += 1;
            } else {
                *self.embedded.entry(s.kind).or_default() += 1;
            }
        }
    }

    /// The profile and its level.
    pub fn finish(self, scheme: &GradeScheme) -> ColumnProfile {
        let best = self
            .whole
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(t, n)| (*t, *n));
        let (majority, share) = match best {
            Some((t, n)) if self.values > 0 && n * 2 >= self.values => {
                (Some(t), n as f64 / self.values as f64)
            }
            _ => (None, 0.0),
        };
        let mut level = scheme.levels.first().cloned().unwrap_or_default();
        if self.values > 0 {
            level = match majority {
                Some(t) => scheme.level_of(t).to_string(),
                None => scheme.default_level.clone(),
            };
            // A column that carries personal data only sometimes (free text, mixed columns) is
            // graded by the most sensitive thing it carries.
            for t in self.whole.keys().chain(self.embedded.keys()) {
                level = scheme.max(&level, scheme.level_of(*t)).to_string();
            }
        }
        ColumnProfile {
            name: self.name,
            values: self.values,
            majority: majority.map(EntityType::as_str),
            share,
            whole: self
                .whole
                .into_iter()
                .map(|(t, n)| (t.as_str(), n))
                .collect(),
            embedded: self
                .embedded
                .into_iter()
                .map(|(t, n)| (t.as_str(), n))
                .collect(),
            level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_needs_half_of_the_values_and_free_text_still_grades() {
        let s = GradeScheme::default();
        s.validate().unwrap();
        let mut p = ColumnProfiler::new("c07");
        for v in ["13800138000", "13900139000", "", "n/a"] {
            p.add(v);
        }
        let c = p.finish(&s);
        assert_eq!(
            (c.majority, c.values, c.level.as_str()),
            (Some("CN_MOBILE"), 3, "personal")
        );
        let mut p = ColumnProfiler::new("memo");
        for v in ["已核实", "紧急联系人身份证11010519491231002X", "ok"] {
            p.add(v);
        }
        let c = p.finish(&s);
        assert_eq!((c.majority, c.level.as_str()), (None, "sensitive_personal"));
        assert_eq!(
            s.table_level(&["personal", "internal"], 2_000_000),
            "important"
        );
        assert_eq!(s.table_level(&["internal"], 2_000_000), "internal");
        let mut bad = GradeScheme::default();
        bad.types.insert("SSN".into(), "public".into());
        assert_eq!(
            bad.validate().unwrap_err(),
            "types.SSN: unknown entity type"
        );
    }
}
