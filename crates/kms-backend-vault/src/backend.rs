//! [`VaultBackend`]: the [`KmsBackend`] on Transit (key material) and KV v2 (metadata).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_core::backends::{KmsBackend, RetryClass};
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::config::{BackendConfig, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::operation::Operation;
use kms_types::secret::{SecretBytes, SecretString};
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, EncryptionContext, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyListEntry, KeyMetadataResponse, KeyOrigin, KeySpec, KeyState, KeyUsage, ListKeysRequest, ListKeysResponse,
    ReEncryptRequest, ReEncryptResponse, RotateKeyRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
    validate_key_id, validate_list_limit, validate_pending_window,
};
use lru::LruCache;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::auth::Auth;
use crate::blob::VaultBlob;
use crate::classify::{CallError, class_of};
use crate::record::{KeyRecord, RECORD_FORMAT, parse_record};
use crate::transport::{Method, Route, Transport, TransportStats, backoff};

mod adopt;
mod aliases;
mod byok;
mod create;
mod factory;
mod import;
mod records;
mod rustfs;
mod service;
mod transit;
mod writes;

pub use factory::VaultBackendFactory;

use writes::InFlight;

/// How many times a check-and-set update is tried before giving up on a contended key (the
/// operation deadline bounds it too).
const CAS_ATTEMPTS: u32 = 32;
/// How many key records `list_keys` reads at once.
const LIST_CONCURRENCY: usize = 16;
/// A key created or rotated this recently is used through the active node: standbys apply
/// a new Transit key or version some hundreds of milliseconds after the active node.
const FRESH_WINDOW: time::Duration = time::Duration::seconds(10);

/// The Vault / OpenBao backend. Cheap to clone (shares one connection pool and session).
#[derive(Clone)]
pub struct VaultBackend {
    inner: Arc<Inner>,
}

struct Inner {
    transit: String,
    kv: String,
    prefix: String,
    timeout: Duration,
    transport: Arc<Transport>,
    auth: Arc<Auth>,
    cache: Option<(Mutex<LruCache<String, Cached>>, Duration)>,
    /// Writes whose reply was lost and whose outcome could not be read back, by (key id,
    /// operation): when the caller tries again and finds exactly this record, the write
    /// landed and is not applied a second time.
    unconfirmed: Mutex<HashMap<(String, &'static str), KeyRecord>>,
    /// Ids of unnamed creates that failed retryably, by request: a retry reuses the id.
    unnamed: Mutex<HashMap<String, String>>,
    /// Cached health: `/health` probes must not each cost a Vault call.
    health: Mutex<Option<(bool, Instant)>>,
}

/// Most unconfirmed writes and unnamed creates remembered for a retry.
const MAX_NOTES: usize = 1024;

/// How long a health answer is reused.
const HEALTH_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Cached {
    record: KeyRecord,
    version: u64,
    at: Instant,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("nodes", &self.inner.transport.nodes())
            .field("transit_mount", &self.inner.transit)
            .field("kv_mount", &self.inner.kv)
            .field("key_path_prefix", &self.inner.prefix)
            .field("auth", &self.inner.auth)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// What a KV read found.
enum Loaded {
    Record(KeyRecord, u64),
    /// A record exists but is not a readable version-1 record for this id.
    Unreadable {
        created: Option<OffsetDateTime>,
    },
}

impl Loaded {
    /// The state the key-state table sees (`Unavailable` for an unreadable record).
    fn state(&self) -> KeyState {
        match self {
            Self::Record(record, _) => record.effective_state(),
            Self::Unreadable { .. } => KeyState::Unavailable,
        }
    }

    /// The record, when the key's state allows `operation` (the table of
    /// [`kms_types::operation`]); `InvalidKeyState` otherwise.
    fn allowing(self, key_id: &str, operation: Operation) -> Result<KeyRecord> {
        operation.check_key_state(key_id, self.state())?;
        match self {
            Self::Record(record, _) => Ok(record),
            // Only `describe` allows an unreadable key, and it never asks for its record.
            Self::Unreadable { .. } => {
                Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation.as_str()))
            }
        }
    }
}

