//! What `decrypt_stream` does when the KMS cannot be reached: [`KmsUnavailablePolicy`].
//!
//! By default ([`KmsUnavailablePolicy::FailClosed`]) every read of an SSE-S3 or SSE-KMS
//! object unwraps its data key through the KMS, and nothing decrypts while the KMS is down:
//! no unwrapped data key outlives the request that needed it.
//!
//! A store that prefers availability opts in to [`KmsUnavailablePolicy::CacheDataKeys`]: data
//! keys the KMS recently produced or unwrapped are kept in memory (zeroized on eviction) for
//! at most [`DataKeyCacheConfig::ttl`] and [`DataKeyCacheConfig::max_entries`], and are used
//! **only** when the KMS is unavailable (a transient backend error, a timeout, a stopped
//! service). While the KMS answers, it is asked every time, so disabling a key, scheduling
//! its deletion or a wrong context take effect at once (a refusal also drops the object's
//! cached key, so a later outage does not revive it); during an outage an object whose key
//! was used within the TTL stays readable. SSE-C keys are never cached (the KMS is not
//! involved).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use kms_crypto::context::canonical_context;
use kms_crypto::keys::PlaintextDataKey;
use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;
use lru::LruCache;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// Longest time a cached data key may be used: 24 hours.
pub const MAX_DATA_KEY_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most data keys a cache may hold.
pub const MAX_DATA_KEY_CACHE_ENTRIES: usize = 1_000_000;

/// Bounds of the opt-in data-key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataKeyCacheConfig {
    /// How long after the KMS produced or unwrapped a data key it may still be used
    /// (1 s ..= [`MAX_DATA_KEY_CACHE_TTL`]).
    pub ttl: Duration,
    /// Most keys kept (1 ..= [`MAX_DATA_KEY_CACHE_ENTRIES`]); the least recently used go first.
    pub max_entries: usize,
}

impl Default for DataKeyCacheConfig {
    fn default() -> Self {
        Self { ttl: Duration::from_secs(300), max_entries: 10_000 }
    }
}

/// What happens to reads when the KMS is unavailable. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KmsUnavailablePolicy {
    /// Nothing decrypts without the KMS (the default).
    #[default]
    FailClosed,
    /// Recently used data keys serve reads during a KMS outage, within these bounds.
    CacheDataKeys(DataKeyCacheConfig),
}

impl KmsUnavailablePolicy {
    fn validate(&self) -> Result<()> {
        if let Self::CacheDataKeys(c) = self {
            if c.ttl < Duration::from_secs(1) || c.ttl > MAX_DATA_KEY_CACHE_TTL {
                return Err(KmsError::configuration("data_key_cache.ttl", "must be between 1 s and 24 h"));
            }
            if c.max_entries == 0 || c.max_entries > MAX_DATA_KEY_CACHE_ENTRIES {
                return Err(KmsError::configuration("data_key_cache.max_entries", "must be between 1 and 1000000"));
            }
        }
        Ok(())
    }
}

/// Whether an error means "the KMS could not be asked" (as opposed to "the KMS said no").
pub(crate) fn is_outage(error: &KmsError) -> bool {
    error.is_retryable() || matches!(error, KmsError::ServiceUnavailable { .. })
}

struct Entry {
    key: Zeroizing<Vec<u8>>,
    stored: Instant,
}

struct Cache {
    config: DataKeyCacheConfig,
    entries: LruCache<[u8; 32], Entry>,
}

/// The cache behind the policy; empty and inert under `FailClosed`.
#[derive(Default)]
pub(crate) struct DataKeyCache {
    inner: Mutex<Option<Cache>>,
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache").field("policy", &self.policy()).field("entries", &self.len()).finish()
    }
}

