//! The KMS routes (ENC-1…ENC-3, DES-1): key management for administrators, encryption, signing
//! and blind indexes for services. Binary values travel as standard base64; ciphertexts as `cfk1:` text.

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_kms::keyring::KeyType;
use cf_kms::{Algorithm, HashAlg};
use cf_platform::authz::Action;
use cf_platform::kms::{KeyChange, NewKey, Plain};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::ack::Ack;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, ApiError> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::invalid("body", e.body_text()))
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(s)
        .map_err(|e| ApiError::invalid(field, format!("not standard base64: {e}")))
}

fn opt_b64(field: &str, s: &Option<String>) -> Result<Vec<u8>, ApiError> {
    s.as_deref().map_or(Ok(Vec::new()), |s| b64(field, s))
}

/// Create a key (kms.manage).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Name: 1-128 of `a-z A-Z 0-9 . _ -`, starting with a letter or digit.
    pub name: String,
    /// `aes256-gcm`, `sm4-gcm`, `chacha20-poly1305`, `ed25519` or `sm2`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// Owning organisation (default `default`).
    pub org: Option<String>,
    /// Allow deterministic encryption (equality search).
    #[serde(default)]
    pub convergent: bool,
    /// Every call needs a context; the key used is derived from it.
    #[serde(default)]
    pub derived: bool,
    /// Allow destroy (crypto-shredding).
    #[serde(default)]
    pub deletion_allowed: bool,
    /// For imports: the key material encrypted with SM2 (C1‖C3‖C2) to `GET /api/v1/kms/wrapping-key`, base64.
    pub wrapped_material: Option<String>,
}

fn new_key(r: &CreateKey) -> Result<NewKey, ApiError> {
    let key_type = KeyType::parse(&r.key_type).ok_or_else(|| {
        ApiError::invalid(
            "type",
            format!(
                "unknown key type `{}`; use aes256-gcm, sm4-gcm, chacha20-poly1305, ed25519 or sm2",
                r.key_type
            ),
        )
    })?;
    Ok(NewKey {
        name: r.name.clone(),
        key_type,
        org: r.org.clone(),
        convergent: r.convergent,
        derived: r.derived,
        deletion_allowed: r.deletion_allowed,
    })
}

#[utoipa::path(post, path = "/api/v1/kms/keys", tag = "kms", request_body = CreateKey,
    responses((status = 201, description = "Key metadata (never material)"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_key(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<CreateKey>,
) -> Result<Ack<cf_kms::KeyInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageKeys).await?;
    let req = body(b)?;
    let nk = new_key(&req)?;
    let (info, r) = match &req.wrapped_material {
        Some(w) => {
            s.kms
                .import(&auth, &caller.ctx, &nk, &b64("wrapped_material", w)?)
                .await?
        }
        None => s.kms.create(&auth, &caller.ctx, &nk).await?,
    };
    Ok(Ack::created(r, info))
}

#[utoipa::path(get, path = "/api/v1/kms/keys", tag = "kms", responses((status = 200, description = "Every key's metadata"), (status = 403, body = ErrorBody)))]
pub async fn list_keys(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<cf_kms::KeyInfo>>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageKeys).await?;
    Ok(Json(s.kms.list(&auth).await?))
}

