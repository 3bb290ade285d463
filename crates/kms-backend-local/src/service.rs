//! `KmsBackend` for [`LocalBackend`]: the operations, the state matrix (`docs/key-states.md`)
//! and the data path.

use std::sync::Arc;

use async_trait::async_trait;
use kms_core::backends::KmsBackend;
use kms_crypto::envelope::{self, Binding};
use kms_crypto::keys::PlaintextDataKey;
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, EncryptionContext, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyMetadataResponse, KeySpec, KeyState, ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse,
    RotateKeyRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest, validate_key_id,
    validate_pending_window,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::backend::{LocalBackend, MASTER_KEY_SPEC, next_version};
use crate::ciphertext;
use crate::record::{KeyRecord, StoredMeta, StoredState};

pub use kms_types::types::MAX_DESCRIPTION_LEN;

/// The key-state table of [`kms_types::operation`]: `Ok` when `record`'s state allows
/// `operation`.
fn require(record: &KeyRecord, operation: Operation, now: OffsetDateTime) -> Result<()> {
    operation.check_key_state(&record.key_id, record.state_at(now))
}

/// `current` after `operation` (which [`require`] allowed): its next state per the table;
/// `None` when that is the state it is in (nothing to write).
fn advanced(current: &KeyRecord, operation: Operation) -> Result<Option<KeyRecord>> {
    let state = StoredState::try_from(operation.next_state(current.meta.state.into()))?;
    Ok((state != current.meta.state).then(|| {
        let mut next = current.clone();
        next.meta.state = state;
        next
    }))
}

fn response(record: &KeyRecord, now: OffsetDateTime) -> KeyMetadataResponse {
    KeyMetadataResponse { key_metadata: record.metadata(now) }
}

impl LocalBackend {
    /// The `Enabled` key `key_id` for a cryptographic operation (memory only, once opened).
    pub(crate) async fn enabled(&self, key_id: &str, operation: Operation) -> Result<Arc<KeyRecord>> {
        validate_key_id("key_id", key_id)?;
        self.check_open()?;
        let record = self.inner.loaded(key_id, operation.as_str()).await?;
        require(&record, operation, self.now())?;
        Ok(record)
    }

    /// Seals `plaintext` under the current version of `record` into a blob.
    fn seal(record: &KeyRecord, plaintext: &[u8], context: &EncryptionContext) -> Result<(u32, Vec<u8>)> {
        let version = record.current().ok_or_else(KmsError::crypto)?;
        let binding = Binding { master_key_id: &record.key_id, master_key_version: version.version, context };
        let sealed = version.key.seal(plaintext, &binding)?;
        Ok((version.version, ciphertext::encode(&record.key_id, version.version, &sealed)))
    }

    /// A fresh data key of `spec`, and its wrapped blob under the current version of `key_id`.
    async fn data_key(
        &self,
        key_id: &str,
        spec: KeySpec,
        context: &EncryptionContext,
        operation: Operation,
    ) -> Result<(u32, PlaintextDataKey, Vec<u8>)> {
        let record = self.enabled(key_id, operation).await?;
        let version = record.current().ok_or_else(KmsError::crypto)?;
        let binding = Binding { master_key_id: &record.key_id, master_key_version: version.version, context };
        // One random draw (key and envelope salt) and one seal under the per-envelope key,
        // sealed straight after the blob header: one allocation for the blob.
        let mut blob = ciphertext::header(&record.key_id, version.version, spec.key_len() + envelope::OVERHEAD);
        let data_key = version.key.generate_and_wrap_data_key_into(spec, &binding, &mut blob)?;
        Ok((version.version, data_key, blob))
    }

    /// Opens a blob: its key must exist and be `Enabled`, its version must exist.
    async fn open_blob(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key: Option<&str>,
        operation: Operation,
    ) -> Result<(String, u32, Zeroizing<Vec<u8>>)> {
        if let Some(expected) = expected_key {
            validate_key_id("key_id", expected)?;
        }
        if crate::rustfs::is_envelope(blob) {
            return self.open_rustfs(blob, context, expected_key, operation).await;
        }
        let (key_id, version, sealed) = ciphertext::decode(blob)?;
        if expected_key.is_some_and(|expected| expected != key_id) {
            return Err(KmsError::crypto());
        }
        if validate_key_id("key_id", key_id).is_err() {
            return Err(KmsError::crypto());
        }
        let record = self.enabled(key_id, operation).await?;
        let key = &record.version(version).ok_or_else(KmsError::crypto)?.key;
        let binding = Binding { master_key_id: key_id, master_key_version: version, context };
        let plaintext = key.open(sealed, &binding)?;
        Ok((key_id.to_owned(), version, plaintext))
    }

