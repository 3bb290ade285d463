//! The key record: one file per key, format version 1 (`docs/formats.md`, "Local key records").
//!
//! The file is a small JSON envelope whose `body` is sealed under the record KEK:
//!
//! ```json
//! {"format":"kms-local-key","format_version":1,"key_id":"app-1","current_version":2,
//!  "protection":"aes_256_gcm","body":"<base64 of nonce ‖ ciphertext ‖ tag>"}
//! ```
//!
//! The associated data binds the header: format version, key id, current version and
//! protection. A record copied over another key's file, or edited in its header, fails to
//! open. The sealed body is binary: `u32 meta_len ‖ meta (JSON) ‖ u32 n ‖ n × (u32 version ‖
//! i64 created_at ‖ 32-byte material)`, all integers big-endian, versions ascending.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_crypto::envelope::PreparedKek;
use kms_crypto::keys::KeyEncryptionKey;
use kms_types::error::KmsError;
use kms_types::types::{KeyMetadata, KeyOrigin, KeySpec, KeyState, KeyUsage, Tags};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::master_key::RecordProtection;

/// `format` of a key record.
pub(crate) const RECORD_FORMAT: &str = "kms-local-key";
/// The record format version this code writes (and the only one it reads).
pub(crate) const RECORD_FORMAT_VERSION: u16 = 1;
/// Domain separation prefix of the associated data.
const AAD_PREFIX: &[u8] = b"kms-local/v1/key-record";
/// Master key material length.
pub(crate) const MATERIAL_LEN: usize = 32;
const VERSION_ENTRY_LEN: usize = 4 + 8 + MATERIAL_LEN;

/// Lifecycle state as stored (a key on disk is never `PendingImport` or `Unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoredState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl From<StoredState> for KeyState {
    fn from(s: StoredState) -> Self {
        match s {
            StoredState::Enabled => Self::Enabled,
            StoredState::Disabled => Self::Disabled,
            StoredState::PendingDeletion => Self::PendingDeletion,
        }
    }
}

/// The key's metadata as stored (inside the sealed body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredMeta {
    pub(crate) state: StoredState,
    pub(crate) usage: KeyUsage,
    pub(crate) spec: KeySpec,
    pub(crate) origin: KeyOrigin,
    pub(crate) description: Option<String>,
    pub(crate) tags: Tags,
    pub(crate) policy: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) creation_date: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) deletion_date: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) rotation_date: Option<OffsetDateTime>,
}

/// One version of a key's material.
pub(crate) struct KeyVersion {
    pub(crate) version: u32,
    pub(crate) created_at: OffsetDateTime,
    /// The material, prepared for the data path once, when the version is loaded or made
    /// (version-2 envelopes then derive their own key per envelope). The material is
    /// zeroized when the last snapshot holding this version is dropped (the key is deleted, or
    /// the store closed); ring's expanded cipher state is not (see `PreparedKek`).
    pub(crate) key: PreparedKek,
}

impl KeyVersion {
    pub(crate) fn new(version: u32, created_at: OffsetDateTime, material: &[u8]) -> Result<Self, KmsError> {
        Ok(Self { version, created_at, key: PreparedKek::new(KeyEncryptionKey::from_bytes(material)?) })
    }

    /// The raw material (to write the record).
    pub(crate) fn material(&self) -> &[u8] {
        self.key.key_encryption_key().expose_secret()
    }
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersion")
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("key", &self.key)
            .finish()
    }
}

/// A key as held in memory: metadata and every version (ascending; the last is current).
#[derive(Debug, Clone)]
pub(crate) struct KeyRecord {
    pub(crate) key_id: String,
    pub(crate) meta: StoredMeta,
    pub(crate) versions: Vec<Arc<KeyVersion>>,
}

impl KeyRecord {
    /// The version new ciphertexts are made with.
    pub(crate) fn current(&self) -> &Arc<KeyVersion> {
        self.versions.last().expect("a key record always has a version")
    }

