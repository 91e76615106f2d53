//! OpenID Connect building blocks (IDM-2, IDM-5): JWS signing keys (RS256, ES256) with their
//! public JWKs, compact JWT signing and verification, PKCE S256, `at_hash` and redirect checks.
//!
//! No I/O. Key generation takes the injected RNG (RSA) or ring's system RNG (ECDSA, whose API
//! needs one); signing uses ring, whose RSA and ECDSA code is constant-time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cf_core::Secret;
use ring::signature::{self, KeyPair};
use sha2::{Digest, Sha256};

/// Why an OIDC operation failed; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The algorithm is not one we sign with.
    #[error("unsupported JWS algorithm `{0}` (supported: RS256, ES256)")]
    Algorithm(String),
    /// Key generation or loading failed.
    #[error("signing key: {0}")]
    Key(String),
    /// A token is not a well-formed compact JWS.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not verify under any known key.
    #[error("token signature does not verify")]
    Signature,
}

/// JWS algorithms we issue tokens with. RS256 is the OpenID default (Discovery §3 requires it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl Alg {
    /// Every supported algorithm, the default first.
    pub const ALL: [Alg; 2] = [Alg::RS256, Alg::ES256];

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }

    /// Parse a JOSE name.
    pub fn parse(s: &str) -> Result<Alg, OidcError> {
        Alg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| OidcError::Algorithm(s.chars().take(32).collect()))
    }
}

enum Pair {
    Rsa(signature::RsaKeyPair),
    Ec(signature::EcdsaKeyPair),
}

/// A signing key with its id; the private half is PKCS#8 DER, kept only to be sealed at rest.
pub struct SigningKey {
    kid: String,
    alg: Alg,
    pkcs8: Secret<Vec<u8>>,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} {})", self.alg.as_str(), self.kid)
    }
}

struct RngAdapter<'a>(&'a dyn cf_crypto::Rng);

impl rand_core::TryRng for RngAdapter<'_> {
    type Error = cf_crypto::CryptoError;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst)
    }
}
impl rand_core::TryCryptoRng for RngAdapter<'_> {}

impl SigningKey {
    /// A fresh key. RSA keys are 2048 bits (NIST's floor through 2030, and what relying
    /// parties expect); generating one takes a moment, so callers do it once and keep it.
    pub fn generate(alg: Alg, rng: &dyn cf_crypto::Rng) -> Result<SigningKey, OidcError> {
        let der = match alg {
            Alg::RS256 => {
                use rsa::pkcs8::EncodePrivateKey;
                let k = rsa::PrivateKey::new(&mut RngAdapter(rng), 2048)
                    .map_err(|e| OidcError::Key(e.to_string()))?;
                k.to_pkcs8_der()
                    .map_err(|e| OidcError::Key(e.to_string()))?
                    .as_bytes()
                    .to_vec()
            }
            Alg::ES256 => signature::EcdsaKeyPair::generate_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|_| OidcError::Key("P-256 generation failed".into()))?
            .as_ref()
            .to_vec(),
        };
        let mut id = [0u8; 12];
        rng.fill(&mut id)
            .map_err(|_| OidcError::Key("random source failed".into()))?;
        SigningKey::from_pkcs8(&B64.encode(id), alg, der)
    }

    /// Load a stored key.
    pub fn from_pkcs8(kid: &str, alg: Alg, der: Vec<u8>) -> Result<SigningKey, OidcError> {
        let pair = match alg {
            Alg::RS256 => Pair::Rsa(
                signature::RsaKeyPair::from_pkcs8(&der)
                    .map_err(|e| OidcError::Key(format!("RSA key rejected: {e}")))?,
            ),
            Alg::ES256 => Pair::Ec(
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|e| OidcError::Key(format!("P-256 key rejected: {e}")))?,
            ),
        };
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            pkcs8: Secret::new(der),
            pair,
        })
    }

    /// Key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Algorithm.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The private key, PKCS#8 DER, for sealing at rest.
    pub fn pkcs8(&self) -> &Secret<Vec<u8>> {
        &self.pkcs8
    }

    /// The public JWK (RFC 7517/7518) with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> serde_json::Value {
        match &self.pair {
            Pair::Rsa(p) => {
                let pk = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(p.public());
                serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                    "n": B64.encode(&pk.n), "e": B64.encode(&pk.e),
                })
            }
            Pair::Ec(p) => {
                // Uncompressed SEC1 point: 0x04 ‖ x ‖ y.
                let pt = p.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "use": "sig", "alg": "ES256", "kid": self.kid, "crv": "P-256",
                    "x": B64.encode(&pt[1..33]), "y": B64.encode(&pt[33..65]),
                })
            }
        }
    }

    /// A compact JWS of `claims` with header `{alg, typ, kid}`.
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> Result<String, OidcError> {
        let header = serde_json::json!({"alg": self.alg.as_str(), "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = ring::rand::SystemRandom::new();
        let sig = match &self.pair {
            Pair::Rsa(p) => {
                let mut out = vec![0u8; p.public().modulus_len()];
                p.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut out,
                )
                .map_err(|_| OidcError::Key("RSA signing failed".into()))?;
                out
            }
            Pair::Ec(p) => p
                .sign(&rng, input.as_bytes())
                .map_err(|_| OidcError::Key("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{input}.{}", B64.encode(sig)))
    }

    fn verify(&self, input: &[u8], sig: &[u8]) -> bool {
        match &self.pair {
            Pair::Rsa(p) => ring::rsa::PublicKeyComponents::<Vec<u8>>::from(p.public())
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok(),
            Pair::Ec(p) => signature::UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                p.public_key().as_ref(),
            )
            .verify(input, sig)
            .is_ok(),
        }
    }
}

