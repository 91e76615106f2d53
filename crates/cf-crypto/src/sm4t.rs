//! SM4 (GB/T 32907-2016) in constant time, up to 32 blocks per call, as the block cipher under
//! SM4-GCM and format-preserving encryption. Encryption only (GCM and CTR never decrypt blocks).
//!
//! Table SM4 (OpenSSL's, the `sm4` crate's) indexes its S-box by secret bytes, which cache timing
//! can read. Here no memory access depends on a secret: on x86-64 with GFNI the S-box is two
//! affine instructions around AES-field inversion on 32 bytes at once; with AES-NI it is
//! `AESENCLAST` between two affine maps (module `x86`); elsewhere it is computed by GF(2⁸)
//! inversion on eight bytes at once (module `swar`). The key schedule uses AES-NI or `swar`. Checked
//! against the standard's vectors, RFC 8998 and the `sm4` crate.

use sm4::cipher::consts::{U8, U16};
use sm4::cipher::{
    AlgorithmName, Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt,
    BlockSizeUser, InOut, Key, KeyInit, KeySizeUser, ParBlocks, ParBlocksSizeUser,
};

/// The S-box of GB/T 32907-2016 (section 6.2), the reference the table-free S-boxes are checked
/// against.
#[cfg(test)]
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

/// SM4's S-box without tables: `S(x) = A·(A·x ⊕ C)⁻¹ ⊕ C` in GF(2⁸) modulo
/// x⁸+x⁷+x⁶+x⁵+x⁴+x²+1, with A the circulant of 0xCB (bit 0 first) and C = 0xD3, on eight bytes
/// of a `u64` at once. Every step is shifts, masks and multiplications by 0/1 bit masks, so the
/// time does not depend on the bytes. The portable path and the key schedule use it.
mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    #[inline(always)]
    fn rotl(x: u64, k: u32) -> u64 {
        let keep = ONES * ((0xffu64 << k) & 0xff);
        ((x << k) & keep) | ((x >> (8 - k)) & !keep)
    }

    #[inline(always)]
    fn affine(x: u64) -> u64 {
        x ^ rotl(x, 1) ^ rotl(x, 3) ^ rotl(x, 6) ^ rotl(x, 7) ^ (ONES * 0xd3)
    }

    #[inline(always)]
    fn xtime(a: u64) -> u64 {
        ((a & LOW7) << 1) ^ (((a >> 7) & ONES) * 0xf5)
    }

    #[inline(always)]
    fn mul(mut a: u64, b: u64) -> u64 {
        let mut r = 0;
        for i in 0..8 {
            r ^= a & (((b >> i) & ONES) * 0xff);
            a = xtime(a);
        }
        r
    }

    /// Squaring is linear in GF(2⁸): bit i of x contributes (αⁱ)², these columns.
    const SQUARE: [u64; 8] = [0x01, 0x04, 0x10, 0x40, 0xf5, 0x3e, 0xf8, 0x0a];

    #[inline(always)]
    fn square(x: u64) -> u64 {
        let mut r = 0;
        for (i, col) in SQUARE.iter().enumerate() {
            r ^= ((x >> i) & ONES) * col;
        }
        r
    }

    /// x²⁵⁴ = x⁻¹ (and 0 for 0), by the chain 2, 3, 6, 12, 15, 30, 60, 120, 240, 252, 254: seven
    /// (linear) squarings and four multiplications.
    #[inline(always)]
    fn inv(x: u64) -> u64 {
        let x2 = square(x);
        let x3 = mul(x2, x);
        let x12 = square(square(x3));
        let x15 = mul(x12, x3);
        let x240 = square(square(square(square(x15))));
        mul(mul(x240, x12), x2)
    }

    /// The S-box applied to each of the eight bytes.
    #[inline(always)]
    pub(super) fn sbox(x: u64) -> u64 {
        affine(inv(affine(x)))
    }
}

/// The round function on four words: τ (the S-box on every byte) then L.
#[inline(always)]
fn round_t4(x: [u32; 2]) -> [u32; 2] {
    let s = swar::sbox((u64::from(x[0]) << 32) | u64::from(x[1]));
    [l((s >> 32) as u32), l(s as u32)]
}

/// τ on one word for the key schedule: AES-NI when present, else the portable S-box.
fn tau(x: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if aesni() {
        // SAFETY: the features were just detected.
        return unsafe { x86::tau(x) };
    }
    (swar::sbox(u64::from(x)) & 0xffff_ffff) as u32
}

