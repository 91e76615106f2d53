//! Device signature keys (DEV-1, INT-1): ECDSA P-256, Ed25519 and SM2 behind one parsed,
//! reusable verifier, and a PKCS#8 signer for devices and the simulator.
//!
//! Signatures are fixed-width `r‖s` (64 bytes) for every algorithm, so envelopes have one shape.

use std::fmt;

use cf_core::Secret;
use ring::signature::{self as rs, KeyPair as _};

use crate::{CryptoError, Ed25519PublicKey, Sm2PublicKey};

/// Signature algorithm of a device key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlg {
    /// ECDSA over P-256 with SHA-256.
    EcdsaP256,
    /// Ed25519 (RFC 8032).
    Ed25519,
    /// SM2 with SM3 (GB/T 32918.2, default distinguishing identifier).
    Sm2,
}

impl KeyAlg {
    /// Stable one-byte code used in binary envelopes.
    pub fn code(self) -> u8 {
        match self {
            KeyAlg::EcdsaP256 => 1,
            KeyAlg::Ed25519 => 2,
            KeyAlg::Sm2 => 3,
        }
    }
    /// Inverse of [`KeyAlg::code`].
    pub fn from_code(c: u8) -> Option<KeyAlg> {
        match c {
            1 => Some(KeyAlg::EcdsaP256),
            2 => Some(KeyAlg::Ed25519),
            3 => Some(KeyAlg::Sm2),
            _ => None,
        }
    }
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EcdsaP256 => "ecdsa-p256",
            KeyAlg::Ed25519 => "ed25519",
            KeyAlg::Sm2 => "sm2",
        }
    }
    /// Parse a name as written by [`KeyAlg::as_str`].
    pub fn parse(s: &str) -> Option<KeyAlg> {
        [KeyAlg::EcdsaP256, KeyAlg::Ed25519, KeyAlg::Sm2]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device public key, parsed once and reused for every verification.
#[derive(Clone)]
pub struct DevicePublicKey {
    alg: KeyAlg,
    raw: Vec<u8>,
    parsed: Parsed,
}

#[derive(Clone)]
enum Parsed {
    P256,
    Ed(ed25519_dalek::VerifyingKey),
    Sm2(Box<sm2::dsa::VerifyingKey>),
}

impl fmt::Debug for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DevicePublicKey({}, {})",
            self.alg,
            hex::encode(&self.raw)
        )
    }
}

impl PartialEq for DevicePublicKey {
    fn eq(&self, o: &Self) -> bool {
        self.alg == o.alg && self.raw == o.raw
    }
}
impl Eq for DevicePublicKey {}

impl DevicePublicKey {
    /// Parse raw key bytes: SEC1 uncompressed point for P-256 and SM2, 32 bytes for Ed25519.
    pub fn parse(alg: KeyAlg, raw: &[u8]) -> Result<Self, CryptoError> {
        let parsed = match alg {
            KeyAlg::EcdsaP256 => {
                if raw.len() != 65 || raw[0] != 4 {
                    return Err(CryptoError::InvalidKey(
                        "a P-256 public key is a 65-byte uncompressed point",
                    ));
                }
                Parsed::P256
            }
            KeyAlg::Ed25519 => {
                Ed25519PublicKey::from_slice(raw)?;
                let arr: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| CryptoError::InvalidKey("an Ed25519 public key is 32 bytes"))?;
                Parsed::Ed(
                    ed25519_dalek::VerifyingKey::from_bytes(&arr)
                        .map_err(|_| CryptoError::InvalidKey("not a point on Ed25519"))?,
                )
            }
            KeyAlg::Sm2 => {
                Sm2PublicKey::from_slice(raw)?;
                Parsed::Sm2(Box::new(
                    sm2::dsa::VerifyingKey::from_sec1_bytes(crate::SM2_DEFAULT_DISTID, raw)
                        .map_err(|_| CryptoError::InvalidKey("not an SM2 public key"))?,
                ))
            }
        };
        Ok(DevicePublicKey {
            alg,
            raw: raw.to_vec(),
            parsed,
        })
    }
    /// Algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }
    /// Raw bytes as given to [`DevicePublicKey::parse`].
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
    /// SHA-256 fingerprint of the raw key, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(crate::sha256(&self.raw))
    }
    /// Verify a 64-byte `r‖s` signature over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        match &self.parsed {
            Parsed::P256 => rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, &self.raw)
                .verify(msg, sig)
                .map_err(|_| CryptoError::BadSignature),
            Parsed::Ed(vk) => {
                let sig: [u8; 64] = sig.try_into().map_err(|_| CryptoError::BadSignature)?;
                vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                    .map_err(|_| CryptoError::BadSignature)
            }
            Parsed::Sm2(vk) => {
                use sm2::dsa::signature::Verifier;
                let sig =
                    sm2::dsa::Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
                vk.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
            }
        }
    }
}

/// A device's signing key, loaded from PKCS#8 or (SM2) a raw scalar.
pub struct DeviceSigner {
    inner: Signer,
    public: DevicePublicKey,
}

enum Signer {
    P256(rs::EcdsaKeyPair, ring::rand::SystemRandom),
    Ed(ed25519_dalek::SigningKey),
    Sm2(crate::Sm2SigningKey),
}

impl fmt::Debug for DeviceSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceSigner({:?})", self.public)
    }
}

