//! RustFS local key records (`<key_id>.key` in a RustFS key directory) and the KEKs that open
//! them.
//!
//! A record is pretty-printed JSON (`StoredMasterKey` in RustFS's `backends/local.rs`) holding
//! one key's metadata and its 32-byte material, protected in one of three ways
//! ([`AtRestProtection`]). Sealed material is AES-256-GCM, **without AAD**, under a KEK derived
//! from the master-key string ([`RecordKeks`]): Argon2id (v0x13, m = 19456 KiB, t = 2, p = 1,
//! 32 bytes) salted with the directory's 16-byte `.master-key.salt`, or, for records older than
//! RustFS beta.9, `SHA-256(master_key ‖ "rustfs-kms-local")`.
//!
//! What is authenticated: the material only. The metadata around it (state, description,
//! tags, dates) is plain JSON that anyone with write access to the directory could change
//! undetected; kms imports it as it reads it and says so in the migration report.
//!
//! Field-by-field description: `docs/migration.md`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_types::secret::REDACTED;
use ring::digest;
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{RustfsError, timestamp};
use crate::cipher::{Aes256GcmCipher, ObjectCipher};
use crate::keys::KeyEncryptionKey;

/// Length of `.master-key.salt`.
pub const SALT_LEN: usize = 16;
/// Argon2id memory cost RustFS uses, in KiB.
const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id passes.
const ARGON2_T: u32 = 2;
/// Argon2id lanes.
const ARGON2_P: u32 = 1;
/// Appended to the master-key string before SHA-256 in the legacy KEK.
const LEGACY_KEK_SUFFIX: &[u8] = b"rustfs-kms-local";
const MATERIAL_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Every field of a record; any other is ignored (and counted), as RustFS does.
const KNOWN_FIELDS: [&str; 15] = [
    "format_version",
    "key_id",
    "version",
    "algorithm",
    "usage",
    "status",
    "description",
    "metadata",
    "created_at",
    "rotated_at",
    "created_by",
    "deletion_date",
    "encrypted_key_material",
    "nonce",
    "at_rest_protection",
];

/// RustFS's master-key string (`RUSTFS_KMS_LOCAL_MASTER_KEY`): zeroized on drop, redacted in
/// `Debug`.
pub struct MasterKeyString(Zeroizing<String>);

impl MasterKeyString {
    /// Takes ownership of the string.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }
}

impl fmt::Debug for MasterKeyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MasterKeyString").field(&REDACTED).finish()
    }
}

/// The KEKs a master-key string gives for one directory: the Argon2id KEK (when the directory
/// has a salt) and the legacy SHA-256 KEK.
pub struct RecordKeks {
    argon2id: Option<KeyEncryptionKey>,
    legacy: KeyEncryptionKey,
}

impl RecordKeks {
    /// Derives the KEKs of `master_key` for a directory whose `.master-key.salt` holds `salt`
    /// (`None` when the file is absent). Argon2id is deliberately slow: derive once per directory.
    pub fn derive(master_key: &MasterKeyString, salt: Option<&[u8]>) -> Result<Self, RustfsError> {
        let argon2id = salt.map(|salt| derive_argon2id(master_key, salt)).transpose()?;
        let mut legacy_input = Zeroizing::new(master_key.0.as_bytes().to_vec());
        legacy_input.extend_from_slice(LEGACY_KEK_SUFFIX);
        let legacy = digest::digest(&digest::SHA256, &legacy_input);
        let legacy = KeyEncryptionKey::from_bytes(legacy.as_ref()).map_err(|_| RustfsError::Malformed("legacy KEK"))?;
        Ok(Self { argon2id, legacy })
    }
}

fn derive_argon2id(master_key: &MasterKeyString, salt: &[u8]) -> Result<KeyEncryptionKey, RustfsError> {
    if salt.len() != SALT_LEN {
        return Err(RustfsError::Malformed(".master-key.salt (16 bytes expected)"));
    }
    let params = argon2::Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(MATERIAL_LEN))
        .map_err(|_| RustfsError::Malformed("Argon2id parameters"))?;
    let kdf = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; MATERIAL_LEN]);
    kdf.hash_password_into(master_key.0.as_bytes(), salt, out.as_mut())
        .map_err(|_| RustfsError::Malformed("master-key string or salt"))?;
    KeyEncryptionKey::from_bytes(out.as_ref()).map_err(|_| RustfsError::Malformed("Argon2id KEK"))
}

