//! RFC 9162 §2.1.1 hashing: domain-separated leaf and interior-node hashes over SHA-256.

/// A 32-byte SHA-256 tree hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    cf_crypto::sha256_parts(&[&[0u8], data])
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8], right: &[u8]) -> Hash {
    cf_crypto::sha256_parts(&[&[1u8], left, right])
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    cf_crypto::sha256(b"")
}