impl DeviceSigner {
    /// From a PKCS#8 DER private key (as made by the device, `rcgen` or OpenSSL).
    pub fn from_pkcs8(alg: KeyAlg, der: &Secret<Vec<u8>>) -> Result<Self, CryptoError> {
        match alg {
            KeyAlg::EcdsaP256 => {
                let rng = ring::rand::SystemRandom::new();
                let kp = rs::EcdsaKeyPair::from_pkcs8(
                    &rs::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der.expose(),
                    &rng,
                )
                .map_err(|_| CryptoError::InvalidKey("not a P-256 PKCS#8 key"))?;
                let public = DevicePublicKey::parse(alg, kp.public_key().as_ref())?;
                Ok(DeviceSigner {
                    inner: Signer::P256(kp, rng),
                    public,
                })
            }
            KeyAlg::Ed25519 => {
                let kp = rs::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.expose())
                    .map_err(|_| CryptoError::InvalidKey("not an Ed25519 PKCS#8 key"))?;
                // ring holds the seed privately; PKCS#8 v1/v2 for Ed25519 carries it at a fixed
                // offset after the OCTET STRING header (RFC 8410), which we locate by its tag.
                let seed = ed25519_seed(der.expose())
                    .ok_or(CryptoError::InvalidKey("not an Ed25519 PKCS#8 key"))?;
                let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
                if sk.verifying_key().as_bytes() != kp.public_key().as_ref() {
                    return Err(CryptoError::InvalidKey("inconsistent Ed25519 PKCS#8 key"));
                }
                let public = DevicePublicKey::parse(alg, kp.public_key().as_ref())?;
                Ok(DeviceSigner {
                    inner: Signer::Ed(sk),
                    public,
                })
            }
            KeyAlg::Sm2 => Self::sm2(crate::Sm2SigningKey::from_pkcs8_der(der.expose())?),
        }
    }
    /// An SM2 signer from its private scalar.
    pub fn sm2(key: crate::Sm2SigningKey) -> Result<Self, CryptoError> {
        let public = DevicePublicKey::parse(KeyAlg::Sm2, &key.public().0)?;
        Ok(DeviceSigner {
            inner: Signer::Sm2(key),
            public,
        })
    }
    /// The public half.
    pub fn public(&self) -> &DevicePublicKey {
        &self.public
    }
    /// Sign `msg`, returning 64 bytes `r‖s`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.inner {
            Signer::P256(kp, rng) => kp
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CryptoError::Rng),
            Signer::Ed(sk) => {
                use ed25519_dalek::Signer as _;
                Ok(sk.sign(msg).to_bytes().to_vec())
            }
            Signer::Sm2(k) => Ok(k.sign(msg).to_vec()),
        }
    }
}

/// The 32-byte seed inside an Ed25519 PKCS#8 document: `04 22 04 20 <seed>`.
fn ed25519_seed(der: &[u8]) -> Option<[u8; 32]> {
    let pos = der.windows(4).position(|w| w == [0x04, 0x22, 0x04, 0x20])?;
    der.get(pos + 4..pos + 36)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p256() -> DeviceSigner {
        let rng = ring::rand::SystemRandom::new();
        let doc =
            rs::EcdsaKeyPair::generate_pkcs8(&rs::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        DeviceSigner::from_pkcs8(KeyAlg::EcdsaP256, &Secret::new(doc.as_ref().to_vec())).unwrap()
    }

    fn ed() -> DeviceSigner {
        let rng = ring::rand::SystemRandom::new();
        let doc = rs::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        DeviceSigner::from_pkcs8(KeyAlg::Ed25519, &Secret::new(doc.as_ref().to_vec())).unwrap()
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_rejects_tampering() {
        let sm = DeviceSigner::sm2(crate::Sm2SigningKey::from_seed(&[7u8; 32]).unwrap()).unwrap();
        for s in [p256(), ed(), sm] {
            let sig = s.sign(b"reading 21.5").unwrap();
            assert_eq!(sig.len(), 64);
            let pk = DevicePublicKey::parse(s.public().alg(), s.public().raw()).unwrap();
            pk.verify(b"reading 21.5", &sig).unwrap();
            assert_eq!(
                pk.verify(b"reading 99.9", &sig),
                Err(CryptoError::BadSignature)
            );
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(pk.verify(b"reading 21.5", &bad).is_err());
            assert!(pk.verify(b"reading 21.5", &sig[..63]).is_err());
        }
    }

    #[test]
    fn keys_of_another_algorithm_or_garbage_are_refused() {
        let e = ed();
        assert!(DevicePublicKey::parse(KeyAlg::EcdsaP256, e.public().raw()).is_err());
        assert!(DevicePublicKey::parse(KeyAlg::Sm2, &[4u8; 65]).is_err());
        assert!(DevicePublicKey::parse(KeyAlg::Ed25519, &[1u8; 31]).is_err());
        assert!(DeviceSigner::from_pkcs8(KeyAlg::EcdsaP256, &Secret::new(vec![1, 2, 3])).is_err());
        for a in [KeyAlg::EcdsaP256, KeyAlg::Ed25519, KeyAlg::Sm2] {
            assert_eq!(KeyAlg::from_code(a.code()), Some(a));
            assert_eq!(KeyAlg::parse(a.as_str()), Some(a));
        }
        assert_eq!(KeyAlg::from_code(9), None);
    }
}
