//! Firmware integrity (INT-1, MGT-5): vendors sign manifests naming the image hash of each
//! release; devices report the hash they run at connect; anything not signed is an alert.

use std::collections::HashMap;

use cf_crypto::devkey::{DevicePublicKey, DeviceSigner, KeyAlg};
use serde::{Deserialize, Serialize};

use crate::DeviceError;

/// A firmware release as the vendor describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Vendor (matches the registry's `vendor`).
    pub vendor: String,
    /// Model (matches the registry's `model`).
    pub model: String,
    /// Version string.
    pub version: String,
    /// SHA-256 of the image, 64 lowercase hex digits.
    pub sha256: String,
}

/// A manifest and the vendor's signature over [`Manifest::signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// The release.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// Signature algorithm.
    pub alg: KeyAlg,
    /// 64-byte `r‖s` signature, hex.
    pub signature: String,
}

impl Manifest {
    /// Validate fields (no separators inside, a real SHA-256).
    pub fn validate(&self) -> Result<(), DeviceError> {
        for (f, v) in [
            ("vendor", &self.vendor),
            ("model", &self.model),
            ("version", &self.version),
        ] {
            if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
                return Err(DeviceError::Invalid(format!(
                    "manifest {f}: 1-128 printable characters"
                )));
            }
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DeviceError::Invalid(
                "manifest sha256: 64 lowercase hex digits".into(),
            ));
        }
        Ok(())
    }
    /// The bytes a vendor signs: a domain tag and the fields, newline-separated (fields cannot
    /// contain control characters, so the encoding is unambiguous).
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "chengfang-firmware-manifest-v1\n{}\n{}\n{}\n{}\n",
            self.vendor, self.model, self.version, self.sha256
        )
        .into_bytes()
    }
    /// Sign (vendors; tests and the demo).
    pub fn sign(self, key: &DeviceSigner) -> Result<SignedManifest, DeviceError> {
        self.validate()?;
        let sig = key
            .sign(&self.signed_bytes())
            .map_err(|e| DeviceError::Crypto(e.to_string()))?;
        Ok(SignedManifest {
            alg: key.public().alg(),
            signature: hex::encode(sig),
            manifest: self,
        })
    }
}

/// The outcome of checking a reported firmware hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum FirmwareCheck {
    /// A vendor-signed release of this vendor and model.
    Approved {
        /// Its version.
        version: String,
    },
    /// No signed manifest of this vendor and model has this hash (tampered or unofficial image).
    Unapproved,
}

/// Vendors' keys and the manifests they signed.
#[derive(Debug, Default)]
pub struct Catalog {
    vendor_keys: HashMap<String, Vec<DevicePublicKey>>,
    // (vendor, model, sha256) -> version
    releases: HashMap<(String, String, String), String>,
}

impl Catalog {
    /// Trust `key` to sign `vendor`'s firmware.
    pub fn trust_vendor(&mut self, vendor: &str, key: DevicePublicKey) {
        self.vendor_keys
            .entry(vendor.to_string())
            .or_default()
            .push(key);
    }
    /// Add a manifest after checking its signature against the vendor's keys.
    pub fn add(&mut self, m: &SignedManifest) -> Result<(), DeviceError> {
        m.manifest.validate()?;
        let keys = self.vendor_keys.get(&m.manifest.vendor).ok_or_else(|| {
            DeviceError::Invalid(format!(
                "no signing key registered for vendor `{}`",
                m.manifest.vendor
            ))
        })?;
        let sig = hex::decode(&m.signature)
            .map_err(|_| DeviceError::Invalid("manifest signature: not hex".into()))?;
        let bytes = m.manifest.signed_bytes();
        if !keys
            .iter()
            .any(|k| k.alg() == m.alg && k.verify(&bytes, &sig).is_ok())
        {
            return Err(DeviceError::Crypto(format!(
                "manifest {} {} {}: signature does not verify with any key of vendor `{}`",
                m.manifest.vendor, m.manifest.model, m.manifest.version, m.manifest.vendor
            )));
        }
        self.releases.insert(
            (
                m.manifest.vendor.clone(),
                m.manifest.model.clone(),
                m.manifest.sha256.clone(),
            ),
            m.manifest.version.clone(),
        );
        Ok(())
    }
    /// Check the hash a device of `vendor`/`model` reports.
    pub fn check(&self, vendor: &str, model: &str, sha256: &str) -> FirmwareCheck {
        match self.releases.get(&(
            vendor.to_string(),
            model.to_string(),
            sha256.to_ascii_lowercase(),
        )) {
            Some(v) => FirmwareCheck::Approved { version: v.clone() },
            None => FirmwareCheck::Unapproved,
        }
    }
    /// Number of releases known.
    pub fn len(&self) -> usize {
        self.releases.len()
    }
    /// Whether no release is known.
    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_crypto::Sm2SigningKey;

    fn vendor() -> DeviceSigner {
        DeviceSigner::sm2(Sm2SigningKey::from_seed(&[3; 32]).unwrap()).unwrap()
    }
    fn manifest(hash: &str) -> Manifest {
        Manifest {
            vendor: "Acme".into(),
            model: "IPC-200".into(),
            version: "1.4.2".into(),
            sha256: hash.into(),
        }
    }

    #[test]
    fn signed_releases_are_approved_and_anything_else_is_not() {
        let good = hex::encode(cf_crypto::sha256(b"image 1.4.2"));
        let evil = hex::encode(cf_crypto::sha256(b"image 1.4.2 + backdoor"));
        let mut c = Catalog::default();
        let signed = manifest(&good).sign(&vendor()).unwrap();
        assert!(c.add(&signed).is_err(), "no vendor key yet");
        c.trust_vendor("Acme", vendor().public().clone());
        c.add(&signed).unwrap();
        assert_eq!(
            c.check("Acme", "IPC-200", &good),
            FirmwareCheck::Approved {
                version: "1.4.2".into()
            }
        );
        assert_eq!(c.check("Acme", "IPC-200", &evil), FirmwareCheck::Unapproved);
        assert_eq!(
            c.check("Acme", "IPC-300", &good),
            FirmwareCheck::Unapproved,
            "another model"
        );
        // A manifest whose hash was changed after signing is refused.
        let mut forged = signed.clone();
        forged.manifest.sha256 = evil.clone();
        assert!(c.add(&forged).is_err());
        // Signed by someone else.
        let other = DeviceSigner::sm2(Sm2SigningKey::from_seed(&[4; 32]).unwrap()).unwrap();
        assert!(c.add(&manifest(&evil).sign(&other).unwrap()).is_err());
        assert_eq!(c.check("Acme", "IPC-200", &evil), FirmwareCheck::Unapproved);
        assert!(manifest("abc").sign(&vendor()).is_err());
        let mut nl = manifest(&good);
        nl.version = "1.0\nsha".into();
        assert!(nl.validate().is_err());
    }
}
