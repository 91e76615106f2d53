//! The three AEADs a key may use (AES-256-GCM, SM4-GCM per RFC 8998, ChaCha20-Poly1305), behind
//! one keyed `Cipher` so envelopes and streams never name a crate. AES-GCM and ChaCha20-Poly1305
//! come from ring (assembly from BoringSSL, already our TLS provider); SM4-GCM is ours
//! (`sm4gcm`, over the constant-time `sm4t`), as no assembly SM4 exists in the Rust ecosystem.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KmsError;

pub use cf_crypto::sm4gcm::Sm4Gcm;

/// An authenticated cipher. The discriminant is the byte written in envelopes; never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// AES-256 in GCM mode.
    Aes256Gcm = 1,
    /// SM4 (GB/T 32907) in GCM mode.
    Sm4Gcm = 2,
    /// ChaCha20-Poly1305 (RFC 8439).
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305 = 3,
}

/// Nonce length of every algorithm here.
pub const NONCE_LEN: usize = 12;
/// Tag length of every algorithm here.
pub const TAG_LEN: usize = 16;

impl Algorithm {
    /// All algorithms.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::Aes256Gcm,
        Algorithm::Sm4Gcm,
        Algorithm::ChaCha20Poly1305,
    ];

    /// The envelope byte.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// From the envelope byte.
    pub fn from_id(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.id() == b)
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Sm4Gcm => 16,
            _ => 32,
        }
    }

    /// Stable name, as in configuration and API.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes256-gcm",
            Algorithm::Sm4Gcm => "sm4-gcm",
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Parse the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A keyed AEAD instance (key schedule done once).
pub enum Cipher {
    /// AES-256-GCM or ChaCha20-Poly1305 (ring).
    Ring(Box<ring::aead::LessSafeKey>),
    /// SM4-GCM.
    Sm4(Box<Sm4Gcm>),
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    /// Key the algorithm; `key` must be exactly [`Algorithm::key_len`] bytes.
    pub fn new(alg: Algorithm, key: &[u8]) -> Result<Self, KmsError> {
        let bad = |_| {
            KmsError::Invalid(format!(
                "{} needs a {}-byte key",
                alg.as_str(),
                alg.key_len()
            ))
        };
        let ring_key = |a: &'static ring::aead::Algorithm| {
            ring::aead::UnboundKey::new(a, key)
                .map(|k| Cipher::Ring(Box::new(ring::aead::LessSafeKey::new(k))))
                .map_err(|_| {
                    KmsError::Invalid(format!(
                        "{} needs a {}-byte key",
                        alg.as_str(),
                        alg.key_len()
                    ))
                })
        };
        match alg {
            Algorithm::Aes256Gcm => ring_key(&ring::aead::AES_256_GCM),
            Algorithm::ChaCha20Poly1305 => ring_key(&ring::aead::CHACHA20_POLY1305),
            Algorithm::Sm4Gcm => Ok(Cipher::Sm4(Box::new(Sm4Gcm::new(key).map_err(bad)?))),
        }
    }

    /// Encrypt `buf` in place and append the tag.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), KmsError> {
        fn too_long<E>(_: E) -> KmsError {
            KmsError::Invalid("message too long for one AEAD call".into())
        }
        match self {
            Cipher::Ring(k) => k
                .seal_in_place_append_tag(
                    ring::aead::Nonce::assume_unique_for_key(*nonce),
                    ring::aead::Aad::from(aad),
                    buf,
                )
                .map_err(too_long),
            Cipher::Sm4(c) => c.seal(nonce, aad, buf).map_err(too_long),
        }
    }

    /// Check the tag at the end of `buf`, then decrypt in place and drop the tag.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), KmsError> {
        match self {
            Cipher::Ring(k) => {
                let n = k
                    .open_in_place(
                        ring::aead::Nonce::assume_unique_for_key(*nonce),
                        ring::aead::Aad::from(aad),
                        buf,
                    )
                    .map_err(|_| KmsError::Tampered("tag mismatch"))?
                    .len();
                buf.truncate(n);
                Ok(())
            }
            Cipher::Sm4(c) => c
                .open(nonce, aad, buf)
                .map_err(|_| KmsError::Tampered("tag mismatch")),
        }
    }
}

/// One-shot seal for callers that hold raw key bytes (wrapping, tests).
pub fn seal(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    pt: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let mut buf = Vec::with_capacity(pt.len() + TAG_LEN);
    buf.extend_from_slice(pt);
    Cipher::new(alg, key)?.seal(nonce, aad, &mut buf)?;
    Ok(buf)
}

/// One-shot open; the plaintext is zeroised when dropped.
pub fn open(
    alg: Algorithm,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ct: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let mut buf = Zeroizing::new(ct.to_vec());
    Cipher::new(alg, key)?.open(nonce, aad, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_and_detects_a_flipped_bit() {
        for alg in Algorithm::ALL {
            let key = vec![7u8; alg.key_len()];
            let n = [1u8; NONCE_LEN];
            let ct = seal(alg, &key, &n, b"aad", b"city data").unwrap();
            assert_eq!(&open(alg, &key, &n, b"aad", &ct).unwrap()[..], b"city data");
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(
                open(alg, &key, &n, b"aad", &bad).unwrap_err(),
                KmsError::Tampered("tag mismatch")
            );
            assert!(open(alg, &key, &n, b"other", &ct).is_err());
            assert_eq!(Algorithm::from_id(alg.id()), Some(alg));
            assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
        }
    }

    #[test]
    fn aes_256_gcm_known_answers() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13 and 14.
        let k = [0u8; 32];
        let n = [0u8; 12];
        assert_eq!(
            hex::encode(seal(Algorithm::Aes256Gcm, &k, &n, b"", b"").unwrap()),
            "530f8afbc74536b9a963b4f1c4cb738b"
        );
        assert_eq!(
            hex::encode(seal(Algorithm::Aes256Gcm, &k, &n, b"", &[0u8; 16]).unwrap()),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
    }

    #[test]
    fn chacha20_poly1305_rfc8439_tag() {
        // RFC 8439 section 2.8.2.
        let key: Vec<u8> = (0x80u8..=0x9f).collect();
        let nonce: [u8; 12] = hex::decode("070000004041424344454647")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = seal(Algorithm::ChaCha20Poly1305, &key, &nonce, &aad, pt).unwrap();
        assert_eq!(hex::encode(&ct[..16]), "d31a8d34648e60db7b86afbc53ef7ec2");
        assert_eq!(
            hex::encode(&ct[ct.len() - 16..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
    }

    #[test]
    fn wrong_key_length_is_a_clear_error() {
        let e = Cipher::new(Algorithm::Sm4Gcm, &[0u8; 32]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid request: sm4-gcm needs a 16-byte key"
        );
    }
}