impl VaultBackend {
    /// Connects to Vault as `config` says (for AppRole: logs in and starts renewing).
    ///
    /// Each HTTP request is bounded by [`kms_core::manager::attempt_timeout`] of
    /// `config.timeout` (the manager owns the whole call's budget and its retries). Key
    /// records are cached for [`CacheConfig::shared_ttl`](kms_types::config::CacheConfig::shared_ttl)
    /// when `config.enable_cache` is set: a state change made through another server is seen
    /// here within `cache_config.coherence`.
    pub async fn connect(config: &KmsConfig) -> Result<Self> {
        config.validate()?;
        let BackendConfig::Vault(vault) = &config.backend_config else {
            return Err(KmsError::configuration("backend_config", "is not a vault configuration"));
        };
        let transport = Arc::new(Transport::new(vault, kms_core::manager::attempt_timeout(config.timeout))?);
        if vault.tls.as_ref().is_some_and(|t| t.skip_verify) {
            tracing::warn!(nodes = %vault.address, "Vault TLS certificates are NOT verified (skip_verify): anyone on the path can read the token and every key operation");
        }
        let auth = tokio::time::timeout(config.timeout, Auth::new(transport.clone(), &vault.auth_method))
            .await
            .map_err(|_| KmsError::Timeout { operation: "vault login", after: config.timeout })??;
        let cache = config.enable_cache.then(|| {
            let size = NonZeroUsize::new(config.cache_config.max_keys).unwrap_or(NonZeroUsize::MIN);
            (Mutex::new(LruCache::new(size)), config.cache_config.shared_ttl())
        });
        Ok(Self {
            inner: Arc::new(Inner {
                transit: vault.mount_path.trim_matches('/').to_owned(),
                kv: vault.kv_mount.trim_matches('/').to_owned(),
                prefix: vault.key_path_prefix.trim_matches('/').to_owned(),
                timeout: config.timeout,
                transport,
                auth,
                cache,
                unconfirmed: Mutex::new(HashMap::new()),
                unnamed: Mutex::new(HashMap::new()),
                health: Mutex::new(None),
            }),
        })
    }

    /// What the transport did so far (requests, logins, renewals, probes).
    pub fn transport_stats(&self) -> TransportStats {
        self.inner.transport.stats()
    }

    /// Deletes every key whose deletion date has passed (Transit key, then its record), and
    /// returns their ids, ascending. Keys past their date are also deleted when next touched.
    pub async fn purge_expired_keys(&self) -> Result<Vec<String>> {
        let inner = &self.inner;
        deadline("purge_expired_keys", inner.timeout, async {
            let ids = inner.list_ids(None, usize::MAX).await?;
            let mut purged = Vec::new();
            for id in ids {
                if let Ok(Loaded::Record(record, _)) = inner.load_fresh(&id).await
                    && record.deletion_due(OffsetDateTime::now_utc())
                {
                    inner.purge(&record).await?;
                    purged.push(id);
                }
            }
            Ok(purged)
        })
        .await
    }
}

async fn deadline<T>(operation: &'static str, after: Duration, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(after, fut).await.unwrap_or(Err(KmsError::Timeout { operation, after }))
}

fn associated_data(context: &EncryptionContext) -> String {
    B64.encode(kms_crypto::context::canonical_context(context))
}

fn bits(spec: KeySpec) -> u16 {
    match spec {
        KeySpec::Aes128 => 128,
        _ => 256,
    }
}

#[derive(Deserialize)]
struct DataKeyReply {
    ciphertext: String,
    plaintext: Option<SecretString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associated_data_is_the_canonical_context() {
        let ctx: EncryptionContext = [("bucket".to_owned(), "b".to_owned())].into();
        let ad = B64.decode(associated_data(&ctx)).unwrap();
        assert_eq!(ad, kms_crypto::context::canonical_context(&ctx));
        assert_eq!(B64.decode(associated_data(&EncryptionContext::new())).unwrap(), [1, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
