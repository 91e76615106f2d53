//! Streaming authenticated encryption for files, images and video (ENC-2): the STREAM
//! construction over any of our AEADs, so memory stays flat and every cut, swap or truncation is
//! detected. The file key is a data key from the KMS; only its wrapped form is stored in the header.
//!
//! ```text
//! "CFS" | format=1 | alg | log2(chunk) | len(wrapped) u16 BE | wrapped data key (cfk1 text) | salt[32]
//! chunk*: ciphertext ‖ tag      nonce = counter u64 BE ‖ 0 0 0 ‖ last-flag
//! ```
//! Each chunk's associated data is the whole header, so the header cannot be changed either.
//! The chunk key is HKDF(data key, salt), fresh per file, which is what makes counter nonces safe.

use std::io::{Read, Write};

use zeroize::Zeroizing;

use crate::KmsError;
use crate::aead::{Algorithm, Cipher, NONCE_LEN, TAG_LEN};
use cf_crypto::Rng;

const MAGIC: &[u8; 3] = b"CFS";
/// Default chunk size: 64 KiB.
pub const DEFAULT_CHUNK_LOG2: u8 = 16;

/// A parsed stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// AEAD for the chunks.
    pub alg: Algorithm,
    /// log2 of the plaintext chunk size (10..=24).
    pub chunk_log2: u8,
    /// The data key, wrapped by the KMS (a `cfk1:` envelope).
    pub wrapped_key: String,
    /// Per-file salt.
    pub salt: [u8; 32],
    raw: Vec<u8>,
}

impl StreamHeader {
    /// The header's bytes as written.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    fn build(
        alg: Algorithm,
        chunk_log2: u8,
        wrapped_key: &str,
        salt: [u8; 32],
    ) -> Result<Self, KmsError> {
        if !(10..=24).contains(&chunk_log2) {
            return Err(KmsError::Invalid(
                "chunk size must be between 1 KiB and 16 MiB".into(),
            ));
        }
        let wl = u16::try_from(wrapped_key.len())
            .map_err(|_| KmsError::Invalid("wrapped key too long".into()))?;
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&[1, alg.id(), chunk_log2]);
        raw.extend_from_slice(&wl.to_be_bytes());
        raw.extend_from_slice(wrapped_key.as_bytes());
        raw.extend_from_slice(&salt);
        Ok(StreamHeader {
            alg,
            chunk_log2,
            wrapped_key: wrapped_key.to_string(),
            salt,
            raw,
        })
    }

    /// Read and check a header from the start of a stream.
    pub fn read(r: &mut impl Read) -> Result<Self, KmsError> {
        let mut fixed = [0u8; 8];
        read_exact(r, &mut fixed, "stream header")?;
        if &fixed[..3] != MAGIC {
            return Err(KmsError::Malformed(
                "not a Chengfang encrypted stream (missing CFS magic)".into(),
            ));
        }
        if fixed[3] != 1 {
            return Err(KmsError::Malformed(format!(
                "stream format {} is not supported (this build reads 1)",
                fixed[3]
            )));
        }
        let alg = Algorithm::from_id(fixed[4])
            .ok_or_else(|| KmsError::Malformed(format!("unknown algorithm id {}", fixed[4])))?;
        let wl = u16::from_be_bytes([fixed[6], fixed[7]]) as usize;
        let mut wrapped = vec![0u8; wl];
        read_exact(r, &mut wrapped, "wrapped data key")?;
        let wrapped = String::from_utf8(wrapped)
            .map_err(|_| KmsError::Malformed("wrapped data key is not text".into()))?;
        let mut salt = [0u8; 32];
        read_exact(r, &mut salt, "salt")?;
        Self::build(alg, fixed[5], &wrapped, salt).map_err(|e| KmsError::Malformed(e.to_string()))
    }

    fn cipher(&self, data_key: &[u8]) -> Result<Cipher, KmsError> {
        let mut k = Zeroizing::new(vec![0u8; self.alg.key_len()]);
        crate::hash::hkdf(data_key, &self.salt, &[b"chengfang-stream/v1"], &mut k);
        Cipher::new(self.alg, &k)
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), KmsError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            KmsError::Malformed(format!("stream ends inside the {what}"))
        }
        _ => KmsError::Io(e.to_string()),
    })
}

/// Fill `buf` as far as the reader allows; returns bytes read (short only at end of input).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, KmsError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(KmsError::Io(e.to_string())),
        }
    }
    Ok(n)
}

fn nonce(counter: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    n[11] = last as u8;
    n
}

