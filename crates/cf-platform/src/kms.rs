//! The key management service (ENC-1…ENC-3, DES-1): cf-kms key rings kept wrapped in the state
//! store under a per-organisation KEK that the sealed root key wraps; every key change is written
//! to the audit ledger before it takes effect, every use of a key before its result is returned.
//!
//! Invariant: plaintext key material exists only in memory, inside cf-kms types that zeroise;
//! audit records name keys, versions and counts, never plaintext or key bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cf_core::SharedClock;
use cf_crypto::Rng;
use cf_event::{AuditRecord, Outcome};
use cf_kms::keyring::{KeyInfo, KeyRing, KeyType, Policy};
use cf_kms::seal::{Kek, RootWrap};
use cf_kms::{Algorithm, Envelope, HashAlg};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::PlatformError;
use crate::audit::{AuditLedger, Receipt};
use crate::authz::{Action, Authorized};
use crate::ports::{KmsRecord, StateStore};
use crate::tokens::RequestContext;

/// Organisation used when a request names none (until issue 3 brings tenants).
pub const DEFAULT_ORG: &str = "default";
const ORG_PREFIX: &str = "_org.";
/// Largest batch accepted in one request.
pub const MAX_BATCH: usize = 10_000;

/// What a new key should be.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Name (1-128 of `a-z A-Z 0-9 . _ -`).
    pub name: String,
    /// Key type.
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// Owning organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// Allow deterministic (convergent) encryption.
    #[serde(default)]
    pub convergent: bool,
    /// Require a context and derive a key from it.
    #[serde(default)]
    pub derived: bool,
    /// Allow destroy.
    #[serde(default)]
    pub deletion_allowed: bool,
}

/// Changes to a key's policy and version states.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChange {
    /// New minimum decryption version.
    #[serde(default)]
    pub min_decryption_version: Option<u32>,
    /// Allow or forbid destroy.
    #[serde(default)]
    pub deletion_allowed: Option<bool>,
    /// Versions to disable.
    #[serde(default)]
    pub disable: Vec<u32>,
    /// Versions to re-enable.
    #[serde(default)]
    pub enable: Vec<u32>,
}

/// One item to encrypt.
#[derive(Debug, Clone)]
pub struct Plain {
    /// Plaintext (zeroised on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Associated context (authenticated, not encrypted; required by derived keys).
    pub context: Vec<u8>,
    /// Convergent encryption.
    pub deterministic: bool,
}

/// The organisation a new key belongs to: the caller's own when it is confined to one.
/// The stored name of a key owned by `org`: an organisation's keys live under `<org>.`, so
/// one organisation's names never collide with another's (a "key exists" answer would reveal
/// them); the city's own keys keep their names.
fn scoped_name(org: &str, name: &str) -> String {
    if org == DEFAULT_ORG || org == crate::orgs::CITY_ORG || name.starts_with(&format!("{org}.")) {
        name.to_string()
    } else {
        format!("{org}.{name}")
    }
}

fn key_org<'a>(auth: &'a Authorized, req: &'a NewKey) -> Result<&'a str, PlatformError> {
    match (auth.org(), req.org.as_deref()) {
        (Some(mine), Some(o)) if o != mine => Err(PlatformError::Forbidden(format!(
            "org: keys are created in the caller's own organisation `{mine}`"
        ))),
        (Some(mine), _) => Ok(mine),
        (None, o) => Ok(o.unwrap_or(DEFAULT_ORG)),
    }
}

/// The key management service.
#[derive(Clone)]
pub struct Kms {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn StateStore>,
    ledger: AuditLedger,
    clock: SharedClock,
    rng: Arc<dyn Rng>,
    root: Arc<dyn RootWrap>,
    derive: Kek,
    byok_secret: Zeroizing<Vec<u8>>,
    cache: Mutex<HashMap<String, (u64, Arc<KeyRing>)>>,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kms([root sealed in memory])")
    }
}