/// The claims of a compact JWS whose signature verifies under one of `keys` (matched by `kid`
/// and `alg`). Expiry and audience are the caller's to judge: an expired ID token is still a
/// valid logout hint (OIDC RP-Initiated Logout §2).
pub fn verify(token: &str, keys: &[&SigningKey]) -> Result<serde_json::Value, OidcError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed("a JWS has three dot-separated parts"));
    };
    let decode = |p: &str| {
        B64.decode(p)
            .map_err(|_| OidcError::Malformed("not base64url"))
    };
    let header: serde_json::Value = serde_json::from_slice(&decode(h)?)
        .map_err(|_| OidcError::Malformed("header is not JSON"))?;
    let sig = decode(s)?;
    let kid = header["kid"].as_str().unwrap_or_default();
    let alg = header["alg"].as_str().unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k.kid == kid && k.alg.as_str() == alg)
        .ok_or(OidcError::Signature)?;
    let input = &token.as_bytes()[..h.len() + 1 + c.len()];
    if !key.verify(input, &sig) {
        return Err(OidcError::Signature);
    }
    serde_json::from_slice(&decode(c)?).map_err(|_| OidcError::Malformed("claims are not JSON"))
}

/// Whether a PKCE verifier (RFC 7636 §4.1: 43–128 unreserved characters) matches an S256
/// challenge, compared in constant time.
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = pkce_s256_challenge(verifier);
    well_formed && cf_crypto::ct_eq(computed.as_bytes(), challenge.as_bytes())
}

/// The S256 challenge of a PKCE verifier (what a client sends with its authorization request).
pub fn pkce_s256_challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether a PKCE challenge is well formed (43 base64url characters of a SHA-256 digest).
pub fn pkce_challenge_ok(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// `at_hash` / `c_hash` (OIDC Core §3.1.3.6): the left half of the SHA-256 of the token.
pub fn half_hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    B64.encode(&d[..16])
}

