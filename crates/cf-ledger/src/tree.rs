//! An append-only Merkle tree that keeps every complete subtree hash, so any root, inclusion
//! proof or consistency proof for any past size costs O(log n) lookups and at most O(log n) hashes.

use crate::LedgerError;
use crate::hash::{Hash, empty_root, node_hash};

/// An append-only RFC 9162 tree. `levels[0]` holds leaf hashes; `levels[l][i]` the hash of the
/// perfect subtree over leaves `[i·2^l, (i+1)·2^l)`.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

fn largest_pow2_below(n: u64) -> u64 {
    // Largest power of two strictly less than n (n ≥ 2).
    1u64 << (63 - (n - 1).leading_zeros())
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        MerkleTree {
            levels: vec![Vec::new()],
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Append a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let idx = self.levels[0].len() as u64 - 1;
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(h);
            level += 1;
        }
        idx
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// Hash of leaves `[start, start+len)`, for ranges produced by the RFC 9162 recursion.
    fn range_hash(&self, start: u64, len: u64) -> Hash {
        if len.is_power_of_two() && start.is_multiple_of(len) {
            let level = len.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = largest_pow2_below(len);
        node_hash(
            &self.range_hash(start, k),
            &self.range_hash(start + k, len - k),
        )
    }

    /// The root hash of the tree as it was at `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        if size > self.size() {
            return Err(LedgerError::OutOfRange(format!(
                "tree size {size} exceeds current size {}",
                self.size()
            )));
        }
        Ok(if size == 0 {
            empty_root()
        } else {
            self.range_hash(0, size)
        })
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).unwrap_or_else(|_| empty_root())
    }

    /// RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        if size > self.size() || index >= size {
            return Err(LedgerError::OutOfRange(format!(
                "leaf {index} is not in a tree of size {size} (current size {})",
                self.size()
            )));
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Ok(proof)
    }

    fn path(&self, m: u64, start: u64, n: u64, out: &mut Vec<Hash>) {
        if n <= 1 {
            return;
        }
        let k = largest_pow2_below(n);
        if m < k {
            self.path(m, start, k, out);
            out.push(self.range_hash(start + k, n - k));
        } else {
            self.path(m - k, start + k, n - k, out);
            out.push(self.range_hash(start, k));
        }
    }

    /// RFC 9162 §2.1.4.1 consistency proof between sizes `old` and `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        if new > self.size() || old > new || old == 0 {
            return Err(LedgerError::OutOfRange(format!(
                "no consistency proof from size {old} to {new} (current size {})",
                self.size()
            )));
        }
        let mut proof = Vec::new();
        if old < new {
            self.subproof(old, 0, new, true, &mut proof);
        }
        Ok(proof)
    }

    fn subproof(&self, m: u64, start: u64, n: u64, complete: bool, out: &mut Vec<Hash>) {
        if m == n {
            if !complete {
                out.push(self.range_hash(start, n));
            }
            return;
        }
        let k = largest_pow2_below(n);
        if m <= k {
            self.subproof(m, start, k, complete, out);
            out.push(self.range_hash(start + k, n - k));
        } else {
            self.subproof(m - k, start + k, n - k, false, out);
            out.push(self.range_hash(start, k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// The RFC 9162 §2.1.1 definition, recursively over all leaves: the naive model.
    pub(crate) fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = largest_pow2_below(n as u64) as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_naive_definition() {
        let mut t = MerkleTree::new();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            assert_eq!(t.root(), naive_root(&leaves));
            let h = leaf_hash(&i.to_be_bytes());
            leaves.push(h);
            t.push(h);
        }
        for s in 0..=70 {
            assert_eq!(t.root_at(s).unwrap(), naive_root(&leaves[..s as usize]));
        }
        assert!(t.root_at(71).is_err());
    }

    #[test]
    fn pow2_helper() {
        assert_eq!(largest_pow2_below(2), 1);
        assert_eq!(largest_pow2_below(3), 2);
        assert_eq!(largest_pow2_below(4), 2);
        assert_eq!(largest_pow2_below(5), 4);
        assert_eq!(largest_pow2_below(1 << 40), 1 << 39);
    }
}
