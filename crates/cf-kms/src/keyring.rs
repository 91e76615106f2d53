//! Named keys with versions (ENC-1, DES-1): rotation, minimum decryption version, disable and
//! destroy per version, convergent encryption, derived keys per context, blind indexes, data keys,
//! rewrap, signatures (Ed25519, SM2) and SM2 encryption. Persisted only wrapped under a KEK.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aead::{self, Algorithm, Cipher, NONCE_LEN};
use crate::envelope::{Envelope, Mode};
use crate::hash::{self, HashAlg};
use crate::seal::Kek;
use crate::{KmsError, sm2enc};
use cf_core::Timestamp;
use cf_crypto::Rng;

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// AES-256-GCM encryption.
    Aes256Gcm,
    /// SM4-GCM encryption.
    Sm4Gcm,
    /// ChaCha20-Poly1305 encryption.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// Ed25519 signatures.
    Ed25519,
    /// SM2 signatures and SM2 public-key encryption.
    Sm2,
}

impl KeyType {
    /// All key types.
    pub const ALL: [KeyType; 5] = [
        KeyType::Aes256Gcm,
        KeyType::Sm4Gcm,
        KeyType::ChaCha20Poly1305,
        KeyType::Ed25519,
        KeyType::Sm2,
    ];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes256Gcm => "aes256-gcm",
            KeyType::Sm4Gcm => "sm4-gcm",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::Sm2 => "sm2",
        }
    }

    /// Parse the stable name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The AEAD, for encryption keys.
    pub fn aead(self) -> Option<Algorithm> {
        match self {
            KeyType::Aes256Gcm => Some(Algorithm::Aes256Gcm),
            KeyType::Sm4Gcm => Some(Algorithm::Sm4Gcm),
            KeyType::ChaCha20Poly1305 => Some(Algorithm::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Length of the stored material.
    pub fn material_len(self) -> usize {
        match self {
            KeyType::Sm4Gcm => 16,
            _ => 32,
        }
    }
}

/// Life-cycle state of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Usable.
    Active,
    /// Kept but refused for every operation until re-enabled.
    Disabled,
    /// Material erased; ciphertext under it is unrecoverable (crypto-shredding).
    Destroyed,
}

/// Key policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Versions below this are refused for decryption (after a compromise or a rewrap campaign).
    pub min_decryption_version: u32,
    /// Deterministic (convergent) encryption is allowed on this key.
    pub convergent: bool,
    /// Encryption requires a context and uses a key derived from it (tenant or column separation).
    pub derived: bool,
    /// Destroy is allowed (a guard against accidents, as in Vault's deletion_allowed).
    pub deletion_allowed: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_decryption_version: 1,
            convergent: false,
            derived: false,
            deletion_allowed: false,
        }
    }
}

struct Version {
    version: u32,
    created: Timestamp,
    state: KeyState,
    material: Option<Zeroizing<Vec<u8>>>,
}

/// A named key and all its versions. Its `Debug` shows metadata only.
pub struct KeyRing {
    name: String,
    org: String,
    key_type: KeyType,
    created: Timestamp,
    imported: bool,
    /// Policy; change through the platform so changes are audited.
    pub policy: Policy,
    versions: Vec<Version>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("name", &self.name)
            .field("org", &self.org)
            .field("type", &self.key_type)
            .field("versions", &self.versions.len())
            .finish()
    }
}

/// Public description of one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersionInfo {
    /// Version number.
    pub version: u32,
    /// Creation time.
    pub created: Timestamp,
    /// State.
    pub state: KeyState,
    /// Public key (hex SEC1 or raw Ed25519) for signing keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Public description of a key: everything but the material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Name.
    pub name: String,
    /// Owning organisation.
    pub org: String,
    /// Type.
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// Creation time.
    pub created: Timestamp,
    /// Imported (bring your own key) rather than generated.
    pub imported: bool,
    /// Latest version.
    pub latest_version: u32,
    /// Policy.
    pub policy: Policy,
    /// Versions.
    pub versions: Vec<KeyVersionInfo>,
}

