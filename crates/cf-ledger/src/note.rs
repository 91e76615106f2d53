//! C2SP signed notes (c2sp.org/signed-note), the envelope of every checkpoint: a text, a blank
//! line, and one `— name base64(keyid‖signature)` line per key: Ed25519 (type 0x01) and, as a
//! co-signature, SM2 (type 0xC2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_crypto::secret as cf_core_secret;
use cf_crypto::{Ed25519PublicKey, Ed25519SigningKey, Sm2PublicKey, Sm2SigningKey};

use crate::{LedgerError, malformed};

const ALG_ED25519: u8 = 0x01;
const MAX_SIGNATURES: usize = 100;
const MAX_NOTE_BYTES: usize = 1 << 20;

fn check_name(name: &str) -> Result<(), LedgerError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(LedgerError::InvalidKey(format!(
            "key name `{}` must be non-empty without spaces or '+'",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Key ID: the first four bytes of SHA-256(name ‖ 0x0A ‖ type ‖ public key), big-endian.
pub fn key_id_typed(name: &str, alg: u8, public: &[u8]) -> u32 {
    let h = cf_crypto::sha256_parts(&[name.as_bytes(), b"\n", &[alg], public]);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// Key ID of an Ed25519 key.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    key_id_typed(name, ALG_ED25519, public)
}

/// Signature type of Chengfang's SM2 co-signatures (GB/T 32918.2, SM3, default identifier;
/// public key SEC1 uncompressed). Not a registered C2SP type: verifiers that do not know the key
/// ignore the line, as the signed-note specification requires.
pub const ALG_SM2: u8 = 0xC2;

#[derive(Debug)]
enum Key {
    Ed25519(Ed25519SigningKey),
    Sm2(Sm2SigningKey),
}

impl Key {
    fn alg(&self) -> u8 {
        match self {
            Key::Ed25519(_) => ALG_ED25519,
            Key::Sm2(_) => ALG_SM2,
        }
    }
    fn public_bytes(&self) -> Vec<u8> {
        match self {
            Key::Ed25519(k) => k.public().0.to_vec(),
            Key::Sm2(k) => k.public().0,
        }
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Key::Ed25519(k) => k.sign(msg).to_vec(),
            Key::Sm2(k) => k.sign(msg).to_vec(),
        }
    }
}

/// Signs notes under one name with one or more keys (Ed25519, optionally an SM2 co-signature).
#[derive(Debug)]
pub struct NoteSigner {
    name: String,
    keys: Vec<(u32, Key)>,
}

impl NoteSigner {
    /// A signer for `name` with an Ed25519 key.
    pub fn new(name: &str, key: Ed25519SigningKey) -> Result<Self, LedgerError> {
        check_name(name)?;
        let id = key_id(name, &key.public().0);
        Ok(NoteSigner {
            name: name.to_string(),
            keys: vec![(id, Key::Ed25519(key))],
        })
    }

    /// Add an SM2 key: every note then carries a second signature line.
    pub fn with_sm2(mut self, key: Sm2SigningKey) -> Self {
        let id = key_id_typed(&self.name, ALG_SM2, &key.public().0);
        self.keys.push((id, Key::Sm2(key)));
        self
    }

    /// Parse a private key string `PRIVATE+KEY+name+hexid+base64(type‖secret)` (Ed25519 or SM2).
    pub fn from_skey(skey: &str) -> Result<Self, LedgerError> {
        let (name, id, key) = parse_skey(skey)?;
        let signer = NoteSigner {
            name: name.to_string(),
            keys: vec![(id, key)],
        };
        let (id0, k0) = &signer.keys[0];
        if key_id_typed(name, k0.alg(), &k0.public_bytes()) != *id0 {
            return Err(LedgerError::InvalidKey(
                "private key id does not match its key".into(),
            ));
        }
        Ok(signer)
    }

    /// Add the SM2 key of a private key string with the same name.
    pub fn with_sm2_skey(self, skey: &str) -> Result<Self, LedgerError> {
        let (name, _, key) = parse_skey(skey)?;
        match key {
            Key::Sm2(k) if name == self.name => Ok(self.with_sm2(k)),
            _ => Err(LedgerError::InvalidKey(
                "not an SM2 private key for this name".into(),
            )),
        }
    }

    /// The signer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key string of the first (Ed25519) key.
    pub fn verifier_key(&self) -> String {
        self.verifier_keys().remove(0)
    }

    /// Verifier key strings of every key, `name+hexid+base64(type‖pub)`.
    pub fn verifier_keys(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|(id, k)| {
                let mut b = vec![k.alg()];
                b.extend_from_slice(&k.public_bytes());
                format!("{}+{:08x}+{}", self.name, id, B64.encode(b))
            })
            .collect()
    }

    /// The verifier of the first (Ed25519) key.
    pub fn verifier(&self) -> NoteVerifier {
        self.verifiers().remove(0)
    }

    /// Verifiers of every key.
    pub fn verifiers(&self) -> Vec<NoteVerifier> {
        self.verifier_keys()
            .iter()
            .filter_map(|v| NoteVerifier::from_vkey(v).ok())
            .collect()
    }

    /// The private key strings of every key, for storage (handle as secrets).
    pub fn private_keys(&self) -> Vec<cf_core_secret::Secret<String>> {
        self.keys
            .iter()
            .map(|(id, k)| {
                let mut b = vec![k.alg()];
                match k {
                    Key::Ed25519(k) => b.extend_from_slice(k.seed().expose()),
                    Key::Sm2(k) => b.extend_from_slice(k.seed().expose()),
                }
                cf_core_secret::Secret::new(format!(
                    "PRIVATE+KEY+{}+{:08x}+{}",
                    self.name,
                    id,
                    B64.encode(b)
                ))
            })
            .collect()
    }

    fn signature_lines(&self, text: &str, out: &mut String) {
        for (id, k) in &self.keys {
            let mut b = id.to_be_bytes().to_vec();
            b.extend_from_slice(&k.sign(text.as_bytes()));
            out.push_str(&format!("\u{2014} {} {}\n", self.name, B64.encode(b)));
        }
    }
}

fn parse_skey(skey: &str) -> Result<(&str, u32, Key), LedgerError> {
    let rest = skey.strip_prefix("PRIVATE+KEY+").ok_or_else(|| {
        LedgerError::InvalidKey("private key must start with PRIVATE+KEY+".into())
    })?;
    let (name, id, bytes) = split_key(rest)?;
    let seed: [u8; 32] = bytes
        .get(1..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| LedgerError::InvalidKey("private key length".into()))?;
    let key = match bytes[0] {
        ALG_ED25519 => Key::Ed25519(Ed25519SigningKey::from_seed(&seed)),
        ALG_SM2 => Key::Sm2(
            Sm2SigningKey::from_seed(&seed).map_err(|e| LedgerError::InvalidKey(e.to_string()))?,
        ),
        _ => return Err(LedgerError::InvalidKey("unknown private key type".into())),
    };
    Ok((name, id, key))
}

fn split_key(s: &str) -> Result<(&str, u32, Vec<u8>), LedgerError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(b)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(LedgerError::InvalidKey(
            "key must be name+hexid+base64".into(),
        ));
    };
    check_name(name)?;
    if id.len() != 8 {
        return Err(LedgerError::InvalidKey(
            "key id must be 8 hex digits".into(),
        ));
    }
    let id = u32::from_str_radix(id, 16)
        .map_err(|_| LedgerError::InvalidKey("key id must be 8 hex digits".into()))?;
    let bytes = B64
        .decode(b)
        .map_err(|_| LedgerError::InvalidKey("key material is not base64".into()))?;
    if bytes.is_empty() {
        return Err(LedgerError::InvalidKey("key material is empty".into()));
    }
    Ok((name, id, bytes))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    Ed25519(Ed25519PublicKey),
    Sm2(Sm2PublicKey),
}

