//! WebAuthn relying-party checks (IDM-5; issue 3 #3): the registration and assertion ceremonies
//! of W3C WebAuthn Level 2 §7.1 and §7.2 for passkeys, over bytes the platform stores.
//!
//! Why our own: webauthn-rs 0.6.2 cannot be built against the RSA crate the OIDC provider uses
//! (its crypto-glue asks rsa 0.10 for a `sha2` feature no 0.10 release has), and webauthn_rp
//! brings a second copy of the RustCrypto stack (34 crates). The checks are short: CBOR through
//! `ciborium`, signatures through `ring` (already the platform's signer). Scope: ES256, EdDSA and
//! RS256 credentials; `none` attestation (what browsers send unless the site asks for more) and
//! `packed` self-attestation; user verification required, as passkeys are the whole sign-in.
//! No I/O; challenges and stored credentials come in as values.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::value::Value;
use serde::{Deserialize, Serialize};

/// COSE algorithm ids accepted, in order of preference.
pub const ALGORITHMS: [i64; 3] = [ES256, EDDSA, RS256];
const ES256: i64 = -7;
const EDDSA: i64 = -8;
const RS256: i64 = -257;

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

/// Why a ceremony is refused; the text says what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebauthnError {
    /// Not base64url, CBOR or JSON where it should be.
    #[error("{0}: malformed")]
    Malformed(&'static str),
    /// The client data is for another ceremony, challenge or origin.
    #[error("client data: {0}")]
    ClientData(String),
    /// The authenticator data does not satisfy the ceremony.
    #[error("authenticator data: {0}")]
    AuthData(String),
    /// An unsupported algorithm, key or attestation.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// The signature counter did not advance: the credential may have been cloned.
    #[error(
        "signature counter {got} did not advance past {stored}: the authenticator may be cloned"
    )]
    CounterRegressed {
        /// Stored counter.
        stored: u32,
        /// Presented counter.
        got: u32,
    },
}

/// The relying party: the platform's domain and the origin browsers show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// RP id, a registrable domain (e.g. `sso.city.gov.cn`, or `localhost`).
    pub id: String,
    /// The exact origin, e.g. `https://sso.city.gov.cn`.
    pub origin: String,
    /// Name shown by authenticators.
    pub name: String,
    /// Refuse ceremonies without user verification (PIN or biometric): on for passkeys, which
    /// are the whole sign-in.
    pub require_uv: bool,
}

impl RelyingParty {
    /// The relying party for a server reached at `url` (`https://host[:port][/…]`). Browsers
    /// accept domain names only; a loopback address is served as `localhost` (how a browser on
    /// the same machine reaches it), any other address yields `None`.
    pub fn for_url(url: &str, name: &str) -> Option<RelyingParty> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']')?;
            (h.to_string(), p.strip_prefix(':').map(str::to_string))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p.to_string())),
                None => (authority.to_string(), None),
            }
        };
        let host = host.to_ascii_lowercase();
        let id = match host.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() => "localhost".to_string(),
            Ok(_) => return None,
            Err(_) if host.is_empty() || !host.contains(|c: char| c.is_ascii_alphabetic()) => {
                return None;
            }
            Err(_) => host,
        };
        if scheme != "https" && !(scheme == "http" && id == "localhost") {
            return None;
        }
        let origin = match port {
            Some(p) if !p.is_empty() => format!("{scheme}://{id}:{p}"),
            _ => format!("{scheme}://{id}"),
        };
        Some(RelyingParty {
            id,
            origin,
            name: name.to_string(),
            require_uv: true,
        })
    }
}

/// A registered credential (public key only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Credential id, base64url.
    pub id: String,
    /// COSE algorithm.
    pub alg: i64,
    /// Public key: SEC1 uncompressed point (ES256), 32 bytes (EdDSA), or `n` and `e`
    /// (RS256), base64url; RS256 as `n.e`.
    pub public_key: String,
    /// Last signature counter seen.
    pub sign_count: u32,
    /// Authenticator model (AAGUID), hex.
    pub aaguid: String,
    /// The credential may be synced to other devices (backup eligible).
    pub backup_eligible: bool,
}

