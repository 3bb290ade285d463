//! The contract suite can fail: backends that each break one rule are caught by the cases
//! that check that rule, while the honest in-memory backend passes every case.

use std::sync::Arc;

use async_trait::async_trait;
use kms_core::backends::KmsBackend;
use kms_core::mock::MemoryBackend;
use kms_core::testkit::{CaseResult, run_all};
use kms_types::error::{KmsError, Result};
use kms_types::types::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Drops the encryption context everywhere, so any context decrypts.
    IgnoresContext,
    /// Ignores the key id a decrypt request names.
    IgnoresExpectedKey,
    /// Lists each page in descending order.
    ListsDescending,
    /// Declares every capability but implements none.
    OverclaimsCapabilities,
    /// Cancelling a deletion re-enables the key.
    CancelEnables,
    /// Encrypts with Disabled keys.
    DisabledKeysEncrypt,
    /// Clamps an out-of-range deletion window instead of refusing it.
    ClampsWindow,
    /// Treats create of an existing id as success.
    CreateIsUpsert,
    /// Returns success for a tag request without declaring tags.
    SilentlyIgnoresTags,
    /// Cannot name the key of its own ciphertexts (the trait's default).
    NamesNoCiphertextKey,
    /// Refuses a second deletion naming its own method (`delete_key`), not the operation of
    /// the key-state table (`schedule_key_deletion`).
    MisnamesRefusedOperation,
    /// Creates an ordinary key when asked for one of external origin.
    IgnoresOrigin,
}

struct Flawed {
    inner: MemoryBackend,
    flaw: Flaw,
}

impl Flawed {
    fn new(flaw: Flaw) -> Self {
        let inner = if flaw == Flaw::OverclaimsCapabilities || flaw == Flaw::SilentlyIgnoresTags {
            MemoryBackend::with_capabilities(BackendCapabilities::default())
        } else if flaw == Flaw::IgnoresOrigin {
            // Without import, an external key must be refused (with import, the BYOK cases
            // see it as a key that never reaches `PendingImport`).
            MemoryBackend::with_capabilities(BackendCapabilities {
                import_key_material: false,
                ..BackendCapabilities::ALL
            })
        } else {
            MemoryBackend::new()
        };
        Self { inner, flaw }
    }
}

#[async_trait]
impl KmsBackend for Flawed {
    async fn create_key(&self, mut request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        if self.flaw == Flaw::IgnoresOrigin {
            request.origin = None;
        }
        let name = request.key_name.clone();
        match self.inner.create_key(request).await {
            Err(KmsError::KeyAlreadyExists { .. }) if self.flaw == Flaw::CreateIsUpsert => {
                let key_id = name.unwrap_or_default();
                let key_metadata =
                    self.inner.describe_key(DescribeKeyRequest { key_id: key_id.clone() }).await?.key_metadata;
                Ok(CreateKeyResponse { key_id, key_metadata })
            }
            other => other,
        }
    }
    async fn encrypt(&self, mut request: EncryptRequest) -> Result<EncryptResponse> {
        if self.flaw == Flaw::IgnoresContext {
            request.encryption_context.clear();
        }
        if self.flaw == Flaw::DisabledKeysEncrypt {
            let key = KeyIdRequest { key_id: request.key_id.clone() };
            let state = self.inner.describe_key(DescribeKeyRequest { key_id: key.key_id.clone() }).await;
            if state.is_ok_and(|s| s.key_metadata.key_state == KeyState::Disabled) {
                self.inner.enable_key(key.clone()).await?;
                let result = self.inner.encrypt(request).await;
                self.inner.disable_key(key).await?;
                return result;
            }
        }
        self.inner.encrypt(request).await
    }
    async fn decrypt(&self, mut request: DecryptRequest) -> Result<DecryptResponse> {
        if self.flaw == Flaw::IgnoresContext {
            request.encryption_context.clear();
        }
        if self.flaw == Flaw::IgnoresExpectedKey {
            request.key_id = None;
        }
        self.inner.decrypt(request).await
    }
    async fn generate_data_key(&self, mut request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        if self.flaw == Flaw::IgnoresContext {
            request.encryption_context.clear();
        }
        self.inner.generate_data_key(request).await
    }
    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        self.inner.describe_key(request).await
    }
    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        let mut page = self.inner.list_keys(request).await?;
        if self.flaw == Flaw::ListsDescending {
            page.keys.reverse();
        }
        Ok(page)
    }
    async fn delete_key(&self, mut request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        if self.flaw == Flaw::ClampsWindow {
            request.pending_window_in_days = request.pending_window_in_days.map(|d| d.clamp(7, 30));
        }
        match self.inner.delete_key(request).await {
            Err(KmsError::InvalidKeyState { key_id, state, .. }) if self.flaw == Flaw::MisnamesRefusedOperation => {
                Err(KmsError::invalid_key_state(key_id, state, "delete_key"))
            }
            other => other,
        }
    }
    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        let key_id = request.key_id.clone();
        let mut response = self.inner.cancel_key_deletion(request).await?;
        if self.flaw == Flaw::CancelEnables {
            self.inner.enable_key(KeyIdRequest { key_id }).await?;
            response.key_state = KeyState::Enabled;
        }
        Ok(response)
    }
    async fn health_check(&self) -> Result<bool> {
        self.inner.health_check().await
    }
    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        if self.flaw == Flaw::NamesNoCiphertextKey {
            return None;
        }
        self.inner.ciphertext_key_id(ciphertext_blob)
    }
    fn capabilities(&self) -> BackendCapabilities {
        if self.flaw == Flaw::OverclaimsCapabilities { BackendCapabilities::ALL } else { self.inner.capabilities() }
    }
    async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        self.inner.generate_data_key_without_plaintext(request).await
    }
    async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        self.inner.enable_key(request).await
    }
    async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        self.inner.disable_key(request).await
    }
    async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        self.inner.rotate_key(request).await
    }
    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        self.inner.re_encrypt(request).await
    }
    async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        self.inner.update_key_description(request).await
    }
    async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        if self.flaw == Flaw::SilentlyIgnoresTags {
            let key_metadata =
                self.inner.describe_key(DescribeKeyRequest { key_id: request.key_id }).await?.key_metadata;
            return Ok(KeyMetadataResponse { key_metadata });
        }
        self.inner.tag_key(request).await
    }
    async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        self.inner.untag_key(request).await
    }
}

