//! [`Forwarding`]: a [`KmsBackend`] that forwards **every** method of the trait to an inner
//! backend, with [`Hooks`] around each call. Tests use it to make a real backend fail, hang,
//! answer slowly, count calls or watch its lifecycle, without a hand-written wrapper that
//! forgets to forward the optional operations (and so claims capabilities it then refuses).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::backends::KmsBackend;
//! use kms_core::mock::MemoryBackend;
//! use kms_testkit::forwarding::{Forwarding, Hooks};
//! use kms_types::error::{KmsError, Result};
//! use kms_types::types::{GenerateDataKeyRequest, KeySpec};
//!
//! /// Every data-key request fails; everything else reaches the memory backend.
//! struct NoDataKeys;
//!
//! #[async_trait::async_trait]
//! impl Hooks for NoDataKeys {
//!     type Guard = ();
//!     async fn before(&self, operation: &'static str) -> Result<()> {
//!         if operation == "generate_data_key" { Err(KmsError::backend("down")) } else { Ok(()) }
//!     }
//! }
//!
//! let backend = Forwarding::new(Arc::new(MemoryBackend::new()), NoDataKeys);
//! assert!(backend.health_check().await?);
//! let request = GenerateDataKeyRequest {
//!     key_id: "any".into(),
//!     key_spec: KeySpec::Aes256,
//!     encryption_context: Default::default(),
//! };
//! let err = backend.generate_data_key(request).await.unwrap_err();
//! assert!(matches!(err, KmsError::Backend { .. }));
//! # Ok::<(), KmsError>(()) }).unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kms_core::backends::{KmsBackend, RetryClass};
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::api_types::CacheStats;
use kms_types::error::{KmsError, Result};
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyMetadataResponse, ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse, RotateKeyRequest,
    TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
};

/// What a [`Forwarding`] backend does around the calls it forwards. Every method but
/// [`before`](Hooks::before) has a default that changes nothing.
#[async_trait]
pub trait Hooks: Send + Sync {
    /// Held for the length of one forwarded call, dropped when it ends or is cancelled
    /// (e.g. a busy counter); `()` when a hook needs none.
    type Guard: Send;

    /// Runs before every forwarded call with the trait method's name (`"describe_key"`, ...);
    /// an error is answered instead of calling the inner backend, and a future that never
    /// completes hangs the call.
    async fn before(&self, operation: &'static str) -> Result<Self::Guard>;

    /// Runs after the inner backend answered, before the answer is returned.
    async fn after(&self, operation: &'static str) {
        let _ = operation;
    }

    /// The retry class of `error`, given the inner backend's answer `inner`.
    fn retry_class(&self, error: &KmsError, inner: RetryClass) -> RetryClass {
        let _ = error;
        inner
    }

    /// Whether writes are safe to repeat, given the inner backend's answer `inner`.
    fn writes_are_retry_safe(&self, inner: bool) -> bool {
        inner
    }

    /// Whether calls may fail in a way a repeat may cure, given the inner backend's answer
    /// `inner`. Default: yes, whatever the inner backend says, since hooks may answer any
    /// error, transient ones included.
    fn may_fail_transiently(&self, inner: bool) -> bool {
        let _ = inner;
        true
    }

    /// Runs when the backend is closed, before the inner backend is; an error is returned
    /// and the inner backend stays open.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// No hooks: a plain forwarder.
#[async_trait]
impl Hooks for () {
    type Guard = ();
    async fn before(&self, _operation: &'static str) -> Result<()> {
        Ok(())
    }
}

/// A backend that forwards every method of [`KmsBackend`] to `inner`, through [`Hooks`].
pub struct Forwarding<H = ()> {
    inner: Arc<dyn KmsBackend>,
    hooks: H,
}

impl<H> std::fmt::Debug for Forwarding<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding").field("inner", &self.inner.backend_name()).finish_non_exhaustive()
    }
}

impl<H: Hooks> Forwarding<H> {
    /// Forwards to `inner` through `hooks`.
    pub fn new(inner: Arc<dyn KmsBackend>, hooks: H) -> Self {
        Self { inner, hooks }
    }