/// What a verified assertion tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The new signature counter to store.
    pub sign_count: u32,
    /// The credential is currently backed up (synced).
    pub backed_up: bool,
    /// The authenticator verified the user (PIN or biometric).
    pub user_verified: bool,
}

fn b64(s: &str, what: &'static str) -> Result<Vec<u8>, WebauthnError> {
    B64.decode(s.trim_end_matches('='))
        .map_err(|_| WebauthnError::Malformed(what))
}

/// Options for `navigator.credentials.create()` (WebAuthn JSON form, base64url byte fields).
pub fn creation_options(
    rp: &RelyingParty,
    user_handle: &[u8],
    name: &str,
    display: &str,
    challenge: &[u8],
    exclude: &[Credential],
) -> serde_json::Value {
    serde_json::json!({
        "rp": {"id": rp.id, "name": rp.name},
        "user": {"id": B64.encode(user_handle), "name": name, "displayName": display},
        "challenge": B64.encode(challenge),
        "pubKeyCredParams": ALGORITHMS.iter().map(|a| serde_json::json!({"type": "public-key", "alg": a})).collect::<Vec<_>>(),
        "timeout": 300_000,
        "excludeCredentials": exclude.iter().map(|c| serde_json::json!({"type": "public-key", "id": c.id})).collect::<Vec<_>>(),
        "authenticatorSelection": {"residentKey": "preferred", "userVerification": "required"},
        "attestation": "none",
    })
}

/// Options for `navigator.credentials.get()`.
/// `allow`: the base64url ids of the credentials that may answer.
pub fn request_options(rp: &RelyingParty, challenge: &[u8], allow: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "rpId": rp.id,
        "challenge": B64.encode(challenge),
        "timeout": 300_000,
        "allowCredentials": allow.iter().map(|id| serde_json::json!({"type": "public-key", "id": id})).collect::<Vec<_>>(),
        "userVerification": "required",
    })
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

fn check_client_data(
    rp: &RelyingParty,
    raw: &[u8],
    kind: &str,
    challenge: &[u8],
) -> Result<(), WebauthnError> {
    let cd: ClientData =
        serde_json::from_slice(raw).map_err(|_| WebauthnError::Malformed("clientDataJSON"))?;
    if cd.kind != kind {
        return Err(WebauthnError::ClientData(format!(
            "type `{}`, expected `{kind}`",
            cd.kind.chars().take(40).collect::<String>()
        )));
    }
    if b64(&cd.challenge, "clientDataJSON.challenge")? != challenge {
        return Err(WebauthnError::ClientData(
            "the challenge is not the one issued for this ceremony".into(),
        ));
    }
    if cd.origin != rp.origin {
        return Err(WebauthnError::ClientData(format!(
            "origin `{}` is not `{}`",
            cd.origin.chars().take(200).collect::<String>(),
            rp.origin
        )));
    }
    if cd.cross_origin {
        return Err(WebauthnError::ClientData(
            "cross-origin ceremonies are not accepted".into(),
        ));
    }
    Ok(())
}

struct AuthData<'a> {
    flags: u8,
    sign_count: u32,
    /// (aaguid, credential id, COSE key) when attested credential data is present.
    attested: Option<([u8; 16], Vec<u8>, Value)>,
    raw: &'a [u8],
}