fn key_t(x: u32) -> u32 {
    let s = tau(x);
    s ^ s.rotate_left(13) ^ s.rotate_left(23)
}

/// Which implementation this CPU runs: `"gfni-avx2"`, `"aes-ni"` or `"portable"`.
pub fn path() -> &'static str {
    match Path::detect() {
        Path::Gfni => "gfni-avx2",
        Path::AesNi => "aes-ni",
        Path::Portable => "portable",
    }
}

/// The implementations, fastest first; each is constant time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// GFNI affine instructions on AVX2 registers, eight blocks per register.
    Gfni,
    /// AES-NI's S-box between nibble-shuffle affine maps, four blocks per register.
    AesNi,
    /// GF(2⁸) inversion in 64-bit words.
    Portable,
}

impl Path {
    fn detect() -> Path {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("gfni")
            && std::arch::is_x86_feature_detected!("avx2")
        {
            return Path::Gfni;
        }
        if aesni() { Path::AesNi } else { Path::Portable }
    }
}

fn aesni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// SM4 for encryption, in batches of four to sixteen blocks.
#[derive(Clone)]
pub struct Sm4T {
    rk: [u32; 32],
    /// The implementation (chosen once, at key set-up).
    path: Path,
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
        zeroize::Zeroize::zeroize(&mut k);
        Sm4T {
            rk,
            path: Path::detect(),
        }
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

impl Sm4T {
    /// Encrypt a multiple of four blocks, at most 32, in place.
    pub(crate) fn encrypt_batch(&self, blocks: &mut [[u8; 16]]) {
        assert!(
            blocks.len().is_multiple_of(4) && blocks.len() <= 32,
            "SM4 batches are 4 to 32 blocks, a multiple of 4"
        );
        #[cfg(target_arch = "x86_64")]
        if self.path == Path::Gfni {
            // SAFETY: the CPU has GFNI and AVX2 (checked when the key was set up).
            unsafe {
                if blocks.len() > 16 {
                    x86::encrypt_gfni::<4>(&self.rk, blocks);
                } else if blocks.len() > 8 {
                    x86::encrypt_gfni::<2>(&self.rk, blocks);
                } else {
                    x86::encrypt_gfni::<1>(&self.rk, blocks);
                }
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if self.path == Path::AesNi {
            for chunk in blocks.chunks_mut(16) {
                // SAFETY: the CPU has AES-NI and SSSE3 (checked when the key was set up).
                unsafe {
                    match chunk.len() {
                        16 => x86::encrypt::<4>(&self.rk, chunk),
                        12 => x86::encrypt::<3>(&self.rk, chunk),
                        8 => x86::encrypt::<2>(&self.rk, chunk),
                        _ => x86::encrypt::<1>(&self.rk, chunk),
                    }
                }
            }
            return;
        }
        for chunk in blocks.chunks_mut(16) {
            self.encrypt_portable(chunk);
        }
    }

    /// Two words of S-box per `u64`; round-major so the core overlaps the blocks.
    fn encrypt_portable(&self, blocks: &mut [[u8; 16]]) {
        let mut x = [[0u32; 4]; 16];
        let x = &mut x[..blocks.len()];
        for (s, b) in x.iter_mut().zip(blocks.iter()) {
            *s = load(b);
        }
        for i in 0..32 {
            let j = i % 4;
            let rk = self.rk[i];
            for pair in x.chunks_exact_mut(2) {
                let t = |s: &[u32; 4]| s[(j + 1) % 4] ^ s[(j + 2) % 4] ^ s[(j + 3) % 4] ^ rk;
                let [a, b] = round_t4([t(&pair[0]), t(&pair[1])]);
                pair[0][j] ^= a;
                pair[1][j] ^= b;
            }
        }
        for (s, b) in x.iter().zip(blocks.iter_mut()) {
            store(s, b);
        }
    }
}

impl BlockCipherEncBackend for Sm4T {
    #[inline]
    fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
        let mut buf = [[0u8; 16]; 4];
        buf[0].copy_from_slice(block.get_in());
        self.encrypt_batch(&mut buf);
        block.get_out().copy_from_slice(&buf[0]);
        zeroize::Zeroize::zeroize(&mut buf);
    }

    #[inline]
    fn encrypt_par_blocks(&self, mut blocks: InOut<'_, '_, ParBlocks<Self>>) {
        let mut buf = [[0u8; 16]; 8];
        for (n, b) in buf.iter_mut().enumerate() {
            b.copy_from_slice(blocks.get(n).get_in());
        }
        self.encrypt_batch(&mut buf);
        for (n, b) in buf.iter().enumerate() {
            blocks.get(n).get_out().copy_from_slice(b);
        }
        zeroize::Zeroize::zeroize(&mut buf);
    }
}

/// SM4 on AES-NI: the SM4 and AES S-boxes are both inversion in GF(2⁸) between affine maps, over
/// isomorphic fields, so `S_sm4(x) = g(S_aes(f(x)))` for affine `f`, `g` (derived with the field
/// isomorphism that sends SM4's generator to 0x23 in AES's field). `f` and `g` run as two 16-entry
/// nibble shuffles each and `AESENCLAST` (preceded by InvShiftRows, with a zero round key) is the
/// AES S-box on 16 bytes: no memory lookup depends on a secret. Four blocks per register, word i of
/// each block in lane i after a transpose, up to four registers' worth interleaved. With GFNI the
/// same maps are `GF2P8AFFINEQB` and `GF2P8AFFINEINVQB` on AVX2 registers (`encrypt_gfni`).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    const PRE_LO: [u8; 16] = [
        0x3e, 0xb2, 0x0e, 0x82, 0xbb, 0x37, 0x8b, 0x07, 0xa1, 0x2d, 0x91, 0x1d, 0x24, 0xa8, 0x14,
        0x98,
    ];
    const PRE_HI: [u8; 16] = [
        0x00, 0xdc, 0x2e, 0xf2, 0xc5, 0x19, 0xeb, 0x37, 0x08, 0xd4, 0x26, 0xfa, 0xcd, 0x11, 0xe3,
        0x3f,
    ];
    const POST_LO: [u8; 16] = [
        0x6c, 0xd4, 0xa6, 0x1e, 0x52, 0xea, 0x98, 0x20, 0x0b, 0xb3, 0xc1, 0x79, 0x35, 0x8d, 0xff,
        0x47,
    ];
    const POST_HI: [u8; 16] = [
        0x00, 0xe0, 0x50, 0xb0, 0x9d, 0x7d, 0xcd, 0x2d, 0xc0, 0x20, 0x90, 0x70, 0x5d, 0xbd, 0x0d,
        0xed,
    ];

