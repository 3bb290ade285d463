//! [`KmsManager`]: the policy layer around one backend.
//!
//! Every call runs under the configured timeout (an attempt that overruns it becomes
//! [`KmsError::Timeout`]). Idempotent reads (`describe_key`, `list_keys`, `decrypt`,
//! `health_check`) are retried with exponential backoff and jitter when the error
//! [`is_retryable`](KmsError::is_retryable) (a transient backend failure or a timeout), never
//! on crypto, not-found, key-state or authorization errors; calls that create something
//! (`encrypt`, `generate_data_key`, `create_key`, ...) run exactly once. Key metadata from
//! `describe_key` is kept in an LRU cache bounded by [`CacheConfig`] (entries and TTL); every
//! mutation of a key removes its entry, and a describe that raced with a mutation does not
//! put its (possibly stale) answer back.
//!
//! The timeout applies to each attempt, so a read may take up to
//! `(retries + 1) × timeout` plus the backoff delays.
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
use std::time::Duration;

use kms_types::api_types::CacheStats;
use kms_types::config::{CacheConfig, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::types::{
    CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse, DecryptRequest,
    DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse, DisableKeyRequest,
    EnableKeyRequest, EncryptRequest, EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse,
    GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse, KeyMetadata, KeyMetadataResponse,
    ListKeysRequest, ListKeysResponse, ReEncryptRequest, ReEncryptResponse, RotateKeyRequest, TagKeyRequest,
    UntagKeyRequest, UpdateKeyDescriptionRequest,
};
use lru::LruCache;
use tokio::time::Instant;

use crate::backends::KmsBackend;

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
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), jittered.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(2u32.saturating_pow(retry)).min(self.max_delay);
        let half = ceiling / 2;
        half + half.mul_f64(jitter_fraction())
    }
}

