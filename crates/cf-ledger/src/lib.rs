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
