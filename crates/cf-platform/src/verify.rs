//! Offline verification of a ledger (AUD-5): recompute every leaf, follow the hash chain, check
//! every signed checkpoint against the recomputed tree, and name the first bad record.

use cf_ledger::{Checkpoint, Hash, MerkleTree, NoteVerifier, leaf_hash};
use serde::Serialize;

use crate::audit::{GENESIS_PREV, LedgerEntry, hex_encode};

/// One stored row as read from storage or an export.
#[derive(Debug, Clone)]
pub struct RowIn {
    /// Position the storage claims.
    pub seq: u64,
    /// Stored canonical bytes.
    pub body: String,
    /// Stored leaf hash, if the source keeps one.
    pub leaf_hash: Option<Hash>,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The first bad record's position (or the checkpoint size for checkpoint problems).
    pub seq: u64,
    /// What is wrong.
    pub reason: String,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Checkpoints whose signature and root both verified.
    pub checkpoints_verified: u64,
    /// Largest verified checkpoint size.
    pub latest_checkpoint_size: u64,
    /// Root hash (hex) of all records read.
    pub root: String,
    /// Records after the latest signed checkpoint (normal right after a crash; signed on next start).
    pub unsigned_tail: u64,
    /// The first problem, if any. `None` means the ledger verifies.
    pub first_bad: Option<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong (records after the latest checkpoint may still be unsigned).
    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }

    /// True when nothing is wrong and every record is covered by a signed checkpoint.
    pub fn fully_signed(&self) -> bool {
        self.ok() && self.unsigned_tail == 0
    }
}