impl Kms {
    /// The service over the root of the key hierarchy (software or HSM). Platform-internal keys
    /// (the BYOK wrapping key, masking and watermark keys) derive from one derivation key that is
    /// made on first start and stored wrapped by the root, so every node of a deployment agrees on
    /// them and an HSM root guards them too.
    pub async fn open(
        store: Arc<dyn StateStore>,
        ledger: AuditLedger,
        clock: SharedClock,
        rng: Arc<dyn Rng>,
        root: Arc<dyn RootWrap>,
    ) -> Result<Self, PlatformError> {
        const NAME: &str = "_internal.derive";
        let aad = b"chengfang-kms/v1/internal/derive";
        let derive = match store.kms_get(NAME).await? {
            Some(r) => Kek::from_bytes(&root.unwrap(aad, &r.body)?)?,
            None => {
                let k = Kek::generate(rng.as_ref())?;
                let body = root.wrap(aad, k.expose(), rng.as_ref())?;
                let rec = KmsRecord {
                    name: NAME.into(),
                    org: "_internal".into(),
                    body,
                    revision: 1,
                    updated: clock.now(),
                };
                match store.kms_insert(&rec).await {
                    Ok(()) => k,
                    // Another node made it first: use theirs.
                    Err(crate::ports::StoreError::Conflict(_)) => {
                        let r = store.kms_get(NAME).await?.ok_or_else(|| {
                            PlatformError::Internal("derivation key vanished".into())
                        })?;
                        Kek::from_bytes(&root.unwrap(aad, &r.body)?)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let byok_secret = scalar_from(derive.derive(b"byok-wrapping-sm2").expose())?;
        Ok(Kms {
            inner: Arc::new(Inner {
                store,
                ledger,
                clock,
                rng,
                root,
                derive,
                byok_secret,
                cache: Mutex::default(),
            }),
        })
    }

    /// Which root guards the hierarchy: `software` or `pkcs11`.
    pub fn root_kind(&self) -> &'static str {
        self.inner.root.kind()
    }

    /// A 256-bit key for a platform-internal purpose (masking, watermarks), derived from the
    /// stored derivation key, so every node agrees on it and it is never stored itself.
    pub fn internal_key(&self, purpose: &str) -> [u8; 32] {
        *self
            .inner
            .derive
            .derive(format!("internal/{purpose}").as_bytes())
            .expose()
    }

    /// SM2 public key (SEC1) to which bring-your-own-key material is encrypted for import.
    pub fn wrapping_key(&self) -> Result<Vec<u8>, PlatformError> {
        Ok(cf_kms::sm2enc::public_key(&self.inner.byok_secret)?)
    }

    fn record(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> AuditRecord {
        let r = AuditRecord::new(
            format!("kms.{action}"),
            self.inner.clock.now(),
            &ctx.source_addr,
            "chengfang-api",
            &auth.principal().id,
            format!("key:{name}"),
            action,
            Outcome::Success,
            &ctx.request_id,
        )
        .with_detail(detail);
        if auth.action() == Action::ManageKeys {
            r.privileged()
        } else {
            r
        }
    }

    async fn org_kek(&self, org: &str, create: bool) -> Result<Kek, PlatformError> {
        let name = format!("{ORG_PREFIX}{org}");
        let aad = format!("chengfang-kms/v1/org/{org}");
        if let Some(r) = self.inner.store.kms_get(&name).await? {
            return Ok(Kek::from_bytes(
                &self.inner.root.unwrap(aad.as_bytes(), &r.body)?,
            )?);
        }
        if !create {
            return Err(PlatformError::NotFound(format!(
                "organisation `{org}` has no keys"
            )));
        }
        let kek = Kek::generate(self.inner.rng.as_ref())?;
        let body = self
            .inner
            .root
            .wrap(aad.as_bytes(), kek.expose(), self.inner.rng.as_ref())?;
        let rec = KmsRecord {
            name,
            org: org.into(),
            body,
            revision: 1,
            updated: self.inner.clock.now(),
        };
        match self.inner.store.kms_insert(&rec).await {
            Ok(()) => Ok(kek),
            // Another node created it first: use theirs.
            Err(crate::ports::StoreError::Conflict(_)) => Box::pin(self.org_kek(org, false)).await,
            Err(e) => Err(e.into()),
        }
    }

    /// A key within the caller's reach: an organisation's people and tokens reach only its
    /// keys, and another's is "not found" (IDM-1).
    async fn load(
        &self,
        auth: &Authorized,
        name: &str,
    ) -> Result<(u64, Arc<KeyRing>), PlatformError> {
        let missing = || PlatformError::NotFound(format!("no key `{name}`"));
        if name.starts_with(ORG_PREFIX) || name.starts_with('_') {
            return Err(missing());
        }
        // An organisation's people name their keys without the `<org>.` prefix; keys made
        // before names were scoped are found under their plain name.
        let mut rec = None;
        if let Some(o) = auth.org()
            && !name.starts_with(&format!("{o}."))
        {
            rec = self
                .inner
                .store
                .kms_get(&scoped_name(o, name))
                .await?
                .filter(|r| auth.reaches(&r.org));
        }
        if rec.is_none() {
            rec = self
                .inner
                .store
                .kms_get(name)
                .await?
                .filter(|r| auth.reaches(&r.org));
        }
        let rec = rec.ok_or_else(missing)?;
        let name = rec.name.as_str();
        if let Ok(c) = self.inner.cache.lock()
            && let Some((rev, k)) = c.get(name)
            && *rev == rec.revision
        {
            return Ok((*rev, k.clone()));
        }
        let kek = self.org_kek(&rec.org, false).await?;
        let ring = Arc::new(KeyRing::from_stored(&kek, &rec.body)?);
        if let Ok(mut c) = self.inner.cache.lock() {
            c.insert(name.to_string(), (rec.revision, ring.clone()));
        }
        Ok((rec.revision, ring))
    }

    async fn save(&self, ring: &KeyRing, revision: u64) -> Result<(), PlatformError> {
        let kek = self.org_kek(ring.org(), false).await?;
        let rec = KmsRecord {
            name: ring.name().into(),
            org: ring.org().into(),
            body: ring.to_stored(&kek, self.inner.rng.as_ref())?,
            revision: revision + 1,
            updated: self.inner.clock.now(),
        };
        self.inner.store.kms_update(&rec).await?;
        if let Ok(mut c) = self.inner.cache.lock() {
            c.remove(ring.name());
        }
        Ok(())
    }

    async fn insert(&self, ring: KeyRing) -> Result<KeyInfo, PlatformError> {
        let kek = self.org_kek(ring.org(), true).await?;
        let rec = KmsRecord {
            name: ring.name().into(),
            org: ring.org().into(),
            body: ring.to_stored(&kek, self.inner.rng.as_ref())?,
            revision: 1,
            updated: self.inner.clock.now(),
        };
        self.inner.store.kms_insert(&rec).await?;
        Ok(ring.info())
    }

    /// Create a key with generated material.
    ///
    /// An organisation's own administrators create keys in their organisation only.
    pub async fn create(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        req: &NewKey,
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        auth.require(Action::ManageKeys)?;
        let org = key_org(auth, req)?;
        let ring = KeyRing::generate(
            &scoped_name(org, &req.name),
            org,
            req.key_type,
            policy(req),
            self.inner.clock.now(),
            self.inner.rng.as_ref(),
        )?;
        self.create_ring(auth, ctx, ring, "create").await
    }

    /// Create a key from material encrypted (SM2, C1‖C3‖C2) to [`Kms::wrapping_key`].
    pub async fn import(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        req: &NewKey,
        wrapped: &[u8],
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        auth.require(Action::ManageKeys)?;
        let org = key_org(auth, req)?;
        let material = cf_kms::sm2enc::decrypt(&self.inner.byok_secret, wrapped)?;
        let ring = KeyRing::import(
            &scoped_name(org, &req.name),
            org,
            req.key_type,
            policy(req),
            self.inner.clock.now(),
            material,
        )?;
        self.create_ring(auth, ctx, ring, "import").await
    }

    async fn create_ring(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        ring: KeyRing,
        action: &str,
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        if self.inner.store.kms_get(ring.name()).await?.is_some() {
            return Err(PlatformError::Conflict(format!(
                "key `{}` exists",
                ring.name()
            )));
        }
        let info = ring.info();
        let receipt = self
            .inner
            .ledger
            .append(self.record(
                auth,
                ctx,
                ring.name(),
                action,
                serde_json::json!({"type": info.key_type, "org": info.org, "policy": info.policy}),
            ))
            .await?;
        self.insert(ring).await?;
        Ok((info, receipt))
    }

    /// Key metadata (no material). Managers and users may read it.
    pub async fn info(&self, auth: &Authorized, name: &str) -> Result<KeyInfo, PlatformError> {
        if !matches!(auth.action(), Action::ManageKeys | Action::UseKeys) {
            return Err(PlatformError::Forbidden(
                "kms.manage or kms.use is needed".into(),
            ));
        }
        Ok(self.load(auth, name).await?.1.info())
    }

    /// Every key's metadata.
    pub async fn list(&self, auth: &Authorized) -> Result<Vec<KeyInfo>, PlatformError> {
        auth.require(Action::ManageKeys)?;
        let mut out = Vec::new();
        for r in self.inner.store.kms_list().await? {
            if !r.name.starts_with('_') && auth.reaches(&r.org) {
                out.push(self.load(auth, &r.name).await?.1.info());
            }
        }
        Ok(out)
    }

    /// Apply a change to a key: audited first, then stored with optimistic concurrency.
    async fn change(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        action: &str,
        f: impl Fn(&mut KeyRing) -> Result<serde_json::Value, PlatformError>,
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        auth.require(Action::ManageKeys)?;
        let (rev, ring) = self.load(auth, name).await?;
        let kek = self.org_kek(ring.org(), false).await?;
        // Work on a private copy so a refused change leaves the cached ring untouched.
        let mut copy = KeyRing::from_stored(&kek, &ring.to_stored(&kek, self.inner.rng.as_ref())?)?;
        let detail = f(&mut copy)?;
        let receipt = self
            .inner
            .ledger
            .append(self.record(auth, ctx, copy.name(), action, detail))
            .await?;
        self.save(&copy, rev).await?;
        Ok((copy.info(), receipt))
    }

    /// New version; later encryptions use it.
    pub async fn rotate(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        let now = self.inner.clock.now();
        let rng = self.inner.rng.clone();
        self.change(auth, ctx, name, "rotate", |k| {
            Ok(serde_json::json!({"new_version": k.rotate(now, rng.as_ref())?}))
        })
        .await
    }

    /// New version from imported material (SM2-wrapped).
    pub async fn rotate_import(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        wrapped: &[u8],
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        let now = self.inner.clock.now();
        let secret = self.inner.byok_secret.clone();
        self.change(auth, ctx, name, "rotate", |k| {
            let m = cf_kms::sm2enc::decrypt(&secret, wrapped)?;
            Ok(serde_json::json!({"new_version": k.rotate_import(now, m)?, "imported": true}))
        })
        .await
    }

    /// Change policy and version states.
    pub async fn configure(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        ch: &KeyChange,
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        self.change(auth, ctx, name, "configure", |k| {
            if let Some(v) = ch.min_decryption_version {
                k.set_min_decryption_version(v)?;
            }
            if let Some(d) = ch.deletion_allowed {
                k.policy.deletion_allowed = d;
            }
            for v in &ch.disable {
                k.set_enabled(*v, false)?;
            }
            for v in &ch.enable {
                k.set_enabled(*v, true)?;
            }
            Ok(serde_json::to_value(ch).unwrap_or_default())
        })
        .await
    }

    /// Crypto-shred one version or the whole key (DES-1). The destruction record is in the
    /// ledger (and so under its signed checkpoints) before the material is erased.
    pub async fn destroy(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        version: Option<u32>,
    ) -> Result<(KeyInfo, Receipt), PlatformError> {
        self.change(auth, ctx, name, "destroy", |k| {
            let done = k.destroy(version)?;
            Ok(serde_json::json!({"destroyed_versions": done, "scope": if version.is_some() { "version" } else { "key" }}))
        })
        .await
    }

    async fn use_key(&self, auth: &Authorized, name: &str) -> Result<Arc<KeyRing>, PlatformError> {
        auth.require(Action::UseKeys)?;
        Ok(self.load(auth, name).await?.1)
    }

    async fn audit_use(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        op: &str,
        detail: serde_json::Value,
    ) -> Result<Receipt, PlatformError> {
        self.inner
            .ledger
            .append(self.record(auth, ctx, name, op, detail))
            .await
    }

    /// Encrypt a batch; returns `cfk1:` texts in order.
    pub async fn encrypt(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        items: &[Plain],
    ) -> Result<(Vec<String>, Receipt), PlatformError> {
        batch_size(items.len())?;
        let k = self.use_key(auth, name).await?;
        let mut out = Vec::with_capacity(items.len());
        let mut ciphers: HashMap<&[u8], cf_kms::aead::Cipher> = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            let c = match ciphers.get(&it.context[..]) {
                Some(c) => c,
                None => {
                    let c = k.cipher(k.latest(), &it.context).map_err(|e| at(i, e))?;
                    ciphers.entry(&it.context[..]).or_insert(c)
                }
            };
            out.push(
                k.encrypt_with(
                    c,
                    &it.plaintext,
                    &it.context,
                    it.deterministic,
                    self.inner.rng.as_ref(),
                )
                .map_err(|e| at(i, e))?
                .to_text(),
            );
        }
        let r = self
            .audit_use(
                auth,
                ctx,
                k.name(),
                "encrypt",
                serde_json::json!({"items": items.len(), "version": k.latest()}),
            )
            .await?;
        Ok((out, r))
    }

    /// Decrypt a batch; every item must decrypt or the whole request fails naming the item.
    pub async fn decrypt(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        items: &[(String, Vec<u8>)],
    ) -> Result<(Vec<Zeroizing<Vec<u8>>>, Receipt), PlatformError> {
        batch_size(items.len())?;
        let k = self.use_key(auth, name).await?;
        let mut out = Vec::with_capacity(items.len());
        let mut versions = std::collections::BTreeSet::new();
        for (i, (ct, context)) in items.iter().enumerate() {
            let env = Envelope::from_text(ct).map_err(|e| at(i, e))?;
            versions.insert(env.version);
            out.push(k.decrypt(&env, context).map_err(|e| at(i, e))?);
        }
        // Plaintext leaves only after the access is on the ledger.
        let r = self
            .audit_use(
                auth,
                ctx,
                k.name(),
                "decrypt",
                serde_json::json!({"items": items.len(), "versions": versions}),
            )
            .await?;
        Ok((out, r))
    }

    /// Re-encrypt a batch under the latest version without returning plaintext.
    pub async fn rewrap(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        items: &[(String, Vec<u8>)],
    ) -> Result<(Vec<String>, Receipt), PlatformError> {
        batch_size(items.len())?;
        let k = self.use_key(auth, name).await?;
        let mut out = Vec::with_capacity(items.len());
        for (i, (ct, context)) in items.iter().enumerate() {
            let env = Envelope::from_text(ct).map_err(|e| at(i, e))?;
            out.push(
                k.rewrap(&env, context, self.inner.rng.as_ref())
                    .map_err(|e| at(i, e))?
                    .to_text(),
            );
        }
        let r = self
            .audit_use(
                auth,
                ctx,
                k.name(),
                "rewrap",
                serde_json::json!({"items": items.len(), "to_version": k.latest()}),
            )
            .await?;
        Ok((out, r))
    }

    /// A data key for client-side envelope encryption: plaintext (if asked) and wrapped form.
    pub async fn data_key(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        alg: Algorithm,
        context: &[u8],
        with_plaintext: bool,
    ) -> Result<((Option<Zeroizing<Vec<u8>>>, String), Receipt), PlatformError> {
        let k = self.use_key(auth, name).await?;
        let (dk, env) = k.data_key(alg, context, self.inner.rng.as_ref())?;
        let r = self.audit_use(auth, ctx, k.name(), "datakey", serde_json::json!({"algorithm": alg.as_str(), "plaintext_returned": with_plaintext})).await?;
        Ok(((with_plaintext.then_some(dk), env.to_text()), r))
    }

    /// The key for one streamed blob encrypted here (ENC-2): a fresh data key and its wrapped
    /// form for the stream's header; audited before any byte is encrypted. The plaintext key
    /// stays inside the server.
    pub async fn stream_key(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        alg: Algorithm,
    ) -> Result<(Zeroizing<Vec<u8>>, String), PlatformError> {
        let k = self.use_key(auth, name).await?;
        let (dk, env) = k.data_key(alg, b"", self.inner.rng.as_ref())?;
        self.audit_use(
            auth,
            ctx,
            k.name(),
            "encrypt-stream",
            serde_json::json!({"algorithm": alg.as_str()}),
        )
        .await?;
        Ok((dk, env.to_text()))
    }

    /// Unwrap the data key in a stream's header to decrypt it here; audited first.
    pub async fn stream_unwrap(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        wrapped: &str,
    ) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
        let k = self.use_key(auth, name).await?;
        let env = cf_kms::Envelope::from_text(wrapped)
            .map_err(|e| PlatformError::InvalidInput(format!("stream header: {e}")))?;
        let dk = k.decrypt(&env, b"")?;
        self.audit_use(
            auth,
            ctx,
            k.name(),
            "decrypt-stream",
            serde_json::json!({"version": env.version}),
        )
        .await?;
        Ok(dk)
    }

    /// Sign a message (or its digest) with the latest version.
    pub async fn sign(
        &self,
        auth: &Authorized,
        ctx: &RequestContext,
        name: &str,
        msg: &[u8],
    ) -> Result<((u32, Vec<u8>, Vec<u8>, KeyType), Receipt), PlatformError> {
        let k = self.use_key(auth, name).await?;
        let (v, sig) = k.sign(msg)?;
        let pk = k.public_key(v)?;
        let r = self
            .audit_use(
                auth,
                ctx,
                k.name(),
                "sign",
                serde_json::json!({"version": v, "sha256": hex::encode(cf_crypto::sha256(msg))}),
            )
            .await?;
        Ok(((v, sig, pk, k.key_type()), r))
    }

    /// Verify a signature of version `v` (not audited: it reveals nothing).
    pub async fn verify(
        &self,
        auth: &Authorized,
        name: &str,
        v: u32,
        msg: &[u8],
        sig: &[u8],
    ) -> Result<bool, PlatformError> {
        let k = self.use_key(auth, name).await?;
        Ok(k.verify(v, msg, sig).is_ok())
    }

    /// Blind indexes of values for equality search over encrypted columns.
    pub async fn blind_index(
        &self,
        auth: &Authorized,
        name: &str,
        alg: HashAlg,
        context: &[u8],
        values: &[Vec<u8>],
        len: usize,
    ) -> Result<Vec<Vec<u8>>, PlatformError> {
        batch_size(values.len())?;
        let k = self.use_key(auth, name).await?;
        values
            .iter()
            .enumerate()
            .map(|(i, v)| k.blind_index(alg, context, v, len).map_err(|e| at(i, e)))
            .collect()
    }
}

fn policy(req: &NewKey) -> Policy {
    Policy {
        min_decryption_version: 1,
        convergent: req.convergent,
        derived: req.derived,
        deletion_allowed: req.deletion_allowed,
    }
}

fn batch_size(n: usize) -> Result<(), PlatformError> {
    if n == 0 || n > MAX_BATCH {
        return Err(PlatformError::InvalidInput(format!(
            "items: a batch holds 1 to {MAX_BATCH} items, got {n}"
        )));
    }
    Ok(())
}

fn at(i: usize, e: cf_kms::KmsError) -> PlatformError {
    match PlatformError::from(e) {
        PlatformError::InvalidInput(m) => PlatformError::InvalidInput(format!("items[{i}]: {m}")),
        PlatformError::Conflict(m) => PlatformError::Conflict(format!("items[{i}]: {m}")),
        other => other,
    }
}

fn scalar_from(seed: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, PlatformError> {
    // Reject-and-rehash until the seed is a valid SM2 scalar (all but ~2^-32 of seeds are).
    let mut s = Zeroizing::new(seed.to_vec());
    for _ in 0..64 {
        if cf_kms::sm2enc::public_key(&s).is_ok() {
            return Ok(s);
        }
        s = Zeroizing::new(cf_crypto::sha256(&s).to_vec());
    }
    Err(PlatformError::Internal(
        "could not derive the import wrapping key".into(),
    ))
}
