//! Key material, by role: [`PlaintextDataKey`], [`WrappedDataKey`] and [`KeyEncryptionKey`].
//!
//! The types make the roles impossible to confuse: a wrapped data key is plain bytes that may be
//! stored and logged, a plaintext data key and a key-encryption key are secrets that are not
//! `Clone`, are zeroized on drop and print as `[REDACTED]`.

use std::fmt;

use kms_types::secret::{REDACTED, SecretBytes};
use kms_types::types::KeySpec;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::rand::fill as fill_random;

/// A data key in the clear: the key that encrypts an object.
///
/// Not `Clone`, zeroized on drop, redacted in `Debug`. Its length is that of a [`KeySpec`]
/// (16 or 32 bytes).
pub struct PlaintextDataKey {
    bytes: Zeroizing<Vec<u8>>,
    spec: KeySpec,
}

impl PlaintextDataKey {
    /// A fresh random key of `spec`'s length from the system random number generator.
    pub fn generate(spec: KeySpec) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; spec.key_len()]);
        fill_random(&mut bytes)?;
        Ok(Self { bytes, spec })
    }

    /// A copy of `bytes` as a data key; its length must be 16 (AES-128) or 32 (AES-256).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let spec =
            spec_for_len(bytes.len()).ok_or(CryptoError::invalid("data_key", "a data key is 16 or 32 bytes long"))?;
        Ok(Self { bytes: Zeroizing::new(bytes.to_vec()), spec })
    }

    /// The key's specification, from its length.
    pub fn key_spec(&self) -> KeySpec {
        self.spec
    }

    /// The key bytes. Call sites of this function are the places to audit.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as [`SecretBytes`] (for a `GenerateDataKey` response), without a copy.
    pub fn into_secret_bytes(mut self) -> SecretBytes {
        SecretBytes::new(std::mem::take(&mut *self.bytes))
    }
}

fn spec_for_len(len: usize) -> Option<KeySpec> {
    [KeySpec::Aes256, KeySpec::Aes128].into_iter().find(|spec| spec.key_len() == len)
}

impl fmt::Debug for PlaintextDataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlaintextDataKey").field("spec", &self.spec).field("bytes", &REDACTED).finish()
    }
}

/// A data key wrapped (encrypted) under a master key: opaque bytes, safe to store next to the
/// object and to print.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WrappedDataKey(Vec<u8>);

impl WrappedDataKey {
    /// The wrapped bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The wrapped bytes, by value.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl From<Vec<u8>> for WrappedDataKey {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl AsRef<[u8]> for WrappedDataKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A key-encryption key: one version of a master key, 32 bytes, used with AES-256-GCM to wrap
/// data keys ([`crate::envelope`]).
///
/// Not `Clone`, zeroized on drop, redacted in `Debug`.
pub struct KeyEncryptionKey(Zeroizing<[u8; KeyEncryptionKey::LEN]>);

impl KeyEncryptionKey {
    /// Length of a key-encryption key in bytes.
    pub const LEN: usize = 32;
    /// The one algorithm a key-encryption key is used with; an envelope naming another is
    /// refused (a key is never used with two algorithms).
    pub const ALGORITHM: crate::aead::Algorithm = crate::aead::Algorithm::Aes256Gcm;

    /// A fresh random key from the system random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; Self::LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self(bytes))
    }

    /// A copy of `bytes` as a key-encryption key; it must be exactly 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; Self::LEN]);
        if bytes.len() != Self::LEN {
            return Err(CryptoError::invalid("key_encryption_key", "a key-encryption key is 32 bytes long"));
        }
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// The key bytes (to persist them sealed, for example). Call sites are the places to audit.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyEncryptionKey").field(&REDACTED).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_spec_length_and_differ() {
        let a = PlaintextDataKey::generate(KeySpec::Aes256).unwrap();
        let b = PlaintextDataKey::generate(KeySpec::Aes256).unwrap();
        assert_eq!(a.expose_secret().len(), 32);
        assert_ne!(a.expose_secret(), b.expose_secret());
        let short = PlaintextDataKey::generate(KeySpec::Aes128).unwrap();
        assert_eq!(short.expose_secret().len(), 16);
        assert_eq!(short.key_spec(), KeySpec::Aes128);
        assert_ne!(KeyEncryptionKey::generate().unwrap().expose_secret(), [0u8; 32]);
    }

    #[test]
    fn from_bytes_checks_lengths() {
        assert_eq!(PlaintextDataKey::from_bytes(&[7; 32]).unwrap().key_spec(), KeySpec::Aes256);
        assert_eq!(PlaintextDataKey::from_bytes(&[7; 16]).unwrap().key_spec(), KeySpec::Aes128);
        for len in [0, 1, 15, 17, 31, 33, 64] {
            assert!(matches!(
                PlaintextDataKey::from_bytes(&vec![7; len]),
                Err(CryptoError::InvalidArgument { field: "data_key", .. })
            ));
        }
        KeyEncryptionKey::from_bytes(&[1; 32]).unwrap();
        let wrong_length = CryptoError::InvalidArgument {
            field: "key_encryption_key",
            message: "a key-encryption key is 32 bytes long",
        };
        assert_eq!(KeyEncryptionKey::from_bytes(&[1; 31]).err(), Some(wrong_length));
        assert_eq!(KeyEncryptionKey::from_bytes(&[1; 33]).err(), Some(wrong_length));
    }

    #[test]
    fn debug_is_redacted() {
        let dk = PlaintextDataKey::from_bytes(&[0xAB; 32]).unwrap();
        let kek = KeyEncryptionKey::from_bytes(&[0xCD; 32]).unwrap();
        let printed = format!("{dk:?} {kek:?} {dk:#?} {kek:#?}");
        assert!(printed.contains(REDACTED));
        assert!(!printed.contains("171") && !printed.contains("205"), "{printed}");
    }

    #[test]
    fn into_secret_bytes_keeps_the_key() {
        let dk = PlaintextDataKey::from_bytes(&[9; 16]).unwrap();
        assert_eq!(dk.into_secret_bytes().expose_secret(), &[9; 16]);
    }

    #[test]
    fn wrapped_keys_are_plain_bytes() {
        let wrapped = WrappedDataKey::from(vec![1, 2, 3]);
        assert_eq!(wrapped.as_bytes(), &[1, 2, 3]);
        assert_eq!(wrapped.clone().into_vec(), vec![1, 2, 3]);
        assert_eq!(format!("{wrapped:?}"), "WrappedDataKey([1, 2, 3])");
    }
}