fn parse_auth_data<'a>(raw: &'a [u8], rp: &RelyingParty) -> Result<AuthData<'a>, WebauthnError> {
    if raw.len() < 37 {
        return Err(WebauthnError::Malformed("authenticatorData"));
    }
    if raw[..32] != ring::digest::digest(&ring::digest::SHA256, rp.id.as_bytes()).as_ref()[..] {
        return Err(WebauthnError::AuthData(format!(
            "made for another relying party than `{}`",
            rp.id
        )));
    }
    let flags = raw[32];
    let sign_count = u32::from_be_bytes([raw[33], raw[34], raw[35], raw[36]]);
    let attested = if flags & AT != 0 {
        let rest = &raw[37..];
        if rest.len() < 18 {
            return Err(WebauthnError::Malformed("attestedCredentialData"));
        }
        let mut aaguid = [0u8; 16];
        aaguid.copy_from_slice(&rest[..16]);
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        if len > 1023 || rest.len() < 18 + len {
            return Err(WebauthnError::Malformed("credentialId"));
        }
        let id = rest[18..18 + len].to_vec();
        let mut cur = std::io::Cursor::new(&rest[18 + len..]);
        let key: Value = ciborium::de::from_reader(&mut cur)
            .map_err(|_| WebauthnError::Malformed("credentialPublicKey"))?;
        Some((aaguid, id, key))
    } else {
        None
    };
    if flags & UP == 0 {
        return Err(WebauthnError::AuthData("the user was not present".into()));
    }
    if rp.require_uv && flags & UV == 0 {
        return Err(WebauthnError::AuthData(
            "the user was not verified (PIN or biometric), which passkeys require".into(),
        ));
    }
    if flags & BS != 0 && flags & BE == 0 {
        return Err(WebauthnError::AuthData(
            "backed up but not backup-eligible".into(),
        ));
    }
    Ok(AuthData {
        flags,
        sign_count,
        attested,
        raw,
    })
}

fn map_get(m: &[(Value, Value)], key: i64) -> Option<&Value> {
    m.iter()
        .find(|(k, _)| k.as_integer().map(i128::from) == Some(i128::from(key)))
        .map(|(_, v)| v)
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_integer)
        .and_then(|i| i64::try_from(i128::from(i)).ok())
}

fn bytes(v: Option<&Value>) -> Option<&[u8]> {
    v.and_then(Value::as_bytes).map(Vec::as_slice)
}

/// The COSE key as (alg, stored public key).
fn cose_key(key: &Value) -> Result<(i64, String), WebauthnError> {
    let m = key
        .as_map()
        .ok_or(WebauthnError::Malformed("credentialPublicKey"))?;
    let kty = int(map_get(m, 1));
    let alg = int(map_get(m, 3)).ok_or(WebauthnError::Malformed("credentialPublicKey.alg"))?;
    match (kty, alg) {
        (Some(2), ES256) => {
            let (x, y) = (bytes(map_get(m, -2)), bytes(map_get(m, -3)));
            match (int(map_get(m, -1)), x, y) {
                (Some(1), Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    let mut p = vec![4u8];
                    p.extend_from_slice(x);
                    p.extend_from_slice(y);
                    Ok((alg, B64.encode(p)))
                }
                _ => Err(WebauthnError::Unsupported(
                    "ES256 keys must be P-256 points".into(),
                )),
            }
        }
        (Some(1), EDDSA) => match (int(map_get(m, -1)), bytes(map_get(m, -2))) {
            (Some(6), Some(x)) if x.len() == 32 => Ok((alg, B64.encode(x))),
            _ => Err(WebauthnError::Unsupported(
                "EdDSA keys must be Ed25519".into(),
            )),
        },
        (Some(3), RS256) => match (bytes(map_get(m, -1)), bytes(map_get(m, -2))) {
            (Some(n), Some(e)) if n.len() >= 256 => {
                Ok((alg, format!("{}.{}", B64.encode(n), B64.encode(e))))
            }
            _ => Err(WebauthnError::Unsupported(
                "RS256 keys must be at least 2048 bits".into(),
            )),
        },
        _ => Err(WebauthnError::Unsupported(format!(
            "key type {kty:?} with algorithm {alg}; use ES256, EdDSA or RS256"
        ))),
    }
}

