//! The key record: a key's metadata and every version of its material, sealed as one value of
//! the key store (`docs/formats.md`, "Local key records, format 2").
//!
//! ```text
//! u8 format_version (2) ‖ u8 protection ‖ u32 current_version ‖ sealed body
//! ```
//!
//! The body is sealed with AES-256-GCM under the record KEK, with the key id, the current
//! version, the format version and the protection as associated data: a record copied under
//! another key id, or with an edited header, does not open. The body itself is binary:
//! `u32 meta_len ‖ meta (JSON) ‖ u32 n ‖ n × (u32 version ‖ i64 created_at ‖ 32-byte
//! material)`, all integers big-endian, versions ascending. The key id is not repeated in the
//! value: it is the store's key. Format 1 (one JSON file per key) is read only to migrate it
//! (`crate::legacy`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use kms_crypto::envelope::PreparedKek;
use kms_crypto::keys::KeyEncryptionKey;
use kms_types::error::KmsError;
use kms_types::types::{KeyMetadata, KeyOrigin, KeySpec, KeyState, KeyUsage, Tags};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::master_key::RecordProtection;

/// The name of the record format (in error messages).
pub(crate) const RECORD_FORMAT: &str = "kms-local-key";
/// The record format version this code writes.
pub(crate) const RECORD_FORMAT_VERSION: u8 = 2;
/// Domain separation prefix of the associated data.
const AAD_PREFIX: &[u8] = b"kms-local/v2/key-record";
/// `u8 format_version ‖ u8 protection ‖ u32 current_version`.
const HEADER_LEN: usize = 6;
/// Nonce and tag of the seal.
const SEAL_OVERHEAD: usize = 12 + 16;
/// The largest record the store writes or reads: one limit, checked on both sides.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 20;
/// Master key material length.
pub(crate) const MATERIAL_LEN: usize = 32;
const VERSION_ENTRY_LEN: usize = 4 + 8 + MATERIAL_LEN;

/// Lifecycle state as stored (a key on disk is never `Unavailable`; only an external key is
/// `PendingImport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StoredState {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
}

impl TryFrom<KeyState> for StoredState {
    type Error = KmsError;

    /// Only the states a caller can put a key in are stored; the others are refused.
    fn try_from(state: KeyState) -> Result<Self, KmsError> {
        match state {
            KeyState::Enabled => Ok(Self::Enabled),
            KeyState::Disabled => Ok(Self::Disabled),
            KeyState::PendingDeletion => Ok(Self::PendingDeletion),
            KeyState::PendingImport => Ok(Self::PendingImport),
            other => Err(KmsError::backend(format!("a local key cannot be stored as {other}"))),
        }
    }
}

impl From<StoredState> for KeyState {
    fn from(s: StoredState) -> Self {
        match s {
            StoredState::Enabled => Self::Enabled,
            StoredState::Disabled => Self::Disabled,
            StoredState::PendingDeletion => Self::PendingDeletion,
            StoredState::PendingImport => Self::PendingImport,
        }
    }
}

/// The key's metadata as stored (inside the sealed body). Absent optional fields and empty
/// tags are left out (format 2 writes them so, every format reads both), which keeps a
/// one-version key's record small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StoredMeta {
    pub(crate) state: StoredState,
    pub(crate) usage: KeyUsage,
    pub(crate) spec: KeySpec,
    pub(crate) origin: KeyOrigin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) tags: Tags,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) creation_date: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub(crate) deletion_date: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub(crate) rotation_date: Option<OffsetDateTime>,
    /// An external key whose material is imported (BYOK, `docs/byok.md`); absent for every
    /// other key (and in records written before BYOK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) imported: Option<ImportedMeta>,
}