/// Encrypt all of `input` to `out` under `data_key` (whose wrapped form goes in the header).
/// Returns the number of plaintext bytes.
pub fn encrypt(
    alg: Algorithm,
    data_key: &[u8],
    wrapped_key: &str,
    chunk_log2: u8,
    input: &mut impl Read,
    out: &mut impl Write,
    rng: &dyn Rng,
) -> Result<u64, KmsError> {
    let mut salt = [0u8; 32];
    rng.fill(&mut salt)?;
    let h = StreamHeader::build(alg, chunk_log2, wrapped_key, salt)?;
    let cipher = h.cipher(data_key)?;
    let io = |e: std::io::Error| KmsError::Io(e.to_string());
    out.write_all(h.bytes()).map_err(io)?;
    let size = 1usize << chunk_log2;
    // Read one chunk ahead so the last chunk is known to be last when it is sealed.
    let mut cur = vec![0u8; size];
    let mut n = fill(input, &mut cur)?;
    let mut next = vec![0u8; size];
    let mut counter = 0u64;
    let mut total = 0u64;
    let mut buf = Vec::with_capacity(size + TAG_LEN);
    loop {
        let m = if n == size {
            fill(input, &mut next)?
        } else {
            0
        };
        let last = m == 0;
        buf.clear();
        buf.extend_from_slice(&cur[..n]);
        cipher.seal(&nonce(counter, last), h.bytes(), &mut buf)?;
        out.write_all(&buf).map_err(io)?;
        total += n as u64;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
        n = m;
        counter = counter
            .checked_add(1)
            .ok_or_else(|| KmsError::Invalid("stream too long".into()))?;
    }
    out.flush().map_err(io)?;
    Ok(total)
}

/// Decrypt the chunks following `header` to `out`. Each chunk is written only after it
/// authenticates; an error means the output is incomplete and must be discarded (the CLI writes
/// to a temporary file and renames only on success).
pub fn decrypt(
    header: &StreamHeader,
    data_key: &[u8],
    input: &mut impl Read,
    out: &mut impl Write,
) -> Result<u64, KmsError> {
    let cipher = header.cipher(data_key)?;
    let size = (1usize << header.chunk_log2) + TAG_LEN;
    let mut cur = vec![0u8; size];
    let mut n = fill(input, &mut cur)?;
    let mut next = vec![0u8; size];
    let mut counter = 0u64;
    let mut total = 0u64;
    let mut buf = Zeroizing::new(Vec::with_capacity(size));
    loop {
        if n < TAG_LEN {
            return Err(KmsError::Tampered("stream truncated"));
        }
        let m = if n == size {
            fill(input, &mut next)?
        } else {
            0
        };
        let last = m == 0;
        buf.clear();
        buf.extend_from_slice(&cur[..n]);
        cipher
            .open(&nonce(counter, last), header.bytes(), &mut buf)
            .map_err(|_| {
                if last {
                    KmsError::Tampered("final chunk does not authenticate (truncated or altered)")
                } else {
                    KmsError::Tampered(
                        "chunk does not authenticate (altered, reordered or wrong key)",
                    )
                }
            })?;
        out.write_all(&buf)
            .map_err(|e| KmsError::Io(e.to_string()))?;
        total += buf.len() as u64;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
        n = m;
        counter += 1;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_crypto::SeededRng;
    use proptest::prelude::*;

    fn enc(alg: Algorithm, pt: &[u8], log2: u8) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt(
            alg,
            &[3u8; 32],
            "cfk1:wrapped",
            log2,
            &mut &pt[..],
            &mut out,
            &SeededRng::new(4),
        )
        .unwrap();
        out
    }

    fn dec(ct: &[u8]) -> Result<Vec<u8>, KmsError> {
        let mut r = ct;
        let h = StreamHeader::read(&mut r)?;
        let mut out = Vec::new();
        decrypt(&h, &[3u8; 32], &mut r, &mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_chunk_boundaries() {
        for alg in Algorithm::ALL {
            for len in [0usize, 1, 1023, 1024, 1025, 4096, 5000] {
                let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ct = enc(alg, &pt, 10);
                assert_eq!(dec(&ct).unwrap(), pt, "{alg:?} {len}");
            }
        }
    }

    #[test]
    fn truncation_reordering_and_header_edits_are_detected() {
        let pt = vec![7u8; 4096];
        let ct = enc(Algorithm::Sm4Gcm, &pt, 10);
        let hlen = 8 + "cfk1:wrapped".len() + 32;
        let chunk = 1024 + TAG_LEN;
        // Drop the last chunk: the new last chunk was sealed as not-last.
        assert!(dec(&ct[..hlen + 3 * chunk]).is_err());
        // Swap chunks 0 and 1.
        let mut sw = ct.clone();
        let (a, b) = (hlen, hlen + chunk);
        let c0 = ct[a..a + chunk].to_vec();
        sw.copy_within(b..b + chunk, a);
        sw[b..b + chunk].copy_from_slice(&c0);
        assert!(dec(&sw).is_err());
        // Change the chunk size in the header.
        let mut h = ct.clone();
        h[5] = 11;
        assert!(dec(&h).is_err());
        // Wrong data key.
        let mut r = &ct[..];
        let hd = StreamHeader::read(&mut r).unwrap();
        assert!(decrypt(&hd, &[4u8; 32], &mut r, &mut Vec::new()).is_err());
        // Trailing garbage after the last chunk.
        let mut t = ct.clone();
        t.extend_from_slice(&[0u8; 5]);
        assert!(dec(&t).is_err());
    }

    proptest! {
        #[test]
        fn any_flip_is_detected(pos in 0usize..2200, bit in 0u8..8) {
            let pt = vec![1u8; 2000];
            let mut ct = enc(Algorithm::Aes256Gcm, &pt, 10);
            let p = pos % ct.len();
            ct[p] ^= 1 << bit;
            prop_assert!(dec(&ct).is_err());
        }

        #[test]
        fn header_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = StreamHeader::read(&mut &b[..]);
        }
    }
}