impl fmt::Debug for RecordKeks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordKeks").field("argon2id", &self.argon2id.is_some()).finish_non_exhaustive()
    }
}

/// A record's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Disabled by an operator.
    Disabled,
    /// Scheduled for deletion at `deletion_date`.
    PendingDeletion,
    /// A transient tombstone of a delete in progress.
    Deleted,
}

/// A record's `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum KeyUsage {
    /// Encrypt and decrypt (the only usage RustFS's local backend writes).
    EncryptDecrypt,
    /// Declared by RustFS's types; no RustFS operation uses it.
    SignVerify,
}

/// How a record protects its material (`at_rest_protection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AtRestProtection {
    /// Sealed under the Argon2id KEK.
    #[serde(rename = "encrypted-master-key")]
    EncryptedMasterKey,
    /// In the clear (RustFS without a master key, development only).
    #[serde(rename = "plaintext-dev-only")]
    PlaintextDevOnly,
    /// A record older than the marker: in the clear if its nonce is empty, else sealed under the
    /// Argon2id or the legacy KEK.
    #[serde(rename = "legacy-unspecified")]
    LegacyUnspecified,
}

/// Which KEK opened a record (for the migration report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenedWith {
    /// The Argon2id KEK.
    Argon2id,
    /// The pre-beta.9 SHA-256 KEK.
    LegacySha256,
    /// Nothing: the material was stored in the clear.
    Plaintext,
}

#[derive(Deserialize)]
struct RawRecord {
    #[serde(default)]
    format_version: Option<u32>,
    key_id: String,
    version: u32,
    algorithm: String,
    usage: KeyUsage,
    status: KeyStatus,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    created_at: String,
    #[serde(default)]
    rotated_at: Option<String>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    deletion_date: Option<String>,
    encrypted_key_material: String,
    nonce: Vec<u8>,
    #[serde(default)]
    at_rest_protection: Option<String>,
}

/// One parsed `<key_id>.key` record. The material stays sealed until [`open`](Self::open).
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The key id (equal to the file stem).
    pub key_id: String,
    /// The key version (always 1 on RustFS's local backend, which cannot rotate).
    pub version: u32,
    /// The usage.
    pub usage: KeyUsage,
    /// The state.
    pub status: KeyStatus,
    /// The description.
    pub description: Option<String>,
    /// RustFS's `metadata`: the key's tags (including `name` for keys made through its admin API).
    pub tags: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last rotation time, if any.
    pub rotated_at: Option<OffsetDateTime>,
    /// `created_by` (`local-kms` on RustFS's create path).
    pub created_by: Option<String>,
    /// When a `PendingDeletion` key is due to be deleted.
    pub deletion_date: Option<OffsetDateTime>,
    /// How the material is protected.
    pub protection: AtRestProtection,
    /// How many fields the record has that RustFS's reader does not know (ignored, as RustFS does).
    pub unknown_fields: usize,
    material: StoredMaterial,
    nonce: Vec<u8>,
}