#[derive(Serialize, Deserialize)]
struct StoredVersion {
    version: u32,
    created: Timestamp,
    state: KeyState,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrapped: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    name: String,
    org: String,
    #[serde(rename = "type")]
    key_type: KeyType,
    created: Timestamp,
    imported: bool,
    policy: Policy,
    versions: Vec<StoredVersion>,
}

/// Key names: what may appear in an envelope, a URL path and a ledger record.
pub fn check_name(name: &str) -> Result<(), KmsError> {
    let ok = !name.is_empty()
        && name.len() <= crate::envelope::MAX_KEY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !name.starts_with(['.', '-', '_']);
    if ok {
        Ok(())
    } else {
        Err(KmsError::Invalid(format!(
            "key name `{name}` must be 1-128 characters of a-z A-Z 0-9 . _ - and start with a letter or digit"
        )))
    }
}

fn wrap_aad(org: &str, name: &str, version: u32) -> Vec<u8> {
    format!("chengfang-kms/v1/org/{org}/key/{name}/version/{version}").into_bytes()
}

fn new_material(t: KeyType, rng: &dyn Rng) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    match t {
        KeyType::Sm2 => sm2enc::generate(rng),
        _ => {
            let mut m = Zeroizing::new(vec![0u8; t.material_len()]);
            rng.fill(&mut m)?;
            Ok(m)
        }
    }
}

fn check_material(t: KeyType, m: &[u8]) -> Result<(), KmsError> {
    if m.len() != t.material_len() {
        return Err(KmsError::Invalid(format!(
            "{} key material must be {} bytes, got {}",
            t.as_str(),
            t.material_len(),
            m.len()
        )));
    }
    if t == KeyType::Sm2 {
        sm2enc::public_key(m)?;
    }
    Ok(())
}

impl KeyRing {
    /// A new key with one generated version.
    pub fn generate(
        name: &str,
        org: &str,
        key_type: KeyType,
        policy: Policy,
        now: Timestamp,
        rng: &dyn Rng,
    ) -> Result<Self, KmsError> {
        check_name(name)?;
        check_name(org)?;
        let material = new_material(key_type, rng)?;
        Ok(Self::with_first(
            name, org, key_type, policy, now, material, false,
        ))
    }

    /// A key from imported material (bring your own key).
    pub fn import(
        name: &str,
        org: &str,
        key_type: KeyType,
        policy: Policy,
        now: Timestamp,
        material: Zeroizing<Vec<u8>>,
    ) -> Result<Self, KmsError> {
        check_name(name)?;
        check_name(org)?;
        check_material(key_type, &material)?;
        Ok(Self::with_first(
            name, org, key_type, policy, now, material, true,
        ))
    }

