//! [`EncryptionService`]: the façade S3 request handlers (and other embedders) call.
//!
//! It mirrors the AWS KMS operations over a [`KmsManager`] and adds default-key handling
//! (`default_key_id` from the configuration). A service obtained from the
//! [`KmsServiceManager`](crate::service_manager::KmsServiceManager) always uses the backend in
//! force when a call starts: it follows reconfigures, each call finishes on the backend it
//! started on, and once the service is stopped calls fail with
//! [`KmsError::ServiceUnavailable`]. [`EncryptionService::new`] builds one over a fixed manager.
//!
//! The S3 pipeline (`encrypt_stream`, `decrypt_stream`, multipart, `rewrap`) is implemented
//! in the sibling modules [`pipeline`](super::pipeline) and [`rewrap`](super::rewrap).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::encryption::service::EncryptionService;
//! use kms_core::manager::{KmsManager, ManagerOptions};
//! use kms_core::mock::MemoryBackend;
//! use kms_types::types::{DecryptRequest, GenerateDataKeyRequest, KeySpec};
//!
//! let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
//! let service = EncryptionService::new(Arc::new(manager)).with_default_key_id("bucket-default");
//! let key = service.ensure_default_key().await?.expect("a default key is configured");
//! let data_key = service
//!     .generate_data_key(GenerateDataKeyRequest {
//!         key_id: service.resolve_key_id(None).await?,
//!         key_spec: KeySpec::Aes256,
//!         encryption_context: [("bucket".into(), "photos".into())].into(),
//!     })
//!     .await?;
//! assert_eq!(data_key.key_id, key.key_id);
//! let unwrapped = service
//!     .decrypt(DecryptRequest {
//!         ciphertext_blob: data_key.ciphertext_blob,
//!         encryption_context: [("bucket".into(), "photos".into())].into(),
//!         key_id: None,
//!     })
//!     .await?;
//! assert_eq!(unwrapped.plaintext.expose_secret(), data_key.plaintext_key.expose_secret());
//! # Ok::<(), kms_types::KmsError>(()) }).unwrap();
//! ```

use std::sync::Arc;

use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::api_types::CacheStats;
use kms_types::error::{KmsError, Result};
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyMetadata, KeyMetadataResponse, ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse,
    RotateKeyRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
};
use tokio::sync::OwnedRwLockReadGuard;

#[cfg(feature = "sse")]
use super::key_cache::DataKeyCache;
use crate::manager::KmsManager;
use crate::slot::{Active, ServiceSlot};

/// The façade over a [`KmsManager`]. See the [module docs](self).
#[derive(Debug)]
pub struct EncryptionService {
    source: Source,
    /// The data-key cache of the KMS-unavailable policy (inert by default); see
    /// [`key_cache`](super::key_cache).
    #[cfg(feature = "sse")]
    pub(super) data_keys: DataKeyCache,
}

#[derive(Debug)]
enum Source {
    Fixed { manager: Arc<KmsManager>, default_key_id: Option<String> },
    Managed(Arc<ServiceSlot>),
}

/// The manager a call runs on: borrowed from a fixed service, or (for a managed service) the
/// backend in force with the guard that keeps it open until the call is done. Nothing is
/// copied per call (no default key id, no reference count for a fixed manager).
enum Lease<'a> {
    Fixed { manager: &'a Arc<KmsManager>, default_key_id: &'a Option<String> },
    Managed { active: Arc<Active>, _in_flight: OwnedRwLockReadGuard<()> },
}

impl Lease<'_> {
    fn manager(&self) -> &Arc<KmsManager> {
        match self {
            Self::Fixed { manager, .. } => manager,
            Self::Managed { active, .. } => &active.manager,
        }
    }

    fn default_key_id(&self) -> Option<&str> {
        match self {
            Self::Fixed { default_key_id, .. } => default_key_id.as_deref(),
            Self::Managed { active, .. } => active.default_key_id.as_deref(),
        }
    }
}

macro_rules! delegate {
    ($($(#[$doc:meta])* $name:ident($request:ty) -> $response:ty;)*) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self, mut request: $request) -> Result<$response> {
                let lease = self.lease().await?;
                super::aliases::resolve(lease.manager(), &mut request).await?;
                lease.manager().$name(request).await
            }
        )*
    };
}

impl EncryptionService {
    /// A service over a fixed manager, with no default key.
    pub fn new(manager: Arc<KmsManager>) -> Self {
        Self {
            source: Source::Fixed { manager, default_key_id: None },
            #[cfg(feature = "sse")]
            data_keys: DataKeyCache::default(),
        }
    }

