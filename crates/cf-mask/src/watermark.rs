//! Watermark tracing (PRV-1): every export to a recipient carries an invisible keyed mark in one
//! cell per row, so a leaked copy names its recipient even after most rows are dropped, rows and
//! columns are reordered, the file changes format, or some values are altered.
//!
//! Per row (identified by its key column): the marked column is chosen by rendezvous hashing over
//! the column names (stable when columns move or others disappear); the bit is
//! `HMAC(key, recipient ‖ row key)` — independent per recipient and row. Integers carry it in
//! the parity of their last digit (a change of at most 1 in the last place), text in a trailing
//! zero-width space (U+200B). Tracing counts agreeing rows per candidate; under the hypothesis
//! "not this recipient's copy" agreements are Binomial(n, ½), so by Hoeffding's inequality
//! `P(matches ≥ n/2 + t) ≤ exp(−2t²/n)`; the threshold `t = sqrt(n·ln(R/α)/2)` bounds the chance
//! of naming any wrong recipient among R candidates by α (docs/watermark.md).

use serde::Serialize;

use crate::{MaskError, Masker};

const ZW: char = '\u{200B}';

/// A table by column name: what CSV, JSON and spreadsheet exports have in common.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Rows (cells by header position).
    pub rows: Vec<Vec<String>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Channel {
    Int,
    Text,
}

fn channel(cell: &str) -> Option<Channel> {
    let t = cell.trim_end_matches(ZW);
    if t.is_empty() {
        return None;
    }
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.bytes().all(|b| b.is_ascii_digit()) && !digits.is_empty() {
        // Short integers carry the mark in their last digit; long digit strings are identifiers
        // with check digits (IDs, cards), and leading zeros are codes: both take the text channel.
        return if (2..=11).contains(&digits.len()) && !digits.starts_with('0') {
            Some(Channel::Int)
        } else {
            Some(Channel::Text)
        };
    }
    if t.parse::<f64>().is_ok() && !t.contains(|c: char| c.is_alphabetic()) {
        // Decimals lose trailing zeros between formats; leave them alone.
        return None;
    }
    Some(Channel::Text)
}

fn read_bit(cell: &str) -> Option<bool> {
    match channel(cell)? {
        Channel::Int => cell.as_bytes().last().map(|d| (d - b'0') % 2 == 1),
        Channel::Text => Some(cell.ends_with(ZW)),
    }
}

fn write_bit(cell: &str, bit: bool) -> Option<String> {
    match channel(cell)? {
        Channel::Int => {
            let mut b = cell.as_bytes().to_vec();
            let last = b.last_mut()?;
            if ((*last - b'0') % 2 == 1) != bit {
                *last = b'0' + ((*last - b'0') ^ 1);
            }
            String::from_utf8(b).ok()
        }
        Channel::Text => {
            let base = cell.trim_end_matches(ZW);
            Some(if bit {
                format!("{base}{ZW}")
            } else {
                base.to_string()
            })
        }
    }
}

fn key_index(t: &Table, key_column: &str) -> Result<usize, MaskError> {
    t.header
        .iter()
        .position(|h| h == key_column)
        .ok_or_else(|| MaskError::Policy(format!("no key column `{key_column}` in the table")))
}

/// The column that carries row `pk`'s mark: highest keyed score among the row's non-key cells
/// that can carry one (rendezvous hashing: moving or dropping other columns changes nothing).
fn pick(m: &Masker, t: &Table, row: &[String], key: usize, pk: &str) -> Option<usize> {
    (0..t.header.len())
        .filter(|&c| c != key && row.get(c).is_some_and(|v| channel(v).is_some()))
        .max_by_key(|&c| m.prf("wm-col", format!("{pk}\u{0}{}", t.header[c]).as_bytes()))
}

fn bit(m: &Masker, recipient: &str, pk: &str) -> bool {
    m.prf("wm-bit", format!("{recipient}\u{0}{pk}").as_bytes())[0] & 1 == 1
}

/// Embed `recipient`'s mark; returns the number of rows marked.
pub fn embed(
    m: &Masker,
    recipient: &str,
    key_column: &str,
    t: &mut Table,
) -> Result<usize, MaskError> {
    if recipient.is_empty() {
        return Err(MaskError::Policy("a watermark needs a recipient".into()));
    }
    let key = key_index(t, key_column)?;
    let mut marked = 0;
    for r in 0..t.rows.len() {
        let pk = t.rows[r]
            .get(key)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        if pk.is_empty() {
            continue;
        }
        let Some(c) = pick(m, t, &t.rows[r], key, &pk) else {
            continue;
        };
        let want = bit(m, recipient, &pk);
        if let Some(cell) = t.rows[r].get(c)
            && let Some(new) = write_bit(cell, want)
        {
            t.rows[r][c] = new;
            marked += 1;
        }
    }
    Ok(marked)
}

/// One candidate's evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Recipient.
    pub recipient: String,
    /// Rows whose mark could be read.
    pub rows: usize,
    /// Rows agreeing with this recipient's mark.
    pub matches: usize,
    /// Matches needed for attribution at the chosen α.
    pub threshold: f64,
    /// Hoeffding bound on the chance of this many matches from a copy that is not this recipient's.
    pub p_bound: f64,
}

/// Result of tracing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The recipient named, if any passed the threshold.
    pub attributed: Option<String>,
    /// Every candidate, most matches first.
    pub candidates: Vec<Candidate>,
    /// Bound on naming a wrong recipient.
    pub alpha: f64,
}

