//! SM4-GCM (RFC 8998: GCM of NIST SP 800-38D over SM4, 96-bit nonce, 128-bit tag) on the
//! constant-time `sm4t` cipher, with GHASH from RustCrypto's `ghash` (carry-less multiply).
//!
//! Ours rather than the generic `aes-gcm` over `Sm4T` because that one enciphers the tag mask and
//! every block of a short message one at a time, and a table-free SM4 block costs as much as four:
//! here the mask rides in the first batch with the message's counters, so a 64-byte field is one
//! batch. The generic one remains the reference the tests compare with.

use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use sm4::cipher::consts::U16;
use sm4::cipher::{Array, KeyInit};
use zeroize::Zeroize;

use crate::sm4t::Sm4T;

/// Blocks per batch of the cipher.
const BATCH: usize = 32;
/// The longest message: the 32-bit counter runs from 2 to 2³² − 1 (SP 800-38D, 5.2.1.1).
pub const MAX_MESSAGE: u64 = ((1u64 << 32) - 2) * 16;

/// SM4-GCM under one key.
#[derive(Clone)]
pub struct Sm4Gcm {
    cipher: Sm4T,
    ghash: GHash,
}

impl std::fmt::Debug for Sm4Gcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4Gcm([redacted])")
    }
}

/// Why a seal or open failed (deliberately without detail: the caller names the operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcmError {
    /// The key is not 16 bytes.
    KeyLength,
    /// The message is longer than [`MAX_MESSAGE`].
    TooLong,
    /// The ciphertext is shorter than a tag or the tag does not verify.
    Tag,
}

impl Sm4Gcm {
    /// Set up the key schedule and the hash key H = SM4(0¹²⁸).
    pub fn new(key: &[u8]) -> Result<Self, GcmError> {
        let cipher = Sm4T::new_from_slice(key).map_err(|_| GcmError::KeyLength)?;
        let mut h = [[0u8; 16]; 4];
        cipher.encrypt_batch(&mut h);
        let mut hk = Array::<u8, U16>::from(h[0]);
        let ghash = GHash::new(&hk);
        hk.zeroize();
        h.zeroize();
        Ok(Sm4Gcm { cipher, ghash })
    }

    /// Encrypt `buf` in place and append the 16-byte tag.
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), GcmError> {
        if buf.len() as u64 > MAX_MESSAGE || aad.len() as u64 > u64::MAX / 8 {
            return Err(GcmError::TooLong);
        }
        let mask = self.keystream_from(nonce, buf, 1);
        let tag = self.tag(&mask, aad, buf);
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Check the tag at the end of `buf` (in constant time), then decrypt in place and drop it.
    /// Nothing is decrypted when the tag is wrong.
    pub fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), GcmError> {
        let Some(n) = buf.len().checked_sub(16) else {
            return Err(GcmError::Tag);
        };
        if n as u64 > MAX_MESSAGE {
            return Err(GcmError::TooLong);
        }
        // One batch holds the tag mask and the first keystream blocks — a field's whole keystream
        // in one cipher call, as in `seal` — and is applied only once the tag has checked.
        let head = n.min((BATCH - 1) * 16);
        let blocks = 1 + head.div_ceil(16);
        let mut ks = [[0u8; 16]; BATCH];
        self.batch(nonce, 1, &mut ks, blocks);
        let mut expected = Array::<u8, U16>::default();
        for (e, (t, m)) in expected.iter_mut().zip(buf[n..].iter().zip(ks[0])) {
            *e = t ^ m;
        }
        let mut g = self.ghash.clone();
        g.update_padded(aad);
        g.update_padded(&buf[..n]);
        g.update(&[lengths(aad.len(), n)]);
        if g.verify(&expected).is_err() {
            ks.zeroize();
            return Err(GcmError::Tag);
        }
        buf.truncate(n);
        xor_in(&mut buf[..head], &ks[1..blocks]);
        ks.zeroize();
        if n > head {
            // Data block j takes counter 2 + j; the batch covered blocks 0..BATCH-1.
            let _ = self.keystream_from(nonce, &mut buf[head..], 1 + BATCH as u32);
        }
        Ok(())
    }

    /// XOR the keystream of counters from `first` into `data`. From 1, that counter's block is
    /// the tag mask: it is returned, not applied, and the data starts at counter 2.
    fn keystream_from(&self, nonce: &[u8; 12], data: &mut [u8], first: u32) -> [u8; 16] {
        let mut mask = [0u8; 16];
        let mut ctr = first;
        let mut off = 0;
        let mut need_mask = first == 1;
        let mut ks = [[0u8; 16]; BATCH];
        while need_mask || off < data.len() {
            let slots = usize::from(need_mask) + (data.len() - off).div_ceil(16);
            let n = slots.min(BATCH);
            self.batch(nonce, ctr, &mut ks, n);
            ctr = ctr.wrapping_add(n as u32);
            let k = usize::from(need_mask);
            if need_mask {
                mask = ks[0];
                need_mask = false;
            }
            off += xor_in(&mut data[off..], &ks[k..n]);
        }
        ks.zeroize();
        mask
    }

    /// Encipher the `n` counter blocks `first, first + 1, …` into the front of `ks`; the cipher
    /// takes multiples of four blocks, so up to three spare blocks after them are enciphered too.
    fn batch(&self, nonce: &[u8; 12], first: u32, ks: &mut [[u8; 16]; BATCH], n: usize) {
        for (i, b) in ks.iter_mut().take(n).enumerate() {
            *b = counter_block(nonce, first.wrapping_add(i as u32));
        }
        self.cipher.encrypt_batch(&mut ks[..n.div_ceil(4) * 4]);
    }

    fn tag(&self, mask: &[u8; 16], aad: &[u8], ct: &[u8]) -> [u8; 16] {
        let mut g = self.ghash.clone();
        g.update_padded(aad);
        g.update_padded(ct);
        g.update(&[lengths(aad.len(), ct.len())]);
        let mut tag: [u8; 16] = g.finalize().into();
        for (t, m) in tag.iter_mut().zip(mask) {
            *t ^= m;
        }
        tag
    }
}

