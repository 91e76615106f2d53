//! C2SP signed notes (c2sp.org/signed-note), the envelope of every checkpoint: a text, a blank
//! line, and one `— name base64(keyid‖signature)` line per signer. Ed25519 keys (type 0x01).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cf_crypto::{Ed25519PublicKey, Ed25519SigningKey};

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
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let h = cf_crypto::sha256_parts(&[name.as_bytes(), b"\n", &[ALG_ED25519], public]);
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// Signs notes with one Ed25519 key under one name.
#[derive(Debug)]
pub struct NoteSigner {
    name: String,
    id: u32,
    key: Ed25519SigningKey,
}

impl NoteSigner {
    /// A signer for `name` with `key`.
    pub fn new(name: &str, key: Ed25519SigningKey) -> Result<Self, LedgerError> {
        check_name(name)?;
        let id = key_id(name, &key.public().0);
        Ok(NoteSigner {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// Parse a Go/C2SP private key string `PRIVATE+KEY+name+hexid+base64(0x01‖seed)`.
    pub fn from_skey(skey: &str) -> Result<Self, LedgerError> {
        let rest = skey.strip_prefix("PRIVATE+KEY+").ok_or_else(|| {
            LedgerError::InvalidKey("private key must start with PRIVATE+KEY+".into())
        })?;
        let (name, id, bytes) = split_key(rest)?;
        if bytes.len() != 33 || bytes[0] != ALG_ED25519 {
            return Err(LedgerError::InvalidKey(
                "private key is not an Ed25519 key".into(),
            ));
        }
        let seed: [u8; 32] = bytes[1..]
            .try_into()
            .map_err(|_| LedgerError::InvalidKey("private key length".into()))?;
        let signer = NoteSigner::new(name, Ed25519SigningKey::from_seed(&seed))?;
        if signer.id != id {
            return Err(LedgerError::InvalidKey(
                "private key id does not match its key".into(),
            ));
        }
        Ok(signer)
    }

    /// The signer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key string `name+hexid+base64(0x01‖pub)` to publish.
    pub fn verifier_key(&self) -> String {
        let mut b = vec![ALG_ED25519];
        b.extend_from_slice(&self.key.public().0);
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(b))
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.public(),
        }
    }

    fn signature_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut b = self.id.to_be_bytes().to_vec();
        b.extend_from_slice(&sig);
        format!("\u{2014} {} {}\n", self.name, B64.encode(b))
    }
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
    Ok((name, id, bytes))
}

/// Verifies signatures of one named Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: Ed25519PublicKey,
}

impl NoteVerifier {
    /// Parse a verifier key string `name+hexid+base64(0x01‖pub)`.
    pub fn from_vkey(vkey: &str) -> Result<Self, LedgerError> {
        let (name, id, bytes) = split_key(vkey)?;
        if bytes.len() != 33 || bytes[0] != ALG_ED25519 {
            return Err(LedgerError::InvalidKey(
                "verifier key is not an Ed25519 key".into(),
            ));
        }
        let key = Ed25519PublicKey::from_slice(&bytes[1..])
            .map_err(|e| LedgerError::InvalidKey(e.to_string()))?;
        if key_id(name, &key.0) != id {
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
        out.push_str(&s.signature_line(text));
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
