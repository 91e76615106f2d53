//! The root of the key hierarchy in a PKCS#11 token (ENC-1): an AES-256 key generated inside the
//! token as sensitive and non-extractable wraps and unwraps the organisation KEKs with
//! CKM_AES_GCM, so the root never exists in the platform's memory. Tested with SoftHSM2.
//!
//! Architecture invariant: the only crate that loads a PKCS#11 module; PINs are read from files
//! and never logged or put in errors.

use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_crypto::Rng;
use cf_kms::KmsError;
use cf_kms::seal::RootWrap;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

const PREFIX: &str = "p11:";
const IV: usize = 12;

/// Failures opening the token.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module could not be loaded or initialised.
    #[error("PKCS#11 module {module}: {why}")]
    Module {
        /// Module path.
        module: String,
        /// Why.
        why: String,
    },
    /// No token with that label.
    #[error("no PKCS#11 token labelled `{0}`")]
    NoToken(String),
    /// Login refused (the PIN is never shown).
    #[error("login to token `{0}` refused: wrong PIN or locked token")]
    Login(String),
    /// Another token operation failed.
    #[error("PKCS#11: {0}")]
    Token(String),
}

/// Where the root key lives.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    pub module: String,
    /// Token label.
    pub token: String,
    /// User PIN.
    pub pin: Zeroizing<String>,
    /// Label of the root key object; generated in the token if absent.
    pub key_label: String,
}

/// A root key inside a PKCS#11 token.
pub struct HsmRoot {
    _ctx: Pkcs11,
    session: Mutex<Session>,
    key: ObjectHandle,
    token: String,
}

impl std::fmt::Debug for HsmRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HsmRoot(token={})", self.token)
    }
}

fn tok(e: impl std::fmt::Display) -> HsmError {
    HsmError::Token(e.to_string())
}

impl HsmRoot {
    /// Open the token, log in, and find (or generate) the root key.
    pub fn open(cfg: &HsmConfig) -> Result<Self, HsmError> {
        let module = |why: String| HsmError::Module {
            module: cfg.module.clone(),
            why,
        };
        let ctx = Pkcs11::new(&cfg.module).map_err(|e| module(e.to_string()))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| module(e.to_string()))?;
        let slot = ctx
            .get_slots_with_token()
            .map_err(tok)?
            .into_iter()
            .find(|s| {
                ctx.get_token_info(*s)
                    .map(|i| i.label().trim() == cfg.token)
                    .unwrap_or(false)
            })
            .ok_or_else(|| HsmError::NoToken(cfg.token.clone()))?;
        let session = ctx.open_rw_session(slot).map_err(tok)?;
        session
            .login(
                UserType::User,
                Some(&AuthPin::from(cfg.pin.as_str().to_string())),
            )
            .map_err(|_| HsmError::Login(cfg.token.clone()))?;
        let label = cfg.key_label.as_bytes().to_vec();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.clone()),
            ])
            .map_err(tok)?;
        let key = match found.first() {
            Some(k) => *k,
            None => session
                .generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Encrypt(true),
                        Attribute::Decrypt(true),
                        Attribute::ValueLen(32.into()),
                        Attribute::Label(label),
                    ],
                )
                .map_err(tok)?,
        };
        Ok(HsmRoot {
            _ctx: ctx,
            session: Mutex::new(session),
            key,
            token: cfg.token.clone(),
        })
    }

    /// Whether the token would hand out the key's value (it must not).
    pub fn key_is_extractable(&self) -> Result<bool, HsmError> {
        let s = self
            .session
            .lock()
            .map_err(|_| HsmError::Token("session lock poisoned".into()))?;
        let attrs = s
            .get_attributes(
                self.key,
                &[
                    cryptoki::object::AttributeType::Extractable,
                    cryptoki::object::AttributeType::Value,
                ],
            )
            .map_err(tok)?;
        Ok(attrs
            .iter()
            .any(|a| matches!(a, Attribute::Extractable(true) | Attribute::Value(_))))
    }
}

impl RootWrap for HsmRoot {
    fn wrap(&self, aad: &[u8], material: &[u8], rng: &dyn Rng) -> Result<String, KmsError> {
        let mut iv = [0u8; IV];
        rng.fill(&mut iv)?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, 128.into())
            .map_err(|_| KmsError::Invalid("GCM parameters".into()))?;
        let s = self
            .session
            .lock()
            .map_err(|_| KmsError::Io("HSM session lock poisoned".into()))?;
        let ct = s
            .encrypt(&Mechanism::AesGcm(params), self.key, material)
            .map_err(|e| KmsError::Io(format!("HSM wrap: {e}")))?;
        let mut blob = iv.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}", B64.encode(blob)))
    }

    fn unwrap(&self, aad: &[u8], wrapped: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let b = wrapped
            .strip_prefix(PREFIX)
            .ok_or_else(|| KmsError::Malformed("not an HSM-wrapped key (p11: prefix)".into()))?;
        let blob = B64
            .decode(b)
            .map_err(|e| KmsError::Malformed(format!("HSM-wrapped key: {e}")))?;
        if blob.len() < IV + 16 {
            return Err(KmsError::Malformed("HSM-wrapped key truncated".into()));
        }
        let mut iv: [u8; IV] = blob[..IV]
            .try_into()
            .map_err(|_| KmsError::Malformed("iv".into()))?;
        let params = GcmParams::new(&mut iv, aad, 128.into())
            .map_err(|_| KmsError::Invalid("GCM parameters".into()))?;
        let s = self
            .session
            .lock()
            .map_err(|_| KmsError::Io("HSM session lock poisoned".into()))?;
        s.decrypt(&Mechanism::AesGcm(params), self.key, &blob[IV..])
            .map(Zeroizing::new)
            .map_err(|_| {
                KmsError::Tampered("HSM-wrapped key does not open under the token's root key")
            })
    }

    fn kind(&self) -> &'static str {
        "pkcs11"
    }
}