impl PublicKey {
    fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), cf_crypto::CryptoError> {
        match self {
            PublicKey::Ed25519(k) => k.verify(msg, sig),
            PublicKey::Sm2(k) => k.verify(msg, sig),
        }
    }
}

/// Verifies signatures of one named key (Ed25519 or SM2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: PublicKey,
}

impl NoteVerifier {
    /// Parse a verifier key string `name+hexid+base64(type‖pub)`.
    pub fn from_vkey(vkey: &str) -> Result<Self, LedgerError> {
        let (name, id, bytes) = split_key(vkey)?;
        let key = match (bytes[0], bytes.len()) {
            (ALG_ED25519, 33) => PublicKey::Ed25519(
                Ed25519PublicKey::from_slice(&bytes[1..])
                    .map_err(|e| LedgerError::InvalidKey(e.to_string()))?,
            ),
            (ALG_SM2, 66) => PublicKey::Sm2(
                Sm2PublicKey::from_slice(&bytes[1..])
                    .map_err(|e| LedgerError::InvalidKey(e.to_string()))?,
            ),
            _ => {
                return Err(LedgerError::InvalidKey(
                    "verifier key is not an Ed25519 or SM2 key".into(),
                ));
            }
        };
        if key_id_typed(name, bytes[0], &bytes[1..]) != id {
            return Err(LedgerError::InvalidKey(
                "verifier key id does not match its key".into(),
            ));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A note whose text was authenticated by at least one trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, ending in a newline.
    pub text: String,
    /// Names of the trusted keys whose signatures verified.
    pub verified_by: Vec<String>,
    /// Signature lines from keys not in the trusted set (kept, not checked).
    pub unverified: Vec<String>,
}

fn check_text(text: &str) -> Result<(), LedgerError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(malformed(
            "note",
            "text must be non-empty and end with a newline",
        ));
    }
    if let Some(c) = text.chars().find(|&c| c != '\n' && c.is_control()) {
        return Err(malformed(
            "note",
            format!("text contains control character {:?}", c),
        ));
    }
    Ok(())
}

