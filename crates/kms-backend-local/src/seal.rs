//! The AEAD that seals key records and the verifier: AES-256-GCM, output nonce ‖ ct ‖ tag.
//!
//! Interim adapter over `ring` with the exact shape of `kms_crypto::aead`; it is replaced by
//! that module as soon as the crypto crate provides it.

use kms_types::error::KmsError;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// An AES-256-GCM key with random nonces.
pub(crate) struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(AES-256-GCM, [REDACTED])")
    }
}

impl SealingKey {
    /// A key from 32 bytes.
    pub(crate) fn new(bytes: &[u8; 32]) -> Result<Self, KmsError> {
        Ok(Self(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KmsError::crypto())?)))
    }

    /// Seals `plaintext` bound to `aad`; returns nonce ‖ ciphertext ‖ tag.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KmsError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| KmsError::crypto())?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
            .map_err(|_| KmsError::crypto())?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`; any mismatch is an opaque error.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(KmsError::crypto());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KmsError::crypto())?;
        let mut buf = Zeroizing::new(body.to_vec());
        let len = self.0.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| KmsError::crypto())?.len();
        buf.truncate(len);
        Ok(buf)
    }
}
