//! One-time passwords and recovery codes (IDM-5, multi-factor): HOTP (RFC 4226) and TOTP
//! (RFC 6238) with SHA-1/256/512, replay-proof verification, `otpauth://` enrolment URIs, and
//! single-use recovery codes stored only as Argon2id hashes.

use cf_core::Secret;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

/// OTP failures; never carry the secret or the code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtpError {
    /// Wrong code (or outside the accepted window).
    #[error("one-time code does not match")]
    Mismatch,
    /// A code for a time step that was already used: replay.
    #[error("one-time code already used")]
    Replayed,
    /// Bad parameters.
    #[error("{0}")]
    Invalid(&'static str),
    /// The random source failed.
    #[error("random source unavailable")]
    Rng,
}

/// HMAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    /// HMAC-SHA-1 (what every authenticator app supports).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

fn mac(alg: Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    macro_rules! run {
        ($h:ty) => {{
            // HMAC takes keys of any length, so this cannot fail.
            let mut m = <hmac::Hmac<$h> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }};
    }
    match alg {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(sha2::Sha256),
        Algorithm::Sha512 => run!(sha2::Sha512),
    }
}

/// HOTP value of `counter` (RFC 4226 §5.3: dynamic truncation, modulo 10^digits).
pub fn hotp(secret: &[u8], counter: u64, digits: u32, alg: Algorithm) -> String {
    let h = mac(alg, secret, &counter.to_be_bytes());
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    let code = bin % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// A TOTP credential (RFC 6238).
#[derive(Clone)]
pub struct Totp {
    secret: Secret<Vec<u8>>,
    /// Digits (6 or 8).
    pub digits: u32,
    /// Time step in seconds (30).
    pub step: u64,
    /// HMAC algorithm.
    pub alg: Algorithm,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Totp({} digits, {} s, {:?})",
            self.digits, self.step, self.alg
        )
    }
}

impl Totp {
    /// A credential over `secret`.
    pub fn new(secret: Vec<u8>, digits: u32, step: u64, alg: Algorithm) -> Result<Totp, OtpError> {
        if !(6..=8).contains(&digits) {
            return Err(OtpError::Invalid("digits must be 6 to 8"));
        }
        if step == 0 || step > 300 {
            return Err(OtpError::Invalid("step must be 1 to 300 seconds"));
        }
        // RFC 4226 §4: at least 128 bits; 160 recommended.
        if secret.len() < 16 {
            return Err(OtpError::Invalid("secret must be at least 16 bytes"));
        }
        Ok(Totp {
            secret: Secret::new(secret),
            digits,
            step,
            alg,
        })
    }

    /// A fresh credential: 20 random bytes, 6 digits, 30 s, SHA-1 (what authenticator apps expect).
    pub fn generate(rng: &dyn cf_crypto::Rng) -> Result<Totp, OtpError> {
        let mut s = vec![0u8; 20];
        rng.fill(&mut s).map_err(|_| OtpError::Rng)?;
        Totp::new(s, 6, 30, Algorithm::Sha1)
    }

    /// Time step of `unix_secs`.
    pub fn step_of(&self, unix_secs: i64) -> u64 {
        u64::try_from(unix_secs).unwrap_or(0) / self.step
    }

    /// The code at `unix_secs`.
    pub fn code_at(&self, unix_secs: i64) -> String {
        hotp(
            self.secret.expose(),
            self.step_of(unix_secs),
            self.digits,
            self.alg,
        )
    }

    /// Verify `code` at `unix_secs`, accepting one step of clock drift either way, and refusing
    /// any step at or before `last_used` (so a code, once used, can never be used again — not even
    /// the neighbouring step's). Returns the step to store as the new `last_used`.
    pub fn verify(
        &self,
        code: &str,
        unix_secs: i64,
        last_used: Option<u64>,
    ) -> Result<u64, OtpError> {
        let code = code.trim();
        if code.len() != self.digits as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OtpError::Mismatch);
        }
        let now = self.step_of(unix_secs);
        let mut matched = None;
        // Every candidate is computed and compared in constant time, so timing does not tell
        // which step matched.
        for s in [now.saturating_sub(1), now, now + 1] {
            let c = hotp(self.secret.expose(), s, self.digits, self.alg);
            if cf_crypto::ct_eq(c.as_bytes(), code.as_bytes()) && matched.is_none() {
                matched = Some(s);
            }
        }
        let s = matched.ok_or(OtpError::Mismatch)?;
        if last_used.is_some_and(|l| s <= l) {
            return Err(OtpError::Replayed);
        }
        Ok(s)
    }

    /// The `otpauth://totp/…` URI authenticator apps scan (Key Uri Format), secret in base32.
    pub fn uri(&self, issuer: &str, account: &str) -> Secret<String> {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        Secret::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
            enc(issuer),
            enc(account),
            data_encoding::BASE32_NOPAD.encode(self.secret.expose()),
            enc(issuer),
            self.alg.name(),
            self.digits,
            self.step
        ))
    }

    /// Read an `otpauth://totp/…` URI back (what an authenticator app does).
    pub fn from_uri(uri: &str) -> Result<Totp, OtpError> {
        let q = uri
            .strip_prefix("otpauth://totp/")
            .and_then(|r| r.split_once('?'))
            .map(|(_, q)| q)
            .ok_or(OtpError::Invalid("not an otpauth://totp URI"))?;
        let (mut secret, mut digits, mut step, mut alg) = (None, 6, 30, Algorithm::Sha1);
        for kv in q.split('&') {
            match kv.split_once('=') {
                Some(("secret", v)) => {
                    secret = Some(
                        data_encoding::BASE32_NOPAD
                            .decode(v.trim_end_matches('=').to_ascii_uppercase().as_bytes())
                            .map_err(|_| OtpError::Invalid("secret is not base32"))?,
                    )
                }
                Some(("digits", v)) => {
                    digits = v.parse().map_err(|_| OtpError::Invalid("digits"))?
                }
                Some(("period", v)) => step = v.parse().map_err(|_| OtpError::Invalid("period"))?,
                Some(("algorithm", "SHA256")) => alg = Algorithm::Sha256,
                Some(("algorithm", "SHA512")) => alg = Algorithm::Sha512,
                _ => {}
            }
        }
        Totp::new(
            secret.ok_or(OtpError::Invalid("no secret"))?,
            digits,
            step,
            alg,
        )
    }

    /// The secret, for sealed storage (e.g. encrypted under a KMS key).
    pub fn secret(&self) -> &Secret<Vec<u8>> {
        &self.secret
    }
}