#[utoipa::path(get, path = "/api/v1/kms/keys/{name}", tag = "kms", params(("name" = String, Path)), responses((status = 200, description = "Key metadata and public keys"), (status = 404, body = ErrorBody)))]
pub async fn get_key(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<cf_kms::KeyInfo>, ApiError> {
    let action = if caller.principal.roles.contains(&cf_platform::Role::Admin) {
        Action::ManageKeys
    } else {
        Action::UseKeys
    };
    let auth = caller.authorize(&s, action).await?;
    Ok(Json(s.kms.info(&auth, &name).await?))
}

/// SM2 public key for bring-your-own-key imports.
#[derive(Debug, Serialize, ToSchema)]
pub struct WrappingKey {
    /// `sm2`.
    pub algorithm: &'static str,
    /// SEC1 uncompressed public key, hex.
    pub public_key: String,
}

#[utoipa::path(get, path = "/api/v1/kms/wrapping-key", tag = "kms", responses((status = 200, body = WrappingKey)))]
pub async fn wrapping_key(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<Json<WrappingKey>, ApiError> {
    caller.authorize(&s, Action::ManageKeys).await?;
    Ok(Json(WrappingKey {
        algorithm: "sm2",
        public_key: hex::encode(s.kms.wrapping_key()?),
    }))
}

/// Rotation, optionally to imported material.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Material for the new version, SM2-encrypted to the wrapping key, base64.
    pub wrapped_material: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/rotate", tag = "kms", params(("name" = String, Path)), request_body = Rotate, responses((status = 200, description = "Key metadata")))]
pub async fn rotate(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<Rotate>,
) -> Result<Ack<cf_kms::KeyInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageKeys).await?;
    let req = body(b)?;
    let (info, r) = match &req.wrapped_material {
        Some(w) => {
            s.kms
                .rotate_import(&auth, &caller.ctx, &name, &b64("wrapped_material", w)?)
                .await?
        }
        None => s.kms.rotate(&auth, &caller.ctx, &name).await?,
    };
    Ok(Ack::ok(r, info))
}

/// Policy and version-state changes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    /// Refuse ciphertext of lower versions.
    pub min_decryption_version: Option<u32>,
    /// Allow or forbid destroy.
    pub deletion_allowed: Option<bool>,
    /// Versions to disable.
    #[serde(default)]
    pub disable: Vec<u32>,
    /// Versions to re-enable.
    #[serde(default)]
    pub enable: Vec<u32>,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/config", tag = "kms", params(("name" = String, Path)), request_body = Configure, responses((status = 200, description = "Key metadata")))]
pub async fn configure(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<Configure>,
) -> Result<Ack<cf_kms::KeyInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageKeys).await?;
    let c = body(b)?;
    let ch = KeyChange {
        min_decryption_version: c.min_decryption_version,
        deletion_allowed: c.deletion_allowed,
        disable: c.disable,
        enable: c.enable,
    };
    let (info, r) = s.kms.configure(&auth, &caller.ctx, &name, &ch).await?;
    Ok(Ack::ok(r, info))
}

/// What to destroy.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Destroy {
    /// One version; omit to destroy every version.
    pub version: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/destroy", tag = "kms", params(("name" = String, Path)), request_body = Destroy, responses((status = 200, description = "Key metadata after crypto-shredding; audit_seq names the destruction record")))]
pub async fn destroy(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<Destroy>,
) -> Result<Ack<cf_kms::KeyInfo>, ApiError> {
    let auth = caller.authorize(&s, Action::ManageKeys).await?;
    let d = body(b)?;
    let (info, r) = s.kms.destroy(&auth, &caller.ctx, &name, d.version).await?;
    Ok(Ack::ok(r, info))
}

/// One plaintext.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptItem {
    /// Base64 plaintext.
    pub plaintext: String,
    /// Base64 context (authenticated, not encrypted).
    pub context: Option<String>,
    /// Convergent encryption (key must allow it).
    #[serde(default)]
    pub deterministic: bool,
}

/// A batch to encrypt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptReq {
    /// Items, 1 to 10,000.
    pub items: Vec<EncryptItem>,
}

/// Ciphertexts in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ciphertexts {
    /// `cfk1:` texts.
    pub ciphertexts: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/encrypt", tag = "kms", params(("name" = String, Path)), request_body = EncryptReq, responses((status = 200, body = Ciphertexts), (status = 400, body = ErrorBody)))]
pub async fn encrypt(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<EncryptReq>,
) -> Result<Ack<Ciphertexts>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let req = body(b)?;
    let mut items = Vec::with_capacity(req.items.len());
    for (i, it) in req.items.iter().enumerate() {
        items.push(Plain {
            plaintext: zeroize::Zeroizing::new(b64(
                &format!("items[{i}].plaintext"),
                &it.plaintext,
            )?),
            context: opt_b64(&format!("items[{i}].context"), &it.context)?,
            deterministic: it.deterministic,
        });
    }
    let (ciphertexts, r) = s.kms.encrypt(&auth, &caller.ctx, &name, &items).await?;
    Ok(Ack::ok(r, Ciphertexts { ciphertexts }))
}