/// Sign `text` with every signer; returns the note.
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, LedgerError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(malformed("note", "at least one signer is required"));
    }
    let mut out = String::with_capacity(text.len() + 100 * signers.len());
    out.push_str(text);
    out.push('\n');
    for s in signers {
        s.signature_lines(text, &mut out);
    }
    Ok(out)
}

/// Parse `note` and verify it against `trusted`. Signatures by unknown keys are ignored; a bad
/// signature by a trusted key is an error; at least one trusted signature is required.
pub fn open(note: &str, trusted: &[NoteVerifier]) -> Result<OpenedNote, LedgerError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(malformed("note", "larger than 1 MiB"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("note", "no blank line before the signatures"))?;
    let text = &note[..split + 1];
    let sigs = &note[split + 2..];
    check_text(text)?;
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(malformed(
            "note",
            "signature block is empty or lacks a final newline",
        ));
    }
    let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(malformed("note", "too many signatures"));
    }
    let mut verified_by = Vec::new();
    let mut unverified = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.strip_prefix("\u{2014} ").ok_or_else(|| {
            malformed(
                "note",
                format!("signature line {} does not start with '— '", i + 1),
            )
        })?;
        let (name, b64) = body.split_once(' ').ok_or_else(|| {
            malformed("note", format!("signature line {} has no signature", i + 1))
        })?;
        check_name(name).map_err(|_| {
            malformed(
                "note",
                format!("signature line {} has a bad key name", i + 1),
            )
        })?;
        if b64.contains(' ') {
            return Err(malformed(
                "note",
                format!("signature line {} has extra fields", i + 1),
            ));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| malformed("note", format!("signature line {} is not base64", i + 1)))?;
        if raw.len() < 5 {
            return Err(malformed(
                "note",
                format!("signature line {} is too short", i + 1),
            ));
        }
        let id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        match trusted.iter().find(|v| v.name == name && v.id == id) {
            // As in Go's note.Open, a repeated signature by the same key is not checked again.
            Some(_) if verified_by.iter().any(|n| n == name) => {}
            Some(v) => {
                v.key
                    .verify(text.as_bytes(), &raw[4..])
                    .map_err(|_| LedgerError::InvalidSignature(name.to_string()))?;
                verified_by.push(name.to_string());
            }
            None => unverified.push((*line).to_string()),
        }
    }
    if verified_by.is_empty() {
        return Err(LedgerError::NoVerifiableSignature);
    }
    Ok(OpenedNote {
        text: text.to_string(),
        verified_by,
        unverified,
    })
}