    /// Byte shuffles: InvShiftRows on the AES state (byte r + 4c ← r + 4((c − r) mod 4)), and
    /// per-32-bit-lane byte swap and rotations by 8, 16 and 24 bits.
    macro_rules! shuffle {
        (|$i:ident| $e:expr) => {{
            let mut m = [0u8; 16];
            let mut $i = 0;
            while $i < 16 {
                m[$i] = ($e) as u8;
                $i += 1;
            }
            m
        }};
    }
    const INV_SHIFT_ROWS: [u8; 16] = shuffle!(|i| (i % 4) + 4 * ((i / 4 + 4 - i % 4) % 4));
    const BSWAP32: [u8; 16] = shuffle!(|i| (i & !3) + 3 - (i & 3));
    const ROL8: [u8; 16] = shuffle!(|i| (i & !3) + (i + 3) % 4);
    const ROL16: [u8; 16] = shuffle!(|i| (i & !3) + (i + 2) % 4);
    const ROL24: [u8; 16] = shuffle!(|i| (i & !3) + (i + 1) % 4);

    #[inline(always)]
    fn v(b: [u8; 16]) -> __m128i {
        // SAFETY: unaligned load of 16 bytes from a 16-byte array.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    struct K {
        pre_lo: __m128i,
        pre_hi: __m128i,
        post_lo: __m128i,
        post_hi: __m128i,
        isr: __m128i,
        rol8: __m128i,
        rol16: __m128i,
        rol24: __m128i,
        nib: __m128i,
    }

    #[inline]
    #[target_feature(enable = "aes,ssse3")]
    fn sbox(k: &K, t: __m128i) -> __m128i {
        let t = _mm_shuffle_epi8(t, k.isr);
        let lo = _mm_and_si128(t, k.nib);
        let hi = _mm_and_si128(_mm_srli_epi16(t, 4), k.nib);
        let y = _mm_xor_si128(
            _mm_shuffle_epi8(k.pre_lo, lo),
            _mm_shuffle_epi8(k.pre_hi, hi),
        );
        let y = _mm_aesenclast_si128(y, _mm_setzero_si128());
        let lo = _mm_and_si128(y, k.nib);
        let hi = _mm_and_si128(_mm_srli_epi16(y, 4), k.nib);
        _mm_xor_si128(
            _mm_shuffle_epi8(k.post_lo, lo),
            _mm_shuffle_epi8(k.post_hi, hi),
        )
    }

