//! The ciphertext envelope, format 1: versioned and self-describing (ENC-2). It names the key,
//! the key version, the algorithm and the nonce mode, and all of that is authenticated with the body.
//!
//! ```text
//! "CFK" | format=1 | alg | mode | len(key) | key (UTF-8) | version u32 BE | nonce[12] | body ‖ tag
//! ```
//! The AEAD's associated data is every header byte (so relabelling the key, version or algorithm
//! is detected) followed by the caller's context. The text form is `cfk1:` + unpadded base64url.

use base64::Engine;

use crate::KmsError;
use crate::aead::{Algorithm, NONCE_LEN, TAG_LEN};

const MAGIC: &[u8; 3] = b"CFK";
/// The only format version written today.
pub const FORMAT: u8 = 1;
/// Prefix of the text form.
pub const TEXT_PREFIX: &str = "cfk1:";
/// Longest key name an envelope carries.
pub const MAX_KEY_NAME: usize = 128;

/// How the nonce was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Random 96-bit nonce: equal plaintexts give different ciphertexts.
    Random = 0,
    /// Synthetic nonce from a keyed hash of context and plaintext (convergent encryption): equal
    /// plaintexts in the same context give equal ciphertexts, which is what equality search needs.
    Deterministic = 1,
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Algorithm.
    pub alg: Algorithm,
    /// Nonce mode.
    pub mode: Mode,
    /// Key name.
    pub key: String,
    /// Key version (1-based).
    pub version: u32,
    /// Nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub body: Vec<u8>,
}

impl Envelope {
    /// Header bytes: everything before the body; also the start of the AEAD's associated data.
    pub fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(8 + self.key.len() + 4 + NONCE_LEN);
        write_header(
            &mut h,
            self.alg,
            self.mode,
            &self.key,
            self.version,
            &self.nonce,
        );
        h
    }

    /// Associated data for the AEAD: header then caller context.
    pub fn aad(&self, context: &[u8]) -> Vec<u8> {
        let mut a = self.header();
        a.extend_from_slice(context);
        a
    }

    /// Binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&self.body);
        out
    }

    /// Text form (`cfk1:…`).
    pub fn to_text(&self) -> String {
        let mut s = String::from(TEXT_PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(self.encode(), &mut s);
        s
    }

    /// Parse the binary form.
    pub fn decode(b: &[u8]) -> Result<Self, KmsError> {
        let bad = |w: &str| KmsError::Malformed(w.to_string());
        if b.len() < 7 || &b[..3] != MAGIC {
            return Err(bad("not a Chengfang envelope (missing CFK magic)"));
        }
        if b[3] != FORMAT {
            return Err(KmsError::Malformed(format!(
                "envelope format {} is not supported (this build reads 1)",
                b[3]
            )));
        }
        let alg = Algorithm::from_id(b[4])
            .ok_or_else(|| KmsError::Malformed(format!("unknown algorithm id {}", b[4])))?;
        let mode = match b[5] {
            0 => Mode::Random,
            1 => Mode::Deterministic,
            m => return Err(KmsError::Malformed(format!("unknown nonce mode {m}"))),
        };
        let kl = b[6] as usize;
        if kl == 0 || kl > MAX_KEY_NAME {
            return Err(bad("key name length out of range"));
        }
        let need = 7 + kl + 4 + NONCE_LEN + TAG_LEN;
        if b.len() < need {
            return Err(KmsError::Malformed(format!(
                "envelope truncated: {} bytes, at least {need} needed",
                b.len()
            )));
        }
        let key = std::str::from_utf8(&b[7..7 + kl])
            .map_err(|_| bad("key name is not UTF-8"))?
            .to_string();
        let mut at = 7 + kl;
        let version = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if version == 0 {
            return Err(bad("key version 0 does not exist"));
        }
        at += 4;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&b[at..at + NONCE_LEN]);
        at += NONCE_LEN;
        Ok(Envelope {
            alg,
            mode,
            key,
            version,
            nonce,
            body: b[at..].to_vec(),
        })
    }

    /// Parse the text form.
    pub fn from_text(s: &str) -> Result<Self, KmsError> {
        let rest = s.trim().strip_prefix(TEXT_PREFIX).ok_or_else(|| {
            KmsError::Malformed(format!("expected text starting with `{TEXT_PREFIX}`"))
        })?;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rest)
            .map_err(|e| KmsError::Malformed(format!("base64: {e}")))?;
        Self::decode(&b)
    }
}

pub(crate) fn write_header(
    h: &mut Vec<u8>,
    alg: Algorithm,
    mode: Mode,
    key: &str,
    version: u32,
    nonce: &[u8; NONCE_LEN],
) {
    h.extend_from_slice(MAGIC);
    h.push(FORMAT);
    h.push(alg.id());
    h.push(mode as u8);
    h.push(key.len() as u8);
    h.extend_from_slice(key.as_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(nonce);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Envelope {
        Envelope {
            alg: Algorithm::Sm4Gcm,
            mode: Mode::Random,
            key: "citizens".into(),
            version: 3,
            nonce: [9; 12],
            body: vec![1; 20],
        }
    }

    #[test]
    fn binary_and_text_forms_round_trip() {
        let e = sample();
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        let t = e.to_text();
        assert!(t.starts_with("cfk1:"));
        assert_eq!(Envelope::from_text(&t).unwrap(), e);
    }

    #[test]
    fn damaged_headers_are_named() {
        let mut b = sample().encode();
        b[3] = 9;
        assert!(
            Envelope::decode(&b)
                .unwrap_err()
                .to_string()
                .contains("format 9")
        );
        let b = sample().encode();
        assert!(
            Envelope::decode(&b[..20])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        assert!(
            Envelope::from_text("vault:v1:abc")
                .unwrap_err()
                .to_string()
                .contains("cfk1:")
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Envelope::decode(&b);
        }

        #[test]
        fn any_envelope_round_trips(key in "[a-z0-9._-]{1,128}", v in 1u32.., n in any::<[u8; 12]>(),
                                    body in proptest::collection::vec(any::<u8>(), 16..100), det in any::<bool>()) {
            let e = Envelope { alg: Algorithm::Aes256Gcm, mode: if det { Mode::Deterministic } else { Mode::Random },
                               key, version: v, nonce: n, body };
            prop_assert_eq!(Envelope::decode(&e.encode()).unwrap(), e.clone());
            prop_assert_eq!(Envelope::from_text(&e.to_text()).unwrap(), e);
        }
    }
}