    fn with_first(
        name: &str,
        org: &str,
        key_type: KeyType,
        policy: Policy,
        now: Timestamp,
        material: Zeroizing<Vec<u8>>,
        imported: bool,
    ) -> Self {
        KeyRing {
            name: name.into(),
            org: org.into(),
            key_type,
            created: now,
            imported,
            policy,
            versions: vec![Version {
                version: 1,
                created: now,
                state: KeyState::Active,
                material: Some(material),
            }],
        }
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Organisation.
    pub fn org(&self) -> &str {
        &self.org
    }
    /// Type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
    /// Latest version number.
    pub fn latest(&self) -> u32 {
        self.versions.len() as u32
    }

    /// Add a new generated version; new encryptions use it.
    pub fn rotate(&mut self, now: Timestamp, rng: &dyn Rng) -> Result<u32, KmsError> {
        let m = new_material(self.key_type, rng)?;
        self.push(now, m)
    }

    /// Add an imported version (BYOK rotation).
    pub fn rotate_import(
        &mut self,
        now: Timestamp,
        material: Zeroizing<Vec<u8>>,
    ) -> Result<u32, KmsError> {
        check_material(self.key_type, &material)?;
        self.imported = true;
        self.push(now, material)
    }

    fn push(&mut self, now: Timestamp, m: Zeroizing<Vec<u8>>) -> Result<u32, KmsError> {
        if self.versions.iter().all(|v| v.state == KeyState::Destroyed) {
            return Err(self.unsupported("the key is destroyed; create a new key instead"));
        }
        let v = self.latest() + 1;
        self.versions.push(Version {
            version: v,
            created: now,
            state: KeyState::Active,
            material: Some(m),
        });
        Ok(v)
    }

    fn unsupported(&self, reason: &str) -> KmsError {
        KmsError::Unsupported {
            key: self.name.clone(),
            reason: reason.into(),
        }
    }

    fn version(&self, v: u32) -> Result<&Version, KmsError> {
        let err = |reason| KmsError::Version {
            key: self.name.clone(),
            version: v,
            reason,
        };
        let ver = self
            .versions
            .get((v as usize).wrapping_sub(1))
            .ok_or_else(|| err("no such version"))?;
        match ver.state {
            KeyState::Destroyed => Err(err("destroyed; data under it is unrecoverable")),
            KeyState::Disabled => Err(err("disabled")),
            KeyState::Active => Ok(ver),
        }
    }

    fn material(&self, v: u32) -> Result<&[u8], KmsError> {
        let ver = self.version(v)?;
        ver.material
            .as_deref()
            .map(|m| &m[..])
            .ok_or(KmsError::Version {
                key: self.name.clone(),
                version: v,
                reason: "destroyed; data under it is unrecoverable",
            })
    }

    fn aead(&self) -> Result<Algorithm, KmsError> {
        self.key_type.aead().ok_or_else(|| {
            self.unsupported(&format!(
                "a {} key does not encrypt with an AEAD",
                self.key_type.as_str()
            ))
        })
    }

    /// The AEAD key of version `v` for `context` (derived keys) or the material itself.
    fn enc_key(&self, v: u32, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let m = self.material(v)?;
        if self.policy.derived {
            if context.is_empty() {
                return Err(KmsError::Invalid(format!(
                    "key `{}` is derived: every call needs a context",
                    self.name
                )));
            }
            let mut k = Zeroizing::new(vec![0u8; m.len()]);
            hash::hkdf(m, b"chengfang-kms/derived", &[context], &mut k);
            Ok(k)
        } else {
            Ok(Zeroizing::new(m.to_vec()))
        }
    }

    /// A keyed AEAD for version `v` and `context`, for batch work.
    pub fn cipher(&self, v: u32, context: &[u8]) -> Result<Cipher, KmsError> {
        Cipher::new(self.aead()?, &self.enc_key(v, context)?)
    }

    /// Encrypt under the latest version. `deterministic` needs a convergent key.
    pub fn encrypt(
        &self,
        plaintext: &[u8],
        context: &[u8],
        deterministic: bool,
        rng: &dyn Rng,
    ) -> Result<Envelope, KmsError> {
        let cipher = self.cipher(self.latest(), context)?;
        self.encrypt_with(&cipher, plaintext, context, deterministic, rng)
    }

    /// Encrypt with a cipher from [`KeyRing::cipher`] for the latest version (batch fast path).
    pub fn encrypt_with(
        &self,
        cipher: &Cipher,
        plaintext: &[u8],
        context: &[u8],
        deterministic: bool,
        rng: &dyn Rng,
    ) -> Result<Envelope, KmsError> {
        let alg = self.aead()?;
        let v = self.latest();
        let mut nonce = [0u8; NONCE_LEN];
        let mode = if deterministic {
            if !self.policy.convergent {
                return Err(self.unsupported(
                    "deterministic encryption needs a key created with convergent = true",
                ));
            }
            // Synthetic nonce: equal (context, plaintext) pairs meet the same nonce, nothing else does.
            let mut nk = Zeroizing::new([0u8; 32]);
            hash::hkdf(
                self.material(v)?,
                b"chengfang-kms/siv",
                &[context],
                &mut nk[..],
            );
            let mut input = (context.len() as u64).to_be_bytes().to_vec();
            input.extend_from_slice(context);
            input.extend_from_slice(plaintext);
            nonce.copy_from_slice(&HashAlg::Sha256.hmac(&nk[..], &input)[..NONCE_LEN]);
            Mode::Deterministic
        } else {
            rng.fill(&mut nonce)?;
            Mode::Random
        };
        let mut env = Envelope {
            alg,
            mode,
            key: self.name.clone(),
            version: v,
            nonce,
            body: Vec::with_capacity(plaintext.len() + aead::TAG_LEN),
        };
        let aad = env.aad(context);
        env.body.extend_from_slice(plaintext);
        cipher.seal(&nonce, &aad, &mut env.body)?;
        Ok(env)
    }

    /// Decrypt an envelope made by this key.
    pub fn decrypt(&self, env: &Envelope, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let cipher = self.check_envelope(env, context)?;
        let mut buf = Zeroizing::new(env.body.clone());
        cipher.open(&env.nonce, &env.aad(context), &mut buf)?;
        Ok(buf)
    }

    fn check_envelope(&self, env: &Envelope, context: &[u8]) -> Result<Cipher, KmsError> {
        if env.key != self.name {
            return Err(KmsError::WrongKey {
                found: env.key.clone(),
                expected: self.name.clone(),
            });
        }
        if Some(env.alg) != self.key_type.aead() {
            return Err(KmsError::Tampered(
                "envelope algorithm does not match the key",
            ));
        }
        if env.version < self.policy.min_decryption_version {
            return Err(KmsError::Version {
                key: self.name.clone(),
                version: env.version,
                reason: "below the minimum decryption version",
            });
        }
        self.cipher(env.version, context)
    }

    /// Re-encrypt under the latest version without the plaintext leaving the engine.
    pub fn rewrap(
        &self,
        env: &Envelope,
        context: &[u8],
        rng: &dyn Rng,
    ) -> Result<Envelope, KmsError> {
        let pt = self.decrypt(env, context)?;
        self.encrypt(&pt, context, env.mode == Mode::Deterministic, rng)
    }

    /// A fresh data key for client-side envelope encryption: (plaintext key, key wrapped by this key).
    pub fn data_key(
        &self,
        alg: Algorithm,
        context: &[u8],
        rng: &dyn Rng,
    ) -> Result<(Zeroizing<Vec<u8>>, Envelope), KmsError> {
        let mut dk = Zeroizing::new(vec![0u8; alg.key_len().max(32)]);
        rng.fill(&mut dk)?;
        let env = self.encrypt(&dk, context, false, rng)?;
        Ok((dk, env))
    }

    /// Blind index of `value` for equality search: a keyed hash (HMAC-SHA256 or HMAC-SM3) under a
    /// key derived for `context` (e.g. `table.column`), truncated to `len` bytes (8..=32).
    pub fn blind_index(
        &self,
        alg: HashAlg,
        context: &[u8],
        value: &[u8],
        len: usize,
    ) -> Result<Vec<u8>, KmsError> {
        if !(8..=32).contains(&len) {
            return Err(KmsError::Invalid("a blind index is 8 to 32 bytes".into()));
        }
        self.aead()?;
        let mut k = Zeroizing::new([0u8; 32]);
        hash::hkdf(
            self.material(self.latest())?,
            b"chengfang-kms/blind-index",
            &[context],
            &mut k[..],
        );
        Ok(alg.hmac(&k[..], value)[..len].to_vec())
    }

    /// HMAC of `data` under version `v` (latest if `None`).
    pub fn hmac(
        &self,
        alg: HashAlg,
        data: &[u8],
        v: Option<u32>,
    ) -> Result<(u32, [u8; 32]), KmsError> {
        self.aead()?;
        let v = v.unwrap_or(self.latest());
        let mut k = Zeroizing::new([0u8; 32]);
        hash::hkdf(self.material(v)?, b"chengfang-kms/hmac", &[], &mut k[..]);
        Ok((v, alg.hmac(&k[..], data)))
    }

    /// Sign with the latest version; returns (version, signature).
    pub fn sign(&self, msg: &[u8]) -> Result<(u32, Vec<u8>), KmsError> {
        let v = self.latest();
        let m = self.material(v)?;
        let seed: &[u8; 32] = m
            .try_into()
            .map_err(|_| KmsError::Invalid("signing key material is not 32 bytes".into()))?;
        let sig = match self.key_type {
            KeyType::Ed25519 => cf_crypto::Ed25519SigningKey::from_seed(seed)
                .sign(msg)
                .to_vec(),
            KeyType::Sm2 => cf_crypto::Sm2SigningKey::from_seed(seed)?
                .sign(msg)
                .to_vec(),
            _ => return Err(self.unsupported("only ed25519 and sm2 keys sign")),
        };
        Ok((v, sig))
    }

    /// Public key of version `v` (Ed25519 raw 32 bytes, SM2 SEC1 uncompressed).
    pub fn public_key(&self, v: u32) -> Result<Vec<u8>, KmsError> {
        let ver = self
            .versions
            .get((v as usize).wrapping_sub(1))
            .ok_or(KmsError::Version {
                key: self.name.clone(),
                version: v,
                reason: "no such version",
            })?;
        let m = ver.material.as_deref().ok_or(KmsError::Version {
            key: self.name.clone(),
            version: v,
            reason: "destroyed",
        })?;
        let seed: &[u8; 32] = m[..]
            .try_into()
            .map_err(|_| self.unsupported("not a signing key"))?;
        match self.key_type {
            KeyType::Ed25519 => Ok(cf_crypto::Ed25519SigningKey::from_seed(seed)
                .public()
                .0
                .to_vec()),
            KeyType::Sm2 => Ok(cf_crypto::Sm2SigningKey::from_seed(seed)?.public().0),
            _ => Err(self.unsupported("symmetric keys have no public key")),
        }
    }

    /// Verify a signature made by version `v`.
    pub fn verify(&self, v: u32, msg: &[u8], sig: &[u8]) -> Result<(), KmsError> {
        self.version(v)?;
        let pk = self.public_key(v)?;
        verify_detached(self.key_type, &pk, msg, sig)
    }

    /// SM2-encrypt to the latest version's public key.
    pub fn sm2_encrypt(&self, msg: &[u8], rng: &dyn Rng) -> Result<(u32, Vec<u8>), KmsError> {
        if self.key_type != KeyType::Sm2 {
            return Err(self.unsupported("SM2 encryption needs an sm2 key"));
        }
        let v = self.latest();
        let pk = sm2enc::public_key(self.material(v)?)?;
        Ok((v, sm2enc::encrypt(&pk, msg, rng)?))
    }

    /// SM2-decrypt with version `v`.
    pub fn sm2_decrypt(&self, v: u32, ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if self.key_type != KeyType::Sm2 {
            return Err(self.unsupported("SM2 decryption needs an sm2 key"));
        }
        if v < self.policy.min_decryption_version {
            return Err(KmsError::Version {
                key: self.name.clone(),
                version: v,
                reason: "below the minimum decryption version",
            });
        }
        sm2enc::decrypt(self.material(v)?, ct)
    }

    /// Set the minimum decryption version (1..=latest).
    pub fn set_min_decryption_version(&mut self, v: u32) -> Result<(), KmsError> {
        if v == 0 || v > self.latest() {
            return Err(KmsError::Invalid(format!(
                "min_decryption_version must be 1..={}",
                self.latest()
            )));
        }
        self.policy.min_decryption_version = v;
        Ok(())
    }

    /// Disable (`false`) or re-enable (`true`) one version.
    pub fn set_enabled(&mut self, v: u32, enabled: bool) -> Result<(), KmsError> {
        let latest = self.latest();
        let name = self.name.clone();
        let ver = self
            .versions
            .get_mut((v as usize).wrapping_sub(1))
            .ok_or(KmsError::Version {
                key: name.clone(),
                version: v,
                reason: "no such version",
            })?;
        if ver.state == KeyState::Destroyed {
            return Err(KmsError::Version {
                key: name,
                version: v,
                reason: "destroyed; it cannot be re-enabled",
            });
        }
        if !enabled && v == latest {
            return Err(KmsError::Invalid(
                "the latest version cannot be disabled; rotate first".into(),
            ));
        }
        ver.state = if enabled {
            KeyState::Active
        } else {
            KeyState::Disabled
        };
        Ok(())
    }

    /// Erase the material of `version` (or of every version): crypto-shredding. Irreversible.
    /// Returns the versions destroyed by this call.
    pub fn destroy(&mut self, version: Option<u32>) -> Result<Vec<u32>, KmsError> {
        if !self.policy.deletion_allowed {
            return Err(self.unsupported(
                "destroy is not allowed: set deletion_allowed first (itself audited)",
            ));
        }
        let mut done = Vec::new();
        for ver in &mut self.versions {
            if version.is_none_or(|v| v == ver.version) && ver.state != KeyState::Destroyed {
                ver.state = KeyState::Destroyed;
                ver.material = None; // Zeroizing wipes the bytes on drop.
                done.push(ver.version);
            }
        }
        if let Some(v) = version
            && done.is_empty()
        {
            return Err(KmsError::Version {
                key: self.name.clone(),
                version: v,
                reason: "no such version or already destroyed",
            });
        }
        Ok(done)
    }

    /// Everything but the material.
    pub fn info(&self) -> KeyInfo {
        let signing = matches!(self.key_type, KeyType::Ed25519 | KeyType::Sm2);
        KeyInfo {
            name: self.name.clone(),
            org: self.org.clone(),
            key_type: self.key_type,
            created: self.created,
            imported: self.imported,
            latest_version: self.latest(),
            policy: self.policy.clone(),
            versions: self
                .versions
                .iter()
                .map(|v| KeyVersionInfo {
                    version: v.version,
                    created: v.created,
                    state: v.state,
                    public_key: if signing && v.material.is_some() {
                        self.public_key(v.version).ok().map(hex::encode)
                    } else {
                        None
                    },
                })
                .collect(),
        }
    }

    /// Serialise with every version's material wrapped under `kek` (the organisation's KEK).
    pub fn to_stored(&self, kek: &Kek, rng: &dyn Rng) -> Result<String, KmsError> {
        let versions = self
            .versions
            .iter()
            .map(|v| {
                let wrapped = match &v.material {
                    Some(m) => {
                        Some(kek.wrap(&wrap_aad(&self.org, &self.name, v.version), m, rng)?)
                    }
                    None => None,
                };
                Ok(StoredVersion {
                    version: v.version,
                    created: v.created,
                    state: v.state,
                    wrapped,
                })
            })
            .collect::<Result<Vec<_>, KmsError>>()?;
        let s = Stored {
            format: 1,
            name: self.name.clone(),
            org: self.org.clone(),
            key_type: self.key_type,
            created: self.created,
            imported: self.imported,
            policy: self.policy.clone(),
            versions,
        };
        serde_json::to_string(&s).map_err(|e| KmsError::Invalid(format!("serialise key: {e}")))
    }

    /// Parse and unwrap what [`KeyRing::to_stored`] produced.
    pub fn from_stored(kek: &Kek, s: &str) -> Result<Self, KmsError> {
        let st: Stored =
            serde_json::from_str(s).map_err(|e| KmsError::Malformed(format!("stored key: {e}")))?;
        if st.format != 1 {
            return Err(KmsError::Malformed(format!(
                "stored key format {} is not supported",
                st.format
            )));
        }
        let mut versions = Vec::with_capacity(st.versions.len());
        for (i, v) in st.versions.into_iter().enumerate() {
            if v.version as usize != i + 1 {
                return Err(KmsError::Malformed(format!(
                    "stored key `{}` has versions out of order",
                    st.name
                )));
            }
            let material = match (&v.state, v.wrapped) {
                (KeyState::Destroyed, _) => None,
                (_, Some(w)) => Some(kek.unwrap(&wrap_aad(&st.org, &st.name, v.version), &w)?),
                (_, None) => {
                    return Err(KmsError::Malformed(format!(
                        "stored key `{}` version {} lacks material",
                        st.name, v.version
                    )));
                }
            };
            versions.push(Version {
                version: v.version,
                created: v.created,
                state: v.state,
                material,
            });
        }
        Ok(KeyRing {
            name: st.name,
            org: st.org,
            key_type: st.key_type,
            created: st.created,
            imported: st.imported,
            policy: st.policy,
            versions,
        })
    }
}

/// Verify a detached signature with a public key alone (offline verification).
pub fn verify_detached(t: KeyType, public: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), KmsError> {
    match t {
        KeyType::Ed25519 => cf_crypto::Ed25519PublicKey::from_slice(public)?.verify(msg, sig)?,
        KeyType::Sm2 => cf_crypto::Sm2PublicKey::from_slice(public)?.verify(msg, sig)?,
        _ => {
            return Err(KmsError::Invalid(format!(
                "a {} key does not sign",
                t.as_str()
            )));
        }
    }
    Ok(())
}
