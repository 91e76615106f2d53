//! C2SP tlog-checkpoint bodies (c2sp.org/tlog-checkpoint): origin, decimal tree size, base64 root
//! hash, then optional extension lines; always carried inside a signed note.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::hash::Hash;
use crate::note::{self, NoteSigner, NoteVerifier};
use crate::{LedgerError, malformed};

/// A log's signed statement of its size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's unique origin line, e.g. `chengfang.city.example/audit`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Extension lines (without newline); Chengfang writes `time <unix-ms>`.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text of this checkpoint.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse a checkpoint body (the text of an already opened note).
    pub fn parse_text(text: &str) -> Result<Self, LedgerError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("checkpoint", "must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(malformed("checkpoint", "line 1 (origin) is empty"));
        }
        let size_s = lines
            .next()
            .ok_or_else(|| malformed("checkpoint", "line 2 (tree size) is missing"))?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(malformed(
                "checkpoint",
                format!(
                    "line 2 (tree size) `{}` is not a decimal number",
                    size_s.escape_debug()
                ),
            ));
        }
        let size: u64 = size_s
            .parse()
            .map_err(|_| malformed("checkpoint", "line 2 (tree size) overflows 64 bits"))?;
        let root_s = lines
            .next()
            .ok_or_else(|| malformed("checkpoint", "line 3 (root hash) is missing"))?;
        let root: Hash = B64
            .decode(root_s)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| malformed("checkpoint", "line 3 (root hash) is not 32 base64 bytes"))?;
        let mut extensions = Vec::new();
        for (i, l) in lines.enumerate() {
            if l.is_empty() {
                return Err(malformed(
                    "checkpoint",
                    format!("line {} (extension) is empty", i + 4),
                ));
            }
            extensions.push(l.to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Sign this checkpoint as a note.
    pub fn sign(&self, signers: &[&NoteSigner]) -> Result<String, LedgerError> {
        note::sign(&self.to_text(), signers)
    }

    /// Open a signed checkpoint note, verify it, and check its origin.
    pub fn open(
        note_text: &str,
        origin: &str,
        trusted: &[NoteVerifier],
    ) -> Result<Self, LedgerError> {
        let opened = note::open(note_text, trusted)?;
        let cp = Checkpoint::parse_text(&opened.text)?;
        if cp.origin != origin {
            return Err(malformed(
                "checkpoint",
                format!("origin `{}` is not the expected `{origin}`", cp.origin),
            ));
        }
        Ok(cp)
    }
}
