//! Authenticated encryption with random nonces: [`Algorithm`] and [`RandomNonceKey`].
//!
//! A [`RandomNonceKey`] seals small records (a key record on disk) with a fresh
//! random 96-bit nonce each time and writes `nonce ‖ ciphertext ‖ tag`. Random nonces are safe
//! for up to about 2³² messages per key; bulk data goes through [`crate::stream`], whose
//! per-object keys make counter nonces safe instead.

use std::fmt;

use ring::aead::{self as ring_aead, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::rand::fill as fill_random;

/// Length of every key used with an [`Algorithm`], in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a nonce, in bytes.
pub const NONCE_LEN: usize = 12;
/// Length of an authentication tag, in bytes.
pub const TAG_LEN: usize = 16;

/// An AEAD algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256 in Galois/Counter mode (the default; hardware-accelerated on current CPUs).
    #[default]
    Aes256Gcm,
    /// ChaCha20-Poly1305 (fast without AES instructions).
    ChaCha20Poly1305,
}

impl Algorithm {
    /// Every algorithm, in identifier order.
    pub const ALL: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305];

    /// The one-byte identifier written into the envelope and stream headers.
    pub const fn id(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
            Self::ChaCha20Poly1305 => 2,
        }
    }

    /// The algorithm with identifier `id`, if any.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Aes256Gcm),
            2 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The algorithm's name as the S3 and KMS APIs spell it (`AES256_GCM`, `CHACHA20_POLY1305`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "AES256_GCM",
            Self::ChaCha20Poly1305 => "CHACHA20_POLY1305",
        }
    }

    pub(crate) fn ring(self) -> &'static ring_aead::Algorithm {
        match self {
            Self::Aes256Gcm => &ring_aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &ring_aead::CHACHA20_POLY1305,
        }
    }

    /// A ring key for this algorithm; `key` must be [`KEY_LEN`] bytes.
    pub(crate) fn less_safe_key(self, key: &[u8]) -> Result<LessSafeKey, CryptoError> {
        let unbound = UnboundKey::new(self.ring(), key)
            .map_err(|_| CryptoError::invalid("key", "an AEAD key is 32 bytes long"))?;
        Ok(LessSafeKey::new(unbound))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An AEAD key that draws a fresh random nonce for every message it seals.
///
/// Sealed layout: `nonce (12) ‖ ciphertext ‖ tag (16)`. Not `Clone`; `Debug` shows only the
/// algorithm (ring zeroizes nothing, but holds the expanded key only inside this value).
pub struct RandomNonceKey {
    key: LessSafeKey,
    algorithm: Algorithm,
}

impl RandomNonceKey {
    /// Bytes a sealed message is longer than its plaintext.
    pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

    /// A key for `algorithm` from `key` ([`KEY_LEN`] bytes).
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self { key: algorithm.less_safe_key(key)?, algorithm })
    }

    /// The algorithm of this key.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Seals `plaintext` with `aad`: returns `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.seal_with_nonce(random_nonce()?, aad, plaintext)
    }

    /// Seals in place: `in_out` holds the plaintext and becomes `nonce ‖ ciphertext ‖ tag`.
    ///
    /// The ciphertext is written over the plaintext; only the nonce prefix moves bytes.
    pub fn seal_in_place(&self, aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let nonce = random_nonce()?;
        in_out.reserve(Self::OVERHEAD);
        let tag = self.key.seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)?;
        in_out.splice(0..0, nonce);
        in_out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `sealed` (`nonce ‖ ciphertext ‖ tag`) with `aad`; the plaintext is zeroized on drop.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut buf = Zeroizing::new(sealed.to_vec());
        let len = self.open_in_place(aad, &mut buf)?.len();
        buf.copy_within(NONCE_LEN..NONCE_LEN + len, 0);
        buf.truncate(len);
        Ok(buf)
    }

    /// Opens in place: `in_out` holds `nonce ‖ ciphertext ‖ tag`; returns the plaintext, which
    /// is the part of `in_out` right after the nonce. On failure the bytes of `in_out` are
    /// unspecified (ring overwrites them) and must be discarded.
    pub fn open_in_place<'a>(&self, aad: &[u8], in_out: &'a mut [u8]) -> Result<&'a mut [u8], CryptoError> {
        if in_out.len() < Self::OVERHEAD {
            return Err(CryptoError::Malformed);
        }
        let (nonce, rest) = in_out.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
        Ok(self.key.open_in_place(nonce, Aad::from(aad), rest)?)
    }

    /// Seals with a chosen nonce (known-answer tests and formats that carry their own nonce).
    pub(crate) fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + Self::OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }
}

