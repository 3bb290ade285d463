//! [`KmsManager`]: the policy layer around one backend.
//!
//! **The one place that retries.** Every call has a budget, `KmsConfig::timeout` (30 s by
//! default: longer than an OpenBao Raft election with default timing, ~9-14 s), covering all
//! its attempts and the pauses between them. Each attempt runs under [`attempt_timeout`] of
//! that budget (a quarter, 1 to 10 s); backends and transports below never retry on their
//! own. After a failed attempt the backend classifies the error
//! (`KmsBackend::retry_class`):
//! - [`RetryClass::Final`]: returned at once (crypto, not-found, key-state, authorization,
//!   bad request);
//! - [`RetryClass::Retry`]: a transient failure, retried at most `retry_attempts` times;
//! - [`RetryClass::Move`]: the node asked cannot serve (down, sealed, no leader elected yet):
//!   retried, on another node, for as long as the budget lasts.
//!
//! Pauses grow exponentially with "equal jitter" ([`RetryPolicy`]), and no call makes more
//! than [`MAX_ATTEMPTS`] attempts. `retry_attempts = 0` turns retries off. Reads are
//! retried; calls that create or change something only when the backend says a repeat is
//! safe (`KmsBackend::writes_are_retry_safe`:
//! the Vault backend reads a write whose reply was lost back, and records a rotation that
//! already happened instead of rotating twice); otherwise they run once, under the whole
//! budget. A backend with no failure a repeat could cure (`KmsBackend::may_fail_transiently`
//! is false: the local backend) runs every call once, under the whole budget, and gets its
//! requests without a per-attempt copy.
//!
//! Every request is validated first, once for every backend ([`crate::validate`]): a
//! malformed request never reaches the backend.
//!
//! Key metadata from `describe_key` is kept in an LRU cache bounded by [`CacheConfig`]
//! (entries and TTL; for a backend shared by several servers the TTL is capped to
//! `KmsBackend::metadata_staleness_bound`);
//! every mutation of a key removes its entry, and a describe that raced with a mutation does
//! not put its (possibly stale) answer back.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::manager::{KmsManager, ManagerOptions};
//! use kms_core::mock::MemoryBackend;
//! use kms_types::types::{CreateKeyRequest, DescribeKeyRequest};
//!
//! let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
//! let key = manager.create_key(CreateKeyRequest::default()).await?;
//! manager.describe_key(DescribeKeyRequest { key_id: key.key_id.clone() }).await?;
//! manager.describe_key(DescribeKeyRequest { key_id: key.key_id }).await?; // from the cache
//! assert_eq!(manager.cache_stats().hits, 1);
//! # Ok::<(), kms_types::KmsError>(()) }).unwrap();
//! ```

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use kms_crypto::wrapping::ImportWrappingKey;
use kms_types::api_types::CacheStats;
use kms_types::byok::{
    DeleteImportedKeyMaterialRequest, GetParametersForImportRequest, GetParametersForImportResponse,
    IMPORT_MATERIAL_LEN, ImportKeyMaterialRequest, ImportMaterial, ImportRefusal,
};
use kms_types::config::{CacheConfig, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::types::{
    CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse, DecryptRequest,
    DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse, DisableKeyRequest,
    EnableKeyRequest, EncryptRequest, EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse,
    GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse, KeyMetadata, KeyMetadataResponse,
    KeyOrigin, ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse, RotateKeyRequest, TagKeyRequest,
    UntagKeyRequest, UpdateKeyDescriptionRequest,
};
use lru::LruCache;
use tokio::time::Instant;

use crate::backends::{KmsBackend, RetryClass};
use crate::import_sessions::ImportSessions;
use crate::validate;

/// Most attempts one call makes, whatever its budget.
pub const MAX_ATTEMPTS: u32 = 48;

/// The deadline of one attempt of a call whose whole budget is `budget`: a quarter of it,
/// between 1 and 10 seconds (never more than the budget).
pub fn attempt_timeout(budget: Duration) -> Duration {
    (budget / 4).clamp(Duration::from_secs(1), Duration::from_secs(10)).min(budget)
}

/// One attempt of `operation` under `limit`. The call is polled once before any timer is
/// set: one that completes at once (the local backend with its key in memory) never touches
/// the runtime's timer, which cost more than the local data path's own work per call; one
/// that waits then runs under the deadline as before.
async fn run_attempt<T>(operation: &'static str, limit: Duration, call: impl Future<Output = Result<T>>) -> Result<T> {
    let mut call = std::pin::pin!(call);
    if let Poll::Ready(result) = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        return result;
    }
    tokio::time::timeout(limit, call).await.unwrap_or(Err(KmsError::Timeout { operation, after: limit }))
}

