//! One small API over the hash, signature and randomness crates, so that the rest of the
//! platform never touches a crypto crate directly and key material is always wrapped in `Secret`.
//!
//! Architecture invariant: no I/O; randomness comes from an injected [`Rng`] so tests are deterministic.

use std::fmt;
use std::sync::Mutex;

use cf_core::Secret;

/// Re-export so engines that only depend on this crate can wrap key material.
pub mod devkey;
pub mod sm4gcm;
pub mod sm4t;

pub mod secret {
    pub use cf_core::Secret;
}
use ed25519_dalek::Signer;
use sha2::Digest;

/// Errors of this crate; none of them ever carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// A key had the wrong length or encoding.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A signature did not verify or was malformed.
    #[error("signature verification failed")]
    BadSignature,
    /// The operating system's random source failed.
    #[error("random source unavailable")]
    Rng,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// SHA-256 over several parts, without concatenating them first.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A source of random bytes. Production uses [`OsRng`]; tests use [`SeededRng`].
pub trait Rng: Send + Sync + fmt::Debug {
    /// Fill `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), CryptoError>;
}

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl Rng for OsRng {
    fn fill(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        getrandom::fill(buf).map_err(|_| CryptoError::Rng)
    }
}

/// The operating system's CSPRNG read 4 KiB at a time, for hot paths that need many small random
/// values (AEAD nonces): one system call per 341 nonces instead of one each. Bytes handed out are
/// erased from the buffer. Not for use across `fork` (the platform never forks).
#[derive(Debug, Default)]
pub struct BufferedOsRng {
    pool: Mutex<(Vec<u8>, usize)>,
}

const POOL: usize = 4096;

impl Rng for BufferedOsRng {
    fn fill(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        if buf.len() > POOL / 4 {
            return OsRng.fill(buf);
        }
        let mut g = self.pool.lock().map_err(|_| CryptoError::Rng)?;
        let (pool, pos) = &mut *g;
        if pool.len() != POOL || *pos + buf.len() > POOL {
            pool.resize(POOL, 0);
            getrandom::fill(pool).map_err(|_| CryptoError::Rng)?;
            *pos = 0;
        }
        let src = &mut pool[*pos..*pos + buf.len()];
        buf.copy_from_slice(src);
        src.fill(0);
        *pos += buf.len();
        Ok(())
    }
}

/// A deterministic generator (SHA-256 in counter mode) for tests and simulations only.
#[derive(Debug)]
pub struct SeededRng {
    state: Mutex<([u8; 32], u64)>,
}

impl SeededRng {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng {
            state: Mutex::new((sha256(&seed.to_le_bytes()), 0)),
        }
    }
}

impl Rng for SeededRng {
    fn fill(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let mut st = self.state.lock().map_err(|_| CryptoError::Rng)?;
        for chunk in buf.chunks_mut(32) {
            let block = sha256_parts(&[&st.0, &st.1.to_le_bytes()]);
            st.1 += 1;
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}

/// `n` random bytes.
pub fn random_bytes(rng: &dyn Rng, n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v)?;
    Ok(v)
}

/// A random token of `n` bytes, URL-safe base64 without padding.
pub fn random_token(rng: &dyn Rng, n: usize) -> Result<String, CryptoError> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(rng, n)?))
}

/// Constant-time equality for secrets such as token digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An Ed25519 signing key. Its bytes are only reachable through [`Ed25519SigningKey::seed`].
pub struct Ed25519SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl fmt::Debug for Ed25519SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Ed25519SigningKey(public={})",
            hex::encode(self.public().0)
        )
    }
}

impl Ed25519SigningKey {
    /// A fresh key from `rng`.
    pub fn generate(rng: &dyn Rng) -> Result<Self, CryptoError> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed)?;
        Ok(Self::from_seed(&seed))
    }
    /// The key whose 32-byte seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Ed25519SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }
    /// The 32-byte seed, wrapped so it cannot be printed by accident.
    pub fn seed(&self) -> Secret<[u8; 32]> {
        Secret::new(self.inner.to_bytes())
    }
    /// The matching public key.
    pub fn public(&self) -> Ed25519PublicKey {
        Ed25519PublicKey(self.inner.verifying_key().to_bytes())
    }
    /// Sign `msg` (deterministic, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }
}

/// An Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519PublicKey(pub [u8; 32]);