/// One ciphertext.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CipherItem {
    /// `cfk1:` text.
    pub ciphertext: String,
    /// Base64 context given at encryption.
    pub context: Option<String>,
}

/// A batch of ciphertexts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CipherReq {
    /// Items, 1 to 10,000.
    pub items: Vec<CipherItem>,
}

/// Plaintexts in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Plaintexts {
    /// Base64 plaintexts.
    pub plaintexts: Vec<String>,
}

fn cipher_items(req: &CipherReq) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    req.items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            Ok((
                it.ciphertext.clone(),
                opt_b64(&format!("items[{i}].context"), &it.context)?,
            ))
        })
        .collect()
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/decrypt", tag = "kms", params(("name" = String, Path)), request_body = CipherReq, responses((status = 200, body = Plaintexts), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn decrypt(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<CipherReq>,
) -> Result<Ack<Plaintexts>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let items = cipher_items(&body(b)?)?;
    let (pts, r) = s.kms.decrypt(&auth, &caller.ctx, &name, &items).await?;
    Ok(Ack::ok(
        r,
        Plaintexts {
            plaintexts: pts.iter().map(|p| B64.encode(&p[..])).collect(),
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/rewrap", tag = "kms", params(("name" = String, Path)), request_body = CipherReq, responses((status = 200, body = Ciphertexts)))]
pub async fn rewrap(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<CipherReq>,
) -> Result<Ack<Ciphertexts>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let items = cipher_items(&body(b)?)?;
    let (ciphertexts, r) = s.kms.rewrap(&auth, &caller.ctx, &name, &items).await?;
    Ok(Ack::ok(r, Ciphertexts { ciphertexts }))
}

/// A data key request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataKeyReq {
    /// AEAD the data key is for (`aes256-gcm` default, `sm4-gcm`, `chacha20-poly1305`).
    pub algorithm: Option<String>,
    /// Base64 context.
    pub context: Option<String>,
    /// Return the plaintext key too (false: wrapped only, for later use).
    #[serde(default = "yes")]
    pub plaintext: bool,
}

fn yes() -> bool {
    true
}

/// A data key.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataKey {
    /// Base64 plaintext key, if asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
    /// The key wrapped by the named key (`cfk1:`).
    pub ciphertext: String,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/datakey", tag = "kms", params(("name" = String, Path)), request_body = DataKeyReq, responses((status = 200, body = DataKey)))]
pub async fn data_key(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<DataKeyReq>,
) -> Result<Ack<DataKey>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let req = body(b)?;
    let alg = match req.algorithm.as_deref() {
        None => Algorithm::Aes256Gcm,
        Some(a) => Algorithm::parse(a)
            .ok_or_else(|| ApiError::invalid("algorithm", format!("unknown algorithm `{a}`")))?,
    };
    let ((pt, ct), r) = s
        .kms
        .data_key(
            &auth,
            &caller.ctx,
            &name,
            alg,
            &opt_b64("context", &req.context)?,
            req.plaintext,
        )
        .await?;
    Ok(Ack::ok(
        r,
        DataKey {
            plaintext: pt.map(|p| B64.encode(&p[..])),
            ciphertext: ct,
        },
    ))
}

/// A message to sign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignReq {
    /// Base64 message (for large documents, sign their SHA-256 or SM3 digest).
    pub message: String,
}

/// A detached signature.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Signature {
    /// `ed25519` or `sm2`.
    pub algorithm: String,
    /// Key name.
    pub key: String,
    /// Key version.
    pub version: u32,
    /// Public key, hex.
    pub public_key: String,
    /// Signature, base64.
    pub signature: String,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/sign", tag = "kms", params(("name" = String, Path)), request_body = SignReq, responses((status = 200, body = Signature)))]