/// Backoff of retried reads: attempt `n` (from 0) waits a random time in
/// `[d/2, d]` where `d = min(max_delay, base_delay × 2ⁿ)` ("equal jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = none).
    pub max_retries: u32,
    /// Delay before the first retry (before jitter).
    pub base_delay: Duration,
    /// Largest delay between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: kms_types::config::DEFAULT_RETRY_ATTEMPTS,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), jittered.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(2u32.saturating_pow(retry)).min(self.max_delay);
        kms_crypto::rand::equal_jitter(ceiling)
    }
}

/// How a [`KmsManager`] treats its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Budget of each call: all its attempts and the pauses between them.
    pub timeout: Duration,
    /// Retries of transient failures, and the pauses between attempts.
    pub retry: RetryPolicy,
    /// Metadata cache bounds; `None` disables the cache.
    pub cache: Option<CacheConfig>,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            timeout: kms_types::config::DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            cache: Some(CacheConfig::default()),
        }
    }
}

impl From<&KmsConfig> for ManagerOptions {
    fn from(config: &KmsConfig) -> Self {
        Self {
            timeout: config.timeout,
            retry: RetryPolicy { max_retries: config.retry_attempts, ..RetryPolicy::default() },
            cache: config.enable_cache.then(|| config.cache_config.clone()),
        }
    }
}

/// Timeouts, retries and the metadata cache around one backend. See the [module docs](self).
pub struct KmsManager {
    backend: Arc<dyn KmsBackend>,
    options: ManagerOptions,
    cache: Option<MetadataCache>,
    import_sessions: ImportSessions,
}

impl std::fmt::Debug for KmsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsManager")
            .field("backend", &self.backend.backend_name())
            .field("options", &self.options)
            .field("cache", &self.cache_stats())
            .finish()
    }
}

impl KmsManager {
    /// A manager over `backend` with the timeout, retries and cache of `config`.
    pub fn new(backend: Arc<dyn KmsBackend>, config: &KmsConfig) -> Self {
        Self::with_options(backend, ManagerOptions::from(config))
    }

    /// A manager over `backend` with explicit options.
    pub fn with_options(backend: Arc<dyn KmsBackend>, options: ManagerOptions) -> Self {
        let bound = backend.metadata_staleness_bound();
        let cache = options.cache.as_ref().map(|config| {
            let mut config = config.clone();
            if let Some(bound) = bound {
                config.ttl = config.ttl.min(bound);
            }
            MetadataCache::new(&config)
        });
        Self { backend, options, cache, import_sessions: ImportSessions::default() }
    }

    /// Replaces the registry of BYOK import sessions (a test clock, a shorter lifetime).
    pub fn with_import_sessions(mut self, sessions: ImportSessions) -> Self {
        self.import_sessions = sessions;
        self
    }

    /// The outstanding BYOK import sessions.
    pub fn import_sessions(&self) -> &ImportSessions {
        &self.import_sessions
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn KmsBackend> {
        &self.backend
    }

    /// The options in force.
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    /// Runs `call` until it succeeds, fails for good, or the budget is spent (see the
    /// [module docs](self)).
    async fn run<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_with(operation, true, call).await
    }

    /// Whether a call the operation would let repeat may actually be tried again: retries
    /// are on and the backend has failures a repeat may cure.
    fn retries_allowed(&self, may_retry: bool) -> bool {
        may_retry && self.options.retry.max_retries > 0 && self.backend.may_fail_transiently()
    }