/// A uniform fraction in `[0, 1)`; falls back to 0.5 if the system RNG fails (jitter is not
/// security-relevant).
fn jitter_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut raw = [0u8; 8];
    match ring::rand::SystemRandom::new().fill(&mut raw) {
        Ok(()) => (u64::from_le_bytes(raw) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// How a [`KmsManager`] treats its backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerOptions {
    /// Deadline of each backend call attempt.
    pub timeout: Duration,
    /// Retries of idempotent reads.
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
        let cache = options.cache.as_ref().map(MetadataCache::new);
        Self { backend, options, cache }
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn KmsBackend> {
        &self.backend
    }

    /// The options in force.
    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    async fn once<T>(&self, operation: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let after = self.options.timeout;
        tokio::time::timeout(after, call).await.unwrap_or(Err(KmsError::Timeout { operation, after }))
    }

    async fn read<T, F, Fut>(&self, operation: &'static str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retry = 0;
        loop {
            match self.once(operation, call()).await {
                Err(e) if e.is_retryable() && retry < self.options.retry.max_retries => {
                    let delay = self.options.retry.delay(retry);
                    retry += 1;
                    tracing::debug!(operation, retry, ?delay, error = %e, "retrying a transient kms failure");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a mutation of `key_id` once and drops its cache entry, whatever the outcome (a
    /// timed-out mutation may still have happened).
    async fn mutate<T>(
        &self,
        operation: &'static str,
        key_id: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = self.once(operation, call).await;
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
        kms_types::limits::validate_create_metadata(&request)?;
        let name = request.key_name.clone();
        let result = self.once("create_key", self.backend.create_key(request)).await;
        if let Some(name) = name {
            self.invalidate(&name);
        }
        result
    }

    /// Encrypts (once: never retried).
    pub async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        let key_id = request.key_id.clone();
        let result = self.once("encrypt", self.backend.encrypt(request)).await;
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
        let result = self.read("decrypt", || self.backend.decrypt(request.clone())).await;
        if let Err(KmsError::KeyNotFound { key_id } | KmsError::InvalidKeyState { key_id, .. }) = &result {
            self.invalidate(key_id);
        }
        result
    }

    /// Generates a data key (once: never retried).
    pub async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        let key_id = request.key_id.clone();
        let result = self.once("generate_data_key", self.backend.generate_data_key(request)).await;
        self.note_error(&key_id, result)
    }

    /// Generates a data key, wrapped only (once: never retried).
    pub async fn generate_data_key_without_plaintext(
        &self,
        request: GenerateDataKeyWithoutPlaintextRequest,
    ) -> Result<GenerateDataKeyWithoutPlaintextResponse> {
        let key_id = request.key_id.clone();
        let call = self.backend.generate_data_key_without_plaintext(request);
        let result = self.once("generate_data_key_without_plaintext", call).await;
        self.note_error(&key_id, result)
    }

    /// Describes a key, from the cache when a fresh entry exists.
    pub async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        let Some(cache) = &self.cache else {
            return self.read("describe_key", || self.backend.describe_key(request.clone())).await;
        };
        let generation = match cache.get(&request.key_id) {
            Lookup::Hit(key_metadata) => return Ok(DescribeKeyResponse { key_metadata }),
            Lookup::Miss { generation } => generation,
        };
        let result = self.read("describe_key", || self.backend.describe_key(request.clone())).await;
        match &result {
            Ok(response) => cache.insert_if_unchanged(&request.key_id, &response.key_metadata, generation),
            Err(KmsError::KeyNotFound { .. }) => cache.invalidate(&request.key_id),
            Err(_) => {}
        }
        result
    }

    /// Lists keys (retried on transient failures; never cached).
    pub async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        self.read("list_keys", || self.backend.list_keys(request.clone())).await
    }

    /// Schedules deletion.
    pub async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        let key_id = request.key_id.clone();
        self.mutate("delete_key", &key_id, self.backend.delete_key(request)).await
    }

    /// Cancels a scheduled deletion.
    pub async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        let key_id = request.key_id.clone();
        self.mutate("cancel_key_deletion", &key_id, self.backend.cancel_key_deletion(request)).await
    }

    /// Enables a key.
    pub async fn enable_key(&self, request: EnableKeyRequest) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id.clone();
        self.mutate("enable_key", &key_id, self.backend.enable_key(request)).await
    }

    /// Disables a key.
    pub async fn disable_key(&self, request: DisableKeyRequest) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id.clone();
        self.mutate("disable_key", &key_id, self.backend.disable_key(request)).await
    }

    /// Rotates a key.
    pub async fn rotate_key(&self, request: RotateKeyRequest) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id.clone();
        self.mutate("rotate_key", &key_id, self.backend.rotate_key(request)).await
    }

    /// Re-encrypts a ciphertext (once: never retried).
    pub async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        let result = self.once("re_encrypt", self.backend.re_encrypt(request)).await;
        if let Err(KmsError::KeyNotFound { key_id } | KmsError::InvalidKeyState { key_id, .. }) = &result {
            self.invalidate(key_id);
        }
        result
    }

    /// Replaces a key's description.
    pub async fn update_key_description(&self, request: UpdateKeyDescriptionRequest) -> Result<KeyMetadataResponse> {
        kms_types::limits::validate_description(&request.description)?;
        let key_id = request.key_id.clone();
        self.mutate("update_key_description", &key_id, self.backend.update_key_description(request)).await
    }

    /// Adds or overwrites tags, refusing a request that would leave the key with more than
    /// [`kms_types::limits::MAX_TAGS`] tags: the count is checked against the key's current
    /// tags, read from the backend (not the cache). Two concurrent calls may each pass the
    /// check; each tag stays within its own length limit regardless.
    pub async fn tag_key(&self, request: TagKeyRequest) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id.clone();
        kms_types::limits::validate_tags(&request.tags)?;
        let current =
            self.read("describe_key", || self.backend.describe_key(DescribeKeyRequest { key_id: key_id.clone() }));
        let current = self.note_error(&key_id, current.await)?;
        kms_types::limits::validate_tag_merge(&current.key_metadata.tags, &request.tags)?;
        self.mutate("tag_key", &key_id, self.backend.tag_key(request)).await
    }

    /// Removes tags.
    pub async fn untag_key(&self, request: UntagKeyRequest) -> Result<KeyMetadataResponse> {
        let key_id = request.key_id.clone();
        self.mutate("untag_key", &key_id, self.backend.untag_key(request)).await
    }

    /// Whether the backend can serve requests (retried on transient failures).
    pub async fn health_check(&self) -> Result<bool> {
        self.read("health_check", || self.backend.health_check()).await
    }

    /// Releases the backend's background tasks (under the timeout).
    pub async fn close(&self) -> Result<()> {
        self.once("close", self.backend.close()).await
    }

    /// Hits, misses, entries and capacity of the metadata cache (all zero when disabled).
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.as_ref().map(MetadataCache::stats).unwrap_or_default()
    }

    /// The backend's own cache of opened keys, if it has one (the local backend).
    pub fn backend_key_cache_stats(&self) -> Option<CacheStats> {
        self.backend.key_cache_stats()
    }

    /// Empties the metadata cache (the hit and miss counters are kept).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
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
