//! Hashes and MACs offered as a service and used for blind indexes: SHA-256 and SM3 (GB/T 32905),
//! HMAC over either.

use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    /// SHA-256.
    Sha256,
    /// SM3.
    Sm3,
}

impl HashAlg {
    /// Parse `sha256` or `sm3`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sha256" | "sha2-256" => Some(HashAlg::Sha256),
            "sm3" => Some(HashAlg::Sm3),
            _ => None,
        }
    }

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sm3 => "sm3",
        }
    }

    /// Digest of `data`.
    pub fn digest(self, data: &[u8]) -> [u8; 32] {
        match self {
            HashAlg::Sha256 => sha2::Sha256::digest(data).into(),
            HashAlg::Sm3 => sm3::Sm3::digest(data).into(),
        }
    }

    /// HMAC of `data` under `key`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> [u8; 32] {
        match self {
            HashAlg::Sha256 => {
                let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(data);
                m.finalize().into_bytes().into()
            }
            HashAlg::Sm3 => {
                let mut m = <hmac::Hmac<sm3::Sm3> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(data);
                m.finalize().into_bytes().into()
            }
        }
    }
}

/// HKDF-SHA256 expansion of `ikm` to `len` bytes under a labelled `info`.
pub fn hkdf(ikm: &[u8], salt: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm);
    hk.expand_multi_info(info, out)
        .expect("callers never ask for more than 255 hash lengths");
}

/// A running digest, for files too large to hold in memory.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SM3.
    Sm3(sm3::Sm3),
}

impl HashAlg {
    /// A running digest.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            HashAlg::Sm3 => Hasher::Sm3(sm3::Sm3::new()),
        }
    }
}

impl Hasher {
    /// Feed bytes.
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => Digest::update(h, b),
            Hasher::Sm3(h) => Digest::update(h, b),
        }
    }

    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        match self {
            Hasher::Sha256(h) => h.finalize().into(),
            Hasher::Sm3(h) => h.finalize().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_digest_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        for alg in [HashAlg::Sha256, HashAlg::Sm3] {
            let mut h = alg.hasher();
            for c in data.chunks(777) {
                h.update(c);
            }
            assert_eq!(h.finish(), alg.digest(&data));
        }
    }
}
