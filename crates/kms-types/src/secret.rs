//! Secret holders: zeroized on drop, redacted in `Debug`, never `Display`.
//!
//! They serialize to their real value (serde is a data channel, e.g. the HTTP response that
//! hands a caller its plaintext data key); anything that *prints* must go through `Debug`,
//! which never shows the contents. Configuration that is shown to operators is redacted
//! explicitly (`KmsConfig::redacted`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The text every secret prints as.
pub const REDACTED: &str = "[REDACTED]";

/// A secret string (a token, a secret id, a passphrase, a base64 master key).
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a string; the original allocation moves in and is zeroized on drop.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Call sites of this function are the places to audit.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString({REDACTED})")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Secret bytes (a plaintext data key, a plaintext to encrypt, a decrypted plaintext).
///
/// Not `Clone`: a copy of key material should be a deliberate act
/// (`SecretBytes::from(secret.expose_secret())`), not a side effect.
#[derive(Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized on drop.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes. Call sites of this function are the places to audit.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(value: Vec<u8>) -> Self {
        Self::new(value)
    }
}

impl From<&[u8]> for SecretBytes {
    fn from(value: &[u8]) -> Self {
        Self::new(value.to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({REDACTED}, {} bytes)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::serde_helpers::base64_bytes::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::serde_helpers::base64_bytes::deserialize(deserializer).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let token = SecretString::from("s.super-secret-token");
        let key = SecretBytes::from(vec![0xAB; 32]);
        let printed = format!("{token:?} {key:?} {:#?}", (&token, &key));
        assert!(!printed.contains("super-secret"), "{printed}");
        assert!(!printed.contains("171"), "{printed}");
        assert!(!printed.to_lowercase().contains("ab, ab"), "{printed}");
        assert!(printed.contains(REDACTED));
    }

    #[test]
    fn zeroize_clears_the_contents() {
        let mut token = SecretString::from("s.super-secret-token");
        token.zeroize();
        assert!(token.is_empty());
    }

    #[test]
    fn secret_bytes_round_trip_as_base64() {
        let key = SecretBytes::from(vec![1, 2, 3, 250]);
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"AQID+g==\"");
        let back: SecretBytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, key);
        let err = serde_json::from_str::<SecretBytes>("\"not base64!\"").unwrap_err();
        assert!(err.is_data(), "{err}");
    }
}
