//! The tamper-evident audit ledger engine (AUD-2, AUD-5, SIG-1): RFC 9162 Merkle hashing, an
//! append-only tree with inclusion and consistency proofs, and checkpoints signed as C2SP notes.
//!
//! Architecture invariant: no I/O and no clock. Persistence lives behind the platform's ledger
//! port; this crate only computes and verifies.

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tree;

pub use checkpoint::Checkpoint;
pub use hash::{Hash, leaf_hash, node_hash};
pub use note::{NoteSigner, NoteVerifier, OpenedNote};
pub use proof::{verify_consistency, verify_inclusion};
pub use tree::MerkleTree;

/// Everything that can go wrong when decoding or verifying ledger artefacts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    /// A proof did not verify; the text says which check failed.
    #[error("proof does not verify: {0}")]
    BadProof(&'static str),
    /// A request for a proof was out of range for the tree.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// A note or checkpoint could not be parsed; the text says where.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which artefact.
        what: &'static str,
        /// What was wrong with it.
        why: String,
    },
    /// A note had no signature from any trusted key.
    #[error("note has no verifiable signatures")]
    NoVerifiableSignature,
    /// A signature from a trusted key was invalid.
    #[error("invalid signature by {0}")]
    InvalidSignature(String),
    /// A key string was malformed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
}

pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> LedgerError {
    LedgerError::Malformed {
        what,
        why: why.into(),
    }
}

/// Entry points shared by the cargo-fuzz targets in `fuzz/` and the stable test that replays
/// their seed corpora: each takes arbitrary bytes and must never panic.
pub mod fuzzing {
    use crate::{Checkpoint, NoteSigner, NoteVerifier, note, verify_consistency, verify_inclusion};

    fn verifier() -> NoteVerifier {
        // A fixed key so that corpus entries signed with it reach the signature check.
        NoteSigner::new(
            "fuzz.chengfang/audit",
            cf_crypto::Ed25519SigningKey::from_seed(&[42; 32]),
        )
        .map(|s| s.verifier())
        .unwrap_or_else(|_| unreachable!("the fuzz key name is valid"))
    }

    /// Decode and verify a signed checkpoint.
    pub fn checkpoint(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = Checkpoint::open(s, "fuzz.chengfang/audit", &[verifier()]);
            let _ = Checkpoint::parse_text(s);
        }
    }

    /// Parse a signed note and a verifier key.
    pub fn signed_note(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            let _ = note::open(s, &[verifier()]);
            let _ = NoteVerifier::from_vkey(s);
            let _ = NoteSigner::from_skey(s);
        }
    }

    /// Decode proof bytes: u64 index, u64 size, 32-byte leaf, 32-byte root, then hashes.
    pub fn proof(data: &[u8]) {
        if data.len() < 80 {
            return;
        }
        let a = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
        let b = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
        let (leaf, root) = (&data[16..48], &data[48..80]);
        let path: Vec<&[u8]> = data[80..].chunks(32).collect();
        let _ = verify_inclusion(a, b, leaf, &path, root);
        let _ = verify_consistency(a, b, leaf, root, &path);
    }
}