/// The cache key: a digest of everything the wrapped key is bound to.
pub(crate) fn cache_id(master_key_id: &str, version: u32, wrapped: &[u8], context: &EncryptionContext) -> [u8; 32] {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    d.update(b"kms-sse data key cache v1");
    for field in [master_key_id.as_bytes(), wrapped] {
        d.update(&(field.len() as u64).to_be_bytes());
        d.update(field);
    }
    d.update(&version.to_be_bytes());
    d.update(&canonical_context(context));
    d.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

impl DataKeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cache>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set_policy(&self, policy: KmsUnavailablePolicy) -> Result<()> {
        policy.validate()?;
        let mut inner = self.lock();
        *inner = match policy {
            KmsUnavailablePolicy::FailClosed => None,
            KmsUnavailablePolicy::CacheDataKeys(config) => {
                let capacity = NonZeroUsize::new(config.max_entries).expect("validated");
                Some(Cache { config, entries: LruCache::new(capacity) })
            }
        };
        Ok(())
    }

    pub(crate) fn policy(&self) -> KmsUnavailablePolicy {
        match &*self.lock() {
            None => KmsUnavailablePolicy::FailClosed,
            Some(cache) => KmsUnavailablePolicy::CacheDataKeys(cache.config),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().as_ref().map_or(0, |c| c.entries.len())
    }

    pub(crate) fn flush(&self) {
        if let Some(cache) = self.lock().as_mut() {
            cache.entries.clear();
        }
    }

    /// Keeps `key` under `id` (only when the policy caches).
    pub(crate) fn remember(&self, id: [u8; 32], key: &PlaintextDataKey) {
        if let Some(cache) = self.lock().as_mut() {
            let entry = Entry { key: Zeroizing::new(key.expose_secret().to_vec()), stored: Instant::now() };
            cache.entries.put(id, entry);
        }
    }

    /// Drops the key under `id`: the KMS refused it (a disabled or deleted key, a wrong
    /// context), so it must not serve a later outage either.
    pub(crate) fn forget(&self, id: &[u8; 32]) {
        if let Some(cache) = self.lock().as_mut() {
            cache.entries.pop(id);
        }
    }

    /// The key under `id`, if cached and younger than the TTL (an expired entry is dropped).
    pub(crate) fn recall(&self, id: &[u8; 32]) -> Option<PlaintextDataKey> {
        let mut inner = self.lock();
        let cache = inner.as_mut()?;
        let ttl = cache.config.ttl;
        match cache.entries.get(id) {
            Some(entry) if entry.stored.elapsed() <= ttl => PlaintextDataKey::from_bytes(&entry.key).ok(),
            Some(_) => {
                cache.entries.pop(id);
                None
            }
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_types::types::KeySpec;

    #[tokio::test(start_paused = true)]
    async fn caches_only_when_asked_and_only_within_the_ttl() {
        let cache = DataKeyCache::default();
        let key = PlaintextDataKey::generate(KeySpec::Aes256).unwrap();
        let id = cache_id("k", 1, b"wrapped", &EncryptionContext::new());
        cache.remember(id, &key);
        assert!(cache.recall(&id).is_none(), "fail-closed keeps nothing");
        assert_eq!(cache.len(), 0);

        let config = DataKeyCacheConfig { ttl: Duration::from_secs(60), max_entries: 2 };
        cache.set_policy(KmsUnavailablePolicy::CacheDataKeys(config)).unwrap();
        cache.remember(id, &key);
        assert_eq!(cache.recall(&id).unwrap().expose_secret(), key.expose_secret());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cache.recall(&id).is_none(), "expired");
        assert_eq!(cache.len(), 0, "expired entries are dropped");

        for n in 0..3u32 {
            cache.remember(cache_id("k", n, b"w", &EncryptionContext::new()), &key);
        }
        assert_eq!(cache.len(), 2, "bounded");
        assert!(cache.recall(&cache_id("k", 0, b"w", &EncryptionContext::new())).is_none(), "LRU evicted");
        let kept = cache_id("k", 2, b"w", &EncryptionContext::new());
        assert!(cache.recall(&kept).is_some());
        cache.forget(&kept);
        assert!(cache.recall(&kept).is_none(), "forgotten");
        cache.flush();
        assert_eq!(cache.len(), 0);
        cache.set_policy(KmsUnavailablePolicy::FailClosed).unwrap();
        assert_eq!(cache.policy(), KmsUnavailablePolicy::FailClosed);
    }

    #[test]
    fn bounds_are_enforced() {
        let cache = DataKeyCache::default();
        for (ttl, max_entries) in [(0, 10), (24 * 3600 + 1, 10), (60, 0), (60, MAX_DATA_KEY_CACHE_ENTRIES + 1)] {
            let config = DataKeyCacheConfig { ttl: Duration::from_secs(ttl), max_entries };
            let err = cache.set_policy(KmsUnavailablePolicy::CacheDataKeys(config)).unwrap_err();
            assert!(matches!(err, KmsError::Configuration { .. }), "{ttl} {max_entries}");
        }
        assert_eq!(cache.policy(), KmsUnavailablePolicy::FailClosed);
    }

    #[test]
    fn the_cache_id_binds_every_field() {
        let ctx: EncryptionContext = [("a".to_owned(), "b".to_owned())].into();
        let base = cache_id("k", 1, b"w", &ctx);
        assert_ne!(base, cache_id("k2", 1, b"w", &ctx));
        assert_ne!(base, cache_id("k", 2, b"w", &ctx));
        assert_ne!(base, cache_id("k", 1, b"w2", &ctx));
        assert_ne!(base, cache_id("k", 1, b"w", &EncryptionContext::new()));
        assert_ne!(cache_id("ab", 1, b"c", &ctx), cache_id("a", 1, b"bc", &ctx));
    }

    #[test]
    fn outages_are_transient_errors_and_a_stopped_service() {
        assert!(is_outage(&KmsError::backend_with_source("down", true, std::io::Error::other("x"))));
        assert!(is_outage(&KmsError::Timeout { operation: "decrypt", after: Duration::from_secs(1) }));
        assert!(is_outage(&KmsError::ServiceUnavailable { message: "stopped".into() }));
        assert!(!is_outage(&KmsError::crypto()));
        assert!(!is_outage(&KmsError::invalid_key_state("k", kms_types::types::KeyState::Disabled, "decrypt")));
        assert!(!is_outage(&KmsError::backend("permission denied")));
    }
}