/// SHA-256 of a bearer secret, hex: how codes and tokens are looked up without being stored.
pub fn token_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A redirect URI as registered: absolute, `https` (or `http` on a loopback host, RFC 8252
/// §7.3), no fragment. Returns the reason when it is not acceptable.
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.contains('#') {
        return Err(format!("`{uri}` has a fragment"));
    }
    let rest = if let Some(r) = uri.strip_prefix("https://") {
        r
    } else if let Some(r) = uri.strip_prefix("http://") {
        let host = r.split(['/', '?']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
            return Err(format!("`{uri}`: plain http only on a loopback host"));
        }
        r
    } else {
        return Err(format!("`{uri}` is not an absolute https URL"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{uri}` has no host"));
    }
    Ok(())
}

/// Append query parameters to a redirect URI that may already carry a query.
pub fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_string();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(&pct(k));
        out.push('=');
        out.push_str(&pct(v));
        sep = '&';
    }
    out
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        // RFC 7636 Appendix B.
        assert!(pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_s256_matches(
            "short",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(pkce_challenge_ok(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_challenge_ok("plain-verifier"));
    }

    #[test]
    fn shared_pkce_vector_file_agrees() {
        let Some(d) = cf_testkit::datasets() else {
            return;
        };
        let p = d.join("vectors/oidc/oauth-pkce-jwk-thumbprint.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        let pkce = v["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["code_challenge_method"] == "S256")
            .expect("an S256 vector");
        assert!(pkce_s256_matches(
            pkce["code_verifier"].as_str().unwrap(),
            pkce["code_challenge"].as_str().unwrap()
        ));
    }

    #[test]
    fn es256_tokens_verify_and_tampering_is_caught() {
        let rng = cf_crypto::SeededRng::new(7);
        let k = SigningKey::generate(Alg::ES256, &rng).unwrap();
        let other = SigningKey::generate(Alg::ES256, &rng).unwrap();
        let t = k
            .sign("JWT", &serde_json::json!({"sub": "wang.fang"}))
            .unwrap();
        assert_eq!(verify(&t, &[&other, &k]).unwrap()["sub"], "wang.fang");
        assert!(verify(&t, &[&other]).is_err());
        let mut bad = t.clone();
        bad.insert(t.find('.').unwrap() + 3, 'x');
        assert!(verify(&bad, &[&k]).is_err());
        assert!(verify("a.b", &[&k]).is_err());
        let jwk = k.jwk();
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        let again =
            SigningKey::from_pkcs8(k.kid(), Alg::ES256, k.pkcs8().expose().clone()).unwrap();
        assert_eq!(again.jwk(), jwk);
    }

    #[test]
    fn rs256_keys_are_2048_bit_and_round_trip() {
        let rng = cf_crypto::SeededRng::new(9);
        let k = SigningKey::generate(Alg::RS256, &rng).unwrap();
        let jwk = k.jwk();
        assert_eq!(B64.decode(jwk["n"].as_str().unwrap()).unwrap().len(), 256);
        assert_eq!(jwk["e"], "AQAB");
        let t = k.sign("JWT", &serde_json::json!({"n": 1})).unwrap();
        let again =
            SigningKey::from_pkcs8(k.kid(), Alg::RS256, k.pkcs8().expose().clone()).unwrap();
        assert_eq!(verify(&t, &[&again]).unwrap()["n"], 1);
        // An alg swap in the header does not verify under a key of the other type.
        assert!(Alg::parse("none").is_err());
        assert!(Alg::parse("HS256").is_err());
    }

    #[test]
    fn redirect_uris_must_be_absolute_https_or_loopback() {
        assert!(check_redirect_uri("https://rp.city.gov.cn/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb").is_ok());
        assert!(check_redirect_uri("http://rp.example/cb").is_err());
        assert!(check_redirect_uri("https://rp/cb#frag").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
        assert!(check_redirect_uri("https:///cb").is_err());
        assert_eq!(
            with_query("https://rp/cb?x=1", &[("code", "a b"), ("state", "s&t")]),
            "https://rp/cb?x=1&code=a%20b&state=s%26t"
        );
    }
}