    /// The hooks (to script them while the backend is in use).
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The backend calls are forwarded to.
    pub fn inner(&self) -> &Arc<dyn KmsBackend> {
        &self.inner
    }
}

/// The trait impl: each async call listed is forwarded as `before`, the inner call with the
/// guard held, `after`; `$rest` holds the synchronous and special methods. (The whole impl
/// is generated so that `#[async_trait]` sees the expanded methods.)
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* { $($rest:tt)* }) => {
        #[async_trait]
        impl<H: Hooks> KmsBackend for Forwarding<H> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$out> {
                    let guard = self.hooks.before(stringify!($name)).await?;
                    let answer = self.inner.$name($($arg),*).await;
                    self.hooks.after(stringify!($name)).await;
                    drop(guard);
                    answer
                }
            )*
            $($rest)*
        }
    };
}

forward! {
        create_key(request: CreateKeyRequest) -> CreateKeyResponse;
        encrypt(request: EncryptRequest) -> EncryptResponse;
        decrypt(request: DecryptRequest) -> DecryptResponse;
        generate_data_key(request: GenerateDataKeyRequest) -> GenerateDataKeyResponse;
        describe_key(request: DescribeKeyRequest) -> DescribeKeyResponse;
        list_keys(request: ListKeysRequest) -> ListKeysResponse;
        delete_key(request: DeleteKeyRequest) -> DeleteKeyResponse;
        cancel_key_deletion(request: CancelKeyDeletionRequest) -> CancelKeyDeletionResponse;
        health_check() -> bool;
        generate_data_key_without_plaintext(request: GenerateDataKeyWithoutPlaintextRequest)
            -> GenerateDataKeyWithoutPlaintextResponse;
        enable_key(request: EnableKeyRequest) -> KeyMetadataResponse;
        disable_key(request: DisableKeyRequest) -> KeyMetadataResponse;
        rotate_key(request: RotateKeyRequest) -> KeyMetadataResponse;
        re_encrypt(request: ReEncryptRequest) -> ReEncryptResponse;
        update_key_description(request: UpdateKeyDescriptionRequest) -> KeyMetadataResponse;
        tag_key(request: TagKeyRequest) -> KeyMetadataResponse;
        untag_key(request: UntagKeyRequest) -> KeyMetadataResponse;
        create_alias(request: CreateAliasRequest) -> AliasEntry;
        update_alias(request: UpdateAliasRequest) -> AliasEntry;
        delete_alias(alias_name: &str) -> ();
        list_aliases(request: ListAliasesRequest) -> ListAliasesResponse;
        resolve_alias(alias_name: &str) -> String;
        backup() -> Vec<u8>;
        import_key(request: kms_types::import::ImportKeyRequest) -> KeyMetadataResponse;
        import_key_material(request: kms_types::byok::ImportMaterial) -> KeyMetadataResponse;
        delete_imported_key_material(request: kms_types::byok::DeleteImportedKeyMaterialRequest)
            -> KeyMetadataResponse;
    {

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    fn capabilities(&self) -> BackendCapabilities {
        self.inner.capabilities()
    }

    fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        self.inner.ciphertext_key_id(ciphertext_blob)
    }

    fn supports_aliases(&self) -> bool {
        self.inner.supports_aliases()
    }

    async fn close(&self) -> Result<()> {
        self.hooks.close().await?;
        self.inner.close().await
    }

    fn key_cache_stats(&self) -> Option<CacheStats> {
        self.inner.key_cache_stats()
    }

    fn retry_class(&self, error: &KmsError) -> RetryClass {
        self.hooks.retry_class(error, self.inner.retry_class(error))
    }

    fn writes_are_retry_safe(&self) -> bool {
        self.hooks.writes_are_retry_safe(self.inner.writes_are_retry_safe())
    }

    fn may_fail_transiently(&self) -> bool {
        self.hooks.may_fail_transiently(self.inner.may_fail_transiently())
    }

    fn metadata_staleness_bound(&self) -> Option<Duration> {
        self.inner.metadata_staleness_bound()
    }

    async fn clear_caches(&self) {
        self.inner.clear_caches().await
    }

    fn unsupported(&self, operation: &'static str) -> KmsError {
        self.inner.unsupported(operation)
    }
}
}
