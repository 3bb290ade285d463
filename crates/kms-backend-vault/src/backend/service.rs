//! `KmsBackend` for [`VaultBackend`]: the operations, with every key-state check made by the
//! table of [`kms_types::operation`] (`docs/key-states.md`), and the data path through Transit.

use super::*;

#[async_trait]
impl KmsBackend for VaultBackend {
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        (self.inner.create(request)).await
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        let inner = &self.inner;
        (async {
            let record = inner.usable(&request.key_id, Operation::Encrypt).await?;
            let blob =
                inner.transit_encrypt(&record, request.plaintext.expose_secret(), &request.encryption_context).await?;
            Ok(EncryptResponse {
                key_id: request.key_id,
                key_version: blob.key_version,
                ciphertext_blob: blob.encode(),
            })
        })
        .await
    }

    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse> {
        let inner = &self.inner;
        (async {
            let blob = VaultBlob::decode(&request.ciphertext_blob)?;
            if let Some(expected) = &request.key_id
                && expected != &blob.key_id
            {
                // As a wrong key: opaque, like any ciphertext that does not open under it.
                return Err(KmsError::crypto());
            }
            let record = inner.usable(&blob.key_id, Operation::Decrypt).await?;
            let plaintext = inner.transit_decrypt(&record, &blob, &request.encryption_context).await?;
            Ok(DecryptResponse { key_id: blob.key_id, key_version: blob.key_version, plaintext })
        })
        .await
    }

    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        let inner = &self.inner;
        (async {
            let record = inner.usable(&request.key_id, Operation::GenerateDataKey).await?;
            let (blob, plaintext) =
                inner.transit_datakey(&record, request.key_spec, &request.encryption_context, true).await?;
            Ok(GenerateDataKeyResponse {
                key_id: request.key_id,
                key_version: blob.key_version,
                plaintext_key: plaintext.ok_or_else(|| KmsError::backend("vault: datakey without plaintext"))?,
                ciphertext_blob: blob.encode(),
            })
        })
        .await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        let inner = &self.inner;
        (async {
            let record = inner.usable(&request.key_id, Operation::GenerateDataKeyWithoutPlaintext).await?;
            let (blob, _) =
                inner.transit_datakey(&record, request.key_spec, &request.encryption_context, false).await?;
            Ok(GenerateDataKeyWithoutPlaintextResponse {
                key_id: request.key_id,
                key_version: blob.key_version,
                ciphertext_blob: blob.encode(),
            })
        })
        .await
    }

    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        (self.inner.describe(&request.key_id)).await
    }

    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        (self.inner.list(request)).await
    }

    async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        let inner = &self.inner;
        (async {
            let days = validate_pending_window(request.pending_window_in_days)?;
            let when = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH)
                + time::Duration::days(i64::from(days));
            let operation = Operation::ScheduleKeyDeletion;
            let record = inner
                .update(&request.key_id, operation.as_str(), |r| {
                    advance(r, operation)?;
                    r.deletion_date = Some(when);
                    Ok(())
                })
                .await?;
            Ok(DeleteKeyResponse { key_id: record.key_id, key_state: KeyState::PendingDeletion, deletion_date: when })
        })
        .await
    }

    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        let inner = &self.inner;
        (async {
            let operation = Operation::CancelKeyDeletion;
            let record = inner
                .update(&request.key_id, operation.as_str(), |r| {
                    advance(r, operation)?;
                    r.deletion_date = None;
                    Ok(())
                })
                .await?;
            Ok(CancelKeyDeletionResponse { key_id: record.key_id, key_state: KeyState::Disabled })
        })
        .await
    }

    async fn health_check(&self) -> Result<bool> {
        Ok(self.inner.health().await)
    }

    fn retry_class(&self, error: &KmsError) -> RetryClass {
        match class_of(error) {
            crate::classify::Class::Final => RetryClass::Final,
            crate::classify::Class::Retry => RetryClass::Retry,
            crate::classify::Class::NodeDown | crate::classify::Class::NoLeader => RetryClass::Move,
        }
    }

    fn writes_are_retry_safe(&self) -> bool {
        true
    }

    fn metadata_staleness_bound(&self) -> Option<Duration> {
        self.inner.cache.as_ref().map(|(_, ttl)| *ttl)
    }

    async fn clear_caches(&self) {
        if let Some((cache, _)) = &self.inner.cache {
            cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        *self.inner.health.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn backend_name(&self) -> &'static str {
        "vault"
    }

    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        VaultBlob::decode(ciphertext_blob).ok().map(|blob| blob.key_id)
    }

    fn capabilities(&self) -> BackendCapabilities {
        // Import of key material goes through Transit's own import (not built here yet).
        BackendCapabilities { import_key_material: false, ..BackendCapabilities::ALL }
    }

    async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        self.set_enabled(request.key_id, true).await
    }

    async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        self.set_enabled(request.key_id, false).await
    }

    async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        (self.inner.rotate(&request.key_id)).await
    }

    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        let inner = &self.inner;
        (async {
            // Transit's rewrap takes no associated data, so a context-bound ciphertext is moved
            // by decrypting and encrypting inside this process; the plaintext is zeroized and
            // never returned.
            let source = VaultBlob::decode(&request.ciphertext_blob)?;
            let source_record = inner.usable(&source.key_id, Operation::ReEncrypt).await?;
            let destination = request.destination_key_id.clone().unwrap_or_else(|| source.key_id.clone());
            let destination_record = inner.usable(&destination, Operation::ReEncrypt).await?;
            let plaintext = inner.transit_decrypt(&source_record, &source, &request.source_encryption_context).await?;
            let context = request.destination_encryption_context.as_ref().unwrap_or(&request.source_encryption_context);
            let blob = inner.transit_encrypt(&destination_record, plaintext.expose_secret(), context).await?;
            Ok(ReEncryptResponse {
                ciphertext_blob: blob.encode(),
                source_key_id: source.key_id,
                source_key_version: source.key_version,
                key_id: destination,
                key_version: blob.key_version,
            })
        })
        .await
    }

    async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        let inner = &self.inner;
        (async {
            let description = request.description;
            let operation = Operation::UpdateKeyDescription;
            let record = inner
                .update(&request.key_id, operation.as_str(), |r| {
                    advance(r, operation)?;
                    r.description = Some(description.clone());
                    Ok(())
                })
                .await?;
            Ok(KeyMetadataResponse { key_metadata: record.metadata() })
        })
        .await
    }

    async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        let inner = &self.inner;
        (async {
            let operation = Operation::TagKey;
            let record = inner
                .update(&request.key_id, operation.as_str(), |r| {
                    advance(r, operation)?;
                    r.tags.extend(request.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Ok(())
                })
                .await?;
            Ok(KeyMetadataResponse { key_metadata: record.metadata() })
        })
        .await
    }

    async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        let inner = &self.inner;
        (async {
            let operation = Operation::UntagKey;
            let record = inner
                .update(&request.key_id, operation.as_str(), |r| {
                    advance(r, operation)?;
                    for k in &request.tag_keys {
                        r.tags.remove(k);
                    }
                    Ok(())
                })
                .await?;
            Ok(KeyMetadataResponse { key_metadata: record.metadata() })
        })
        .await
    }

    fn supports_aliases(&self) -> bool {
        true
    }

    async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        self.inner.create_alias(request).await
    }

    async fn update_alias(&self, request: UpdateAliasRequest) -> Result<AliasEntry> {
        self.inner.update_alias(request).await
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.inner.delete_alias(alias_name).await
    }

    async fn list_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        self.inner.list_aliases(request).await
    }

    async fn resolve_alias(&self, alias_name: &str) -> Result<String> {
        self.inner.resolve_alias(alias_name).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.auth.close();
        Ok(())
    }
}

impl VaultBackend {
    async fn set_enabled(&self, key_id: String, enabled: bool) -> Result<KeyMetadataResponse> {
        let operation = if enabled { Operation::EnableKey } else { Operation::DisableKey };
        let record = self.inner.update(&key_id, operation.as_str(), |r| advance(r, operation)).await?;
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }
}

/// Checks `operation` on `record` against the key-state table and moves the record to the
/// state the table says it leads to.
fn advance(record: &mut KeyRecord, operation: Operation) -> Result<()> {
    operation.check_key_state(&record.key_id, record.effective_state())?;
    record.key_state = operation.next_state(record.key_state);
    Ok(())
}
