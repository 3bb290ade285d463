//! RustFS `DataKeyEnvelope`s (JSON) under keys migrated from RustFS (`kms migrate
//! rustfs-local`): `decrypt` and `re_encrypt` read them, so data keys RustFS wrapped stay
//! readable and `re_encrypt` moves them to kms envelopes. Nothing here writes one.
//!
//! Only a key with origin `external` opens one, with its version 1 (the material RustFS had).
//! The context must equal the envelope's as a map, an empty one included: RustFS compares
//! strings and skips the check for an empty request context; kms applies its own rule
//! (`docs/migration.md`). Every failure is the same opaque `Crypto` error as for kms blobs.

use kms_crypto::rustfs::envelope::DataKeyEnvelope;
use kms_types::error::{KmsError, Result};
use kms_types::types::{EncryptionContext, KeyOrigin, validate_key_id};
use zeroize::Zeroizing;

use crate::backend::LocalBackend;

/// The version a migrated key's RustFS material is stored as.
const MIGRATED_VERSION: u32 = 1;

/// Whether `blob` is a RustFS envelope rather than a kms blob (kms blobs never start with `{`).
pub(crate) fn is_envelope(blob: &[u8]) -> bool {
    DataKeyEnvelope::looks_like(blob)
}

/// The master key a RustFS envelope names, if `blob` is one.
pub(crate) fn envelope_key_id(blob: &[u8]) -> Option<String> {
    if !is_envelope(blob) {
        return None;
    }
    let envelope = DataKeyEnvelope::parse(blob).ok()?;
    validate_key_id("key_id", &envelope.master_key_id).is_ok().then_some(envelope.master_key_id)
}

impl LocalBackend {
    /// Opens a RustFS envelope (`blob` passed [`is_envelope`]): key id, version and plaintext.
    pub(crate) async fn open_rustfs(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key: Option<&str>,
        operation: kms_types::operation::Operation,
    ) -> Result<(String, u32, Zeroizing<Vec<u8>>)> {
        let envelope = DataKeyEnvelope::parse(blob).map_err(|_| KmsError::crypto())?;
        let key_id = envelope.master_key_id.as_str();
        if validate_key_id("key_id", key_id).is_err() || expected_key.is_some_and(|expected| expected != key_id) {
            return Err(KmsError::crypto());
        }
        if envelope.master_key_version.is_some_and(|v| v != MIGRATED_VERSION) {
            return Err(KmsError::crypto());
        }
        let record = self.enabled(key_id, operation).await?;
        if record.meta.origin != KeyOrigin::External {
            return Err(KmsError::crypto());
        }
        let version = record.version(MIGRATED_VERSION).ok_or_else(KmsError::crypto)?;
        let plaintext = envelope.unwrap(version.key.key_encryption_key(), context).map_err(|_| KmsError::crypto())?;
        Ok((key_id.to_owned(), MIGRATED_VERSION, plaintext))
    }
}