/// What the record keeps of an external key's imported material besides the material itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportedMeta {
    /// The fingerprint of each version's material (index = version - 1), lowercase hex; kept
    /// when the material is deleted, so that only the same material is accepted again.
    #[serde(default)]
    pub(crate) fingerprints: Vec<String>,
    /// When the material expires: from then on the key reads `PendingImport`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub(crate) valid_to: Option<OffsetDateTime>,
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
    /// The number of the version new ciphertexts are made with: the newest version, or for an
    /// external key the newest version ever imported (1 before the first import).
    pub(crate) fn current_version(&self) -> u32 {
        match &self.meta.imported {
            Some(imported) => u32::try_from(imported.fingerprints.len()).unwrap_or(u32::MAX).max(1),
            None => self.versions.last().map_or(1, |v| v.version),
        }
    }

    /// The version new ciphertexts are made with, when its material is present (always, but
    /// for an external key whose material was not imported, was deleted or expired).
    pub(crate) fn current(&self) -> Option<&Arc<KeyVersion>> {
        self.version(self.current_version())
    }

    /// The key's state at `now`: an external key whose material expired is `PendingImport`.
    pub(crate) fn state_at(&self, now: OffsetDateTime) -> KeyState {
        let expired = self.meta.imported.as_ref().and_then(|i| i.valid_to).is_some_and(|to| to <= now);
        match self.meta.state {
            StoredState::Enabled | StoredState::Disabled if expired => KeyState::PendingImport,
            state => state.into(),
        }
    }

    /// A version by number.
    pub(crate) fn version(&self, version: u32) -> Option<&Arc<KeyVersion>> {
        self.versions.binary_search_by_key(&version, |v| v.version).ok().map(|i| &self.versions[i])
    }

    /// The public view of this key at `now`.
    pub(crate) fn metadata(&self, now: OffsetDateTime) -> KeyMetadata {
        let m = &self.meta;
        let key_state = self.state_at(now);
        KeyMetadata {
            key_id: self.key_id.clone(),
            key_state,
            key_usage: m.usage,
            key_spec: m.spec,
            origin: m.origin,
            description: m.description.clone(),
            tags: m.tags.clone(),
            creation_date: m.creation_date,
            deletion_date: m.deletion_date,
            current_version: self.current_version(),
            rotation_date: m.rotation_date,
            valid_to: m.imported.as_ref().and_then(|i| i.valid_to).filter(|_| key_state != KeyState::PendingImport),
        }
    }

    /// The sealed body: `u32 meta_len ‖ meta (JSON) ‖ u32 n ‖ n × (u32 version ‖ i64
    /// created_at ‖ 32-byte material)`, big-endian, versions ascending (the same in both
    /// record formats).
    pub(crate) fn body(&self) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let meta = serde_json::to_vec(&self.meta).map_err(|e| KmsError::backend_with_source("encode", false, e))?;
        let mut body = Zeroizing::new(Vec::with_capacity(8 + meta.len() + self.versions.len() * VERSION_ENTRY_LEN));
        body.extend_from_slice(&u32::try_from(meta.len()).map_err(|_| too_big(meta.len()))?.to_be_bytes());
        body.extend_from_slice(&meta);
        body.extend_from_slice(&u32::try_from(self.versions.len()).map_err(|_| too_big(usize::MAX))?.to_be_bytes());
        for v in &self.versions {
            body.extend_from_slice(&v.version.to_be_bytes());
            body.extend_from_slice(&v.created_at.unix_timestamp().to_be_bytes());
            body.extend_from_slice(v.material());
        }
        Ok(body)
    }

    /// The stored value of this key (format 2): `u8 2 ‖ u8 protection ‖ u32 current_version ‖
    /// sealed body`. Refused, before anything is written, if it would exceed
    /// [`MAX_RECORD_BYTES`], the limit [`KeyRecord::decode`] enforces: the store never holds
    /// a record it would refuse to read.
    pub(crate) fn encode(&self, protection: &RecordProtection) -> Result<Vec<u8>, KmsError> {
        let body = self.body()?;
        let current = self.current_version();
        let kind = protection_byte(protection);
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len() + SEAL_OVERHEAD);
        bytes.push(RECORD_FORMAT_VERSION);
        bytes.push(kind);
        bytes.extend_from_slice(&current.to_be_bytes());
        match protection {
            RecordProtection::Sealed(kek) => {
                bytes.extend_from_slice(&kek.seal(&aad(&self.key_id, current, kind), &body)?)
            }
            RecordProtection::InsecurePlaintext => bytes.extend_from_slice(&body),
        }
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(too_big(bytes.len()));
        }
        Ok(bytes)
    }

    /// Reads the stored value of `key_id`: format 2, or a legacy (format 1) record kept as it
    /// was because it could not be migrated.
    pub(crate) fn decode(key_id: &str, bytes: &[u8], protection: &RecordProtection) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::Malformed(format!("record of {} bytes is over the limit", bytes.len())));
        }
        match bytes.first() {
            Some(&RECORD_FORMAT_VERSION) => {}
            Some(b'{') => return crate::legacy::decode(key_id, bytes, protection),
            Some(&other) => {
                return Err(RecordError::UnsupportedFormat { format: RECORD_FORMAT.into(), version: other.into() });
            }
            None => return Err(RecordError::Malformed("empty record".into())),
        }
        if bytes.len() < HEADER_LEN {
            return Err(RecordError::Malformed("header is truncated".into()));
        }
        let kind = bytes[1];
        if kind != protection_byte(protection) {
            return Err(RecordError::ProtectionMismatch);
        }
        let current = u32::from_be_bytes(bytes[2..6].try_into().expect("4 bytes"));
        let sealed = &bytes[HEADER_LEN..];
        let body = match protection {
            RecordProtection::Sealed(kek) => {
                kek.open(&aad(key_id, current, kind), sealed).map_err(|_| RecordError::Authentication)?
            }
            RecordProtection::InsecurePlaintext => Zeroizing::new(sealed.to_vec()),
        };
        let record = parse_body(key_id, &body)?;
        if record.current_version() != current {
            return Err(RecordError::Malformed("current_version does not match the body".into()));
        }
        Ok(record)
    }
}

