//! The ciphertext blob of the Vault backend, format version 1 (`docs/vault.md`).
//!
//! ```text
//! vault-kms:1:<key_id>:vault:v<N>:<base64(nonce ‖ ciphertext ‖ tag)>
//! ```
//!
//! ASCII. `vault-kms:1:` names the format and its version; `<key_id>` is the master key's id
//! (letters, digits, `-`, `_`, `.`; never `:`), which is also the Transit key's name; the rest
//! is the Transit ciphertext exactly as Transit returned it, so `N` is the Transit key version.
//! Stripping the prefix and key id gives a ciphertext that a direct `transit/decrypt/<key_id>`
//! call accepts, given the same `associated_data`.

use kms_types::error::{KmsError, Result};
use kms_types::types::validate_key_id;

/// Prefix of every version-1 blob.
pub const BLOB_PREFIX_V1: &str = "vault-kms:1:";

/// A parsed blob: the key it names and the Transit ciphertext it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultBlob {
    /// The master key id (= Transit key name).
    pub key_id: String,
    /// The Transit key version, parsed from the Transit ciphertext.
    pub key_version: u32,
    /// The Transit ciphertext, `vault:v<N>:<base64>`.
    pub transit_ciphertext: String,
}

impl VaultBlob {
    /// Encodes a blob for `key_id` around a Transit ciphertext; fails unless the ciphertext
    /// has the Transit shape (`vault:v<N>:...`).
    pub fn new(key_id: &str, transit_ciphertext: String) -> Result<Self> {
        let key_version = transit_version(&transit_ciphertext)
            .ok_or_else(|| KmsError::backend("Transit returned a ciphertext without a version prefix"))?;
        Ok(Self { key_id: key_id.to_owned(), key_version, transit_ciphertext })
    }

    /// The blob's bytes.
    pub fn encode(&self) -> Vec<u8> {
        format!("{BLOB_PREFIX_V1}{}:{}", self.key_id, self.transit_ciphertext).into_bytes()
    }

    /// Parses a blob. Anything that is not a well-formed version-1 blob is an opaque
    /// [`KmsError::Crypto`], as a foreign or tampered ciphertext must be.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(blob).map_err(|_| KmsError::crypto())?;
        let rest = text.strip_prefix(BLOB_PREFIX_V1).ok_or_else(KmsError::crypto)?;
        let (key_id, transit_ciphertext) = rest.split_once(':').ok_or_else(KmsError::crypto)?;
        validate_key_id("ciphertext_blob", key_id).map_err(|_| KmsError::crypto())?;
        let key_version = transit_version(transit_ciphertext).ok_or_else(KmsError::crypto)?;
        let body = &transit_ciphertext[transit_ciphertext.rfind(':').map_or(0, |i| i + 1)..];
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) {
            return Err(KmsError::crypto());
        }
        Ok(Self { key_id: key_id.to_owned(), key_version, transit_ciphertext: transit_ciphertext.to_owned() })
    }
}

/// `N` of a `vault:v<N>:<body>` Transit ciphertext (N ≥ 1).
fn transit_version(ciphertext: &str) -> Option<u32> {
    let rest = ciphertext.strip_prefix("vault:v")?;
    let (version, _body) = rest.split_once(':')?;
    if version.is_empty() || version.starts_with('0') || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vector of format version 1.
    const KAT_BLOB: &str = "vault-kms:1:app-key.1:vault:v3:q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ";

    #[test]
    fn known_answer_vector_round_trips() {
        let blob = VaultBlob::decode(KAT_BLOB.as_bytes()).unwrap();
        assert_eq!(blob.key_id, "app-key.1");
        assert_eq!(blob.key_version, 3);
        assert_eq!(blob.transit_ciphertext, "vault:v3:q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ");
        assert_eq!(blob.encode(), KAT_BLOB.as_bytes());
        let made = VaultBlob::new("app-key.1", "vault:v3:q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ".into()).unwrap();
        assert_eq!(made, blob);
    }

    #[test]
    fn malformed_blobs_are_opaque_crypto_errors() {
        for bad in [
            &b""[..],
            b"vault:v1:AAAA",
            b"vault-kms:2:k:vault:v1:AAAA",
            b"vault-kms:1:k",
            b"vault-kms:1::vault:v1:AAAA",
            b"vault-kms:1:../x:vault:v1:AAAA",
            b"vault-kms:1:k:vault:v0:AAAA",
            b"vault-kms:1:k:vault:v01:AAAA",
            b"vault-kms:1:k:vault:vx:AAAA",
            b"vault-kms:1:k:vault:v1:",
            b"vault-kms:1:k:vault:v1:AA AA",
            b"vault-kms:1:k:vault:v99999999999:AAAA",
            b"vault-kms:1:k:vault:v1:\xff",
            b"\xffvault-kms:1:k:vault:v1:AAAA",
        ] {
            let err = VaultBlob::decode(bad).unwrap_err();
            assert!(matches!(err, KmsError::Crypto { .. }), "{:?} -> {err:?}", String::from_utf8_lossy(bad));
            assert_eq!(err.to_string(), "cryptographic operation failed");
        }
    }

    #[test]
    fn new_rejects_a_transit_reply_without_version() {
        assert!(matches!(VaultBlob::new("k", "garbage".into()), Err(KmsError::Backend { .. })));
    }
}