    /// A version by number.
    pub(crate) fn version(&self, version: u32) -> Option<&Arc<KeyVersion>> {
        self.versions.binary_search_by_key(&version, |v| v.version).ok().map(|i| &self.versions[i])
    }

    /// The public view of this key.
    pub(crate) fn metadata(&self) -> KeyMetadata {
        let m = &self.meta;
        KeyMetadata {
            key_id: self.key_id.clone(),
            key_state: m.state.into(),
            key_usage: m.usage,
            key_spec: m.spec,
            origin: m.origin,
            description: m.description.clone(),
            tags: m.tags.clone(),
            creation_date: m.creation_date,
            deletion_date: m.deletion_date,
            current_version: self.current().version,
            rotation_date: m.rotation_date,
        }
    }

    /// The record file's bytes.
    pub(crate) fn encode(&self, protection: &RecordProtection) -> Result<Vec<u8>, KmsError> {
        let meta = serde_json::to_vec(&self.meta).map_err(|e| KmsError::backend_with_source("encode", false, e))?;
        let mut body = Zeroizing::new(Vec::with_capacity(8 + meta.len() + self.versions.len() * VERSION_ENTRY_LEN));
        body.extend_from_slice(&u32::try_from(meta.len()).map_err(|_| too_big())?.to_be_bytes());
        body.extend_from_slice(&meta);
        body.extend_from_slice(&u32::try_from(self.versions.len()).map_err(|_| too_big())?.to_be_bytes());
        for v in &self.versions {
            body.extend_from_slice(&v.version.to_be_bytes());
            body.extend_from_slice(&v.created_at.unix_timestamp().to_be_bytes());
            body.extend_from_slice(v.material());
        }
        let header = Header {
            format: RECORD_FORMAT.into(),
            format_version: RECORD_FORMAT_VERSION,
            key_id: self.key_id.clone(),
            current_version: self.current().version,
            protection: protection_kind(protection),
            body: String::new(),
        };
        let aad = header.aad();
        let body = match protection {
            RecordProtection::Sealed(kek) => STANDARD.encode(kek.seal(&aad, &body)?),
            RecordProtection::InsecurePlaintext => STANDARD.encode(&*body),
        };
        let mut bytes = serde_json::to_vec_pretty(&Header { body, ..header })
            .map_err(|e| KmsError::backend_with_source("encode", false, e))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Reads the record file of `key_id`.
    pub(crate) fn decode(key_id: &str, bytes: &[u8], protection: &RecordProtection) -> Result<Self, RecordError> {
        let header: Header = serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))?;
        if header.format != RECORD_FORMAT || header.format_version != RECORD_FORMAT_VERSION {
            return Err(RecordError::UnsupportedFormat { format: header.format, version: header.format_version });
        }
        if header.key_id != key_id {
            return Err(RecordError::WrongKeyId { found: header.key_id });
        }
        if header.protection != protection_kind(protection) {
            return Err(RecordError::ProtectionMismatch);
        }
        let aad = header.aad();
        let raw = Zeroizing::new(
            STANDARD.decode(&header.body).map_err(|_| RecordError::Malformed("body is not base64".into()))?,
        );
        let body = match protection {
            RecordProtection::Sealed(kek) => kek.open(&aad, &raw).map_err(|_| RecordError::Authentication)?,
            RecordProtection::InsecurePlaintext => raw,
        };
        let record = parse_body(key_id, &body)?;
        if record.current().version != header.current_version {
            return Err(RecordError::Malformed("current_version does not match the body".into()));
        }
        Ok(record)
    }
}

fn too_big() -> KmsError {
    KmsError::backend("key record too large")
}

