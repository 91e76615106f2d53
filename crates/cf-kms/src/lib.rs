//! Key management engine (ENC-1…ENC-3, DES-1, SIG-1): key rings with versions, AEAD envelopes
//! that name their key, version and algorithm, streaming file encryption, root-key sealing.
//!
//! Architecture invariant: no I/O beyond the `Read`/`Write` handed in; time and randomness are
//! injected; no error, `Debug` or `Display` ever carries key material.

pub mod aead;
pub mod envelope;
pub mod hash;
pub mod keyring;
pub mod seal;
pub mod sm2enc;
pub mod stream;

pub use aead::Algorithm;
pub use envelope::{Envelope, Mode};
pub use hash::HashAlg;
pub use keyring::{KeyInfo, KeyRing, KeyState, KeyType, KeyVersionInfo, Policy};
pub use seal::{RootKey, SealedRoot};

/// Everything that can go wrong in the engine. Messages name what was wrong and where, never
/// the bytes of a key or a plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KmsError {
    /// Ciphertext failed authentication: tampered, truncated, or the wrong key.
    #[error("ciphertext failed authentication ({0})")]
    Tampered(&'static str),
    /// Ciphertext could not be parsed.
    #[error("malformed ciphertext: {0}")]
    Malformed(String),
    /// The ciphertext belongs to another key.
    #[error("ciphertext is for key `{found}`, not `{expected}`")]
    WrongKey {
        /// Key named in the ciphertext.
        found: String,
        /// Key used.
        expected: String,
    },
    /// A key version is below the minimum, absent, disabled or destroyed.
    #[error("key `{key}` version {version}: {reason}")]
    Version {
        /// Key name.
        key: String,
        /// Version asked for.
        version: u32,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The key cannot do this (e.g. sign with an AEAD key, encrypt with a disabled key).
    #[error("key `{key}`: {reason}")]
    Unsupported {
        /// Key name.
        key: String,
        /// Why.
        reason: String,
    },
    /// A request was invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The root key could not be unsealed (wrong passphrase or key file, or a damaged seal).
    #[error("cannot unseal the root key: {0}")]
    Unseal(&'static str),
    /// Randomness was unavailable.
    #[error("random source unavailable")]
    Rng,
    /// A stream could not be read or written.
    #[error("i/o: {0}")]
    Io(String),
}

impl From<cf_crypto::CryptoError> for KmsError {
    fn from(e: cf_crypto::CryptoError) -> Self {
        match e {
            cf_crypto::CryptoError::Rng => KmsError::Rng,
            cf_crypto::CryptoError::BadSignature => KmsError::Tampered("signature"),
            cf_crypto::CryptoError::InvalidKey(w) => KmsError::Invalid(format!("invalid key: {w}")),
        }
    }
}

/// Entry points for the cargo-fuzz targets in `fuzz/` (envelope, stream): untrusted ciphertext must
/// never panic, only fail. Also replayed over the committed corpus by a stable test.
pub mod fuzzing {
    use crate::keyring::{KeyRing, KeyType, Policy};

    fn key() -> KeyRing {
        // A fixed key so corpus entries made with it get past parsing into authentication.
        KeyRing::import(
            "fuzz",
            "fuzz",
            KeyType::Sm4Gcm,
            Policy::default(),
            cf_core::Timestamp::from_unix_secs(0),
            zeroize::Zeroizing::new(vec![7u8; 16]),
        )
        .unwrap_or_else(|_| unreachable!("fixed fuzz key is valid"))
    }

    /// Parse and try to open a binary or text envelope.
    pub fn envelope(data: &[u8]) {
        let k = key();
        if let Ok(e) = crate::Envelope::decode(data) {
            let _ = k.decrypt(&e, b"");
        }
        if let Ok(s) = std::str::from_utf8(data)
            && let Ok(e) = crate::Envelope::from_text(s)
        {
            let _ = k.decrypt(&e, b"");
        }
    }

    /// Parse a stream header and decrypt what follows with a fixed data key.
    pub fn stream(data: &[u8]) {
        let mut r = data;
        if let Ok(h) = crate::stream::StreamHeader::read(&mut r) {
            let _ = crate::stream::decrypt(&h, &[7u8; 32], &mut r, &mut std::io::sink());
        }
    }

    /// Valid seeds for the corpus: an envelope and a stream made with the fuzz keys.
    pub fn seeds() -> Vec<(String, Vec<u8>)> {
        let rng = cf_crypto::SeededRng::new(1);
        let k = key();
        let mut out = Vec::new();
        if let Ok(e) = k.encrypt(b"110101199003074578", b"", false, &rng) {
            out.push(("envelope-binary".into(), e.encode()));
            out.push(("envelope-text".into(), e.to_text().into_bytes()));
        }
        let mut s = Vec::new();
        if crate::stream::encrypt(
            crate::Algorithm::Sm4Gcm,
            &[7u8; 32],
            "cfk1:x",
            10,
            &mut &[5u8; 3000][..],
            &mut s,
            &rng,
        )
        .is_ok()
        {
            out.push(("stream".into(), s));
        }
        out
    }
}
