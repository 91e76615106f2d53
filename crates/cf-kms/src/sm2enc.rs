//! SM2 public-key encryption (GB/T 32918.4, ciphertext order C1‖C3‖C2 with an uncompressed C1),
//! used for SM2 keys' encrypt/decrypt and for bring-your-own-key imports.

use zeroize::Zeroizing;

use crate::KmsError;
use cf_crypto::Rng;

/// Lets the injected platform [`Rng`] drive the RustCrypto SM2 code.
pub(crate) struct RngAdapter<'a>(pub &'a dyn Rng);

impl rand_core::TryRng for RngAdapter<'_> {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        // The platform's OS RNG failing is unrecoverable; SM2 with a zero nonce would leak the key,
        // so abort rather than continue with predictable bytes.
        if self.0.fill(dst).is_err() {
            panic!("operating system random source failed during SM2 encryption");
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for RngAdapter<'_> {}

/// Public key (SEC1 uncompressed, 65 bytes) of a 32-byte SM2 private key.
pub fn public_key(secret: &[u8]) -> Result<Vec<u8>, KmsError> {
    let dk = sm2::pke::DecryptingKey::from_slice(secret)
        .map_err(|_| KmsError::Invalid("SM2 private key is not a valid scalar".into()))?;
    Ok(dk.encrypting_key().to_sec1_bytes().to_vec())
}

/// A new SM2 private key (32 bytes), zeroised on drop.
pub fn generate(rng: &dyn Rng) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    loop {
        let mut b = Zeroizing::new(vec![0u8; 32]);
        rng.fill(&mut b)?;
        if sm2::pke::DecryptingKey::from_slice(&b).is_ok() {
            return Ok(b);
        }
    }
}

/// Encrypt to an SM2 public key (SEC1 bytes); output C1‖C3‖C2.
pub fn encrypt(public: &[u8], msg: &[u8], rng: &dyn Rng) -> Result<Vec<u8>, KmsError> {
    let ek = sm2::pke::EncryptingKey::from_sec1_bytes(public)
        .map_err(|_| KmsError::Invalid("not an SM2 public key (SEC1)".into()))?;
    ek.encrypt(&mut RngAdapter(rng), msg)
        .map_err(|_| KmsError::Invalid("SM2 encryption failed".into()))
}

/// Decrypt C1‖C3‖C2 with a 32-byte private key.
pub fn decrypt(secret: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let dk = sm2::pke::DecryptingKey::from_slice(secret)
        .map_err(|_| KmsError::Invalid("SM2 private key is not a valid scalar".into()))?;
    dk.decrypt(ct).map(Zeroizing::new).map_err(|_| {
        KmsError::Tampered("SM2 ciphertext does not decrypt (C3 mismatch or bad point)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cf_crypto::SeededRng;

    #[test]
    fn round_trip_and_tamper() {
        let rng = SeededRng::new(9);
        let sk = generate(&rng).unwrap();
        let pk = public_key(&sk).unwrap();
        let ct = encrypt(&pk, b"byok key material", &rng).unwrap();
        assert_eq!(&decrypt(&sk, &ct).unwrap()[..], b"byok key material");
        let mut bad = ct.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(decrypt(&sk, &bad).is_err());
    }
}
