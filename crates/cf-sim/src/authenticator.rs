//! A simulated passkey authenticator for the demo city: an ES256 key per credential, `none`
//! attestation, user presence and verification (the PIN a person would type), and a signature
//! counter — the browser side of WebAuthn, producing the JSON a browser would send. Randomness
//! (key generation, ECDSA nonces) is the caller's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::value::Value;
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value as Json, json};

/// Why the authenticator cannot answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticatorError {
    /// The options are not what a relying party sends.
    #[error("options: {0}")]
    Options(&'static str),
    /// Key generation or signing failed.
    #[error("key: {0}")]
    Key(String),
}

/// One credential on a simulated authenticator.
pub struct Authenticator {
    pkcs8: Vec<u8>,
    id: Vec<u8>,
    rp_id: String,
    user: Vec<u8>,
    /// Signatures made so far; a copy of the authenticator with a lower count is a clone.
    pub sign_count: u32,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("rp_id", &self.rp_id)
            .field("sign_count", &self.sign_count)
            .finish_non_exhaustive()
    }
}

fn sha256(b: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, b)
        .as_ref()
        .to_vec()
}

fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
    json!({"type": kind, "challenge": challenge, "origin": origin})
        .to_string()
        .into_bytes()
}

impl Authenticator {
    fn key(&self, rng: &dyn SecureRandom) -> Result<EcdsaKeyPair, AuthenticatorError> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &self.pkcs8, rng)
            .map_err(|e| AuthenticatorError::Key(e.to_string()))
    }

    fn auth_data(&self, flags: u8, attested: Option<&[u8]>) -> Vec<u8> {
        let mut a = sha256(self.rp_id.as_bytes());
        a.push(flags);
        a.extend_from_slice(&self.sign_count.to_be_bytes());
        if let Some(cose) = attested {
            a.extend_from_slice(&[0u8; 16]);
            a.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
            a.extend_from_slice(&self.id);
            a.extend_from_slice(cose);
        }
        a
    }

    /// Answer `navigator.credentials.create()` options (WebAuthn JSON form) for `origin`: a new
    /// credential and the `PublicKeyCredential` JSON to send back.
    pub fn create(
        options: &Json,
        origin: &str,
        rng: &dyn SecureRandom,
    ) -> Result<(Self, Json), AuthenticatorError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, rng)
            .map_err(|e| AuthenticatorError::Key(e.to_string()))?;
        let rp_id = options["rp"]["id"]
            .as_str()
            .ok_or(AuthenticatorError::Options("rp.id"))?;
        let challenge = options["challenge"]
            .as_str()
            .ok_or(AuthenticatorError::Options("challenge"))?;
        let user = B64
            .decode(options["user"]["id"].as_str().unwrap_or_default())
            .map_err(|_| AuthenticatorError::Options("user.id"))?;
        let id = sha256(pkcs8.as_ref())[..16].to_vec();
        let a = Authenticator {
            pkcs8: pkcs8.as_ref().to_vec(),
            id,
            rp_id: rp_id.to_string(),
            user,
            sign_count: 0,
        };
        let point = a.key(rng)?.public_key().as_ref().to_vec();
        let i = |n: i64| Value::Integer(n.into());
        let cose = Value::Map(vec![
            (i(1), i(2)),
            (i(3), i(-7)),
            (i(-1), i(1)),
            (i(-2), Value::Bytes(point[1..33].to_vec())),
            (i(-3), Value::Bytes(point[33..].to_vec())),
        ]);
        let mut cose_bytes = Vec::new();
        ciborium::ser::into_writer(&cose, &mut cose_bytes)
            .map_err(|e| AuthenticatorError::Key(e.to_string()))?;
        // User present, user verified, attested credential data.
        let auth_data = a.auth_data(0x45, Some(&cose_bytes));
        let att = Value::Map(vec![
            (Value::Text("fmt".into()), Value::Text("none".into())),
            (Value::Text("attStmt".into()), Value::Map(vec![])),
            (Value::Text("authData".into()), Value::Bytes(auth_data)),
        ]);
        let mut att_bytes = Vec::new();
        ciborium::ser::into_writer(&att, &mut att_bytes)
            .map_err(|e| AuthenticatorError::Key(e.to_string()))?;
        let cd = client_data("webauthn.create", challenge, origin);
        let out = json!({
            "id": B64.encode(&a.id), "type": "public-key",
            "response": {"clientDataJSON": B64.encode(cd), "attestationObject": B64.encode(att_bytes)},
        });
        Ok((a, out))
    }

    /// Answer `navigator.credentials.get()` options for `origin`.
    pub fn get(
        &mut self,
        options: &Json,
        origin: &str,
        rng: &dyn SecureRandom,
    ) -> Result<Json, AuthenticatorError> {
        let challenge = options["challenge"]
            .as_str()
            .ok_or(AuthenticatorError::Options("challenge"))?;
        if options["rpId"].as_str() != Some(self.rp_id.as_str()) {
            return Err(AuthenticatorError::Options("rpId is not this credential's"));
        }
        self.sign_count += 1;
        let cd = client_data("webauthn.get", challenge, origin);
        let ad = self.auth_data(0x05, None);
        let mut msg = ad.clone();
        msg.extend_from_slice(&sha256(&cd));
        let sig = self
            .key(rng)?
            .sign(rng, &msg)
            .map_err(|e| AuthenticatorError::Key(e.to_string()))?;
        Ok(json!({
            "id": B64.encode(&self.id), "type": "public-key",
            "response": {
                "clientDataJSON": B64.encode(cd), "authenticatorData": B64.encode(ad),
                "signature": B64.encode(sig.as_ref()), "userHandle": B64.encode(&self.user),
            },
        }))
    }

    /// A copy of this authenticator (its key and counter), as an attacker who extracted it
    /// would hold.
    pub fn clone_key(&self) -> Self {
        Authenticator {
            pkcs8: self.pkcs8.clone(),
            id: self.id.clone(),
            rp_id: self.rp_id.clone(),
            user: self.user.clone(),
            sign_count: self.sign_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_identity::webauthn::{RelyingParty, verify_assertion, verify_registration};
    use ring::rand::SystemRandom;

    #[test]
    fn the_relying_party_accepts_it_and_spots_its_clone() {
        let rp = RelyingParty {
            id: "localhost".into(),
            origin: "https://localhost:8443".into(),
            name: "City".into(),
            require_uv: true,
        };
        let ch = [4u8; 32];
        let opts = cf_identity::webauthn::creation_options(&rp, b"user-1", "u", "U", &ch, &[]);
        let rng = SystemRandom::new();
        let (mut a, out) = Authenticator::create(&opts, &rp.origin, &rng).unwrap();
        let d = |v: &Json| B64.decode(v.as_str().unwrap()).unwrap();
        let cred = verify_registration(
            &rp,
            &ch,
            &d(&out["response"]["clientDataJSON"]),
            &d(&out["response"]["attestationObject"]),
        )
        .unwrap();
        let mut clone = a.clone_key();
        let req = cf_identity::webauthn::request_options(&rp, &ch, &[cred.id.as_str()]);
        let check = |cred: &cf_identity::webauthn::Credential, out: &Json| {
            let r = &out["response"];
            verify_assertion(
                &rp,
                &ch,
                cred,
                b"user-1",
                &d(&r["clientDataJSON"]),
                &d(&r["authenticatorData"]),
                &d(&r["signature"]),
                Some(&d(&r["userHandle"])),
            )
        };
        let first = check(&cred, &a.get(&req, &rp.origin, &rng).unwrap()).unwrap();
        let stored = cf_identity::webauthn::Credential {
            sign_count: first.sign_count,
            ..cred
        };
        a.get(&req, &rp.origin, &rng).unwrap();
        assert!(check(&stored, &clone.get(&req, &rp.origin, &rng).unwrap()).is_err());
    }
}
