//! The migration reader of format 1: one JSON file per key, `<key_id>.key`, in the key
//! directory (`docs/formats.md`, "Local key records, format 1 (legacy, migrated on open)").
//!
//! Nothing writes this format any more. A key directory in it is migrated into the key store
//! once, when it is opened (`crate::store::migrate`); this module only reads those files.
//!
//! ```json
//! {"format":"kms-local-key","format_version":1,"key_id":"app-1","current_version":2,
//!  "protection":"aes_256_gcm","body":"<base64 of nonce ‖ ciphertext ‖ tag>"}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::master_key::RecordProtection;
use crate::record::{KeyRecord, RECORD_FORMAT, RecordError, parse_body, protection_byte};

/// The format version of the legacy files.
const LEGACY_FORMAT_VERSION: u16 = 1;
/// Domain separation prefix of the legacy associated data.
const LEGACY_AAD_PREFIX: &[u8] = b"kms-local/v1/key-record";
/// Suffix of legacy record files.
pub(crate) const LEGACY_SUFFIX: &str = ".key";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProtectionKind {
    #[serde(rename = "aes_256_gcm")]
    Aes256Gcm,
    InsecurePlaintextForDevelopment,
}

impl ProtectionKind {
    fn byte(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
            Self::InsecurePlaintextForDevelopment => 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    format_version: u16,
    key_id: String,
    current_version: u32,
    protection: ProtectionKind,
    body: String,
}

impl Header {
    /// `prefix ‖ u16 format_version ‖ u32 len(key_id) ‖ key_id ‖ u32 current_version ‖ u8 protection`.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(LEGACY_AAD_PREFIX.len() + 11 + self.key_id.len());
        aad.extend_from_slice(LEGACY_AAD_PREFIX);
        aad.extend_from_slice(&self.format_version.to_be_bytes());
        aad.extend_from_slice(&(self.key_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.key_id.as_bytes());
        aad.extend_from_slice(&self.current_version.to_be_bytes());
        aad.push(self.protection.byte());
        aad
    }
}

/// Reads a format 1 record file of `key_id`.
pub(crate) fn decode(key_id: &str, bytes: &[u8], protection: &RecordProtection) -> Result<KeyRecord, RecordError> {
    let header: Header = serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if header.format != RECORD_FORMAT || header.format_version != LEGACY_FORMAT_VERSION {
        return Err(RecordError::UnsupportedFormat { format: header.format, version: header.format_version });
    }
    if header.key_id != key_id {
        return Err(RecordError::WrongKeyId { found: header.key_id });
    }
    if header.protection.byte() != protection_byte(protection) {
        return Err(RecordError::ProtectionMismatch);
    }
    let aad = header.aad();
    let raw =
        Zeroizing::new(STANDARD.decode(&header.body).map_err(|_| RecordError::Malformed("body is not base64".into()))?);
    let body = match protection {
        RecordProtection::Sealed(kek) => kek.open(&aad, &raw).map_err(|_| RecordError::Authentication)?,
        RecordProtection::InsecurePlaintext => raw,
    };
    let record = parse_body(key_id, &body)?;
    if record.current_version() != header.current_version {
        return Err(RecordError::Malformed("current_version does not match the body".into()));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_crypto::aead::{Algorithm, RandomNonceKey};

    /// A file written by the format 1 code (with the all-ones master key's KEK derivation
    /// replaced by a fixed KEK here): the reader pins the legacy layout and its AAD.
    #[test]
    fn legacy_header_aad_is_unchanged() {
        let header = Header {
            format: RECORD_FORMAT.into(),
            format_version: 1,
            key_id: "k".into(),
            current_version: 1,
            protection: ProtectionKind::Aes256Gcm,
            body: String::new(),
        };
        assert_eq!(header.aad(), b"kms-local/v1/key-record\x00\x01\x00\x00\x00\x01k\x00\x00\x00\x01\x01");
    }

    #[test]
    fn a_legacy_record_of_another_key_or_protection_is_refused() {
        let kek = RecordProtection::Sealed(Box::new(RandomNonceKey::new(Algorithm::Aes256Gcm, &[1; 32]).unwrap()));
        let file = br#"{"format":"kms-local-key","format_version":1,"key_id":"a","current_version":1,"protection":"aes_256_gcm","body":""}"#;
        assert!(matches!(decode("b", file, &kek), Err(RecordError::WrongKeyId { .. })));
        assert_eq!(
            decode("a", file, &RecordProtection::InsecurePlaintext).unwrap_err(),
            RecordError::ProtectionMismatch
        );
        assert_eq!(decode("a", file, &kek).unwrap_err(), RecordError::Authentication);
        let v9 = String::from_utf8_lossy(file).replace("\"format_version\":1", "\"format_version\":9");
        assert!(matches!(decode("a", v9.as_bytes(), &kek), Err(RecordError::UnsupportedFormat { version: 9, .. })));
    }
}

#[cfg(test)]
#[path = "legacy_vectors.rs"]
mod vectors;