/// `"kms-local/v2/key-record" ‖ u16 2 ‖ u32 len(key_id) ‖ key_id ‖ u32 current_version ‖ u8
/// protection`.
fn aad(key_id: &str, current_version: u32, protection: u8) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + 11 + key_id.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(&u16::from(RECORD_FORMAT_VERSION).to_be_bytes());
    aad.extend_from_slice(&(key_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&current_version.to_be_bytes());
    aad.push(protection);
    aad
}

fn too_big(len: usize) -> KmsError {
    KmsError::invalid_request(
        "key",
        format!("the key's record would be {len} bytes, over the {MAX_RECORD_BYTES}-byte limit of the local store"),
    )
}

pub(crate) fn parse_body(key_id: &str, body: &[u8]) -> Result<KeyRecord, RecordError> {
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
    // Only an external key may hold no material (not imported yet, deleted, or expired).
    if count == 0 && meta.imported.is_none() {
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

/// The protection byte of a record: 1 sealed (AES-256-GCM), 0 development plaintext.
pub(crate) fn protection_byte(p: &RecordProtection) -> u8 {
    match p {
        RecordProtection::Sealed(_) => 1,
        RecordProtection::InsecurePlaintext => 0,
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
                imported: None,
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
            assert_eq!(back.metadata(OffsetDateTime::now_utc()).current_version, 3);
        }
    }

    #[test]
    fn sealed_records_hide_material_and_metadata() {
        let bytes = sample("app-1", 1).encode(&kek(1)).unwrap();
        assert!(!bytes.windows(4).any(|w| w == b"team"));
        assert!(!bytes.windows(32).any(|w| w == [1; 32]));
    }

    #[test]
    fn a_record_moved_to_another_key_or_edited_fails() {
        let p = kek(1);
        let bytes = sample("a", 1).encode(&p).unwrap();
        assert_eq!(KeyRecord::decode("b", &bytes, &p).unwrap_err(), RecordError::Authentication);
        let mut forged = bytes.clone();
        forged[5] = 2; // current_version 1 → 2
        assert_eq!(KeyRecord::decode("a", &forged, &p).unwrap_err(), RecordError::Authentication);
        // Another master key.
        assert_eq!(KeyRecord::decode("a", &bytes, &kek(2)).unwrap_err(), RecordError::Authentication);
        // A plaintext record planted in a sealed store, and a format this code does not know.
        let plain = sample("a", 1).encode(&RecordProtection::InsecurePlaintext).unwrap();
        assert_eq!(KeyRecord::decode("a", &plain, &p).unwrap_err(), RecordError::ProtectionMismatch);
        let mut future = bytes;
        future[0] = 3;
        assert!(matches!(KeyRecord::decode("a", &future, &p), Err(RecordError::UnsupportedFormat { version: 3, .. })));
    }

    #[test]
    fn truncated_records_fail_at_every_length() {
        let p = kek(1);
        let bytes = sample("a", 2).encode(&p).unwrap();
        for len in 0..bytes.len() - 1 {
            let r = KeyRecord::decode("a", &bytes[..len], &p);
            assert!(
                matches!(r, Err(RecordError::Malformed(_) | RecordError::Authentication)),
                "prefix of {len} bytes: {r:?}"
            );
        }
    }

    /// One limit on both sides: a record over it is never written, and never read.
    #[test]
    fn the_write_path_refuses_what_the_read_path_would_refuse() {
        let mut rec = sample("a", 1);
        rec.meta.policy = Some("p".repeat(MAX_RECORD_BYTES));
        let err = rec.encode(&kek(1)).unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");
        rec.meta.policy = Some("p".repeat(MAX_RECORD_BYTES - 400));
        let bytes = rec.encode(&RecordProtection::InsecurePlaintext).unwrap();
        assert!(bytes.len() <= MAX_RECORD_BYTES);
        assert_eq!(KeyRecord::decode("a", &bytes, &RecordProtection::InsecurePlaintext).unwrap().meta, rec.meta);
        let mut over = bytes;
        over.resize(MAX_RECORD_BYTES + 1, 0);
        assert!(matches!(
            KeyRecord::decode("a", &over, &RecordProtection::InsecurePlaintext),
            Err(RecordError::Malformed(_))
        ));
    }

    /// Known-answer vector of format 2 (development mode pins the body; the sealed form has
    /// a random nonce) and of its associated data (`docs/formats.md`).
    #[test]
    fn format_v2_known_answer() {
        let bytes = sample("k", 1).encode(&RecordProtection::InsecurePlaintext).unwrap();
        let meta = br#"{"state":"enabled","usage":"encrypt_decrypt","spec":"aes256","origin":"kms","description":"d","tags":{"team":"a"},"creation_date":"2026-03-04T05:06:07Z"}"#;
        let mut expected = vec![2, 0, 0, 0, 0, 1];
        expected.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        expected.extend_from_slice(meta);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        expected.extend_from_slice(&1_772_600_767i64.to_be_bytes());
        expected.extend_from_slice(&[1; 32]);
        assert_eq!(bytes, expected);
        assert_eq!(hex(&bytes[..10]), "02000000000100000099");
        assert_eq!(hex(&bytes[bytes.len() - 48..bytes.len() - 32]), "00000001000000010000000069a7bdbf");
        assert_eq!(
            hex(&aad("k", 1, 1)),
            "6b6d732d6c6f63616c2f76322f6b65792d7265636f7264000200000001".to_owned() + "6b0000000101"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
#[path = "record_vectors.rs"]
mod vectors;