impl KeyRecord {
    /// Parses the record read from `<file_stem>.key`. Refused: invalid JSON, a duplicate or
    /// missing field, `format_version` > 1, an unknown `at_rest_protection`, an algorithm other
    /// than `AES_256`, version 0, a `key_id` other than `file_stem`, a nonce or material of the
    /// wrong length for its protection.
    pub fn parse(file_stem: &str, json: &[u8]) -> Result<Self, RustfsError> {
        let raw: RawRecord = serde_json::from_slice(json).map_err(|_| RustfsError::Malformed("key record"))?;
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(json).map_err(|_| RustfsError::Malformed("key record"))?;
        let unknown_fields = fields.keys().filter(|name| !KNOWN_FIELDS.contains(&name.as_str())).count();
        if raw.format_version.unwrap_or(1) != 1 {
            return Err(RustfsError::Unsupported("key record format_version"));
        }
        let protection = match raw.at_rest_protection.as_deref() {
            None => AtRestProtection::LegacyUnspecified,
            Some(value) => serde_json::from_value(serde_json::Value::String(value.to_owned()))
                .map_err(|_| RustfsError::Unsupported("key record at_rest_protection"))?,
        };
        if raw.key_id != file_stem {
            return Err(RustfsError::Malformed("key record: key_id differs from the file name"));
        }
        if raw.algorithm != "AES_256" {
            return Err(RustfsError::Unsupported("key record algorithm"));
        }
        if raw.version == 0 {
            return Err(RustfsError::Malformed("key record version"));
        }
        let material = Zeroizing::new(
            STANDARD
                .decode(raw.encrypted_key_material.as_bytes())
                .map_err(|_| RustfsError::Malformed("key record encrypted_key_material"))?,
        );
        let sealed = !raw.nonce.is_empty();
        let lengths_ok = match (protection, sealed) {
            (AtRestProtection::EncryptedMasterKey, false) | (AtRestProtection::PlaintextDevOnly, true) => false,
            (_, true) => raw.nonce.len() == NONCE_LEN && material.len() == MATERIAL_LEN + TAG_LEN,
            (_, false) => material.len() == MATERIAL_LEN,
        };
        if !lengths_ok {
            return Err(RustfsError::Malformed("key record nonce or material length"));
        }
        let time = |value: Option<String>, field| value.map(|v| timestamp::parse(&v, field)).transpose();
        Ok(Self {
            created_at: timestamp::parse(&raw.created_at, "key record created_at")?,
            rotated_at: time(raw.rotated_at, "key record rotated_at")?,
            deletion_date: time(raw.deletion_date, "key record deletion_date")?,
            key_id: raw.key_id,
            version: raw.version,
            usage: raw.usage,
            status: raw.status,
            description: raw.description,
            tags: raw.metadata,
            created_by: raw.created_by,
            protection,
            unknown_fields,
            material: StoredMaterial(material),
            nonce: raw.nonce,
        })
    }

    /// Whether opening this record needs a master-key string.
    pub fn is_sealed(&self) -> bool {
        !self.nonce.is_empty()
    }

    /// The key's 32-byte material, and which KEK opened it. `keks` is `None` for a directory
    /// opened without a master-key string: a sealed record then fails with
    /// [`RustfsError::Malformed`] ("master-key string required").
    pub fn open(&self, keks: Option<&RecordKeks>) -> Result<(KeyEncryptionKey, OpenedWith), RustfsError> {
        if !self.is_sealed() {
            let key = KeyEncryptionKey::from_bytes(&self.material.0)
                .map_err(|_| RustfsError::Malformed("key record material"))?;
            return Ok((key, OpenedWith::Plaintext));
        }
        let keks = keks.ok_or(RustfsError::Malformed("key record: a master-key string is required"))?;
        let nonce: [u8; NONCE_LEN] = self.nonce.as_slice().try_into().map_err(|_| RustfsError::Malformed("nonce"))?;
        let mut candidates = Vec::with_capacity(2);
        if let Some(argon2id) = &keks.argon2id {
            candidates.push((argon2id, OpenedWith::Argon2id));
        }
        if self.protection == AtRestProtection::LegacyUnspecified {
            candidates.push((&keks.legacy, OpenedWith::LegacySha256));
        }
        for (kek, opened_with) in candidates {
            if let Ok(material) = open_material(kek, &nonce, &self.material.0) {
                return Ok((material, opened_with));
            }
        }
        Err(RustfsError::Unauthenticated)
    }
}

fn open_material(
    kek: &KeyEncryptionKey,
    nonce: &[u8; NONCE_LEN],
    sealed: &[u8],
) -> Result<KeyEncryptionKey, RustfsError> {
    let (ciphertext, tag) = sealed.split_at(MATERIAL_LEN);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| RustfsError::Malformed("tag"))?;
    let cipher = Aes256GcmCipher::new(kek.expose_secret())?;
    let material = cipher.decrypt(ciphertext, nonce, &tag, &[])?;
    Ok(KeyEncryptionKey::from_bytes(&material)?)
}

/// A record's material as stored: sealed, or (plaintext-dev-only) the key itself, so it is
/// zeroized on drop and redacted in `Debug` either way.
#[derive(Clone)]
struct StoredMaterial(Zeroizing<Vec<u8>>);

impl fmt::Debug for StoredMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}
