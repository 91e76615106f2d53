//! The root of the key hierarchy: a 256-bit root key kept on disk only sealed, by an operator
//! passphrase (Argon2id) or by a key file, and key-encryption keys that wrap everything below them.
//!
//! Hierarchy: root key → one KEK per organisation → key versions of that organisation's keys.
//! Every wrap binds the wrapped key's place in the hierarchy as associated data, so a wrapped
//! version cannot be moved to another key, organisation or version.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KmsError;
use crate::aead::{self, Algorithm, NONCE_LEN};
use cf_crypto::Rng;

/// A 256-bit key-encryption key (the root key or an organisation's KEK). Zeroised on drop.
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

/// The root key is a KEK that is itself sealed.
pub type RootKey = Kek;

/// What the root of the hierarchy must do: wrap and unwrap the keys one level below it. A
/// software [`Kek`] unsealed from a passphrase or key file does it in memory; a PKCS#11 HSM
/// (`cf-hsm`) does it without the root key ever leaving the token.
pub trait RootWrap: Send + Sync + std::fmt::Debug {
    /// Wrap `material`, bound to `aad`.
    fn wrap(&self, aad: &[u8], material: &[u8], rng: &dyn Rng) -> Result<String, KmsError>;
    /// Unwrap what `wrap` produced with the same `aad`.
    fn unwrap(&self, aad: &[u8], wrapped: &str) -> Result<Zeroizing<Vec<u8>>, KmsError>;
    /// `software` or `pkcs11`.
    fn kind(&self) -> &'static str;
}

impl RootWrap for Kek {
    fn wrap(&self, aad: &[u8], material: &[u8], rng: &dyn Rng) -> Result<String, KmsError> {
        Kek::wrap(self, aad, material, rng)
    }
    fn unwrap(&self, aad: &[u8], wrapped: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        Kek::unwrap(self, aad, wrapped)
    }
    fn kind(&self) -> &'static str {
        "software"
    }
}

const WRAP_PREFIX: &str = "w1:";

impl Kek {
    /// A fresh random KEK.
    pub fn generate(rng: &dyn Rng) -> Result<Self, KmsError> {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(&mut k[..])?;
        Ok(Kek(k))
    }

    /// From a derived 32-byte key (e.g. the KMS's internal keys).
    pub fn from_array(k: [u8; 32]) -> Self {
        Kek(Zeroizing::new(k))
    }

    /// From raw bytes (an unwrapped KEK).
    pub fn from_bytes(b: &[u8]) -> Result<Self, KmsError> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| KmsError::Invalid("a KEK is 32 bytes".into()))?;
        Ok(Kek(Zeroizing::new(arr)))
    }

    /// Wrap `material` under this KEK with AES-256-GCM, bound to `aad`.
    pub fn wrap(&self, aad: &[u8], material: &[u8], rng: &dyn Rng) -> Result<String, KmsError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce)?;
        let ct = aead::seal(Algorithm::Aes256Gcm, &self.0[..], &nonce, aad, material)?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("{WRAP_PREFIX}{}", B64.encode(blob)))
    }

    /// Unwrap what [`Kek::wrap`] produced with the same `aad`.
    pub fn unwrap(&self, aad: &[u8], wrapped: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let b64 = wrapped
            .strip_prefix(WRAP_PREFIX)
            .ok_or_else(|| KmsError::Malformed("wrapped key lacks the w1: prefix".into()))?;
        let blob = B64
            .decode(b64)
            .map_err(|e| KmsError::Malformed(format!("wrapped key base64: {e}")))?;
        if blob.len() < NONCE_LEN + aead::TAG_LEN {
            return Err(KmsError::Malformed("wrapped key truncated".into()));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[..NONCE_LEN]);
        aead::open(
            Algorithm::Aes256Gcm,
            &self.0[..],
            &nonce,
            aad,
            &blob[NONCE_LEN..],
        )
        .map_err(|_| KmsError::Tampered("wrapped key does not open under this KEK"))
    }

    /// Derive a child KEK for a labelled purpose (HKDF-SHA256).
    pub fn derive(&self, label: &[u8]) -> Kek {
        let mut out = Zeroizing::new([0u8; 32]);
        crate::hash::hkdf(&self.0[..], b"chengfang-kms/kek", &[label], &mut out[..]);
        Kek(out)
    }

    /// Raw bytes, for wrapping this KEK under its parent.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seal under an operator passphrase with Argon2id.
    pub fn seal_with_passphrase(
        &self,
        passphrase: &[u8],
        kdf: Argon2Params,
        rng: &dyn Rng,
    ) -> Result<SealedRoot, KmsError> {
        if passphrase.len() < 12 {
            return Err(KmsError::Invalid(
                "a sealing passphrase needs at least 12 characters".into(),
            ));
        }
        let mut salt = [0u8; 16];
        rng.fill(&mut salt)?;
        let kek = kdf.derive(passphrase, &salt)?;
        self.seal_under(
            &kek,
            SealMethod::Passphrase {
                kdf,
                salt: B64.encode(salt),
            },
            rng,
        )
    }

    /// Seal under a 32-byte key file (generated by the operator, kept apart from the data directory).
    pub fn seal_with_keyfile(&self, keyfile: &[u8], rng: &dyn Rng) -> Result<SealedRoot, KmsError> {
        let kek = keyfile_kek(keyfile)?;
        self.seal_under(&kek, SealMethod::KeyFile, rng)
    }

    fn seal_under(
        &self,
        kek: &Kek,
        method: SealMethod,
        rng: &dyn Rng,
    ) -> Result<SealedRoot, KmsError> {
        let aad = seal_aad(&method);
        let wrapped = kek.wrap(&aad, &self.0[..], rng)?;
        Ok(SealedRoot {
            format: 1,
            method,
            wrapped,
        })
    }
}