fn parse_body(key_id: &str, body: &[u8]) -> Result<KeyRecord, RecordError> {
    let mut rest = body;
    let mut take = |n: usize| -> Result<&[u8], RecordError> {
        if rest.len() < n {
            return Err(RecordError::Malformed("body is truncated".into()));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let u32_at = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
    let meta_len = u32_at(take(4)?) as usize;
    let meta: StoredMeta =
        serde_json::from_slice(take(meta_len)?).map_err(|e| RecordError::Malformed(format!("metadata: {e}")))?;
    let count = u32_at(take(4)?) as usize;
    if count == 0 {
        return Err(RecordError::Malformed("no key version".into()));
    }
    let mut versions: Vec<Arc<KeyVersion>> = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let version = u32_at(take(4)?);
        let created = i64::from_be_bytes(take(8)?.try_into().expect("8 bytes"));
        let material = take(MATERIAL_LEN)?;
        if versions.last().is_some_and(|v| v.version >= version) || version == 0 {
            return Err(RecordError::Malformed("key versions are not ascending".into()));
        }
        let created_at = OffsetDateTime::from_unix_timestamp(created)
            .map_err(|_| RecordError::Malformed("bad version timestamp".into()))?;
        let version = KeyVersion::new(version, created_at, material)
            .map_err(|_| RecordError::Malformed("bad material".into()))?;
        versions.push(Arc::new(version));
    }
    if !rest.is_empty() {
        return Err(RecordError::Malformed("trailing bytes after the body".into()));
    }
    Ok(KeyRecord { key_id: key_id.to_owned(), meta, versions })
}

fn protection_kind(p: &RecordProtection) -> ProtectionKind {
    match p {
        RecordProtection::Sealed(_) => ProtectionKind::Aes256Gcm,
        RecordProtection::InsecurePlaintext => ProtectionKind::InsecurePlaintextForDevelopment,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProtectionKind {
    #[serde(rename = "aes_256_gcm")]
    Aes256Gcm,
    InsecurePlaintextForDevelopment,
}

#[derive(Debug, Serialize, Deserialize)]
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
        let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 11 + self.key_id.len());
        aad.extend_from_slice(AAD_PREFIX);
        aad.extend_from_slice(&self.format_version.to_be_bytes());
        aad.extend_from_slice(&(self.key_id.len() as u32).to_be_bytes());
        aad.extend_from_slice(self.key_id.as_bytes());
        aad.extend_from_slice(&self.current_version.to_be_bytes());
        aad.push(match self.protection {
            ProtectionKind::Aes256Gcm => 1,
            ProtectionKind::InsecurePlaintextForDevelopment => 0,
        });
        aad
    }
}