    /// Enable or disable: checked against the table, written only when the state changes.
    async fn transition(&self, key_id: &str, operation: Operation) -> Result<Arc<KeyRecord>> {
        self.mutate(key_id, operation.as_str(), move |current, now| {
            require(current, operation, now)?;
            advanced(current, operation)
        })
        .await
    }
}

#[async_trait]
impl KmsBackend for LocalBackend {
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let meta = StoredMeta {
            state: StoredState::Enabled,
            imported: None,
            usage: request.key_usage,
            spec: MASTER_KEY_SPEC,
            origin: request.origin.unwrap_or_default(),
            description: request.description,
            tags: request.tags,
            policy: request.policy,
            creation_date: self.now(),
            deletion_date: None,
            rotation_date: None,
        };
        let record = self.create(request.key_name, meta).await?;
        Ok(CreateKeyResponse { key_id: record.key_id.clone(), key_metadata: record.metadata(self.now()) })
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        let record = self.enabled(&request.key_id, Operation::Encrypt).await?;
        let (key_version, ciphertext_blob) =
            Self::seal(&record, request.plaintext.expose_secret(), &request.encryption_context)?;
        Ok(EncryptResponse { key_id: request.key_id, key_version, ciphertext_blob })
    }

    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse> {
        let (key_id, key_version, mut plaintext) = self
            .open_blob(
                &request.ciphertext_blob,
                &request.encryption_context,
                request.key_id.as_deref(),
                Operation::Decrypt,
            )
            .await?;
        Ok(DecryptResponse { key_id, key_version, plaintext: SecretBytes::new(std::mem::take(&mut *plaintext)) })
    }

    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        let (key_version, data_key, ciphertext_blob) = self
            .data_key(&request.key_id, request.key_spec, &request.encryption_context, Operation::GenerateDataKey)
            .await?;
        Ok(GenerateDataKeyResponse {
            key_id: request.key_id,
            key_version,
            plaintext_key: data_key.into_secret_bytes(),
            ciphertext_blob,
        })
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        let (key_version, _data_key, ciphertext_blob) = self
            .data_key(
                &request.key_id,
                request.key_spec,
                &request.encryption_context,
                Operation::GenerateDataKeyWithoutPlaintext,
            )
            .await?;
        Ok(GenerateDataKeyWithoutPlaintextResponse { key_id: request.key_id, key_version, ciphertext_blob })
    }

    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        Ok(DescribeKeyResponse { key_metadata: self.describe(&request.key_id).await?.metadata(self.now()) })
    }

    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        self.list(&request).await
    }

    async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        let days = validate_pending_window(request.pending_window_in_days)?;
        let operation = Operation::ScheduleKeyDeletion;
        let record = self
            .mutate(&request.key_id, operation.as_str(), move |current, now| {
                require(current, operation, now)?;
                let mut next = advanced(current, operation)?.unwrap_or_else(|| current.clone());
                next.meta.deletion_date = Some(now + time::Duration::days(i64::from(days)));
                Ok(Some(next))
            })
            .await?;
        let deletion_date = record.meta.deletion_date.ok_or_else(|| KmsError::backend("deletion date lost"))?;
        Ok(DeleteKeyResponse { key_id: request.key_id, key_state: KeyState::PendingDeletion, deletion_date })
    }

    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        let operation = Operation::CancelKeyDeletion;
        self.mutate(&request.key_id, operation.as_str(), move |current, now| {
            require(current, operation, now)?;
            let mut next = advanced(current, operation)?.unwrap_or_else(|| current.clone());
            next.meta.deletion_date = None;
            Ok(Some(next))
        })
        .await?;
        Ok(CancelKeyDeletionResponse { key_id: request.key_id, key_state: KeyState::Disabled })
    }

    async fn health_check(&self) -> Result<bool> {
        Ok(self.healthy())
    }

    fn backend_name(&self) -> &'static str {
        "local"
    }

    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        let Ok((key_id, _, _)) = ciphertext::decode(ciphertext_blob) else {
            return crate::rustfs::envelope_key_id(ciphertext_blob);
        };
        validate_key_id("key_id", key_id).is_ok().then(|| key_id.to_owned())
    }

    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities::ALL
    }

    fn supports_aliases(&self) -> bool {
        true
    }

    async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        self.write_alias(request, false).await
    }

    async fn update_alias(&self, request: UpdateAliasRequest) -> Result<AliasEntry> {
        self.write_alias(request, true).await
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.remove_alias(alias_name).await
    }

    async fn list_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        self.page_aliases(request).await
    }

    async fn resolve_alias(&self, alias_name: &str) -> Result<String> {
        self.read_alias(alias_name).await
    }

    async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        let record = self.transition(&request.key_id, Operation::EnableKey).await?;
        Ok(response(&record, self.now()))
    }

    async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        let record = self.transition(&request.key_id, Operation::DisableKey).await?;
        Ok(response(&record, self.now()))
    }

    async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        let record = self
            .mutate(&request.key_id, Operation::RotateKey.as_str(), |current, now| {
                require(current, Operation::RotateKey, now)?;
                if current.meta.imported.is_some() {
                    // BYOK material comes only from its owner; a key migrated from another
                    // KMS (`import_key`) rotates like any other, as on the Vault backend.
                    return Err(KmsError::Unsupported {
                        operation: "rotate_key of a key with imported material (import a new version instead)",
                        backend: "local",
                    });
                }
                let mut next = current.clone();
                next.versions.push(Arc::new(next_version(current, now)?));
                next.meta.rotation_date = Some(now);
                Ok(Some(next))
            })
            .await?;
        Ok(response(&record, self.now()))
    }

    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        if let Some(destination) = &request.destination_key_id {
            validate_key_id("destination_key_id", destination)?;
        }
        let (source_key_id, source_key_version, plaintext) = self
            .open_blob(&request.ciphertext_blob, &request.source_encryption_context, None, Operation::ReEncrypt)
            .await?;
        let destination_id = request.destination_key_id.as_deref().unwrap_or(&source_key_id);
        let destination = self.enabled(destination_id, Operation::ReEncrypt).await?;
        let context = request.destination_encryption_context.as_ref().unwrap_or(&request.source_encryption_context);
        let (key_version, ciphertext_blob) = Self::seal(&destination, &plaintext, context)?;
        Ok(ReEncryptResponse {
            ciphertext_blob,
            key_id: destination_id.to_owned(),
            source_key_id,
            source_key_version,
            key_version,
        })
    }

    async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        let description = request.description;
        let operation = Operation::UpdateKeyDescription;
        let record = self
            .mutate(&request.key_id, operation.as_str(), move |current, now| {
                require(current, operation, now)?;
                Ok((current.meta.description.as_deref() != Some(description.as_str())).then(|| {
                    let mut next = current.clone();
                    next.meta.description = Some(description);
                    next
                }))
            })
            .await?;
        Ok(response(&record, self.now()))
    }

    async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        let tags = request.tags;
        let record = self
            .mutate(&request.key_id, Operation::TagKey.as_str(), move |current, now| {
                require(current, Operation::TagKey, now)?;
                let mut next = current.clone();
                next.meta.tags.extend(tags);
                Ok((next.meta.tags != current.meta.tags).then_some(next))
            })
            .await?;
        Ok(response(&record, self.now()))
    }

    async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        let names = request.tag_keys;
        let record = self
            .mutate(&request.key_id, Operation::UntagKey.as_str(), move |current, now| {
                require(current, Operation::UntagKey, now)?;
                let mut next = current.clone();
                for name in &names {
                    next.meta.tags.remove(name);
                }
                Ok((next.meta.tags != current.meta.tags).then_some(next))
            })
            .await?;
        Ok(response(&record, self.now()))
    }

    async fn close(&self) -> Result<()> {
        self.shutdown().await;
        Ok(())
    }

    async fn backup(&self) -> Result<Vec<u8>> {
        self.snapshot().await
    }

    async fn import_key_material(&self, request: kms_types::byok::ImportMaterial) -> Result<KeyMetadataResponse> {
        let record = self.import_material(request).await?;
        Ok(response(&record, self.now()))
    }

    async fn delete_imported_key_material(
        &self,
        request: kms_types::byok::DeleteImportedKeyMaterialRequest,
    ) -> Result<KeyMetadataResponse> {
        let record = self.delete_material(request).await?;
        Ok(response(&record, self.now()))
    }

    async fn import_key(&self, request: kms_types::import::ImportKeyRequest) -> Result<KeyMetadataResponse> {
        Ok(KeyMetadataResponse { key_metadata: self.import(request).await?.metadata(self.now()) })
    }

    /// No: the keys are in this process and on its own disk, every error is final (disk
    /// errors included, `dir.rs`), and a disk that stalls one attempt would stall the next.
    /// Each call gets one attempt under the manager's whole budget.
    fn may_fail_transiently(&self) -> bool {
        false
    }

    fn key_cache_stats(&self) -> Option<kms_types::api_types::CacheStats> {
        let stats = self.cache_stats();
        Some(kms_types::api_types::CacheStats {
            hits: stats.hits,
            misses: stats.misses,
            entries: usize::try_from(stats.entries).unwrap_or(usize::MAX),
            capacity: usize::try_from(stats.capacity).unwrap_or(usize::MAX),
        })
    }
}