fn keyfile_kek(keyfile: &[u8]) -> Result<Kek, KmsError> {
    if keyfile.len() < 32 {
        return Err(KmsError::Unseal(
            "key file must hold at least 32 bytes of key material",
        ));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    crate::hash::hkdf(keyfile, b"chengfang-kms/seal", &[b"key-file"], &mut out[..]);
    Ok(Kek(out))
}

/// Argon2id cost parameters (OWASP defaults: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            m_kib: 19 * 1024,
            t: 2,
            p: 1,
        }
    }
}

impl Argon2Params {
    fn derive(&self, pass: &[u8], salt: &[u8]) -> Result<Kek, KmsError> {
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| KmsError::Invalid(format!("argon2 parameters: {e}")))?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        a.hash_password_into(pass, salt, &mut out[..])
            .map_err(|e| KmsError::Invalid(format!("argon2: {e}")))?;
        Ok(Kek(out))
    }
}

/// How a root key is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum SealMethod {
    /// Operator passphrase through Argon2id.
    Passphrase {
        /// KDF costs.
        kdf: Argon2Params,
        /// Base64 salt.
        salt: String,
    },
    /// A key file.
    KeyFile,
}

/// The sealed root key as stored (JSON); holds no usable key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRoot {
    /// Format version (1).
    pub format: u32,
    /// Sealing method and its parameters.
    #[serde(flatten)]
    pub method: SealMethod,
    /// The root key wrapped under the sealing key.
    pub wrapped: String,
}

fn seal_aad(m: &SealMethod) -> Vec<u8> {
    let mut aad = b"chengfang-kms/root/v1/".to_vec();
    aad.extend_from_slice(serde_json::to_string(m).unwrap_or_default().as_bytes());
    aad
}

impl SealedRoot {
    /// Parse the stored JSON.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        let r: SealedRoot = serde_json::from_str(s)
            .map_err(|e| KmsError::Malformed(format!("sealed root: {e}")))?;
        if r.format != 1 {
            return Err(KmsError::Malformed(format!(
                "sealed root format {} is not supported",
                r.format
            )));
        }
        Ok(r)
    }

    /// Stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Unseal with a passphrase.
    pub fn unseal_passphrase(&self, passphrase: &[u8]) -> Result<RootKey, KmsError> {
        let SealMethod::Passphrase { kdf, salt } = &self.method else {
            return Err(KmsError::Unseal(
                "this root key is sealed by a key file, not a passphrase",
            ));
        };
        let salt = B64
            .decode(salt)
            .map_err(|_| KmsError::Unseal("damaged salt"))?;
        let kek = kdf.derive(passphrase, &salt)?;
        self.open(&kek, "wrong passphrase or damaged seal")
    }

    /// Unseal with a key file.
    pub fn unseal_keyfile(&self, keyfile: &[u8]) -> Result<RootKey, KmsError> {
        if !matches!(self.method, SealMethod::KeyFile) {
            return Err(KmsError::Unseal(
                "this root key is sealed by a passphrase, not a key file",
            ));
        }
        self.open(&keyfile_kek(keyfile)?, "wrong key file or damaged seal")
    }

    fn open(&self, kek: &Kek, why: &'static str) -> Result<RootKey, KmsError> {
        let raw = kek
            .unwrap(&seal_aad(&self.method), &self.wrapped)
            .map_err(|_| KmsError::Unseal(why))?;
        Kek::from_bytes(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_crypto::SeededRng;

    fn cheap() -> Argon2Params {
        Argon2Params {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn passphrase_seal_round_trips_and_refuses_a_wrong_passphrase() {
        let rng = SeededRng::new(1);
        let root = Kek::generate(&rng).unwrap();
        let sealed = root
            .seal_with_passphrase(b"correct horse battery", cheap(), &rng)
            .unwrap();
        let json = sealed.to_json();
        assert!(!json.contains(&hex::encode(root.expose())));
        let back = SealedRoot::parse(&json)
            .unwrap()
            .unseal_passphrase(b"correct horse battery")
            .unwrap();
        assert_eq!(back.expose(), root.expose());
        let e = sealed
            .unseal_passphrase(b"correct horse battery!")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot unseal the root key: wrong passphrase or damaged seal"
        );
        assert!(sealed.unseal_keyfile(&[0; 32]).is_err());
        assert!(root.seal_with_passphrase(b"short", cheap(), &rng).is_err());
    }

    #[test]
    fn keyfile_seal_round_trips_and_detects_tampering() {
        let rng = SeededRng::new(2);
        let root = Kek::generate(&rng).unwrap();
        let kf = [5u8; 32];
        let mut sealed = root.seal_with_keyfile(&kf, &rng).unwrap();
        assert_eq!(sealed.unseal_keyfile(&kf).unwrap().expose(), root.expose());
        assert!(sealed.unseal_keyfile(&[6u8; 32]).is_err());
        assert!(sealed.unseal_keyfile(&[5u8; 8]).is_err());
        sealed.wrapped.replace_range(
            10..11,
            if &sealed.wrapped[10..11] == "A" {
                "B"
            } else {
                "A"
            },
        );
        assert!(sealed.unseal_keyfile(&kf).is_err());
    }

    #[test]
    fn wraps_are_bound_to_their_place_in_the_hierarchy() {
        let rng = SeededRng::new(3);
        let k = Kek::generate(&rng).unwrap();
        let w = k.wrap(b"org/a/key/x/v1", b"material", &rng).unwrap();
        assert_eq!(&k.unwrap(b"org/a/key/x/v1", &w).unwrap()[..], b"material");
        assert!(k.unwrap(b"org/b/key/x/v1", &w).is_err());
        assert!(format!("{k:?}").contains("redacted"));
    }
}
