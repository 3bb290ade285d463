//! The ciphertexts `decrypt` and `re_encrypt` read: kms's own blobs, and RustFS
//! `DataKeyEnvelope`s (JSON) under keys `kms migrate rustfs-local` imported into Transit, so
//! the data keys RustFS wrapped stay readable on a Vault-backed kms as on the local backend
//! (`docs/migration.md`). Nothing here writes a RustFS envelope.
//!
//! A RustFS envelope's `encrypted_key` is AES-256-GCM under the key's material with no
//! associated data, which is what Transit opens for an imported, non-derived key given
//! `vault:v1:base64(nonce ‖ ciphertext ‖ tag)` without `associated_data`. Only a key with origin
//! `external` that `kms migrate` imported (not a bring-your-own key) opens one, with its
//! version 1; the request context must equal the envelope's as a map, an empty one included.
//! Every failure is the same opaque `Crypto` error.

use kms_crypto::rustfs::envelope::DataKeyEnvelope;

use super::*;

/// The Transit version a migrated key's RustFS material was imported as.
const MIGRATED_VERSION: u32 = 1;

impl Inner {
    /// The key a ciphertext names (kms blob or RustFS envelope), read without any call.
    pub(super) fn source_key_id(&self, ciphertext: &[u8]) -> Result<String> {
        if DataKeyEnvelope::looks_like(ciphertext) {
            let envelope = DataKeyEnvelope::parse(ciphertext).map_err(|_| KmsError::crypto())?;
            validate_key_id("key_id", &envelope.master_key_id).map_err(|_| KmsError::crypto())?;
            return Ok(envelope.master_key_id);
        }
        Ok(VaultBlob::decode(ciphertext)?.key_id)
    }

    /// Opens a kms blob or a RustFS envelope under a key whose state allows `operation`;
    /// `expected_key`: refuse a ciphertext of another key. The blob names key and version.
    pub(super) async fn open_source(
        &self,
        ciphertext: &[u8],
        context: &EncryptionContext,
        expected_key: Option<&str>,
        operation: Operation,
    ) -> Result<(VaultBlob, SecretBytes)> {
        let (blob, rustfs) = if DataKeyEnvelope::looks_like(ciphertext) {
            let envelope = DataKeyEnvelope::parse(ciphertext).map_err(|_| KmsError::crypto())?;
            validate_key_id("key_id", &envelope.master_key_id).map_err(|_| KmsError::crypto())?;
            if envelope.master_key_version.is_some_and(|v| v != MIGRATED_VERSION) || !envelope.context_matches(context)
            {
                return Err(KmsError::crypto());
            }
            let (nonce, sealed) = envelope.sealed();
            let mut raw = Zeroizing::new(Vec::with_capacity(nonce.len() + sealed.len()));
            raw.extend_from_slice(nonce);
            raw.extend_from_slice(sealed);
            let transit = format!("vault:v{MIGRATED_VERSION}:{}", B64.encode(raw.as_slice()));
            (VaultBlob::new(&envelope.master_key_id, transit)?, true)
        } else {
            (VaultBlob::decode(ciphertext)?, false)
        };
        if expected_key.is_some_and(|expected| expected != blob.key_id) {
            // As a wrong key: opaque, like any ciphertext that does not open under it.
            return Err(KmsError::crypto());
        }
        let record = self.usable(&blob.key_id, operation).await?;
        // Only a key `kms migrate rustfs-local` imported (external, no BYOK fingerprints).
        if rustfs && (record.origin != KeyOrigin::External || !record.material_fingerprints.is_empty()) {
            return Err(KmsError::crypto());
        }
        let plaintext = self.transit_decrypt(&record, &blob, (!rustfs).then_some(context)).await?;
        Ok((blob, plaintext))
    }
}
