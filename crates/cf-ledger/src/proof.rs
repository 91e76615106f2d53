//! Verification of inclusion and consistency proofs exactly as RFC 9162 §2.1.3.2 and §2.1.4.2
//! specify; these functions need only hashes, never the tree.

use crate::LedgerError;
use crate::hash::{Hash, node_hash};

fn to_hash(b: &[u8], what: &'static str) -> Result<Hash, LedgerError> {
    b.try_into().map_err(|_| LedgerError::BadProof(what))
}

/// Verify that `leaf` (a 32-byte leaf hash) is at `index` in the tree of `size` leaves with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[impl AsRef<[u8]>],
    root: &[u8],
) -> Result<(), LedgerError> {
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    let root = to_hash(root, "root hash is not 32 bytes")?;
    if computed != root {
        return Err(LedgerError::BadProof("computed root differs"));
    }
    Ok(())
}

/// The root implied by an inclusion proof.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[impl AsRef<[u8]>],
) -> Result<Hash, LedgerError> {
    if index >= size {
        return Err(LedgerError::BadProof("leaf index beyond tree size"));
    }
    let mut r = to_hash(leaf, "leaf hash is not 32 bytes")?;
    let (mut fn_, mut sn) = (index, size - 1);
    for p in proof {
        let p = to_hash(p.as_ref(), "proof element is not 32 bytes")?;
        if sn == 0 {
            return Err(LedgerError::BadProof("proof too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(&p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, &p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(LedgerError::BadProof("proof too short"));
    }
    Ok(r)
}

/// Verify that the tree of `size2` leaves with `root2` extends the tree of `size1` with `root1`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[impl AsRef<[u8]>],
) -> Result<(), LedgerError> {
    if size2 < size1 {
        return Err(LedgerError::BadProof(
            "second tree is smaller than the first",
        ));
    }
    if size1 == 0 {
        return Err(LedgerError::BadProof(
            "no consistency proof from an empty tree",
        ));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(LedgerError::BadProof("proof must be empty for equal sizes"));
        }
        // Equal trees need equal roots; as in the reference verifier the bytes are compared as given.
        if root1 != root2 {
            return Err(LedgerError::BadProof("roots differ for equal sizes"));
        }
        return Ok(());
    }
    if proof.is_empty() {
        return Err(LedgerError::BadProof("empty proof"));
    }
    let root1 = to_hash(root1, "first root is not 32 bytes")?;
    let root2 = to_hash(root2, "second root is not 32 bytes")?;
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    for p in proof {
        path.push(to_hash(p.as_ref(), "proof element is not 32 bytes")?);
    }
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if sn == 0 {
            return Err(LedgerError::BadProof("proof too long"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(LedgerError::BadProof("proof too short"));
    }
    if fr != root1 {
        return Err(LedgerError::BadProof("first root does not match"));
    }
    if sr != root2 {
        return Err(LedgerError::BadProof("second root does not match"));
    }
    Ok(())
}