/// Verify rows (ascending by stored seq) and signed checkpoint notes against `trusted` keys.
pub fn verify(
    rows: Vec<RowIn>,
    checkpoint_notes: &[String],
    origin: &str,
    trusted: &[NoteVerifier],
) -> VerifyReport {
    let mut tree = MerkleTree::new();
    let mut first_bad: Option<Problem> = None;
    let mut prev: Option<Hash> = None;
    for (n, row) in rows.iter().enumerate() {
        let expected = tree.size();
        let bad = |reason: String| {
            Some(Problem {
                seq: row.seq.min(expected),
                reason,
            })
        };
        if row.seq != expected {
            first_bad = if row.seq > expected {
                Some(Problem {
                    seq: expected,
                    reason: format!(
                        "record {expected} is missing: the next stored record is {} (deleted)",
                        row.seq
                    ),
                })
            } else {
                Some(Problem {
                    seq: row.seq,
                    reason: format!("record {} is stored twice or out of order", row.seq),
                })
            };
            break;
        }
        let entry: LedgerEntry = match serde_json::from_str(&row.body) {
            Ok(e) => e,
            Err(e) => {
                first_bad = bad(format!(
                    "record {} is not a readable ledger entry: {e}",
                    row.seq
                ));
                break;
            }
        };
        let h = leaf_hash(row.body.as_bytes());
        if entry.seq != row.seq {
            first_bad = bad(format!(
                "record stored at position {} claims position {} (moved, swapped or inserted)",
                row.seq, entry.seq
            ));
        } else if row.leaf_hash.is_some_and(|stored| stored != h) {
            first_bad = bad(format!(
                "record {} does not match its recorded hash (altered)",
                row.seq
            ));
        } else if entry.prev != prev.map_or_else(|| GENESIS_PREV.to_string(), hex_encode) {
            // Either the previous record's content changed (then this record still links to its
            // successor) or this record's own link changed (then its successor no longer links to it).
            let successor_links = rows
                .get(n + 1)
                .and_then(|next| serde_json::from_str::<LedgerEntry>(&next.body).ok())
                .is_some_and(|next| next.prev == hex_encode(h));
            first_bad = if successor_links && row.seq > 0 {
                Some(Problem {
                    seq: row.seq - 1,
                    reason: format!(
                        "record {} was altered: record {} no longer links to it",
                        row.seq - 1,
                        row.seq
                    ),
                })
            } else {
                bad(format!(
                    "record {} does not follow record {} in the hash chain (altered or inserted)",
                    row.seq,
                    row.seq.saturating_sub(1)
                ))
            };
        }
        if first_bad.is_some() {
            break;
        }
        tree.push(h);
        prev = Some(h);
    }
    let records = tree.size();
    let mut verified = 0u64;
    let mut latest = 0u64;
    let mut cps: Vec<Checkpoint> = Vec::new();
    for (i, note) in checkpoint_notes.iter().enumerate() {
        match Checkpoint::open(note, origin, trusted) {
            Ok(cp) => cps.push(cp),
            Err(e) => {
                if first_bad.is_none() {
                    first_bad = Some(Problem {
                        seq: 0,
                        reason: format!("checkpoint #{} does not verify: {e}", i + 1),
                    });
                }
            }
        }
    }
    cps.sort_by_key(|c| c.size);
    let mut last_good = 0u64;
    for cp in &cps {
        match tree.root_at(cp.size) {
            Ok(root) if root == cp.root => {
                verified += 1;
                latest = latest.max(cp.size);
                last_good = cp.size;
            }
            Ok(_) => {
                if first_bad.is_none() {
                    first_bad = Some(Problem {
                        seq: last_good,
                        reason: format!(
                            "records {}..{} do not match the signed checkpoint of size {} (altered)",
                            last_good,
                            cp.size - 1,
                            cp.size
                        ),
                    });
                }
                break;
            }
            Err(_) => {
                if first_bad.is_none() {
                    first_bad = Some(Problem {
                        seq: records,
                        reason: format!(
                            "a signed checkpoint covers {} records but only {records} verify (records {records}.. removed)",
                            cp.size
                        ),
                    });
                }
                break;
            }
        }
    }
    VerifyReport {
        records,
        checkpoints_verified: verified,
        latest_checkpoint_size: latest,
        root: hex_encode(tree.root()),
        unsigned_tail: records.saturating_sub(latest),
        first_bad,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_core::Timestamp;
    use cf_event::{AuditRecord, Outcome};
    use cf_ledger::NoteSigner;

    fn build(n: u64) -> (Vec<RowIn>, Vec<String>, NoteVerifier) {
        let signer =
            NoteSigner::new("t/audit", cf_crypto::Ed25519SigningKey::from_seed(&[2; 32])).unwrap();
        let mut rows = Vec::new();
        let mut prev = None;
        let mut tree = MerkleTree::new();
        let mut notes = Vec::new();
        for seq in 0..n {
            let rec = AuditRecord::new(
                "t",
                Timestamp::from_unix_secs(seq as i64),
                "a",
                "s",
                "u",
                "o",
                "x",
                Outcome::Success,
                "r",
            );
            let e = LedgerEntry {
                seq,
                prev: prev.map_or_else(|| GENESIS_PREV.to_string(), hex_encode),
                record: rec,
            };
            let body = e.encode();
            let h = leaf_hash(body.as_bytes());
            prev = Some(h);
            tree.push(h);
            rows.push(RowIn {
                seq,
                body,
                leaf_hash: Some(h),
            });
            if (seq + 1) % 4 == 0 {
                let cp = Checkpoint {
                    origin: "t/audit".into(),
                    size: seq + 1,
                    root: tree.root(),
                    extensions: vec![],
                };
                notes.push(cp.sign(&[&signer]).unwrap());
            }
        }
        (rows, notes, signer.verifier())
    }

    #[test]
    fn intact_ledger_verifies() {
        let (rows, notes, vk) = build(10);
        let r = verify(rows, &notes, "t/audit", &[vk]);
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            (
                r.records,
                r.checkpoints_verified,
                r.latest_checkpoint_size,
                r.unsigned_tail
            ),
            (10, 2, 8, 2)
        );
    }

    #[test]
    fn names_the_first_bad_record() {
        let (rows, notes, vk) = build(10);
        // Altered content.
        let mut r = rows.clone();
        r[5].body = r[5].body.replace("\"u\"", "\"mallory\"");
        assert_eq!(
            verify(r, &notes, "t/audit", std::slice::from_ref(&vk))
                .first_bad
                .unwrap()
                .seq,
            5
        );
        // Altered content without a stored hash (exports): the successor's link still names record 5.
        let mut r = rows.clone();
        r[5].body = r[5].body.replace("\"u\"", "\"mallory\"");
        r[5].leaf_hash = None;
        let v = |r: Vec<RowIn>| {
            verify(r, &notes, "t/audit", std::slice::from_ref(&vk))
                .first_bad
                .unwrap()
                .seq
        };
        assert_eq!(v(r), 5);
        // A forged link in record 6 itself names record 6.
        let mut r = rows.clone();
        let e: LedgerEntry = serde_json::from_str(&rows[6].body).unwrap();
        r[6].body = LedgerEntry {
            prev: GENESIS_PREV.to_string(),
            ..e
        }
        .encode();
        r[6].leaf_hash = None;
        assert_eq!(v(r), 6);
        // Deleted.
        let mut r = rows.clone();
        r.remove(3);
        assert_eq!(
            verify(r, &notes, "t/audit", std::slice::from_ref(&vk))
                .first_bad
                .unwrap()
                .seq,
            3
        );
        // Swapped.
        let mut r = rows.clone();
        let (a, b) = (r[3].body.clone(), r[4].body.clone());
        r[3].body = b;
        r[4].body = a;
        assert_eq!(
            verify(r, &notes, "t/audit", std::slice::from_ref(&vk))
                .first_bad
                .unwrap()
                .seq,
            3
        );
        // Truncated below a checkpoint.
        let mut r = rows.clone();
        r.truncate(6);
        let p = verify(r, &notes, "t/audit", std::slice::from_ref(&vk))
            .first_bad
            .unwrap();
        assert_eq!(p.seq, 6, "{p:?}");
        // Wrong key.
        let other = NoteSigner::new("t/audit", cf_crypto::Ed25519SigningKey::from_seed(&[9; 32]))
            .unwrap()
            .verifier();
        assert!(!verify(rows, &notes, "t/audit", &[other]).ok());
    }
}