/// Recovery codes: shown once, stored as Argon2id hashes, each usable once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCodes {
    /// PHC hashes; `None` once used.
    pub hashes: Vec<Option<String>>,
}

/// Crockford's base32 alphabet: 5 bits per symbol, no I, L, O or U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// What people type back: any case, spaces or dashes, and O/I/L read as 0/1 (Crockford).
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            u => u,
        })
        .collect()
}

impl RecoveryCodes {
    /// `n` fresh codes of 10 symbols (50 bits) as `XXXXX-XXXXX`, and their hashes.
    pub fn generate(
        n: usize,
        costs: crate::password::Costs,
        rng: &dyn cf_crypto::Rng,
    ) -> Result<(Vec<Secret<String>>, RecoveryCodes), OtpError> {
        let mut codes = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            let mut b = [0u8; 10];
            rng.fill(&mut b).map_err(|_| OtpError::Rng)?;
            let s: String = b
                .iter()
                .map(|x| ALPHABET[usize::from(x & 31)] as char)
                .collect();
            let shown = format!("{}-{}", &s[..5], &s[5..]);
            hashes.push(Some(
                crate::password::hash(&normalise(&shown), costs, rng).map_err(|_| OtpError::Rng)?,
            ));
            codes.push(Secret::new(shown));
        }
        Ok((codes, RecoveryCodes { hashes }))
    }

    /// Use a code: on success it is burnt and cannot be used again.
    pub fn redeem(&mut self, code: &str) -> Result<(), OtpError> {
        let n = normalise(code);
        if n.len() != 10 {
            return Err(OtpError::Mismatch);
        }
        for h in self.hashes.iter_mut() {
            if let Some(phc) = h
                && crate::password::verify(&n, phc).unwrap_or(false)
            {
                *h = None;
                return Ok(());
            }
        }
        Err(OtpError::Mismatch)
    }

    /// Codes left.
    pub fn remaining(&self) -> usize {
        self.hashes.iter().filter(|h| h.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> crate::password::Costs {
        crate::password::Costs {
            m_kib: 64,
            t: 1,
            p: 1,
        }
    }

    #[test]
    fn replays_and_wrong_codes_are_refused() {
        let t = Totp::new(b"12345678901234567890".to_vec(), 6, 30, Algorithm::Sha1).unwrap();
        let now = 1_790_000_000;
        let code = t.code_at(now);
        let step = t.verify(&code, now, None).unwrap();
        assert_eq!(
            t.verify(&code, now + 5, Some(step)),
            Err(OtpError::Replayed)
        );
        // The previous step's code is still accepted once (clock drift), but not after a newer use.
        let prev = t.code_at(now - 30);
        assert_eq!(t.verify(&prev, now, Some(step)), Err(OtpError::Replayed));
        assert!(t.verify(&prev, now, None).is_ok());
        assert_eq!(
            t.verify(&t.code_at(now - 90), now, None),
            Err(OtpError::Mismatch)
        );
        assert_eq!(t.verify("12345", now, None), Err(OtpError::Mismatch));
        assert_eq!(t.verify("abcdef", now, None), Err(OtpError::Mismatch));
        assert!(Totp::new(vec![1; 10], 6, 30, Algorithm::Sha1).is_err());
        assert_eq!(format!("{t:?}"), "Totp(6 digits, 30 s, Sha1)");
    }

    #[test]
    fn the_enrolment_uri_carries_the_base32_secret() {
        let t = Totp::new(b"12345678901234567890".to_vec(), 6, 30, Algorithm::Sha1).unwrap();
        let u = t.uri("Chengfang City", "li.lei@city.gov");
        assert_eq!(
            u.expose(),
            "otpauth://totp/Chengfang%20City:li.lei%40city.gov?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Chengfang%20City&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{u:?}"), "[redacted]");
        let back = Totp::from_uri(u.expose()).unwrap();
        assert_eq!(back.code_at(1_790_000_000), t.code_at(1_790_000_000));
        assert!(Totp::from_uri("https://example.com").is_err());
    }

    #[test]
    fn recovery_codes_work_once_each() {
        let rng = cf_crypto::SeededRng::new(4);
        let (codes, mut store) = RecoveryCodes::generate(3, cheap(), &rng).unwrap();
        assert_eq!(codes.len(), 3);
        assert!(codes[0].expose().len() == 11 && codes[0].expose().as_bytes()[5] == b'-');
        assert_eq!(store.redeem("WRONG-CODE0"), Err(OtpError::Mismatch));
        // Typed back in lower case with a space instead of the dash: still the same code.
        store
            .redeem(&codes[1].expose().to_lowercase().replace('-', " "))
            .unwrap();
        assert_eq!(
            store.redeem(codes[1].expose()),
            Err(OtpError::Mismatch),
            "used once"
        );
        assert_eq!(store.remaining(), 2);
        let json = serde_json::to_string(&store).unwrap();
        assert!(!json.contains(codes[0].expose()), "only hashes are stored");
    }
}
