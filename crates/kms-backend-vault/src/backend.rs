//! [`VaultBackend`]: the [`KmsBackend`] on Transit (key material) and KV v2 (metadata).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_core::backends::{BackendFactory, KmsBackend, RetryClass};
use kms_types::alias::{AliasEntry, CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, UpdateAliasRequest};
use kms_types::config::{BackendConfig, KmsBackend as BackendKind, KmsConfig};
use kms_types::error::{KmsError, Result};
use kms_types::secret::{SecretBytes, SecretString};
use kms_types::types::{
    BackendCapabilities, CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse,
    DecryptRequest, DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse,
    DisableKeyRequest, EnableKeyRequest, EncryptRequest, EncryptResponse, EncryptionContext, GenerateDataKeyRequest,
    GenerateDataKeyResponse, GenerateDataKeyWithoutPlaintextRequest, GenerateDataKeyWithoutPlaintextResponse,
    KeyListEntry, KeyMetadataResponse, KeyOrigin, KeySpec, KeyState, KeyUsage, ListKeysRequest, ListKeysResponse,
    MAX_ENCRYPT_PLAINTEXT_BYTES, ReEncryptRequest, ReEncryptResponse, RotateKeyRequest, TagKeyRequest, UntagKeyRequest,
    UpdateKeyDescriptionRequest, validate_key_id, validate_list_limit, validate_pending_window,
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

mod aliases;
mod create;
mod transit;
mod writes;

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
    /// returns how many. Keys past their date are also deleted when next touched.
    pub async fn purge_due_deletions(&self) -> Result<usize> {
        let inner = &self.inner;
        deadline("purge_due_deletions", inner.timeout, async {
            let ids = inner.list_ids(None, usize::MAX).await?;
            let mut purged = 0;
            for id in ids {
                if let Ok(Loaded::Record(record, _)) = inner.load_fresh(&id).await
                    && record.deletion_due(OffsetDateTime::now_utc())
                {
                    inner.purge(&record).await?;
                    purged += 1;
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

fn new_key_id() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut b).map_err(|_| KmsError::backend("the system RNG failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
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

impl Inner {
    fn kv_path(&self, key_id: &str) -> String {
        format!("{}/{key_id}", self.prefix)
    }

    fn cache_get(&self, key_id: &str) -> Option<Cached> {
        let (cache, ttl) = self.cache.as_ref()?;
        let mut cache = cache.lock().expect("cache lock");
        match cache.get(key_id) {
            Some(c) if c.at.elapsed() < *ttl => Some(c.clone()),
            Some(_) => {
                cache.pop(key_id);
                None
            }
            None => None,
        }
    }

    fn cache_put(&self, record: &KeyRecord, version: u64) {
        if let Some((cache, _)) = &self.cache {
            let entry = Cached { record: record.clone(), version, at: Instant::now() };
            cache.lock().expect("cache lock").put(record.key_id.clone(), entry);
        }
    }

    fn cache_drop(&self, key_id: &str) {
        if let Some((cache, _)) = &self.cache {
            cache.lock().expect("cache lock").pop(key_id);
        }
    }

    /// One call with the current session's token.
    async fn call(
        &self,
        route: Route,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Option<Value>, CallError> {
        self.call_with(route, method, path, &[], body).await
    }

    async fn call_with(
        &self,
        route: Route,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> std::result::Result<Option<Value>, CallError> {
        let session = self.auth.session().await.map_err(|e| CallError::Session(Box::new(e)))?;
        self.transport.call(Some(&session.token), route, method, path, query, body).await
    }

    /// Reads a key's record from KV (never from the cache), at the active node: the state a
    /// server acts on is the cluster's latest.
    async fn load_fresh(&self, key_id: &str) -> Result<Loaded> {
        match self.read_record(key_id).await {
            Ok(loaded) => Ok(loaded),
            Err(e) if e.status() == Some(404) => Err(KmsError::key_not_found(key_id)),
            Err(e) => Err(e.into_kms("read key metadata")),
        }
    }

    async fn read_record(&self, key_id: &str) -> std::result::Result<Loaded, CallError> {
        let path = format!("{}/data/{}", self.kv, self.kv_path(key_id));
        let reply = self.call(Route::Active, Method::Get, &path, None).await?;
        let mut data = reply.and_then(|mut v| v.get_mut("data").map(Value::take)).unwrap_or(Value::Null);
        let metadata = data.get_mut("metadata").map(Value::take).unwrap_or(Value::Null);
        let version = metadata.get("version").and_then(Value::as_u64).unwrap_or(0);
        let created = metadata
            .get("created_time")
            .and_then(Value::as_str)
            .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok());
        let record = data.get_mut("data").map(Value::take).unwrap_or(Value::Null);
        if record.is_null() {
            // A deleted (not destroyed) version: as absent.
            return Err(CallError::Status { code: 404, errors: Vec::new() });
        }
        match parse_record(key_id, record) {
            Some(record) => {
                self.cache_put(&record, version);
                Ok(Loaded::Record(record, version))
            }
            None => Ok(Loaded::Unreadable { created }),
        }
    }

    /// A key's record, from the cache when fresh; deletes it if its deletion date has passed.
    async fn load(&self, key_id: &str) -> Result<Loaded> {
        validate_key_id("key_id", key_id)?;
        let loaded = match self.cache_get(key_id) {
            Some(c) => Loaded::Record(c.record, c.version),
            None => self.load_fresh(key_id).await?,
        };
        if let Loaded::Record(record, _) = &loaded
            && record.deletion_due(OffsetDateTime::now_utc())
        {
            self.purge(record).await?;
            return Err(KmsError::key_not_found(key_id));
        }
        Ok(loaded)
    }

    /// The record of a key that must be `Enabled` for `operation`.
    async fn usable(&self, key_id: &str, operation: &'static str) -> Result<KeyRecord> {
        match self.load(key_id).await? {
            Loaded::Record(record, _) if record.effective_state() == KeyState::Enabled => Ok(record),
            Loaded::Record(record, _) => Err(KmsError::invalid_key_state(key_id, record.effective_state(), operation)),
            Loaded::Unreadable { .. } => Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation)),
        }
    }

    /// Deletes a key for good: allows deletion in Transit, deletes the Transit key, then the
    /// record. Each step tolerates a previous partial run.
    async fn purge(&self, record: &KeyRecord) -> Result<()> {
        let name = record.key_id.as_str();
        if record.provisioned {
            let config = format!("{}/keys/{name}/config", self.transit);
            let body = json!({ "deletion_allowed": true }).to_string().into_bytes();
            if let Err(e) = self.call(Route::Active, Method::Post, &config, Some(body)).await
                && !(e.status() == Some(404) || e.status() == Some(400) && e.says("not found"))
            {
                return Err(e.into_kms("allow deletion of the Transit key"));
            }
            let key = format!("{}/keys/{name}", self.transit);
            if let Err(e) = self.call(Route::Active, Method::Delete, &key, None).await
                && e.status() != Some(404)
            {
                return Err(e.into_kms("delete the Transit key"));
            }
        }
        self.delete_record(name).await.map_err(|e| e.into_kms("delete key metadata"))?;
        tracing::info!(key_id = name, "key deleted after its waiting period");
        Ok(())
    }

    /// Deletes a record and every version of it (absent: done).
    async fn delete_record(&self, key_id: &str) -> std::result::Result<(), CallError> {
        self.cache_drop(key_id);
        let path = format!("{}/metadata/{}", self.kv, self.kv_path(key_id));
        match self.call(Route::Active, Method::Delete, &path, None).await {
            Err(e) if e.status() != Some(404) => Err(e),
            _ => Ok(()),
        }
    }

    /// Key ids after `after`, ascending, at most `limit` (KV `LIST` with OpenBao's
    /// `after`/`limit`; filtered and sorted here too, for servers that ignore them).
    async fn list_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let path = format!("{}/metadata/{}/", self.kv, self.prefix);
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if limit != usize::MAX {
            query.push(("limit", limit.to_string()));
        }
        let reply = self.call_with(Route::Active, Method::List, &path, &query, None).await;
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(e.into_kms("list key metadata")),
        };
        let keys = reply.as_ref().and_then(|v| v.get("data")?.get("keys")?.as_array().cloned()).unwrap_or_default();
        let mut ids: Vec<String> = keys
            .into_iter()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .filter(|k| !k.ends_with('/') && validate_key_id("key_id", k).is_ok())
            .filter(|k| after.is_none_or(|a| k.as_str() > a))
            .collect();
        ids.sort_unstable();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn describe(&self, key_id: &str) -> Result<DescribeKeyResponse> {
        let key_metadata = match self.load(key_id).await? {
            Loaded::Record(record, _) => record.metadata(),
            Loaded::Unreadable { created } => kms_types::types::KeyMetadata {
                key_id: key_id.to_owned(),
                key_state: KeyState::Unavailable,
                key_usage: KeyUsage::EncryptDecrypt,
                key_spec: KeySpec::Aes256,
                origin: KeyOrigin::Kms,
                description: None,
                tags: Default::default(),
                creation_date: created.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                deletion_date: None,
                current_version: 1,
                rotation_date: None,
            },
        };
        Ok(DescribeKeyResponse { key_metadata })
    }

    async fn list(self: &Arc<Self>, request: ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = validate_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_key_id("marker", marker)?;
        }
        // A prefix filters the names (one LIST) before any per-key read.
        let prefix = request.checked_prefix()?;
        let mut ids = if prefix.is_empty() {
            self.list_ids(request.marker.as_deref(), limit + 1).await?
        } else {
            let mut ids = self.list_ids(request.marker.as_deref(), usize::MAX).await?;
            ids.retain(|id| id.starts_with(prefix));
            ids.truncate(limit + 1);
            ids
        };
        let truncated = ids.len() > limit;
        ids.truncate(limit);
        let next_marker = if truncated { ids.last().cloned() } else { None };
        let mut keys = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LIST_CONCURRENCY) {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, id) in chunk.iter().enumerate() {
                let this = self.clone();
                let id = id.clone();
                tasks.spawn(async move { (i, id.clone(), this.load(&id).await) });
            }
            let mut found: Vec<(usize, KeyListEntry)> = Vec::new();
            while let Some(done) = tasks.join_next().await {
                let (i, key_id, loaded) = done.map_err(|e| KmsError::backend(format!("list task failed: {e}")))?;
                let key_state = match loaded {
                    Ok(Loaded::Record(r, _)) => r.effective_state(),
                    Ok(Loaded::Unreadable { .. }) => KeyState::Unavailable,
                    // Deleted meanwhile (or purged now): not listed.
                    Err(KmsError::KeyNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                found.push((i, KeyListEntry { key_id, key_state }));
            }
            found.sort_by_key(|(i, _)| *i);
            keys.extend(found.into_iter().map(|(_, e)| e));
        }
        Ok(ListKeysResponse { keys, next_marker, truncated })
    }

    /// Whether some node serves (an unsealed active node or standby); answered from a cache
    /// of [`HEALTH_TTL`] so that health probes never amplify into Vault calls.
    async fn health(&self) -> bool {
        if let Some((healthy, at)) = *self.health.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < HEALTH_TTL
        {
            return healthy;
        }
        let statuses = self.transport.probe().await;
        let healthy = statuses.iter().any(|s| matches!(s, 200 | 429 | 473));
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = Some((healthy, Instant::now()));
        healthy
    }
}

#[async_trait]
impl KmsBackend for VaultBackend {
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        (self.inner.create(request)).await
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        let inner = &self.inner;
        (async {
            if request.plaintext.len() > MAX_ENCRYPT_PLAINTEXT_BYTES {
                return Err(KmsError::invalid_request("plaintext", "must be at most 4096 bytes"));
            }
            let record = inner.usable(&request.key_id, "encrypt").await?;
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
            let record = inner.usable(&blob.key_id, "decrypt").await?;
            let plaintext = inner.transit_decrypt(&record, &blob, &request.encryption_context).await?;
            Ok(DecryptResponse { key_id: blob.key_id, key_version: blob.key_version, plaintext })
        })
        .await
    }

    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        let inner = &self.inner;
        (async {
            let record = inner.usable(&request.key_id, "generate_data_key").await?;
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
            let record = inner.usable(&request.key_id, "generate_data_key_without_plaintext").await?;
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
            let record = inner
                .update(&request.key_id, "delete_key", |r| match r.key_state {
                    KeyState::Enabled | KeyState::Disabled => {
                        r.key_state = KeyState::PendingDeletion;
                        r.deletion_date = Some(when);
                        Ok(())
                    }
                    other => Err(KmsError::invalid_key_state(&r.key_id, other, "delete_key")),
                })
                .await?;
            Ok(DeleteKeyResponse { key_id: record.key_id, key_state: KeyState::PendingDeletion, deletion_date: when })
        })
        .await
    }

    async fn cancel_key_deletion(&self, request: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        let inner = &self.inner;
        (async {
            let record = inner
                .update(&request.key_id, "cancel_key_deletion", |r| match r.key_state {
                    KeyState::PendingDeletion => {
                        r.key_state = KeyState::Disabled;
                        r.deletion_date = None;
                        Ok(())
                    }
                    other => Err(KmsError::invalid_key_state(&r.key_id, other, "cancel_key_deletion")),
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
        BackendCapabilities::ALL
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
            let source_record = inner.usable(&source.key_id, "re_encrypt").await?;
            let destination = request.destination_key_id.clone().unwrap_or_else(|| source.key_id.clone());
            let destination_record = inner.usable(&destination, "re_encrypt").await?;
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
            let record = inner
                .update(&request.key_id, "update_key_description", |r| {
                    refuse_pending_deletion(r, "update_key_description")?;
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
            if request.tags.keys().any(String::is_empty) {
                return Err(KmsError::invalid_request("tags", "tag names must not be empty"));
            }
            let record = inner
                .update(&request.key_id, "tag_key", |r| {
                    refuse_pending_deletion(r, "tag_key")?;
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
            let record = inner
                .update(&request.key_id, "untag_key", |r| {
                    refuse_pending_deletion(r, "untag_key")?;
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
        let operation = if enabled { "enable_key" } else { "disable_key" };
        (async {
            let record = self
                .inner
                .update(&key_id, operation, |r| match r.key_state {
                    KeyState::Enabled | KeyState::Disabled => {
                        r.key_state = if enabled { KeyState::Enabled } else { KeyState::Disabled };
                        Ok(())
                    }
                    other => Err(KmsError::invalid_key_state(&r.key_id, other, operation)),
                })
                .await?;
            Ok(KeyMetadataResponse { key_metadata: record.metadata() })
        })
        .await
    }
}

/// Metadata edits are refused while a key waits for deletion (as in AWS KMS).
fn refuse_pending_deletion(record: &KeyRecord, operation: &'static str) -> Result<()> {
    match record.key_state {
        KeyState::PendingDeletion => {
            Err(KmsError::invalid_key_state(&record.key_id, KeyState::PendingDeletion, operation))
        }
        _ => Ok(()),
    }
}

/// Builds [`VaultBackend`]s for [`BackendKind::Vault`] configurations.
#[derive(Debug, Clone, Copy, Default)]
pub struct VaultBackendFactory;

#[async_trait]
impl BackendFactory for VaultBackendFactory {
    fn kind(&self) -> BackendKind {
        BackendKind::Vault
    }

    async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        Ok(Arc::new(VaultBackend::connect(config).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_ids_are_valid_and_distinct() {
        let a = new_key_id().unwrap();
        let b = new_key_id().unwrap();
        validate_key_id("key_id", &a).unwrap();
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
    }

    #[test]
    fn associated_data_is_the_canonical_context() {
        let ctx: EncryptionContext = [("bucket".to_owned(), "b".to_owned())].into();
        let ad = B64.decode(associated_data(&ctx)).unwrap();
        assert_eq!(ad, kms_crypto::context::canonical_context(&ctx));
        assert_eq!(B64.decode(associated_data(&EncryptionContext::new())).unwrap(), [1, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