    /// [`run`](Self::run) for a call that creates or changes something.
    async fn run_write<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run_with(operation, self.backend.writes_are_retry_safe(), call).await
    }

    async fn run_with<T, F, Fut>(&self, operation: &'static str, may_retry: bool, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let budget = self.options.timeout;
        let may_retry = self.retries_allowed(may_retry);
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut retries = 0u32;
        loop {
            let per_attempt = if may_retry { attempt_timeout(budget) } else { budget };
            // The first attempt starts with the whole budget left: no clock read for it.
            let per_attempt =
                if attempt == 0 { per_attempt } else { per_attempt.min(budget.saturating_sub(started.elapsed())) };
            let result = run_attempt(operation, per_attempt, call()).await;
            let error = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let class = self.backend.retry_class(&error);
            let max_retries = self.options.retry.max_retries;
            let allowed = may_retry
                && match class {
                    RetryClass::Retry => retries < max_retries,
                    RetryClass::Move => true,
                    _ => false,
                };
            let delay = self.options.retry.delay(attempt);
            if !allowed || attempt + 1 >= MAX_ATTEMPTS || started.elapsed() + delay >= budget {
                return Err(error);
            }
            if class == RetryClass::Retry {
                retries += 1;
            }
            attempt += 1;
            tracing::debug!(operation, attempt, ?class, ?delay, error = %error, "retrying a kms call");
            tokio::time::sleep(delay).await;
        }
    }

    /// [`run_with`](Self::run_with) for a call made from an owned `request`. A call that can
    /// make only one attempt (retries off, or a write the backend does not retry) hands the
    /// request itself to the backend; only a call that may be retried copies it per attempt
    /// (for a data key: the key id and every string of the encryption context).
    async fn run_request<R, T, F, Fut>(
        &self,
        operation: &'static str,
        may_retry: bool,
        request: R,
        call: F,
    ) -> Result<T>
    where
        R: Clone,
        F: Fn(R) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        if self.retries_allowed(may_retry) {
            return self.run_with(operation, true, || call(request.clone())).await;
        }
        run_attempt(operation, self.options.timeout, call(request)).await
    }

    /// Runs a mutation of `key_id` and drops its cache entry, whatever the outcome (a
    /// failed mutation may still have happened).
    async fn mutate<T, F, Fut>(&self, operation: &'static str, key_id: &str, call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let result = self.run_write(operation, call).await;
        self.invalidate(key_id);
        result
    }

    /// Drops `key_id`'s cache entry when an error shows the cache may be stale.
    fn note_error<T>(&self, key_id: &str, result: Result<T>) -> Result<T> {
        if matches!(result, Err(KmsError::KeyNotFound { .. } | KmsError::InvalidKeyState { .. })) {
            self.invalidate(key_id);
        }
        result
    }

    fn invalidate(&self, key_id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key_id);
        }
    }

    /// Creates a key.
    pub async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        validate::create_key(&request)?;
        let name = request.key_name.clone();
        let result = self.run_write("create_key", || self.backend.create_key(request.clone())).await;
        if let Some(name) = name {
            self.invalidate(&name);
        }
        result
    }

    /// Creates a key with material brought from another KMS (`kms migrate`); never overwrites
    /// (a retried import whose first attempt landed answers `KeyAlreadyExists`).
    pub async fn import_key(&self, request: kms_types::import::ImportKeyRequest) -> Result<KeyMetadataResponse> {
        request.validate()?;
        let key_id = request.key_id.clone();
        // A copy per attempt (zeroized on drop): the material is not `Clone`.
        let attempt = || kms_types::import::ImportKeyRequest {
            key_id: request.key_id.clone(),
            material: kms_types::secret::SecretBytes::from(request.material.expose_secret()),
            key_state: request.key_state,
            key_usage: request.key_usage,
            description: request.description.clone(),
            tags: request.tags.clone(),
            creation_date: request.creation_date,
            deletion_date: request.deletion_date,
        };
        let result = self.run_write("import_key", || self.backend.import_key(attempt())).await;
        self.invalidate(&key_id);
        result
    }

    /// BYOK: a fresh RSA wrapping key and an import token for the external key `key_id`
    /// (`docs/byok.md`). Refused for a key kms generated (`not_external_key`), outside
    /// `PendingImport`/`Enabled`/`Disabled`, and on a backend that does not import material.
    pub async fn get_parameters_for_import(
        &self,
        request: GetParametersForImportRequest,
    ) -> Result<GetParametersForImportResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        if !self.backend.capabilities().import_key_material {
            return Err(self.backend.unsupported("get_parameters_for_import"));
        }
        let describe = DescribeKeyRequest { key_id: key_id.clone() };
        let described = self.run("describe_key", || self.backend.describe_key(describe.clone())).await;
        let metadata = self.note_error(&key_id, described)?.key_metadata;
        if metadata.origin != KeyOrigin::External {
            return Err(KmsError::import_refused(&key_id, ImportRefusal::NotExternalKey));
        }
        Operation::GetParametersForImport.check_key_state(&key_id, metadata.key_state)?;
        let spec = request.wrapping_key_spec;
        let wrapping_key = tokio::task::spawn_blocking(move || ImportWrappingKey::generate(spec))
            .await
            .map_err(|e| KmsError::internal_with_source("generating an import wrapping key failed", e))??;
        let public_key = wrapping_key.public_key_der().to_vec();
        let (token, parameters_valid_to) = self.import_sessions.issue(&key_id, wrapping_key)?;
        Ok(GetParametersForImportResponse { key_id, public_key, import_token: token.to_vec(), parameters_valid_to })
    }

    /// BYOK: unwraps `encrypted_key_material` with the wrapping key of `import_token`, checks
    /// it is a 32-byte AES-256 key and hands it to the backend, which makes the key `Enabled`
    /// (`docs/byok.md`). The token is used up by a successful import. Wrapped bytes that do
    /// not unwrap are an opaque `Crypto` error.
    pub async fn import_key_material(&self, request: ImportKeyMaterialRequest) -> Result<KeyMetadataResponse> {
        request.validate(self.import_sessions.now())?;
        let key_id = request.key_id.clone();
        let wrapping_key = self.import_sessions.wrapping_key(&key_id, &request.import_token)?;
        let material = wrapping_key.unwrap_material(&request.encrypted_key_material)?;
        if material.len() != IMPORT_MATERIAL_LEN {
            return Err(KmsError::invalid_request(
                "encrypted_key_material",
                format!("the unwrapped material is {} bytes; key material is 32 bytes (AES-256)", material.len()),
            ));
        }
        let fingerprint = kms_crypto::wrapping::material_fingerprint(&key_id, &material);
        // A copy per attempt (zeroized on drop): the material is not `Clone`.
        let attempt = || ImportMaterial {
            key_id: key_id.clone(),
            material: kms_types::secret::SecretBytes::from(material.as_slice()),
            fingerprint,
            valid_to: request.valid_to,
            new_version: request.new_version,
        };
        let result = self.mutate("import_key_material", &key_id, || self.backend.import_key_material(attempt())).await;
        if result.is_ok() {
            self.import_sessions.consume(&request.import_token);
        }
        result
    }

    /// BYOK: deletes an external key's imported material; the key becomes `PendingImport`.
    pub async fn delete_imported_key_material(
        &self,
        request: DeleteImportedKeyMaterialRequest,
    ) -> Result<KeyMetadataResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        let call = || self.backend.delete_imported_key_material(request.clone());
        self.mutate("delete_imported_key_material", &key_id, call).await
    }

    /// Encrypts (a retry makes a new ciphertext; a lost one is never seen by anyone).
    pub async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        validate::encrypt(&request)?;
        let key_id = request.key_id.clone();
        // A deliberate copy per attempt (zeroized on drop): the plaintext is not `Clone`.
        let attempt = || EncryptRequest {
            key_id: request.key_id.clone(),
            plaintext: kms_types::secret::SecretBytes::from(request.plaintext.expose_secret()),
            encryption_context: request.encryption_context.clone(),
        };
        let result = self.run_write("encrypt", || self.backend.encrypt(attempt())).await;
        self.note_error(&key_id, result)
    }

    /// The key id `ciphertext_blob` names, read from its header by the backend's parser
    /// (no cryptography, no backend call: see [`KmsBackend::ciphertext_key_id`]); `None` if it
    /// is not a ciphertext of this backend's format. Authorize on it, then decrypt naming it.
    pub fn ciphertext_key_id(&self, ciphertext_blob: &[u8]) -> Option<String> {
        self.backend.ciphertext_key_id(ciphertext_blob)
    }

    /// Decrypts (retried on transient failures).
    pub async fn decrypt(&self, request: DecryptRequest) -> Result<DecryptResponse> {
        validate::decrypt(&request)?;
        let result = self.run_request("decrypt", true, request, |r| self.backend.decrypt(r)).await;
        if let Err(KmsError::KeyNotFound { key_id } | KmsError::InvalidKeyState { key_id, .. }) = &result {
            self.invalidate(key_id);
        }
        result
    }

    /// Generates a data key (a retry generates a new one).
    pub async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        let retry = self.backend.writes_are_retry_safe();
        let result = self.run_request("generate_data_key", retry, request, |r| self.backend.generate_data_key(r)).await;
        self.note_error(&key_id, result)
    }

    /// Generates a data key, wrapped only (a retry generates a new one).
    pub async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        let retry = self.backend.writes_are_retry_safe();
        let call = |r| self.backend.generate_data_key_without_plaintext(r);
        let result = self.run_request("generate_data_key_without_plaintext", retry, request, call).await;
        self.note_error(&key_id, result)
    }

    /// Describes a key, from the cache when a fresh entry exists.
    pub async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        validate::key_id(&request.key_id)?;
        let Some(cache) = &self.cache else {
            return self.run("describe_key", || self.backend.describe_key(request.clone())).await;
        };
        let generation = match cache.get(&request.key_id) {
            Lookup::Hit(key_metadata) => return Ok(DescribeKeyResponse { key_metadata }),
            Lookup::Miss { generation } => generation,
        };
        let result = self.run("describe_key", || self.backend.describe_key(request.clone())).await;
        match &result {
            Ok(response) => cache.insert_if_unchanged(&request.key_id, &response.key_metadata, generation),
            Err(KmsError::KeyNotFound { .. }) => cache.invalidate(&request.key_id),
            Err(_) => {}
        }
        result
    }

    /// Lists keys (retried on transient failures; never cached).
    pub async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        validate::list_keys(&request)?;
        self.run("list_keys", || self.backend.list_keys(request.clone())).await
    }

    /// Schedules deletion.
    pub async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        validate::delete_key(&request)?;
        let key_id = request.key_id.clone();
        self.mutate("delete_key", &key_id, || self.backend.delete_key(request.clone())).await
    }

    /// Cancels a scheduled deletion.
    pub async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        self.mutate("cancel_key_deletion", &key_id, || self.backend.cancel_key_deletion(request.clone())).await
    }

    /// Enables a key.
    pub async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        self.mutate("enable_key", &key_id, || self.backend.enable_key(request.clone())).await
    }

    /// Disables a key.
    pub async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        self.mutate("disable_key", &key_id, || self.backend.disable_key(request.clone())).await
    }

    /// Rotates a key.
    pub async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        validate::key_id(&request.key_id)?;
        let key_id = request.key_id.clone();
        self.mutate("rotate_key", &key_id, || self.backend.rotate_key(request.clone())).await
    }

    /// Re-encrypts a ciphertext (a retry makes a new ciphertext).
    pub async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        validate::re_encrypt(&request)?;
        let result = self.run_write("re_encrypt", || self.backend.re_encrypt(request.clone())).await;
        if let Err(KmsError::KeyNotFound { key_id } | KmsError::InvalidKeyState { key_id, .. }) = &result {
            self.invalidate(key_id);
        }
        result
    }

    /// Replaces a key's description.
    pub async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        validate::update_key_description(&request)?;
        let key_id = request.key_id.clone();
        self.mutate("update_key_description", &key_id, || self.backend.update_key_description(request.clone())).await
    }

    /// Adds or overwrites tags, refusing a request that would leave the key with more than
    /// [`kms_types::limits::MAX_TAGS`] tags: the count is checked against the key's current
    /// tags, read from the backend (not the cache). Two concurrent calls may each pass the
    /// check; each tag stays within its own length limit regardless.
    pub async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        validate::tag_key(&request)?;
        let key_id = request.key_id.clone();
        let current =
            self.run("describe_key", || self.backend.describe_key(DescribeKeyRequest { key_id: key_id.clone() }));
        let current = self.note_error(&key_id, current.await)?;
        kms_types::limits::validate_tag_merge(&current.key_metadata.tags, &request.tags)?;
        self.mutate("tag_key", &key_id, || self.backend.tag_key(request.clone())).await
    }

    /// Removes tags.
    pub async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        validate::untag_key(&request)?;
        let key_id = request.key_id.clone();
        self.mutate("untag_key", &key_id, || self.backend.untag_key(request.clone())).await
    }

    /// Whether the backend can serve requests (retried on transient failures).
    pub async fn health_check(&self) -> Result<bool> {
        self.run("health_check", || self.backend.health_check()).await
    }

    /// Releases the backend's background tasks (under the timeout, once).
    pub async fn close(&self) -> Result<()> {
        let after = self.options.timeout;
        tokio::time::timeout(after, self.backend.close())
            .await
            .unwrap_or(Err(KmsError::Timeout { operation: "close", after }))
    }

    /// Hits, misses, entries and capacity of the metadata cache (all zero when disabled).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.as_ref().map(MetadataCache::stats).unwrap_or_default()
    }

    /// The backend's own cache of opened keys, if it has one (the local backend).
    pub fn backend_key_cache_stats(&self) -> Option<CacheStats> {
        self.backend.key_cache_stats()
    }

    /// Empties the metadata cache (the hit and miss counters are kept). The backend's own
    /// caches are cleared by [`clear_all_caches`](Self::clear_all_caches).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Empties every cache: the metadata cache and the backend's (`POST /kms/v1/cache/clear`).
    pub async fn clear_all_caches(&self) {
        self.clear_cache();
        self.backend.clear_caches().await;
    }
}