pub async fn sign(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<SignReq>,
) -> Result<Ack<Signature>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let msg = b64("message", &body(b)?.message)?;
    let ((version, sig, pk, t), r) = s.kms.sign(&auth, &caller.ctx, &name, &msg).await?;
    Ok(Ack::ok(
        r,
        Signature {
            algorithm: t.as_str().into(),
            key: name,
            version,
            public_key: hex::encode(pk),
            signature: B64.encode(sig),
        },
    ))
}

/// A signature to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyReq {
    /// Base64 message.
    pub message: String,
    /// Base64 signature.
    pub signature: String,
    /// Key version that signed.
    pub version: u32,
}

/// Verification result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verified {
    /// Whether the signature is valid.
    pub valid: bool,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/verify", tag = "kms", params(("name" = String, Path)), request_body = VerifyReq, responses((status = 200, body = Verified)))]
pub async fn verify(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<VerifyReq>,
) -> Result<Json<Verified>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let v = body(b)?;
    let valid = s
        .kms
        .verify(
            &auth,
            &name,
            v.version,
            &b64("message", &v.message)?,
            &b64("signature", &v.signature)?,
        )
        .await?;
    Ok(Json(Verified { valid }))
}

/// Values to index.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlindIndexReq {
    /// `sha256` (default) or `sm3`.
    pub algorithm: Option<String>,
    /// Base64 context, e.g. the column (`people.sfzh`).
    pub context: Option<String>,
    /// Base64 values.
    pub values: Vec<String>,
    /// Bytes per index, 8 to 32 (default 16).
    pub length: Option<usize>,
}

/// Blind indexes in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlindIndexes {
    /// Hex indexes.
    pub indexes: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/kms/keys/{name}/blind-index", tag = "kms", params(("name" = String, Path)), request_body = BlindIndexReq, responses((status = 200, body = BlindIndexes)))]
pub async fn blind_index(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    b: JsonBody<BlindIndexReq>,
) -> Result<Json<BlindIndexes>, ApiError> {
    let auth = caller.authorize(&s, Action::UseKeys).await?;
    let req = body(b)?;
    let alg = hash_alg(req.algorithm.as_deref())?;
    let values = req
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| b64(&format!("values[{i}]"), v))
        .collect::<Result<Vec<_>, _>>()?;
    let idx = s
        .kms
        .blind_index(
            &auth,
            &name,
            alg,
            &opt_b64("context", &req.context)?,
            &values,
            req.length.unwrap_or(16),
        )
        .await?;
    Ok(Json(BlindIndexes {
        indexes: idx.iter().map(hex::encode).collect(),
    }))
}

fn hash_alg(a: Option<&str>) -> Result<HashAlg, ApiError> {
    match a {
        None => Ok(HashAlg::Sha256),
        Some(a) => HashAlg::parse(a).ok_or_else(|| {
            ApiError::invalid(
                "algorithm",
                format!("unknown hash `{a}`; use sha256 or sm3"),
            )
        }),
    }
}

/// Data to hash.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HashReq {
    /// `sha256` (default) or `sm3`.
    pub algorithm: Option<String>,
    /// Base64 data.
    pub data: String,
}

/// A digest.
#[derive(Debug, Serialize, ToSchema)]
pub struct Digest {
    /// Algorithm.
    pub algorithm: String,
    /// Hex digest.
    pub digest: String,
}

#[utoipa::path(post, path = "/api/v1/kms/hash", tag = "kms", request_body = HashReq, responses((status = 200, body = Digest)))]
pub async fn hash(
    State(s): State<AppState>,
    caller: Caller,
    b: JsonBody<HashReq>,
) -> Result<Json<Digest>, ApiError> {
    caller.authorize(&s, Action::UseKeys).await?;
    let req = body(b)?;
    let alg = hash_alg(req.algorithm.as_deref())?;
    Ok(Json(Digest {
        algorithm: alg.as_str().into(),
        digest: hex::encode(alg.digest(&b64("data", &req.data)?)),
    }))
}