fn failed(results: &[CaseResult]) -> Vec<&'static str> {
    results.iter().filter(|r| !r.passed()).map(|r| r.name).collect()
}

async fn assert_caught(flaw: Flaw, must_fail: &[&str]) {
    let results = run_all(|| async move { Flawed::new(flaw) }).await;
    let failed = failed(&results);
    for case in must_fail {
        assert!(failed.contains(case), "{flaw:?} was not caught by `{case}`; failed cases: {failed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_backend_passes_every_case() {
    let results = run_all(|| async { Arc::new(MemoryBackend::new()) as Arc<dyn KmsBackend> }).await;
    assert_eq!(results.len(), kms_core::testkit::case_names().len());
    let report: Vec<String> = results.iter().filter(|r| !r.passed()).map(ToString::to_string).collect();
    assert!(report.is_empty(), "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_ignoring_the_encryption_context_is_caught() {
    assert_caught(Flaw::IgnoresContext, &["encryption_context_is_bound"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_ignoring_the_expected_key_is_caught() {
    assert_caught(Flaw::IgnoresExpectedKey, &["wrong_key_ciphertexts_fail"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_listing_out_of_order_is_caught() {
    assert_caught(Flaw::ListsDescending, &["list_keys_pages_in_ascending_order", "list_keys_under_concurrent_creates"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_overclaiming_capabilities_is_caught() {
    assert_caught(Flaw::OverclaimsCapabilities, &["capabilities_gate_optional_operations", "enabled_key_operations"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_silently_accepting_unsupported_operations_is_caught() {
    assert_caught(Flaw::SilentlyIgnoresTags, &["capabilities_gate_optional_operations", "description_and_tags"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_re_enabling_on_cancel_is_caught() {
    assert_caught(Flaw::CancelEnables, &["cancel_deletion_leaves_key_disabled", "pending_deletion_key_operations"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_encrypting_with_disabled_keys_is_caught() {
    assert_caught(Flaw::DisabledKeysEncrypt, &["disabled_key_operations"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_clamping_deletion_windows_is_caught() {
    assert_caught(Flaw::ClampsWindow, &["delete_key_rejects_bad_windows"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_with_upserting_create_is_caught() {
    assert_caught(Flaw::CreateIsUpsert, &["create_existing_key_fails", "concurrent_creates"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_cannot_name_its_ciphertexts_keys_is_caught() {
    assert_caught(Flaw::NamesNoCiphertextKey, &["ciphertexts_name_their_key"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_misnaming_the_refused_operation_is_caught() {
    assert_caught(Flaw::MisnamesRefusedOperation, &["pending_deletion_key_operations"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_ignoring_the_key_origin_is_caught() {
    assert_caught(Flaw::IgnoresOrigin, &["external_origin_is_unsupported"]).await;
}