enum Lookup {
    Hit(KeyMetadata),
    Miss { generation: u64 },
}

struct CacheInner {
    entries: LruCache<String, (KeyMetadata, Instant)>,
    /// Bumped by every invalidation: a describe that started before one must not insert.
    generation: u64,
}

struct MetadataCache {
    inner: Mutex<CacheInner>,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl MetadataCache {
    fn new(config: &CacheConfig) -> Self {
        let capacity = NonZeroUsize::new(config.max_keys).unwrap_or(NonZeroUsize::MIN);
        Self {
            inner: Mutex::new(CacheInner { entries: LruCache::new(capacity), generation: 0 }),
            ttl: config.ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // The cache only holds copies; after a panic elsewhere it is still consistent.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key_id: &str) -> Lookup {
        let mut inner = self.lock();
        let fresh = match inner.entries.get(key_id) {
            Some((meta, stored)) if stored.elapsed() < self.ttl => Some(meta.clone()),
            Some(_) => {
                inner.entries.pop(key_id);
                None
            }
            None => None,
        };
        match fresh {
            Some(meta) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Hit(meta)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Miss { generation: inner.generation }
            }
        }
    }

    fn insert_if_unchanged(&self, key_id: &str, meta: &KeyMetadata, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation {
            inner.entries.put(key_id.to_owned(), (meta.clone(), Instant::now()));
        }
    }

    fn invalidate(&self, key_id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.pop(key_id);
    }

    fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: inner.entries.len(),
            capacity: inner.entries.cap().get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_bounds_and_caps() {
        let policy =
            RetryPolicy { max_retries: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for (retry, ceiling_ms) in [(0, 100), (1, 200), (2, 400), (3, 800), (4, 1000), (9, 1000)] {
            for _ in 0..50 {
                let d = policy.delay(retry);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "retry {retry}: {d:?} not in [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        let samples: std::collections::BTreeSet<_> = (0..20).map(|_| policy.delay(3)).collect();
        assert!(samples.len() > 1, "no jitter: every delay is {samples:?}");
    }

    #[test]
    fn options_follow_the_config() {
        let mut config = KmsConfig::local(kms_types::config::LocalConfig::new(
            "/k",
            kms_types::config::MasterKeySource::InsecurePlaintextForDevelopment,
        ));
        config.retry_attempts = 0;
        config.enable_cache = false;
        config.timeout = Duration::from_secs(5);
        let options = ManagerOptions::from(&config);
        assert_eq!(options.retry.max_retries, 0);
        assert_eq!(options.cache, None);
        assert_eq!(options.timeout, Duration::from_secs(5));
    }
}
