//! SM4 (GB/T 32907-2016) with combined S-box/L tables and eight blocks interleaved, as the block
//! cipher under SM4-GCM: the `sm4` crate evaluates one block at a time through byte S-box lookups
//! and rotations, which leaves a superscalar core mostly idle. Encryption only (GCM and CTR never
//! decrypt blocks). Checked against the standard's vectors, RFC 8998 and the `sm4` crate.
//!
//! Like OpenSSL's SM4, the tables are indexed by secret bytes (4 KiB, L1-resident); constant-time
//! SM4 needs AES-NI or bit-slicing, noted in docs/benchmarks.md.

use aes_gcm::aead::consts::{U8, U16};
use sm4::cipher::{
    AlgorithmName, Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockSizeUser, InOut, Key, KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};

/// The S-box of GB/T 32907-2016 (section 6.2).
const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

/// System parameter FK (GB/T 32907-2016, 7.3).
const FK: [u32; 4] = [0xa3b1bac6, 0x56aa3350, 0x677d9197, 0xb27022dc];

/// Fixed parameters CK: byte j of CK_i is (4i + j)·7 mod 256 (GB/T 32907-2016, 7.3).
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut j = 0;
        while j < 4 {
            ck[i] = (ck[i] << 8) | (((4 * i + j) * 7) % 256) as u32;
            j += 1;
        }
        i += 1;
    }
    ck
};

const fn l(b: u32) -> u32 {
    b ^ b.rotate_left(2) ^ b.rotate_left(10) ^ b.rotate_left(18) ^ b.rotate_left(24)
}

/// T0[b] = L(S(b) << 24); the other byte positions are rotations of it, because L commutes with rotation.
const T: [[u32; 256]; 4] = {
    let mut t = [[0u32; 256]; 4];
    let mut b = 0;
    while b < 256 {
        let v = l((SBOX[b] as u32) << 24);
        t[0][b] = v;
        t[1][b] = v.rotate_right(8);
        t[2][b] = v.rotate_right(16);
        t[3][b] = v.rotate_right(24);
        b += 1;
    }
    t
};

#[inline(always)]
fn round_t(x: u32) -> u32 {
    T[0][(x >> 24) as usize]
        ^ T[1][((x >> 16) & 0xff) as usize]
        ^ T[2][((x >> 8) & 0xff) as usize]
        ^ T[3][(x & 0xff) as usize]
}

fn key_t(x: u32) -> u32 {
    let b = x.to_be_bytes();
    let s = u32::from_be_bytes([
        SBOX[b[0] as usize],
        SBOX[b[1] as usize],
        SBOX[b[2] as usize],
        SBOX[b[3] as usize],
    ]);
    s ^ s.rotate_left(13) ^ s.rotate_left(23)
}

/// SM4 for encryption, eight blocks at a time.
#[derive(Clone)]
pub struct Sm4T {
    rk: [u32; 32],
}

impl Drop for Sm4T {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.rk);
    }
}

impl std::fmt::Debug for Sm4T {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4T([redacted])")
    }
}

impl KeySizeUser for Sm4T {
    type KeySize = U16;
}

impl KeyInit for Sm4T {
    fn new(key: &Key<Self>) -> Self {
        let w = |i: usize| {
            u32::from_be_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
        };
        let mut k = [w(0) ^ FK[0], w(1) ^ FK[1], w(2) ^ FK[2], w(3) ^ FK[3]];
        let mut rk = [0u32; 32];
        for (i, r) in rk.iter_mut().enumerate() {
            let n = k[(i + 1) % 4] ^ k[(i + 2) % 4] ^ k[(i + 3) % 4] ^ CK[i];
            k[i % 4] ^= key_t(n);
            *r = k[i % 4];
        }
        Sm4T { rk }
    }
}

impl BlockSizeUser for Sm4T {
    type BlockSize = U16;
}

impl ParBlocksSizeUser for Sm4T {
    type ParBlocksSize = U8;
}

impl AlgorithmName for Sm4T {
    fn write_alg_name(f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sm4")
    }
}

impl BlockCipherEncrypt for Sm4T {
    #[inline]
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        f.call(self)
    }
}

#[inline(always)]
fn load(b: &[u8]) -> [u32; 4] {
    let w = |i: usize| u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    [w(0), w(1), w(2), w(3)]
}

#[inline(always)]
fn store(x: &[u32; 4], out: &mut [u8]) {
    out[0..4].copy_from_slice(&x[3].to_be_bytes());
    out[4..8].copy_from_slice(&x[2].to_be_bytes());
    out[8..12].copy_from_slice(&x[1].to_be_bytes());
    out[12..16].copy_from_slice(&x[0].to_be_bytes());
}

impl BlockCipherEncBackend for Sm4T {
    #[inline]
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut x = load(block.get_in());
        for i in 0..32 {
            let j = i % 4;
            x[j] ^= round_t(x[(j + 1) % 4] ^ x[(j + 2) % 4] ^ x[(j + 3) % 4] ^ self.rk[i]);
        }
        store(&x, block.get_out());
    }

    #[inline]
    fn encrypt_par_blocks(&self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
        let mut x = [[0u32; 4]; 8];
        for (n, s) in x.iter_mut().enumerate() {
            *s = load(blocks.get(n).get_in());
        }
        // Round-major order: eight independent dependency chains for the core to overlap.
        for i in 0..32 {
            let j = i % 4;
            let rk = self.rk[i];
            for s in x.iter_mut() {
                s[j] ^= round_t(s[(j + 1) % 4] ^ s[(j + 2) % 4] ^ s[(j + 3) % 4] ^ rk);
            }
        }
        for (n, s) in x.iter().enumerate() {
            store(s, blocks.get(n).get_out());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_and_the_sm4_crate() {
        let key: [u8; 16] = hex::decode("0123456789abcdeffedcba9876543210")
            .unwrap()
            .try_into()
            .unwrap();
        let c = Sm4T::new(&key.into());
        let mut b: Block<Sm4T> = key.into();
        BlockCipherEncrypt::encrypt_block(&c, &mut b);
        assert_eq!(
            hex::encode(b),
            "681edf34d206965e86b3e94f536e4246",
            "GB/T 32907 Appendix A.1"
        );
        let reference = <sm4::Sm4 as sm4::cipher::KeyInit>::new(&key.into());
        let mut blocks: Vec<Block<Sm4T>> =
            (0..37u8).map(|i| [i.wrapping_mul(29); 16].into()).collect();
        let mut want = blocks.clone();
        BlockCipherEncrypt::encrypt_blocks(&c, &mut blocks);
        for b in want.iter_mut() {
            sm4::cipher::BlockCipherEncrypt::encrypt_block(&reference, b);
        }
        assert_eq!(
            blocks, want,
            "eight-way and tail paths agree with the reference"
        );
    }
}