impl fmt::Debug for RandomNonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RandomNonceKey").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(algorithm: Algorithm) -> RandomNonceKey {
        RandomNonceKey::new(algorithm, &[0x42; KEY_LEN]).unwrap()
    }

    #[test]
    fn round_trips_both_algorithms_all_apis() {
        for alg in Algorithm::ALL {
            let k = key(alg);
            for len in [0usize, 1, 15, 16, 17, 4096] {
                let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let sealed = k.seal(b"aad", &pt).unwrap();
                assert_eq!(sealed.len(), len + RandomNonceKey::OVERHEAD);
                assert_eq!(&*k.open(b"aad", &sealed).unwrap(), &pt);

                let mut buf = pt.clone();
                k.seal_in_place(b"aad", &mut buf).unwrap();
                assert_eq!(buf.len(), len + RandomNonceKey::OVERHEAD);
                assert_eq!(k.open_in_place(b"aad", &mut buf).unwrap(), &pt[..]);
            }
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let k = key(Algorithm::Aes256Gcm);
        assert_ne!(k.seal(b"", b"same").unwrap(), k.seal(b"", b"same").unwrap());
    }

    #[test]
    fn refuses_wrong_aad_key_algorithm_and_tampering() {
        let k = key(Algorithm::Aes256Gcm);
        let sealed = k.seal(b"aad", b"secret record").unwrap();
        assert_eq!(k.open(b"aaD", &sealed).unwrap_err(), CryptoError::Unauthenticated);
        let other = RandomNonceKey::new(Algorithm::Aes256Gcm, &[0x43; KEY_LEN]).unwrap();
        assert_eq!(other.open(b"aad", &sealed).unwrap_err(), CryptoError::Unauthenticated);
        assert_eq!(key(Algorithm::ChaCha20Poly1305).open(b"aad", &sealed).unwrap_err(), CryptoError::Unauthenticated);
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let r = k.open(b"aad", &bad);
            assert!(matches!(r, Err(CryptoError::Malformed | CryptoError::Unauthenticated)), "bit {i}: {r:?}");
        }
        for len in 0..sealed.len() {
            // Shorter than nonce + tag is not a sealed record at all; longer ones fail the tag.
            let expected =
                if len < RandomNonceKey::OVERHEAD { CryptoError::Malformed } else { CryptoError::Unauthenticated };
            assert_eq!(k.open(b"aad", &sealed[..len]).unwrap_err(), expected, "truncated to {len}");
        }
        assert_eq!(k.open(b"aad", &[0; 27]).unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn rejects_short_keys_and_hides_them_in_debug() {
        assert!(matches!(
            RandomNonceKey::new(Algorithm::Aes256Gcm, &[0; 16]),
            Err(CryptoError::InvalidArgument { .. })
        ));
        let printed = format!("{:?}", key(Algorithm::ChaCha20Poly1305));
        assert_eq!(printed, "RandomNonceKey { algorithm: ChaCha20Poly1305, .. }");
    }

    #[test]
    fn algorithm_ids_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_id(alg.id()), Some(alg));
        }
        assert_eq!(Algorithm::from_id(0), None);
        assert_eq!(Algorithm::from_id(3), None);
    }
}