/// XOR keystream blocks into `data` from its start; the bytes covered.
fn xor_in(data: &mut [u8], ks: &[[u8; 16]]) -> usize {
    let mut covered = 0;
    for (chunk, k) in data.chunks_mut(16).zip(ks) {
        for (d, s) in chunk.iter_mut().zip(k) {
            *d ^= s;
        }
        covered += chunk.len();
    }
    covered
}

fn counter_block(nonce: &[u8; 12], ctr: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..12].copy_from_slice(nonce);
    b[12..].copy_from_slice(&ctr.to_be_bytes());
    b
}

fn lengths(aad: usize, ct: usize) -> Array<u8, U16> {
    let mut b = Array::<u8, U16>::default();
    b[..8].copy_from_slice(&(aad as u64 * 8).to_be_bytes());
    b[8..].copy_from_slice(&(ct as u64 * 8).to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::AeadInOut;
    use proptest::prelude::*;

    type Reference = aes_gcm::AesGcm<Sm4T, aes_gcm::aead::consts::U12>;

    fn reference_seal(key: &[u8; 16], nonce: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let r = Reference::new_from_slice(key).unwrap();
        let mut buf = pt.to_vec();
        r.encrypt_in_place(nonce.into(), aad, &mut buf).unwrap();
        buf
    }

    #[test]
    fn rfc_8998_vector() {
        // RFC 8998, A.1 (SM4-GCM).
        let key: [u8; 16] = hex::decode("0123456789ABCDEFFEDCBA9876543210")
            .unwrap()
            .try_into()
            .unwrap();
        let nonce: [u8; 12] = hex::decode("00001234567800000000ABCD")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2").unwrap();
        let pt = hex::decode(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let c = Sm4Gcm::new(&key).unwrap();
        let mut buf = pt.clone();
        c.seal(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(
            hex::encode_upper(&buf[..pt.len()]),
            "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
        );
        assert_eq!(
            hex::encode_upper(&buf[pt.len()..]),
            "83DE3541E4C2B58177E065A9BF7B62EC"
        );
        c.open(&nonce, &aad, &mut buf).unwrap();
        assert_eq!(buf, pt);
    }

    #[test]
    fn refuses_tampering_and_short_input_without_decrypting() {
        let c = Sm4Gcm::new(&[7u8; 16]).unwrap();
        let mut buf = b"attack at dawn, bring SM4".to_vec();
        c.seal(&[1; 12], b"hdr", &mut buf).unwrap();
        for i in 0..buf.len() {
            let mut t = buf.clone();
            t[i] ^= 0x01;
            let before = t.clone();
            assert_eq!(
                c.open(&[1; 12], b"hdr", &mut t),
                Err(GcmError::Tag),
                "byte {i}"
            );
            assert_eq!(t, before, "nothing decrypted on a bad tag");
        }
        let mut ok = buf.clone();
        assert_eq!(c.open(&[1; 12], b"hdX", &mut ok), Err(GcmError::Tag));
        assert_eq!(c.open(&[2; 12], b"hdr", &mut ok), Err(GcmError::Tag));
        assert_eq!(c.open(&[1; 12], b"", &mut vec![0; 15]), Err(GcmError::Tag));
        assert!(Sm4Gcm::new(&[0; 32]).is_err());
    }

    #[test]
    fn lengths_at_the_batch_boundary_round_trip_and_agree() {
        let (key, nonce) = ([7u8; 16], [9u8; 12]);
        let c = Sm4Gcm::new(&key).unwrap();
        for len in [
            0, 1, 15, 16, 17, 480, 495, 496, 497, 511, 512, 513, 992, 1009,
        ] {
            let pt: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut buf = pt.clone();
            c.seal(&nonce, b"aad", &mut buf).unwrap();
            assert_eq!(buf, reference_seal(&key, &nonce, b"aad", &pt), "seal {len}");
            c.open(&nonce, b"aad", &mut buf).unwrap();
            assert_eq!(buf, pt, "open {len}");
        }
    }

    proptest! {
        /// Every length around the batch boundaries, against the generic GCM over the same cipher.
        #[test]
        fn agrees_with_the_generic_gcm(
            key in any::<[u8; 16]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..40),
            pt in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            let c = Sm4Gcm::new(&key).unwrap();
            let mut buf = pt.clone();
            c.seal(&nonce, &aad, &mut buf).unwrap();
            prop_assert_eq!(&buf, &reference_seal(&key, &nonce, &aad, &pt));
            c.open(&nonce, &aad, &mut buf).unwrap();
            prop_assert_eq!(buf, pt);
        }
    }
}