/// Why a record file cannot be used. Listed keys with such a record are `Unavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// Not a record of ours, or damaged (truncated, edited).
    Malformed(String),
    /// A format or version this code does not read.
    UnsupportedFormat { format: String, version: u16 },
    /// The record names another key (copied over this key's file).
    WrongKeyId { found: String },
    /// Plaintext record in a sealed directory, or the reverse.
    ProtectionMismatch,
    /// The body does not authenticate: tampered, truncated, or moved from another key.
    Authentication,
    /// The file cannot be read.
    Io(String),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed record: {why}"),
            Self::UnsupportedFormat { format, version } => {
                write!(f, "unsupported record format {format:?} version {version}")
            }
            Self::WrongKeyId { found } => write!(f, "the record belongs to key {found:?} (file swapped or copied)"),
            Self::ProtectionMismatch => f.write_str("record protection does not match the key directory"),
            Self::Authentication => f.write_str("record does not authenticate (tampered, truncated or swapped)"),
            Self::Io(why) => write!(f, "cannot read record: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_crypto::aead::{Algorithm, RandomNonceKey};

    fn sample(key_id: &str, versions: u32) -> KeyRecord {
        let t = time::macros::datetime!(2026-03-04 05:06:07 UTC);
        KeyRecord {
            key_id: key_id.into(),
            meta: StoredMeta {
                state: StoredState::Enabled,
                usage: KeyUsage::EncryptDecrypt,
                spec: KeySpec::Aes256,
                origin: KeyOrigin::Kms,
                description: Some("d".into()),
                tags: [("team".to_owned(), "a".to_owned())].into(),
                policy: None,
                creation_date: t,
                deletion_date: None,
                rotation_date: (versions > 1).then_some(t),
            },
            versions: (1..=versions).map(|v| Arc::new(KeyVersion::new(v, t, &[v as u8; 32]).unwrap())).collect(),
        }
    }

    fn kek(byte: u8) -> RecordProtection {
        RecordProtection::Sealed(Box::new(RandomNonceKey::new(Algorithm::Aes256Gcm, &[byte; 32]).unwrap()))
    }

    #[test]
    fn round_trips_sealed_and_plaintext() {
        for p in [kek(1), RecordProtection::InsecurePlaintext] {
            let rec = sample("app-1", 3);
            let bytes = rec.encode(&p).unwrap();
            let back = KeyRecord::decode("app-1", &bytes, &p).unwrap();
            assert_eq!(back.meta, rec.meta);
            assert_eq!(back.versions.len(), 3);
            assert_eq!(back.version(2).unwrap().material(), [2; 32]);
            assert_eq!(back.metadata().current_version, 3);
        }
    }

    #[test]
    fn sealed_records_hide_material_and_metadata() {
        let bytes = sample("app-1", 1).encode(&kek(1)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"key_id\": \"app-1\""));
        assert!(!text.contains("team"), "{text}");
    }

    #[test]
    fn a_record_copied_to_another_key_or_edited_fails() {
        let p = kek(1);
        let bytes = sample("a", 1).encode(&p).unwrap();
        assert!(matches!(KeyRecord::decode("b", &bytes, &p), Err(RecordError::WrongKeyId { .. })));
        // Rewriting the header to the victim's id breaks the seal.
        let forged = String::from_utf8(bytes.clone()).unwrap().replace("\"key_id\": \"a\"", "\"key_id\": \"b\"");
        assert_eq!(KeyRecord::decode("b", forged.as_bytes(), &p).unwrap_err(), RecordError::Authentication);
        let forged =
            String::from_utf8(bytes.clone()).unwrap().replace("\"current_version\": 1", "\"current_version\": 2");
        assert_eq!(KeyRecord::decode("a", forged.as_bytes(), &p).unwrap_err(), RecordError::Authentication);
        // Another master key.
        assert_eq!(KeyRecord::decode("a", &bytes, &kek(2)).unwrap_err(), RecordError::Authentication);
        // A plaintext record planted in a sealed directory.
        let plain = sample("a", 1).encode(&RecordProtection::InsecurePlaintext).unwrap();
        assert_eq!(KeyRecord::decode("a", &plain, &p).unwrap_err(), RecordError::ProtectionMismatch);
    }

    #[test]
    fn truncated_records_fail_at_every_length() {
        let p = kek(1);
        let bytes = sample("a", 2).encode(&p).unwrap();
        for len in 0..bytes.len() - 1 {
            assert!(KeyRecord::decode("a", &bytes[..len], &p).is_err(), "prefix of {len} bytes opened");
        }
    }

    /// Known-answer vector for the plaintext body layout and the AAD (the sealed form has a
    /// random nonce, so the body is pinned through the development mode).
    #[test]
    fn format_v1_known_answer() {
        let bytes = sample("k", 1).encode(&RecordProtection::InsecurePlaintext).unwrap();
        let header: Header = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(header.protection, ProtectionKind::InsecurePlaintextForDevelopment);
        let body = STANDARD.decode(&header.body).unwrap();
        let meta = br#"{"state":"enabled","usage":"encrypt_decrypt","spec":"aes256","origin":"kms","description":"d","tags":{"team":"a"},"policy":null,"creation_date":"2026-03-04T05:06:07Z","deletion_date":null,"rotation_date":null}"#;
        let mut expected = (meta.len() as u32).to_be_bytes().to_vec();
        expected.extend_from_slice(meta);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        expected.extend_from_slice(&1_772_600_767i64.to_be_bytes());
        expected.extend_from_slice(&[1; 32]);
        assert_eq!(body, expected);
        let aad = Header { protection: ProtectionKind::Aes256Gcm, ..header }.aad();
        assert_eq!(aad, b"kms-local/v1/key-record\x00\x01\x00\x00\x00\x01k\x00\x00\x00\x01\x01");
    }
}