impl Ed25519PublicKey {
    /// From raw bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| CryptoError::InvalidKey("an Ed25519 public key is 32 bytes"))?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map_err(|_| CryptoError::InvalidKey("not a point on Ed25519"))?;
        Ok(Ed25519PublicKey(arr))
    }
    /// Verify a signature (strict: rejects non-canonical encodings and small-order keys).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&self.0)
            .map_err(|_| CryptoError::InvalidKey("not a point on Ed25519"))?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| CryptoError::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        vk.verify_strict(msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// The default SM2 distinguishing identifier (GM/T 0009-2012), also OpenSSL's.
pub const SM2_DEFAULT_DISTID: &str = "1234567812345678";

/// The SM2 distinguishing identifier of TLS 1.3's `sm2sig_sm3` signature scheme (RFC 8998 §3.2.1).
pub const SM2_TLS13_DISTID: &str = "TLSv1.3+GM+Cipher+Suite";

/// An SM2 signing key (GB/T 32918.2) with the default distinguishing identifier.
pub struct Sm2SigningKey {
    inner: sm2::dsa::SigningKey,
}

impl fmt::Debug for Sm2SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sm2SigningKey(public={})", hex::encode(&self.public().0))
    }
}

impl Sm2SigningKey {
    /// The key with this 32-byte private scalar (must be in 1..n-1).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, CryptoError> {
        sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_DISTID, seed)
            .map(|inner| Sm2SigningKey { inner })
            .map_err(|_| CryptoError::InvalidKey("not a valid SM2 private scalar"))
    }
    /// A fresh key from `rng`.
    pub fn generate(rng: &dyn Rng) -> Result<Self, CryptoError> {
        loop {
            let mut seed = [0u8; 32];
            rng.fill(&mut seed)?;
            if let Ok(k) = Self::from_seed(&seed) {
                return Ok(k);
            }
        }
    }
    /// The private scalar, wrapped.
    pub fn seed(&self) -> Secret<[u8; 32]> {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.inner.to_bytes());
        Secret::new(out)
    }
    /// The public key (SEC1 uncompressed, 65 bytes).
    pub fn public(&self) -> Sm2PublicKey {
        Sm2PublicKey(self.inner.verifying_key().to_sec1_bytes().to_vec())
    }
    /// From a PKCS#8 private key, DER (`id-ecPublicKey` on the SM2 curve, as OpenSSL writes it).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, CryptoError> {
        use sm2::pkcs8::DecodePrivateKey;
        let sk = sm2::SecretKey::from_pkcs8_der(der)
            .map_err(|_| CryptoError::InvalidKey("not an SM2 PKCS#8 private key"))?;
        sm2::dsa::SigningKey::new(SM2_DEFAULT_DISTID, &sk)
            .map(|inner| Sm2SigningKey { inner })
            .map_err(|_| CryptoError::InvalidKey("not a valid SM2 private scalar"))
    }
    /// The key as PKCS#8 DER and PEM (for devices that keep their key in a file).
    pub fn to_pkcs8(&self) -> Result<(Secret<Vec<u8>>, Secret<String>), CryptoError> {
        use sm2::pkcs8::EncodePrivateKey;
        let sk = sm2::SecretKey::from_slice(&self.inner.to_bytes())
            .map_err(|_| CryptoError::InvalidKey("not a valid SM2 private scalar"))?;
        let der = sk
            .to_pkcs8_der()
            .map_err(|_| CryptoError::InvalidKey("SM2 key not encodable as PKCS#8"))?;
        let pem = sk
            .to_pkcs8_pem(sm2::pkcs8::LineEnding::LF)
            .map_err(|_| CryptoError::InvalidKey("SM2 key not encodable as PKCS#8"))?;
        Ok((
            Secret::new(der.as_bytes().to_vec()),
            Secret::new(pem.to_string()),
        ))
    }
    /// Sign `msg` with Z_A computed over another distinguishing identifier (e.g.
    /// [`SM2_TLS13_DISTID`] for a TLS 1.3 CertificateVerify).
    pub fn sign_with_id(&self, distid: &str, msg: &[u8]) -> Result<[u8; 64], CryptoError> {
        use sm2::dsa::signature::Signer;
        let k = sm2::dsa::SigningKey::from_slice(distid, &self.inner.to_bytes())
            .map_err(|_| CryptoError::InvalidKey("SM2 distinguishing identifier too long"))?;
        let sig: sm2::dsa::Signature = k.sign(msg);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Ok(out)
    }
    /// Sign `msg` (SM3 with Z_A of the default identifier; deterministic nonce).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use sm2::dsa::signature::Signer;
        let sig: sm2::dsa::Signature = self.inner.sign(msg);
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        out
    }
}