fn verify_sig(alg: i64, public_key: &str, msg: &[u8], sig: &[u8]) -> Result<(), WebauthnError> {
    use ring::signature as s;
    let ok = match alg {
        ES256 => s::UnparsedPublicKey::new(&s::ECDSA_P256_SHA256_ASN1, b64(public_key, "key")?)
            .verify(msg, sig)
            .is_ok(),
        EDDSA => s::UnparsedPublicKey::new(&s::ED25519, b64(public_key, "key")?)
            .verify(msg, sig)
            .is_ok(),
        RS256 => {
            let (n, e) = public_key
                .split_once('.')
                .ok_or(WebauthnError::Malformed("key"))?;
            s::RsaPublicKeyComponents {
                n: b64(n, "key")?,
                e: b64(e, "key")?,
            }
            .verify(&s::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok()
        }
        other => {
            return Err(WebauthnError::Unsupported(format!("algorithm {other}")));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(WebauthnError::BadSignature)
    }
}

fn signed_message(auth_data: &[u8], client_data_json: &[u8]) -> Vec<u8> {
    let mut m = auth_data.to_vec();
    m.extend_from_slice(ring::digest::digest(&ring::digest::SHA256, client_data_json).as_ref());
    m
}

/// Check a registration response (`clientDataJSON` and `attestationObject`, raw bytes) against
/// the challenge issued; the new credential on success.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<Credential, WebauthnError> {
    check_client_data(rp, client_data_json, "webauthn.create", challenge)?;
    let att: Value = ciborium::de::from_reader(attestation_object)
        .map_err(|_| WebauthnError::Malformed("attestationObject"))?;
    let m = att
        .as_map()
        .ok_or(WebauthnError::Malformed("attestationObject"))?;
    let field = |name: &str| {
        m.iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
    };
    let fmt = field("fmt")
        .and_then(Value::as_text)
        .ok_or(WebauthnError::Malformed("attestationObject.fmt"))?;
    let auth_raw = field("authData")
        .and_then(Value::as_bytes)
        .ok_or(WebauthnError::Malformed("attestationObject.authData"))?;
    let stmt = field("attStmt")
        .and_then(Value::as_map)
        .ok_or(WebauthnError::Malformed("attestationObject.attStmt"))?;
    let ad = parse_auth_data(auth_raw, rp)?;
    let Some((aaguid, id, key)) = &ad.attested else {
        return Err(WebauthnError::AuthData(
            "no attested credential data in a registration".into(),
        ));
    };
    let (alg, public_key) = cose_key(key)?;
    match fmt {
        "none" if stmt.is_empty() => {}
        "packed" => {
            let text = |k: &str| {
                stmt.iter()
                    .find(|(x, _)| x.as_text() == Some(k))
                    .map(|(_, v)| v)
            };
            if text("x5c").is_some() {
                return Err(WebauthnError::Unsupported(
                    "certified attestation; ask the browser for `none`".into(),
                ));
            }
            if int(text("alg")) != Some(alg) {
                return Err(WebauthnError::AuthData(
                    "self-attestation algorithm differs from the credential's".into(),
                ));
            }
            let sig = text("sig")
                .and_then(Value::as_bytes)
                .ok_or(WebauthnError::Malformed("attStmt.sig"))?;
            verify_sig(
                alg,
                &public_key,
                &signed_message(ad.raw, client_data_json),
                sig,
            )?;
        }
        other => {
            return Err(WebauthnError::Unsupported(format!(
                "attestation format `{}`",
                other.chars().take(40).collect::<String>()
            )));
        }
    }
    Ok(Credential {
        id: B64.encode(id),
        alg,
        public_key,
        sign_count: ad.sign_count,
        aaguid: hex::encode(aaguid),
        backup_eligible: ad.flags & BE != 0,
    })
}

/// Check an assertion against the challenge issued and the stored credential it names; the
/// counter to store on success. `user_handle`, when the authenticator returns one, must be the
/// account's.
#[allow(clippy::too_many_arguments)]
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    cred: &Credential,
    expected_user: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
    user_handle: Option<&[u8]>,
) -> Result<Assertion, WebauthnError> {
    check_client_data(rp, client_data_json, "webauthn.get", challenge)?;
    if user_handle.is_some_and(|h| h != expected_user) {
        return Err(WebauthnError::AuthData(
            "the credential belongs to another account".into(),
        ));
    }
    let ad = parse_auth_data(authenticator_data, rp)?;
    verify_sig(
        cred.alg,
        &cred.public_key,
        &signed_message(authenticator_data, client_data_json),
        signature,
    )?;
    // Counters are optional (synced passkeys send 0); once used they must advance.
    if (ad.sign_count != 0 || cred.sign_count != 0) && ad.sign_count <= cred.sign_count {
        return Err(WebauthnError::CounterRegressed {
            stored: cred.sign_count,
            got: ad.sign_count,
        });
    }
    Ok(Assertion {
        sign_count: ad.sign_count,
        backed_up: ad.flags & BS != 0,
        user_verified: ad.flags & UV != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn rp() -> RelyingParty {
        RelyingParty {
            id: "sso.city.example".into(),
            origin: "https://sso.city.example".into(),
            name: "City".into(),
            require_uv: true,
        }
    }

    /// A software authenticator for the unit tests (the integration test uses an independent
    /// one, Python's soft-webauthn).
    struct Soft {
        ec: Option<EcdsaKeyPair>,
        ed: Option<Ed25519KeyPair>,
        id: Vec<u8>,
        count: u32,
    }

    fn cbor(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    impl Soft {
        fn es256() -> Self {
            let rng = SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            Soft {
                ec: Some(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap()),
                ed: None,
                id: vec![7; 32],
                count: 0,
            }
        }
        fn ed25519() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            Soft {
                ec: None,
                ed: Some(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
                id: vec![9; 16],
                count: 0,
            }
        }
        fn cose(&self) -> Value {
            let i = |n: i64| Value::Integer(n.into());
            if let Some(k) = &self.ec {
                let p = k.public_key().as_ref();
                Value::Map(vec![
                    (i(1), i(2)),
                    (i(3), i(-7)),
                    (i(-1), i(1)),
                    (i(-2), Value::Bytes(p[1..33].to_vec())),
                    (i(-3), Value::Bytes(p[33..].to_vec())),
                ])
            } else {
                let k = self.ed.as_ref().unwrap();
                Value::Map(vec![
                    (i(1), i(1)),
                    (i(3), i(-8)),
                    (i(-1), i(6)),
                    (i(-2), Value::Bytes(k.public_key().as_ref().to_vec())),
                ])
            }
        }
        fn auth_data(&self, flags: u8, attested: bool) -> Vec<u8> {
            let mut a = ring::digest::digest(&ring::digest::SHA256, rp().id.as_bytes())
                .as_ref()
                .to_vec();
            a.push(flags);
            a.extend_from_slice(&self.count.to_be_bytes());
            if attested {
                a.extend_from_slice(&[0u8; 16]);
                a.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
                a.extend_from_slice(&self.id);
                a.extend_from_slice(&cbor(&self.cose()));
            }
            a
        }
        fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
            serde_json::json!({"type": kind, "challenge": B64.encode(challenge), "origin": origin})
                .to_string()
                .into_bytes()
        }
        fn create(&self, challenge: &[u8], flags: u8) -> (Vec<u8>, Vec<u8>) {
            let att = Value::Map(vec![
                (Value::Text("fmt".into()), Value::Text("none".into())),
                (Value::Text("attStmt".into()), Value::Map(vec![])),
                (
                    Value::Text("authData".into()),
                    Value::Bytes(self.auth_data(flags, true)),
                ),
            ]);
            (
                Self::client_data("webauthn.create", challenge, &rp().origin),
                cbor(&att),
            )
        }
        fn get(&mut self, challenge: &[u8], origin: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
            self.count += 1;
            let cd = Self::client_data("webauthn.get", challenge, origin);
            let ad = self.auth_data(UP | UV, false);
            let msg = signed_message(&ad, &cd);
            let sig = if let Some(k) = &self.ec {
                k.sign(&SystemRandom::new(), &msg)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            } else {
                self.ed.as_ref().unwrap().sign(&msg).as_ref().to_vec()
            };
            (cd, ad, sig)
        }
    }

    #[test]
    fn register_and_sign_in_with_es256_and_ed25519() {
        for mut soft in [Soft::es256(), Soft::ed25519()] {
            let ch = [1u8; 32];
            let (cd, att) = soft.create(&ch, UP | UV | AT);
            let cred = verify_registration(&rp(), &ch, &cd, &att).unwrap();
            assert_eq!(cred.id, B64.encode(&soft.id));
            let ch2 = [2u8; 32];
            let (cd, ad, sig) = soft.get(&ch2, &rp().origin);
            let a = verify_assertion(&rp(), &ch2, &cred, b"u1", &cd, &ad, &sig, Some(&b"u1"[..]))
                .unwrap();
            assert_eq!(a.sign_count, 1);
            // Replaying the same assertion: the counter does not advance.
            let stored = Credential {
                sign_count: a.sign_count,
                ..cred.clone()
            };
            assert!(matches!(
                verify_assertion(&rp(), &ch2, &stored, b"u1", &cd, &ad, &sig, None),
                Err(WebauthnError::CounterRegressed { .. })
            ));
            // Another challenge, another origin, another user, a flipped bit: refused.
            assert!(matches!(
                verify_assertion(&rp(), &[3u8; 32], &cred, b"u1", &cd, &ad, &sig, None),
                Err(WebauthnError::ClientData(_))
            ));
            let (cd2, ad2, sig2) = soft.get(&ch2, "https://evil.example");
            assert!(matches!(
                verify_assertion(&rp(), &ch2, &cred, b"u1", &cd2, &ad2, &sig2, None),
                Err(WebauthnError::ClientData(_))
            ));
            assert!(matches!(
                verify_assertion(&rp(), &ch2, &cred, b"u1", &cd, &ad, &sig, Some(&b"u2"[..])),
                Err(WebauthnError::AuthData(_))
            ));
            let mut bad = sig.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert_eq!(
                verify_assertion(&rp(), &ch2, &cred, b"u1", &cd, &ad, &bad, None),
                Err(WebauthnError::BadSignature)
            );
        }
    }

    #[test]
    fn relying_parties_from_server_urls() {
        let rp = |u: &str| RelyingParty::for_url(u, "City").map(|r| (r.id, r.origin));
        assert_eq!(
            rp("https://sso.city.gov.cn/"),
            Some(("sso.city.gov.cn".into(), "https://sso.city.gov.cn".into()))
        );
        assert_eq!(
            rp("https://127.0.0.1:8443"),
            Some(("localhost".into(), "https://localhost:8443".into()))
        );
        assert_eq!(
            rp("https://[::1]:9"),
            Some(("localhost".into(), "https://localhost:9".into()))
        );
        assert_eq!(rp("https://10.1.2.3:8443"), None);
        assert_eq!(rp("http://sso.city.gov.cn"), None);
        assert_eq!(rp("not a url"), None);
    }

    #[test]
    fn registration_needs_user_verification_and_this_relying_party() {
        let soft = Soft::es256();
        let ch = [5u8; 32];
        let (cd, att) = soft.create(&ch, UP | AT);
        assert!(matches!(
            verify_registration(&rp(), &ch, &cd, &att),
            Err(WebauthnError::AuthData(m)) if m.contains("not verified")
        ));
        let (cd, att) = soft.create(&ch, UP | UV | AT);
        let other = RelyingParty {
            id: "other.example".into(),
            origin: "https://other.example".into(),
            ..rp()
        };
        assert!(matches!(
            verify_registration(&other, &ch, &cd, &att),
            Err(WebauthnError::ClientData(_))
        ));
        let other = RelyingParty {
            id: "other.example".into(),
            origin: rp().origin,
            name: "x".into(),
            require_uv: true,
        };
        assert!(matches!(
            verify_registration(&other, &ch, &cd, &att),
            Err(WebauthnError::AuthData(m)) if m.contains("another relying party")
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(cd in proptest::collection::vec(0u8..=255, 0..200), att in proptest::collection::vec(0u8..=255, 0..400)) {
            let _ = verify_registration(&rp(), &[0; 32], &cd, &att);
            let cred = Credential { id: "AA".into(), alg: -7, public_key: "AA".into(), sign_count: 0, aaguid: String::new(), backup_eligible: false };
            let _ = verify_assertion(&rp(), &[0; 32], &cred, b"u", &cd, &att, &att, None);
        }
    }
}
