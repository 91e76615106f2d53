//! k-anonymity and l-diversity of a table (MSK-4 export checks): rows are grouped by their
//! quasi-identifiers; k is the smallest group, l the fewest distinct sensitive values in a group.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One equivalence class that falls short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Weak {
    /// Quasi-identifier values of the class.
    pub key: Vec<String>,
    /// Rows in the class.
    pub size: usize,
    /// Distinct sensitive values in the class.
    pub distinct: usize,
}

/// Result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Rows checked.
    pub rows: usize,
    /// Equivalence classes.
    pub classes: usize,
    /// Smallest class size (0 for an empty table).
    pub k: usize,
    /// Fewest distinct sensitive values in a class (None without a sensitive column).
    pub l: Option<usize>,
    /// Classes below the required k or l, smallest first (at most 100).
    pub weak: Vec<Weak>,
    /// Whether the table meets the requirement.
    pub passes: bool,
}

/// Check `rows` for `k_min`-anonymity over columns `qi` and, with `sensitive`, `l_min`-diversity.
pub fn check(
    rows: &[Vec<String>],
    qi: &[usize],
    sensitive: Option<usize>,
    k_min: usize,
    l_min: usize,
) -> Report {
    let mut groups: BTreeMap<Vec<String>, (usize, BTreeSet<String>)> = BTreeMap::new();
    for r in rows {
        let key = qi
            .iter()
            .map(|&i| r.get(i).cloned().unwrap_or_default())
            .collect();
        let g = groups.entry(key).or_default();
        g.0 += 1;
        if let Some(s) = sensitive {
            g.1.insert(r.get(s).cloned().unwrap_or_default());
        }
    }
    let k = groups.values().map(|g| g.0).min().unwrap_or(0);
    let l = sensitive.map(|_| groups.values().map(|g| g.1.len()).min().unwrap_or(0));
    let mut weak: Vec<Weak> = groups
        .iter()
        .filter(|(_, g)| g.0 < k_min || (sensitive.is_some() && g.1.len() < l_min))
        .map(|(key, g)| Weak {
            key: key.clone(),
            size: g.0,
            distinct: g.1.len(),
        })
        .collect();
    weak.sort_by_key(|w| (w.size, w.distinct));
    let passes = weak.is_empty() && !rows.is_empty();
    weak.truncate(100);
    Report {
        rows: rows.len(),
        classes: groups.len(),
        k,
        l,
        weak,
        passes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[[&str; 3]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn k_and_l() {
        let rows = t(&[
            ["30-39", "北京市", "flu"],
            ["30-39", "北京市", "cold"],
            ["30-39", "北京市", "flu"],
            ["40-49", "上海市", "hiv"],
            ["40-49", "上海市", "hiv"],
        ]);
        let r = check(&rows, &[0, 1], Some(2), 2, 2);
        assert_eq!((r.k, r.l, r.classes, r.passes), (2, Some(1), 2, false));
        assert_eq!(
            r.weak[0].key,
            vec!["40-49", "上海市"],
            "homogeneous class fails l-diversity"
        );
        let r = check(&rows, &[0, 1], None, 2, 0);
        assert!(r.passes);
        let r = check(&rows, &[0, 1, 2], None, 2, 0);
        assert_eq!((r.k, r.passes), (1, false));
        assert!(!check(&[], &[0], None, 1, 1).passes);
    }
}