/// An SM2 public key, SEC1 uncompressed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sm2PublicKey(pub Vec<u8>);

impl Sm2PublicKey {
    /// From SEC1 bytes, checked to be a point on the curve.
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_DISTID, b)
            .map_err(|_| CryptoError::InvalidKey("not an SM2 public key"))?;
        Ok(Sm2PublicKey(b.to_vec()))
    }
    /// Verify an `r‖s` signature (64 bytes).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        self.verify_with_id(SM2_DEFAULT_DISTID, msg, sig)
    }
    /// As [`Sm2PublicKey::verify`], with Z_A over another distinguishing identifier.
    pub fn verify_with_id(&self, distid: &str, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
        use sm2::dsa::signature::Verifier;
        let vk = sm2::dsa::VerifyingKey::from_sec1_bytes(distid, &self.0)
            .map_err(|_| CryptoError::InvalidKey("not an SM2 public key"))?;
        let sig = sm2::dsa::Signature::from_slice(sig).map_err(|_| CryptoError::BadSignature)?;
        vk.verify(msg, &sig).map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_parts(&[b"a", b"bc"]), sha256(b"abc"));
    }

    #[test]
    fn seeded_rng_is_deterministic() {
        let a = random_bytes(&SeededRng::new(7), 70).unwrap();
        let b = random_bytes(&SeededRng::new(7), 70).unwrap();
        let c = random_bytes(&SeededRng::new(8), 70).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn ed25519_rfc8032_test1() {
        // RFC 8032 §7.1 TEST 1 (empty message).
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let k = Ed25519SigningKey::from_seed(&seed);
        assert_eq!(
            hex::encode(k.public().0),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = k.sign(b"");
        assert_eq!(
            hex::encode(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        k.public().verify(b"", &sig).unwrap();
        assert_eq!(
            k.public().verify(b"x", &sig),
            Err(CryptoError::BadSignature)
        );
        assert!(!format!("{k:?}").contains("9d61b1"));
    }

    #[test]
    fn buffered_os_rng_never_repeats_and_refills() {
        let r = BufferedOsRng::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let mut n = [0u8; 12];
            r.fill(&mut n).unwrap();
            assert!(seen.insert(n), "a nonce repeated");
        }
        let mut big = vec![0u8; 5000];
        r.fill(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }

    #[test]
    fn sm2_gbt32918_annex_a_signature_verifies() {
        // GM/T 0003.5-2012 Annex A on the recommended curve (shared/datasets/vectors/sm2.json).
        let d: [u8; 32] =
            hex::decode("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8")
                .unwrap()
                .try_into()
                .unwrap();
        let k = Sm2SigningKey::from_seed(&d).unwrap();
        let sig = hex::decode("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA").unwrap();
        k.public().verify(b"message digest", &sig).unwrap();
        assert_eq!(
            k.public().verify(b"message digesT", &sig),
            Err(CryptoError::BadSignature)
        );
        let own = k.sign(b"checkpoint");
        k.public().verify(b"checkpoint", &own).unwrap();
        assert!(!format!("{k:?}").contains("3945208f"));
    }

    #[test]
    fn sm2_identifier_enters_the_signature_and_pkcs8_round_trips() {
        let k = Sm2SigningKey::from_seed(&[7; 32]).unwrap();
        let tls = k.sign_with_id(SM2_TLS13_DISTID, b"transcript").unwrap();
        k.public()
            .verify_with_id(SM2_TLS13_DISTID, b"transcript", &tls)
            .unwrap();
        // Z_A binds the identifier: the same signature is not one under the default identifier.
        assert_eq!(
            k.public().verify(b"transcript", &tls),
            Err(CryptoError::BadSignature)
        );
        let (der, pem) = k.to_pkcs8().unwrap();
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = Sm2SigningKey::from_pkcs8_der(der.expose()).unwrap();
        assert_eq!(back.public(), k.public());
        assert!(Sm2SigningKey::from_pkcs8_der(&der.expose()[..20]).is_err());
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
