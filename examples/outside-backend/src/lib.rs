//! A backend added to kms from outside its crates, as a downstream project would: this crate
//! uses only the public API of `kms-types` and `kms-core`.
//!
//! 1. [`OutsideBackend`] implements `kms_core::backends::KmsBackend` (here over kms-core's
//!    in-memory backend, so the example needs no external service).
//! 2. [`OutsideSettings`] is its typed configuration: the fields of a `POST /kms/v1/configure`
//!    body with `"backend_type": "outside"`, or of a `backend_config` table with
//!    `type = "outside"`. Unknown fields are refused; the token is a secret (redacted in
//!    `GET /kms/v1/config`, never in Debug output).
//! 3. [`OutsideFactory`] builds it from those settings; an application registers it with
//!    `BackendRegistry::register_typed` next to the built-in factories, and the admin API, the
//!    persisted configuration and `kms service configure` accept the new `backend_type` with
//!    no change to the kms workspace.
//!
//! ```
//! use kms_core::backends::BackendRegistry;
//! use outside_backend::{OUTSIDE, OutsideFactory};
//!
//! let mut registry = BackendRegistry::new();
//! registry.register_typed(OutsideFactory::default());
//! assert!(registry.supports(&OUTSIDE));
//! ```
//!
//! The tests (`tests/admin_api.rs`) configure it through a real `kms-admin` server and run
//! the backend contract suite on the instances the admin API configured.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kms_core::backends::{KmsBackend, TypedBackendFactory};
use kms_core::mock::MemoryBackend;
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::config::{self, BackendSettings, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::secret::{REDACTED, SecretString};
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyMetadataResponse, ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse, RotateKeyRequest,
    TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
};
use serde::{Deserialize, Serialize};

/// This backend's kind: the `backend_type` of the admin API.
pub const OUTSIDE: config::KmsBackend = config::KmsBackend::from_static("outside");

/// The settings of an [`OutsideBackend`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideSettings {
    /// Where the keys live: 1 to 32 of `a-z`, `0-9` and `-`.
    pub region: String,
    /// The credential the backend presents (a secret).
    pub access_token: SecretString,
}

impl BackendSettings for OutsideSettings {
    fn validate(&self) -> Result<()> {
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 32
            && self.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(KmsError::configuration("backend_config.region", "must be 1 to 32 of a-z, 0-9 and '-'"));
        }
        if self.access_token.is_empty() {
            return Err(KmsError::configuration("backend_config.access_token", "must not be empty"));
        }
        Ok(())
    }

    fn redacted(&self) -> Self {
        Self { region: self.region.clone(), access_token: REDACTED.into() }
    }
}

/// A key store in one region. Keys and ciphertexts are kms-core's in-memory backend's.
#[derive(Debug)]
pub struct OutsideBackend {
    region: String,
    keys: MemoryBackend,
}

impl OutsideBackend {
    /// An empty store in the settings' region.
    pub fn new(settings: &OutsideSettings) -> Self {
        Self { region: settings.region.clone(), keys: MemoryBackend::new() }
    }

    /// The region it was configured with.
    pub fn region(&self) -> &str {
        &self.region
    }
}

#[async_trait]
impl KmsBackend for OutsideBackend {
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        self.keys.create_key(request).await
    }
    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        self.keys.encrypt(request).await
    }
    async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse> {
        self.keys.decrypt(request).await
    }
    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        self.keys.generate_data_key(request).await
    }
    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        self.keys.describe_key(request).await
    }
    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        self.keys.list_keys(request).await
    }
    async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        self.keys.delete_key(request).await
    }
    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        self.keys.cancel_key_deletion(request).await
    }
    async fn health_check(&self) -> Result<bool> {
        self.keys.health_check().await
    }
    fn backend_name(&self) -> &'static str {
        "outside"
    }
    fn capabilities(&self) -> BackendCapabilities {
        self.keys.capabilities()
    }
    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        self.keys.ciphertext_key_id(ciphertext_blob)
    }
    async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        self.keys.generate_data_key_without_plaintext(request).await
    }
    async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        self.keys.enable_key(request).await
    }
    async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        self.keys.disable_key(request).await
    }
    async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        self.keys.rotate_key(request).await
    }
    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        self.keys.re_encrypt(request).await
    }
    async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        self.keys.update_key_description(request).await
    }
    async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        self.keys.tag_key(request).await
    }
    async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        self.keys.untag_key(request).await
    }
    fn supports_aliases(&self) -> bool {
        self.keys.supports_aliases()
    }
    async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        self.keys.create_alias(request).await
    }
    async fn update_alias(&self, request: UpdateAliasRequest) -> Result<AliasEntry> {
        self.keys.update_alias(request).await
    }
    async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.keys.delete_alias(alias_name).await
    }
    async fn list_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        self.keys.list_aliases(request).await
    }
    async fn resolve_alias(&self, alias_name: &str) -> Result<String> {
        self.keys.resolve_alias(alias_name).await
    }
    // BYOK: the manager above unwraps the material; the backend only stores it.
    async fn import_key_material(&self, request: kms_types::byok::ImportMaterial) -> Result<KeyMetadataResponse> {
        self.keys.import_key_material(request).await
    }
    async fn delete_imported_key_material(
        &self,
        request: kms_types::byok::DeleteImportedKeyMaterialRequest,
    ) -> Result<KeyMetadataResponse> {
        self.keys.delete_imported_key_material(request).await
    }
}

/// Builds an [`OutsideBackend`] from its [`OutsideSettings`], and keeps the last one it built
/// within reach of the application that registered it ([`Self::last_built`]).
#[derive(Debug, Clone, Default)]
pub struct OutsideFactory {
    last_built: Arc<Mutex<Option<Arc<OutsideBackend>>>>,
}

impl OutsideFactory {
    /// The backend this factory (or a clone of it) built last, if any.
    pub fn last_built(&self) -> Option<Arc<OutsideBackend>> {
        self.last_built.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl TypedBackendFactory for OutsideFactory {
    type Settings = OutsideSettings;

    fn kind(&self) -> config::KmsBackend {
        OUTSIDE
    }

    async fn build(&self, settings: OutsideSettings, _config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        let backend = Arc::new(OutsideBackend::new(&settings));
        *self.last_built.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&backend));
        Ok(backend)
    }
}