    /// τ then L: `L(b) = b ⊕ (b ⋘ 2) ⊕ (b ⋘ 10) ⊕ (b ⋘ 18) ⊕ (b ⋘ 24)`, with the three middle
    /// terms as `(b ⊕ b ⋘ 8 ⊕ b ⋘ 16) ⋘ 2`.
    #[inline]
    #[target_feature(enable = "aes,ssse3")]
    fn round(k: &K, t: __m128i) -> __m128i {
        let b = sbox(k, t);
        let a = _mm_xor_si128(
            _mm_xor_si128(b, _mm_shuffle_epi8(b, k.rol8)),
            _mm_shuffle_epi8(b, k.rol16),
        );
        let a2 = _mm_or_si128(_mm_slli_epi32(a, 2), _mm_srli_epi32(a, 30));
        _mm_xor_si128(_mm_xor_si128(b, a2), _mm_shuffle_epi8(b, k.rol24))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn transpose(r: [__m128i; 4]) -> [__m128i; 4] {
        let t0 = _mm_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm_unpacklo_epi32(r[2], r[3]);
        let t2 = _mm_unpackhi_epi32(r[0], r[1]);
        let t3 = _mm_unpackhi_epi32(r[2], r[3]);
        [
            _mm_unpacklo_epi64(t0, t1),
            _mm_unpackhi_epi64(t0, t1),
            _mm_unpacklo_epi64(t2, t3),
            _mm_unpackhi_epi64(t2, t3),
        ]
    }

    /// The S-box alone on 16 bytes, for the tests.
    #[cfg(test)]
    #[target_feature(enable = "aes,ssse3")]
    pub(super) fn sbox16(x: [u8; 16]) -> [u8; 16] {
        let k = consts();
        // The S-box sees InvShiftRows-permuted input only to undo AESENCLAST's ShiftRows.
        let r = sbox(&k, v(x));
        let mut out = [0u8; 16];
        // SAFETY: unaligned store of 16 bytes into a 16-byte array.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), r) };
        out
    }

    #[inline]
    #[target_feature(enable = "aes,ssse3")]
    fn consts() -> K {
        K {
            pre_lo: v(PRE_LO),
            pre_hi: v(PRE_HI),
            post_lo: v(POST_LO),
            post_hi: v(POST_HI),
            isr: v(INV_SHIFT_ROWS),
            rol8: v(ROL8),
            rol16: v(ROL16),
            rol24: v(ROL24),
            nib: _mm_set1_epi8(0x0f),
        }
    }

    /// Encrypt `4 * SETS` blocks: each set is four blocks transposed into four registers, the sets
    /// interleaved round by round so the core overlaps their dependency chains.
    ///
    /// # Safety
    /// The CPU must support AES-NI and SSSE3.
    #[target_feature(enable = "aes,ssse3")]
    pub(super) unsafe fn encrypt<const SETS: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
        debug_assert_eq!(blocks.len(), 4 * SETS);
        let k = consts();
        let bswap = v(BSWAP32);
        let ld = |b: &[u8; 16]| _mm_shuffle_epi8(v(*b), bswap);
        let mut x: [[__m128i; 4]; SETS] =
            std::array::from_fn(|s| transpose(std::array::from_fn(|w| ld(&blocks[4 * s + w]))));
        for (i, &key) in rk.iter().enumerate() {
            let j = i % 4;
            let key = _mm_set1_epi32(key as i32);
            for s in x.iter_mut() {
                let t = _mm_xor_si128(
                    _mm_xor_si128(s[(j + 1) % 4], s[(j + 2) % 4]),
                    _mm_xor_si128(s[(j + 3) % 4], key),
                );
                s[j] = _mm_xor_si128(s[j], round(&k, t));
            }
        }
        for (set, out) in x.iter().zip(blocks.chunks_exact_mut(4)) {
            let o = transpose([set[3], set[2], set[1], set[0]]);
            for (b, r) in out.iter_mut().zip(o) {
                let r = _mm_shuffle_epi8(r, bswap);
                // SAFETY: unaligned store of 16 bytes into a 16-byte block.
                unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), r) };
            }
        }
    }

    /// The affine maps around AES-field inversion for GFNI: `S_sm4(x) = M2·inv(M1·x ⊕ 0x3E) ⊕ 0xD3`,
    /// `M1 = T·A`, `M2 = A·T⁻¹` (A SM4's affine matrix, T the field isomorphism); byte 7 − i of
    /// each matrix is the row of output bit i, as `GF2P8AFFINEQB` reads it.
    const GFNI_M1: i64 = 0x4c28_7db9_1a22_505d;
    const GFNI_M2: i64 = 0xf3ab_34a9_74a6_b589_u64 as i64;

    #[inline]
    #[target_feature(enable = "avx2,gfni")]
    fn sbox_gfni(t: __m256i) -> __m256i {
        let y = _mm256_gf2p8affine_epi64_epi8::<0x3e>(t, _mm256_set1_epi64x(GFNI_M1));
        _mm256_gf2p8affineinv_epi64_epi8::<0xd3>(y, _mm256_set1_epi64x(GFNI_M2))
    }

    /// The S-box alone on 32 bytes through GFNI, for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx2,gfni")]
    pub(super) fn sbox32(x: [u8; 32]) -> [u8; 32] {
        // SAFETY: unaligned load and store of 32 bytes from and into 32-byte arrays.
        unsafe {
            let r = sbox_gfni(_mm256_loadu_si256(x.as_ptr().cast()));
            let mut out = [0u8; 32];
            _mm256_storeu_si256(out.as_mut_ptr().cast(), r);
            out
        }
    }

    /// Up to `8 * SETS` blocks: in each set, word i of block n is lane n of register i; the
    /// sets interleave round by round. Missing blocks are zeros and are not written back.
    ///
    /// # Safety
    /// The CPU must support AVX2 and GFNI.
    #[target_feature(enable = "avx2,gfni")]
    pub(super) unsafe fn encrypt_gfni<const SETS: usize>(rk: &[u32; 32], blocks: &mut [[u8; 16]]) {
        debug_assert!(blocks.len() <= 8 * SETS);
        let mut w = [[[0u32; 8]; 4]; SETS];
        for (n, b) in blocks.iter().enumerate() {
            for (i, word) in w[n / 8].iter_mut().enumerate() {
                word[n % 8] =
                    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            }
        }
        // SAFETY: unaligned loads of 32 bytes from `[u32; 8]` arrays.
        let mut x: [[__m256i; 4]; SETS] = std::array::from_fn(|s| {
            std::array::from_fn(|i| unsafe { _mm256_loadu_si256(w[s][i].as_ptr().cast()) })
        });
        let lanes = |m: [u8; 16]| {
            // SAFETY: unaligned load of 16 bytes from a 16-byte array.
            let h = unsafe { _mm_loadu_si128(m.as_ptr().cast()) };
            _mm256_broadcastsi128_si256(h)
        };
        let (rol8, rol16, rol24) = (lanes(ROL8), lanes(ROL16), lanes(ROL24));
        for (i, &key) in rk.iter().enumerate() {
            let j = i % 4;
            let key = _mm256_set1_epi32(key as i32);
            for x in x.iter_mut() {
                let t = _mm256_xor_si256(
                    _mm256_xor_si256(x[(j + 1) % 4], x[(j + 2) % 4]),
                    _mm256_xor_si256(x[(j + 3) % 4], key),
                );
                let b = sbox_gfni(t);
                let a = _mm256_xor_si256(
                    _mm256_xor_si256(b, _mm256_shuffle_epi8(b, rol8)),
                    _mm256_shuffle_epi8(b, rol16),
                );
                let a2 = _mm256_or_si256(_mm256_slli_epi32(a, 2), _mm256_srli_epi32(a, 30));
                let l = _mm256_xor_si256(_mm256_xor_si256(b, a2), _mm256_shuffle_epi8(b, rol24));
                x[j] = _mm256_xor_si256(x[j], l);
            }
        }
        for (ws, xs) in w.iter_mut().zip(x.iter()) {
            for (word, reg) in ws.iter_mut().zip(xs) {
                // SAFETY: unaligned store of 32 bytes into a `[u32; 8]` array.
                unsafe { _mm256_storeu_si256(word.as_mut_ptr().cast(), *reg) };
            }
        }
        for (n, b) in blocks.iter_mut().enumerate() {
            // The output is (X35, X34, X33, X32): words in reverse order.
            for i in 0..4 {
                b[4 * i..4 * i + 4].copy_from_slice(&w[n / 8][3 - i][n % 8].to_be_bytes());
            }
        }
        for ws in w.iter_mut() {
            ws.iter_mut().for_each(|a| a.fill(0));
        }
    }

    /// The key schedule's τ on one word (the S-box on its four bytes).
    ///
    /// # Safety
    /// The CPU must support AES-NI and SSSE3.
    #[target_feature(enable = "aes,ssse3")]
    pub(super) unsafe fn tau(x: u32) -> u32 {
        let k = consts();
        _mm_cvtsi128_si32(sbox(&k, _mm_set1_epi32(x as i32))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_free_sboxes_match_the_standard() {
        for chunk in 0..32u8 {
            let bytes: [u8; 8] = std::array::from_fn(|i| chunk * 8 + i as u8);
            let got = swar::sbox(u64::from_le_bytes(bytes)).to_le_bytes();
            let want = bytes.map(|b| SBOX[b as usize]);
            assert_eq!(got, want, "swar S-box on {bytes:02x?}");
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("ssse3")
        {
            for chunk in 0..16u8 {
                let bytes: [u8; 16] = std::array::from_fn(|i| chunk * 16 + i as u8);
                // SAFETY: the features were detected above.
                let got = unsafe { x86::sbox16(bytes) };
                assert_eq!(got, bytes.map(|b| SBOX[b as usize]), "AES-NI S-box");
            }
        }
        #[cfg(target_arch = "x86_64")]
        if Path::detect() == Path::Gfni {
            for chunk in 0..8u8 {
                let bytes: [u8; 32] = std::array::from_fn(|i| chunk * 32 + i as u8);
                // SAFETY: the features were detected.
                let got = unsafe { x86::sbox32(bytes) };
                assert_eq!(got, bytes.map(|b| SBOX[b as usize]), "GFNI S-box");
            }
        }
    }

    /// Every path this CPU can run, the one it picks first.
    fn each_path(key: &[u8; 16]) -> Vec<Sm4T> {
        let c = Sm4T::new(&(*key).into());
        let mut paths = vec![c.clone()];
        for p in [Path::AesNi, Path::Portable] {
            if p != c.path && (p != Path::AesNi || aesni()) {
                let mut other = c.clone();
                other.path = p;
                paths.push(other);
            }
        }
        paths
    }

    #[test]
    fn every_batch_size_on_every_path() {
        let key = [0x5au8; 16];
        let reference = <sm4::Sm4 as sm4::cipher::KeyInit>::new(&key.into());
        for c in each_path(&key) {
            for n in [4usize, 8, 12, 16, 20, 24, 28, 32] {
                let mut blocks: Vec<[u8; 16]> = (0..n).map(|i| [i as u8 ^ 0x33; 16]).collect();
                let mut want = blocks.clone();
                c.encrypt_batch(&mut blocks);
                for b in want.iter_mut() {
                    let b: &mut Block<Sm4T> = b.into();
                    sm4::cipher::BlockCipherEncrypt::encrypt_block(&reference, b);
                }
                assert_eq!(blocks, want, "{n} blocks on {:?}", c.path);
            }
        }
    }

    #[test]
    fn matches_the_standard_and_the_sm4_crate() {
        let key: [u8; 16] = hex::decode("0123456789abcdeffedcba9876543210")
            .unwrap()
            .try_into()
            .unwrap();
        for c in each_path(&key) {
            let mut b: Block<Sm4T> = key.into();
            BlockCipherEncrypt::encrypt_block(&c, &mut b);
            assert_eq!(
                hex::encode(b),
                "681edf34d206965e86b3e94f536e4246",
                "GB/T 32907 Appendix A.1"
            );
        }
        for seed in 0..20u8 {
            let key: [u8; 16] = std::array::from_fn(|i| seed.wrapping_mul(97) ^ (i as u8 * 13));
            let reference = <sm4::Sm4 as sm4::cipher::KeyInit>::new(&key.into());
            for c in each_path(&key) {
                let mut blocks: Vec<Block<Sm4T>> = (0..37u8)
                    .map(|i| std::array::from_fn(|j| i.wrapping_mul(29) ^ seed ^ j as u8).into())
                    .collect();
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
    }
}