/// Trace a (possibly damaged) copy against `candidates`.
pub fn trace(
    m: &Masker,
    candidates: &[String],
    key_column: &str,
    t: &Table,
    alpha: f64,
) -> Result<Trace, MaskError> {
    if candidates.is_empty() || !(0.0..1.0).contains(&alpha) || alpha == 0.0 {
        return Err(MaskError::Policy(
            "tracing needs candidates and 0 < alpha < 1".into(),
        ));
    }
    let key = key_index(t, key_column)?;
    let mut seen = std::collections::HashSet::new();
    let mut obs: Vec<(String, bool)> = Vec::new();
    for row in &t.rows {
        let pk = row
            .get(key)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        // A row key seen twice (duplicated rows) counts once, so copying rows cannot inflate evidence.
        if pk.is_empty() || !seen.insert(pk.clone()) {
            continue;
        }
        let Some(c) = pick(m, t, row, key, &pk) else {
            continue;
        };
        if let Some(b) = row.get(c).and_then(|cell| read_bit(cell)) {
            obs.push((pk, b));
        }
    }
    let n = obs.len();
    let r = candidates.len() as f64;
    let threshold = n as f64 / 2.0 + (n as f64 * (r / alpha).ln() / 2.0).sqrt();
    let mut out: Vec<Candidate> = candidates
        .iter()
        .map(|cand| {
            let matches = obs.iter().filter(|(pk, b)| bit(m, cand, pk) == *b).count();
            let excess = matches as f64 - n as f64 / 2.0;
            let p_bound = if excess <= 0.0 || n == 0 {
                1.0
            } else {
                (-2.0 * excess * excess / n as f64).exp()
            };
            Candidate {
                recipient: cand.clone(),
                rows: n,
                matches,
                threshold,
                p_bound,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.matches
            .cmp(&a.matches)
            .then(a.recipient.cmp(&b.recipient))
    });
    let attributed = out
        .first()
        .filter(|c| n > 0 && c.matches as f64 >= c.threshold)
        .map(|c| c.recipient.clone());
    Ok(Trace {
        attributed,
        candidates: out,
        alpha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize) -> Table {
        Table {
            header: ["id", "name", "age", "district", "amount"]
                .map(String::from)
                .to_vec(),
            rows: (0..n)
                .map(|i| {
                    vec![
                        format!("{}", 10_000 + i),
                        format!("P-{:08x}", i * 7919),
                        format!("{}", 20 + i % 60),
                        ["朝阳区", "海淀区", "东城区"][i % 3].to_string(),
                        format!("{}", 1000 + i * 13),
                    ]
                })
                .collect(),
        }
    }

    #[test]
    fn marks_change_at_most_the_last_digit_or_add_an_invisible_character() {
        let m = Masker::new([1; 32]);
        let orig = table(200);
        let mut t = orig.clone();
        assert_eq!(embed(&m, "bureau-a", "id", &mut t).unwrap(), 200);
        for (a, b) in orig.rows.iter().flatten().zip(t.rows.iter().flatten()) {
            if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
                assert!((x - y).abs() <= 1);
            } else {
                assert_eq!(a.as_str(), b.trim_end_matches(ZW));
            }
        }
        let tr = trace(&m, &["bureau-a".into(), "bureau-b".into()], "id", &t, 1e-6).unwrap();
        assert_eq!(tr.attributed.as_deref(), Some("bureau-a"));
        assert_eq!(tr.candidates[0].matches, 200);
    }

    #[test]
    fn wrong_candidates_match_like_fair_coins_as_the_bound_assumes() {
        // The false-attribution bound rests on agreements with a wrong candidate being
        // Binomial(n, 1/2). Check the mean and the tail on 3,000 wrong candidates.
        let m = Masker::new([4; 32]);
        let mut t = table(300);
        embed(&m, "the-recipient", "id", &mut t).unwrap();
        let wrong: Vec<String> = (0..3000).map(|i| format!("w{i}")).collect();
        let tr = trace(&m, &wrong, "id", &t, 0.5).unwrap();
        let n = tr.candidates[0].rows as f64;
        let mean = tr.candidates.iter().map(|c| c.matches as f64).sum::<f64>() / wrong.len() as f64;
        assert!((mean - n / 2.0).abs() < 1.0, "mean {mean} vs {}", n / 2.0);
        for beta in [0.1f64, 0.01] {
            let cut = n / 2.0 + (n * (1.0 / beta).ln() / 2.0).sqrt();
            let over = tr
                .candidates
                .iter()
                .filter(|c| c.matches as f64 >= cut)
                .count() as f64
                / wrong.len() as f64;
            assert!(
                over <= beta,
                "{over} of wrong candidates beat the beta={beta} Hoeffding cut"
            );
        }
    }

    #[test]
    fn unmarked_and_foreign_copies_are_not_attributed() {
        let m = Masker::new([2; 32]);
        let cands: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
        let tr = trace(&m, &cands, "id", &table(500), 1e-6).unwrap();
        assert_eq!(tr.attributed, None, "{:?}", tr.candidates[0]);
        let mut t = table(500);
        embed(&m, "outsider", "id", &mut t).unwrap();
        assert_eq!(trace(&m, &cands, "id", &t, 1e-6).unwrap().attributed, None);
        // A different key sees nothing.
        let mut t = table(500);
        embed(&m, "r3", "id", &mut t).unwrap();
        assert_eq!(
            trace(&Masker::new([3; 32]), &cands, "id", &t, 1e-6)
                .unwrap()
                .attributed,
            None
        );
        assert_eq!(
            trace(&m, &cands, "id", &t, 1e-6)
                .unwrap()
                .attributed
                .as_deref(),
            Some("r3")
        );
    }
}