    /// Sets the key used when a caller names none (only for a service built with [`Self::new`];
    /// a managed service takes it from the configuration).
    pub fn with_default_key_id(mut self, key_id: impl Into<String>) -> Self {
        if let Source::Fixed { default_key_id, .. } = &mut self.source {
            *default_key_id = Some(key_id.into());
        }
        self
    }

    pub(crate) fn managed(slot: Arc<ServiceSlot>) -> Self {
        Self {
            source: Source::Managed(slot),
            #[cfg(feature = "sse")]
            data_keys: DataKeyCache::default(),
        }
    }

    async fn lease(&self) -> Result<Lease<'_>> {
        match &self.source {
            Source::Fixed { manager, default_key_id } => Ok(Lease::Fixed { manager, default_key_id }),
            Source::Managed(slot) => {
                slot.lease().await.map(|(active, guard)| Lease::Managed { active, _in_flight: guard })
            }
        }
    }

    delegate! {
        /// Creates a master key.
        create_key(CreateKeyRequest) -> CreateKeyResponse;
        /// Encrypts at most 4096 bytes under a master key.
        encrypt(EncryptRequest) -> EncryptResponse;
        /// Decrypts a ciphertext from `encrypt` or a wrapped data key.
        decrypt(DecryptRequest) -> DecryptResponse;
        /// Generates a data key, in plaintext and wrapped.
        generate_data_key(GenerateDataKeyRequest) -> GenerateDataKeyResponse;
        /// Generates a data key, wrapped only.
        generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest) -> GenerateDataKeyWithoutPlaintextResponse;
        /// Describes a key (served from the metadata cache when fresh).
        describe_key(DescribeKeyRequest) -> DescribeKeyResponse;
        /// Lists keys, one page at a time.
        list_keys(ListKeysRequest) -> ListKeysResponse;
        /// Schedules a key's deletion (7-30 days).
        delete_key(DeleteKeyRequest) -> DeleteKeyResponse;
        /// Cancels a scheduled deletion; the key comes back `Disabled`.
        cancel_key_deletion(CancelKeyDeletionRequest) -> CancelKeyDeletionResponse;
        /// Enables a key.
        enable_key(EnableKeyRequest) -> KeyMetadataResponse;
        /// Disables a key.
        disable_key(DisableKeyRequest) -> KeyMetadataResponse;
        /// Rotates a key; older versions keep decrypting.
        rotate_key(RotateKeyRequest) -> KeyMetadataResponse;
        /// Moves a ciphertext to another key or to the newest version.
        re_encrypt(ReEncryptRequest) -> ReEncryptResponse;
        /// Replaces a key's description.
        update_key_description(UpdateKeyDescriptionRequest) -> KeyMetadataResponse;
        /// Adds or overwrites tags.
        tag_key(TagKeyRequest) -> KeyMetadataResponse;
        /// Removes tags.
        untag_key(UntagKeyRequest) -> KeyMetadataResponse;
    }

    /// The key id `ciphertext_blob` names, read from its unauthenticated header by the
    /// current backend's parser (no cryptography, no backend call: see
    /// [`KmsBackend::ciphertext_key_id`](crate::backends::KmsBackend::ciphertext_key_id));
    /// `Ok(None)` if it is not a ciphertext of that backend's format. Fails only when the
    /// service is not running. Authorize on the id first, then decrypt with
    /// `DecryptRequest::key_id` set to it.
    pub async fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Result<Option<String>> {
        Ok(self.lease().await?.manager().ciphertext_key_id(ciphertext_blob))
    }

    /// Creates an alias of a key (`alias/...`, usable wherever a key id is).
    pub async fn create_alias(&self, request: CreateAliasRequest) -> Result<AliasEntry> {
        self.lease().await?.manager().backend().create_alias(request).await
    }

    /// Points an alias at another key.
    pub async fn update_alias(&self, request: UpdateAliasRequest) -> Result<AliasEntry> {
        self.lease().await?.manager().backend().update_alias(request).await
    }

    /// Deletes an alias (the key stays).
    pub async fn delete_alias(&self, alias_name: &str) -> Result<()> {
        self.lease().await?.manager().backend().delete_alias(alias_name).await
    }

    /// Lists aliases in name order, one page at a time.
    pub async fn list_aliases(&self, request: ListAliasesRequest) -> Result<ListAliasesResponse> {
        self.lease().await?.manager().backend().list_aliases(request).await
    }

    /// The key id `key_ref` names: itself, or what the alias `alias/...` points at.
    pub async fn resolve_key_ref(&self, key_ref: &str) -> Result<String> {
        if kms_types::alias::is_alias(key_ref) {
            self.lease().await?.manager().backend().resolve_alias(key_ref).await
        } else {
            Ok(key_ref.to_owned())
        }
    }

    /// Whether the running backend stores aliases.
    pub async fn supports_aliases(&self) -> Result<bool> {
        Ok(self.lease().await?.manager().backend().supports_aliases())
    }

    /// Whether the backend can serve requests.
    pub async fn health_check(&self) -> Result<bool> {
        let lease = self.lease().await?;
        lease.manager().health_check().await
    }

    /// The metadata cache's statistics.
    pub async fn cache_stats(&self) -> Result<CacheStats> {
        Ok(self.lease().await?.manager().cache_stats())
    }

    /// The statistics of the backend's own cache of opened keys, if it has one.
    pub async fn backend_key_cache_stats(&self) -> Result<Option<CacheStats>> {
        Ok(self.lease().await?.manager().backend_key_cache_stats())
    }

    /// The optional operations the backend in force implements.
    pub async fn capabilities(&self) -> Result<BackendCapabilities> {
        Ok(self.lease().await?.manager().backend().capabilities())
    }

    /// Drops every cache: the manager's metadata cache and the backend's own.
    pub async fn clear_caches(&self) -> Result<()> {
        self.lease().await?.manager().clear_all_caches().await;
        Ok(())
    }

    /// A sealed backup bundle of every key, if the backend makes them
    /// ([`KmsBackend::backup`](crate::backends::KmsBackend::backup)).
    pub async fn backup(&self) -> Result<Vec<u8>> {
        self.lease().await?.manager().backend().backup().await
    }

    /// Creates a key with material brought from another KMS
    /// ([`KmsManager::import_key`](crate::manager::KmsManager::import_key)).
    pub async fn import_key(
        &self,
        request: kms_types::import::ImportKeyRequest,
    ) -> Result<kms_types::types::KeyMetadataResponse> {
        self.lease().await?.manager().import_key(request).await
    }

    /// Adopts a key the backend's store holds but kms did not make, or checks it without
    /// `commit` ([`KmsBackend::adopt_key`](crate::backends::KmsBackend::adopt_key)).
    pub async fn adopt_key(
        &self,
        request: kms_types::adopt::AdoptKeyRequest,
    ) -> Result<kms_types::adopt::AdoptKeyResponse> {
        request.validate()?;
        self.lease().await?.manager().backend().adopt_key(request).await
    }

    /// BYOK: a fresh wrapping key and import token for an external key (`docs/byok.md`).
    pub async fn get_parameters_for_import(
        &self,
        mut request: kms_types::byok::GetParametersForImportRequest,
    ) -> Result<kms_types::byok::GetParametersForImportResponse> {
        let lease = self.lease().await?;
        super::aliases::resolve(lease.manager(), &mut request).await?;
        lease.manager().get_parameters_for_import(request).await
    }

    /// BYOK: imports wrapped key material with its import token (`docs/byok.md`). Aliases are
    /// not resolved: the token is bound to the key id it was issued for.
    pub async fn import_key_material(
        &self,
        request: kms_types::byok::ImportKeyMaterialRequest,
    ) -> Result<kms_types::types::KeyMetadataResponse> {
        self.lease().await?.manager().import_key_material(request).await
    }

    /// BYOK: deletes an external key's imported material (`docs/byok.md`).
    pub async fn delete_imported_key_material(
        &self,
        mut request: kms_types::byok::DeleteImportedKeyMaterialRequest,
    ) -> Result<kms_types::types::KeyMetadataResponse> {
        let lease = self.lease().await?;
        super::aliases::resolve(lease.manager(), &mut request).await?;
        lease.manager().delete_imported_key_material(request).await
    }

    /// The configured default key id, if any.
    pub async fn default_key_id(&self) -> Result<Option<String>> {
        Ok(self.lease().await?.default_key_id().map(str::to_owned))
    }

    /// `key_id` if given, else the default key; `InvalidRequest` (field `key_id`) when there
    /// is neither.
    pub async fn resolve_key_id(&self, key_id: Option<&str>) -> Result<String> {
        if let Some(key_id) = key_id {
            return Ok(key_id.to_owned());
        }
        self.default_key_id()
            .await?
            .ok_or_else(|| KmsError::invalid_request("key_id", "no key id given and no default key configured"))
    }

    /// Makes sure the default key exists, creating it if needed (a concurrent creator winning
    /// the race is fine), and returns its metadata; `None` when no default key is configured.
    pub async fn ensure_default_key(&self) -> Result<Option<KeyMetadata>> {
        let lease = self.lease().await?;
        let Some(key_id) = lease.default_key_id().map(str::to_owned) else {
            return Ok(None);
        };
        let describe = || lease.manager().describe_key(DescribeKeyRequest { key_id: key_id.clone() });
        match describe().await {
            Ok(found) => return Ok(Some(found.key_metadata)),
            Err(KmsError::KeyNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let request = CreateKeyRequest {
            key_name: Some(key_id.clone()),
            description: Some("default key, created by kms".into()),
            ..Default::default()
        };
        match lease.manager().create_key(request).await {
            Ok(created) => Ok(Some(created.key_metadata)),
            Err(KmsError::KeyAlreadyExists { .. }) => describe().await.map(|r| Some(r.key_metadata)),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::ManagerOptions;
    use crate::mock::MemoryBackend;

    fn service(default: Option<&str>) -> EncryptionService {
        let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
        let service = EncryptionService::new(Arc::new(manager));
        match default {
            Some(id) => service.with_default_key_id(id),
            None => service,
        }
    }

    #[tokio::test]
    async fn ensure_default_key_creates_once_and_is_idempotent() {
        let s = service(Some("dflt"));
        let first = s.ensure_default_key().await.unwrap().unwrap();
        let second = s.ensure_default_key().await.unwrap().unwrap();
        assert_eq!(first, second);
        assert_eq!(s.resolve_key_id(None).await.unwrap(), "dflt");
        assert_eq!(s.resolve_key_id(Some("other")).await.unwrap(), "other");
    }

    #[tokio::test]
    async fn without_a_default_key_resolution_is_an_invalid_request() {
        let s = service(None);
        assert_eq!(s.ensure_default_key().await.unwrap(), None);
        let err = s.resolve_key_id(None).await.unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == "key_id"), "{err:?}");
    }

    #[tokio::test]
    async fn every_operation_reaches_the_backend() {
        let s = service(None);
        let id = s.create_key(CreateKeyRequest::default()).await.unwrap().key_id;
        let k = || kms_types::types::KeyIdRequest { key_id: id.clone() };
        s.disable_key(k()).await.unwrap();
        s.enable_key(k()).await.unwrap();
        s.rotate_key(k()).await.unwrap();
        s.update_key_description(UpdateKeyDescriptionRequest { key_id: id.clone(), description: "d".into() })
            .await
            .unwrap();
        s.tag_key(TagKeyRequest { key_id: id.clone(), tags: [("a".into(), "b".into())].into() }).await.unwrap();
        s.untag_key(UntagKeyRequest { key_id: id.clone(), tag_keys: vec!["a".into()] }).await.unwrap();
        let meta = s.describe_key(DescribeKeyRequest { key_id: id.clone() }).await.unwrap().key_metadata;
        assert_eq!((meta.current_version, meta.description.as_deref(), meta.tags.len()), (2, Some("d"), 0));
        let sealed = s
            .encrypt(EncryptRequest {
                key_id: id.clone(),
                plaintext: b"x".as_slice().into(),
                encryption_context: Default::default(),
            })
            .await
            .unwrap();
        let moved = s
            .re_encrypt(ReEncryptRequest {
                ciphertext_blob: sealed.ciphertext_blob,
                source_encryption_context: Default::default(),
                destination_key_id: None,
                destination_encryption_context: None,
            })
            .await
            .unwrap();
        let opened = s
            .decrypt(DecryptRequest {
                ciphertext_blob: moved.ciphertext_blob,
                encryption_context: Default::default(),
                key_id: None,
            })
            .await
            .unwrap();
        assert_eq!(opened.plaintext.expose_secret(), b"x");
        s.generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
            key_id: id.clone(),
            key_spec: Default::default(),
            encryption_context: Default::default(),
        })
        .await
        .unwrap();
        assert_eq!(s.list_keys(ListKeysRequest::default()).await.unwrap().keys.len(), 1);
        s.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: None }).await.unwrap();
        s.cancel_key_deletion(CancelKeyDeletionRequest { key_id: id }).await.unwrap();
        assert!(s.health_check().await.unwrap());
        assert!(s.cache_stats().await.unwrap().capacity > 0);
    }
}
