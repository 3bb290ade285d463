//! [`VaultBackend`]: the [`KmsBackend`] on Transit (key material) and KV v2 (metadata).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_core::backends::{BackendFactory, KmsBackend, RetryClass};
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

    /// Writes a record with check-and-set against `cas` (0: create only). A write whose
    /// reply was lost is read back: if the record now is exactly ours at `cas + 1`, it
    /// landed; if it cannot be read, it is remembered as unconfirmed under `operation` and
    /// the error (retryable) returned.
    async fn write(
        &self,
        record: &KeyRecord,
        cas: u64,
        operation: &'static str,
    ) -> std::result::Result<u64, CallError> {
        let path = format!("{}/data/{}", self.kv, self.kv_path(&record.key_id));
        let body = serde_json::to_vec(&json!({ "options": { "cas": cas }, "data": record }))
            .map_err(|e| CallError::Decode(e.to_string()))?;
        self.cache_drop(&record.key_id);
        // While the write is in flight it is noted; if this attempt is abandoned (the
        // manager's attempt deadline drops it), the guard turns the note into an unconfirmed
        // write, which the next attempt recognises.
        let guard = InFlight::new(self, (record.key_id.clone(), operation), record.clone());
        let outcome = self.call(Route::Active, Method::Post, &path, Some(body)).await;
        let outcome = match outcome {
            Ok(reply) => {
                let version = reply.as_ref().and_then(|v| v.get("data")?.get("version")?.as_u64()).unwrap_or(cas + 1);
                self.cache_put(record, version);
                Ok(version)
            }
            Err(e) if e.is_lost() => match self.read_record(&record.key_id).await {
                Ok(Loaded::Record(now, version)) if version == cas + 1 && &now == record => {
                    tracing::debug!(key_id = %record.key_id, operation, "a write whose reply was lost had landed");
                    Ok(version)
                }
                Ok(_) => Err(e),
                // Outcome unknown: leave the note for the next attempt.
                Err(_) => return Err(e),
            },
            Err(e) => Err(e),
        };
        guard.settle();
        outcome
    }

    /// Notes an unconfirmed write (bounded: a server that never retries its failures does not
    /// grow the table without end).
    fn note_unconfirmed(&self, note: (String, &'static str), record: KeyRecord) {
        let mut notes = self.unconfirmed_lock();
        if notes.len() >= MAX_NOTES && !notes.contains_key(&note) {
            notes.clear();
        }
        notes.insert(note, record);
    }

    fn unconfirmed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, &'static str), KeyRecord>> {
        self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `record` is what an earlier, unconfirmed `operation` on it wrote (consumes
    /// the note).
    fn landed_earlier(&self, record: &KeyRecord, operation: &'static str) -> bool {
        let key = (record.key_id.clone(), operation);
        self.unconfirmed_lock().remove(&key).is_some_and(|written| &written == record)
    }

    /// Read-modify-write of a record with check-and-set; `change` may refuse. Safe to call
    /// again after a failure: a change whose write landed unseen is not applied twice.
    async fn update(
        &self,
        key_id: &str,
        operation: &'static str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<()>,
    ) -> Result<KeyRecord> {
        validate_key_id("key_id", key_id)?;
        let mut attempt = 0;
        while attempt < CAS_ATTEMPTS {
            let (mut record, version) = match self.load_fresh(key_id).await? {
                Loaded::Record(r, v) => (r, v),
                Loaded::Unreadable { .. } => {
                    return Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation));
                }
            };
            if self.landed_earlier(&record, operation) {
                return Ok(record);
            }
            if record.deletion_due(OffsetDateTime::now_utc()) {
                self.purge(&record).await?;
                return Err(KmsError::key_not_found(key_id));
            }
            if !record.provisioned {
                return Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation));
            }
            change(&mut record)?;
            match self.write(&record, version, operation).await {
                Ok(_) => return Ok(record),
                Err(e) if e.says("check-and-set") => {
                    // Lost a race with another writer: back off (with jitter, so the
                    // contenders spread out), then read the winner's record and reapply.
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt, Duration::from_millis(5), Duration::from_millis(500))).await;
                    continue;
                }
                Err(e) => return Err(e.into_kms("write key metadata")),
            }
        }
        Err(KmsError::backend(format!("{operation}: key {key_id} kept changing under concurrent updates")))
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

    /// Where Transit calls for `record`'s key go: spread over the nodes, except for a key
    /// created or rotated within [`FRESH_WINDOW`] or a ciphertext of a version newer than the
    /// record (standbys may not have it yet), which go to the active node.
    fn transit_route(record: &KeyRecord, version: Option<u32>) -> Route {
        let changed = record.rotation_date.unwrap_or(record.creation_date).max(record.creation_date);
        let recent = OffsetDateTime::now_utc() - changed < FRESH_WINDOW;
        if recent || version.is_some_and(|v| v > record.current_version) { Route::Active } else { Route::Spread }
    }

    async fn transit_encrypt(
        &self,
        record: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<VaultBlob> {
        let key_id = record.key_id.as_str();
        let path = format!("{}/encrypt/{key_id}", self.transit);
        let plaintext_b64 = Zeroizing::new(B64.encode(plaintext));
        let body = Zeroizing::new(
            serde_json::to_vec(
                &json!({ "plaintext": plaintext_b64.as_str(), "associated_data": associated_data(context) }),
            )
            .map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?,
        );
        let reply = self
            .call(Self::transit_route(record, None), Method::Post, &path, Some(body.to_vec()))
            .await
            .map_err(|e| self.map_key_error(key_id, e, "encrypt"))?;
        let ciphertext = reply
            .as_ref()
            .and_then(|v| v.get("data")?.get("ciphertext")?.as_str())
            .ok_or_else(|| KmsError::backend("vault: encrypt reply without ciphertext"))?;
        VaultBlob::new(key_id, ciphertext.to_owned())
    }

    async fn transit_decrypt(
        &self,
        record: &KeyRecord,
        blob: &VaultBlob,
        context: &EncryptionContext,
    ) -> Result<SecretBytes> {
        let path = format!("{}/decrypt/{}", self.transit, blob.key_id);
        let body = serde_json::to_vec(
            &json!({ "ciphertext": blob.transit_ciphertext, "associated_data": associated_data(context) }),
        )
        .map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?;
        let route = Self::transit_route(record, Some(blob.key_version));
        match self.call(route, Method::Post, &path, Some(body)).await {
            Ok(mut reply) => {
                let plaintext = reply
                    .as_mut()
                    .and_then(|v| v.get_mut("data")?.get_mut("plaintext").map(Value::take))
                    .and_then(|v| match v {
                        Value::String(s) => Some(Zeroizing::new(s)),
                        _ => None,
                    })
                    .ok_or_else(|| KmsError::backend("vault: decrypt reply without plaintext"))?;
                B64.decode(plaintext.as_bytes())
                    .map(SecretBytes::new)
                    .map_err(|_| KmsError::backend("vault: bad plaintext"))
            }
            // A ciphertext that does not authenticate, or that Transit cannot parse or does
            // not have the version of: opaque, never retried.
            Err(e) if e.is_auth_failure() || e.status() == Some(400) && !e.says("encryption key not found") => {
                Err(KmsError::crypto_with_source(e))
            }
            Err(e) => Err(self.map_key_error(&blob.key_id, e, "decrypt")),
        }
    }

    async fn transit_datakey(
        &self,
        record: &KeyRecord,
        spec: KeySpec,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<(VaultBlob, Option<SecretBytes>)> {
        let key_id = record.key_id.as_str();
        let kind = if with_plaintext { "plaintext" } else { "wrapped" };
        let path = format!("{}/datakey/{kind}/{key_id}", self.transit);
        let body = serde_json::to_vec(&json!({ "bits": bits(spec), "associated_data": associated_data(context) }))
            .map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?;
        let reply = self
            .call(Self::transit_route(record, None), Method::Post, &path, Some(body))
            .await
            .map_err(|e| self.map_key_error(key_id, e, "generate data key"))?;
        let data = reply.and_then(|mut v| v.get_mut("data").map(Value::take)).unwrap_or(Value::Null);
        let reply: DataKeyReply =
            serde_json::from_value(data).map_err(|e| KmsError::backend(format!("vault: bad datakey reply: {e}")))?;
        let blob = VaultBlob::new(key_id, reply.ciphertext)?;
        let plaintext = match (with_plaintext, reply.plaintext) {
            (true, Some(p)) => Some(SecretBytes::new(
                B64.decode(p.expose_secret()).map_err(|_| KmsError::backend("vault: bad datakey plaintext"))?,
            )),
            (true, None) => return Err(KmsError::backend("vault: datakey reply without plaintext")),
            (false, _) => None,
        };
        if let Some(p) = &plaintext
            && p.len() != spec.key_len()
        {
            return Err(KmsError::backend("vault: datakey of the wrong length"));
        }
        Ok((blob, plaintext))
    }

    /// Maps a Transit error for a key we hold a record of.
    fn map_key_error(&self, key_id: &str, e: CallError, what: &str) -> KmsError {
        if e.says("encryption key not found") || e.status() == Some(404) {
            // Our record says the key exists but Transit has no such key: the Transit key
            // was deleted behind our back. Report it, do not recreate it.
            self.cache_drop(key_id);
            return KmsError::backend_with_source(
                format!("vault: the Transit key for {key_id} is missing ({what})"),
                false,
                e,
            );
        }
        e.into_kms(what)
    }

    /// Creates a key; safe to call again after a retryable failure (the claim and Transit key
    /// of the failed attempt are carried on, never duplicated: an unnamed create that failed
    /// retryably is retried under the id it had).
    async fn create(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let unnamed = request.key_name.is_none().then(|| {
            format!("{:?}|{:?}|{:?}|{:?}", request.description, request.tags, request.policy, request.key_usage)
        });
        let key_id = match (&request.key_name, &unnamed) {
            (Some(name), _) => {
                validate_key_id("key_name", name)?;
                name.clone()
            }
            (None, Some(fingerprint)) => match self.unnamed_lock().remove(fingerprint) {
                Some(id) => id,
                None => new_key_id()?,
            },
            (None, None) => new_key_id()?,
        };
        let result = self.create_as(&key_id, request).await;
        if let (Err(e), Some(fingerprint)) = (&result, unnamed)
            && e.is_retryable()
        {
            let mut unnamed_ids = self.unnamed_lock();
            if unnamed_ids.len() >= MAX_NOTES {
                unnamed_ids.clear();
            }
            unnamed_ids.insert(fingerprint, key_id);
        }
        result
    }

    fn unnamed_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.unnamed.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn create_as(&self, key_id: &str, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let key_id = key_id.to_owned();
        if request.origin.unwrap_or_default() != KeyOrigin::Kms {
            return Err(KmsError::Unsupported { operation: "create_key with external key material", backend: "vault" });
        }
        if request.key_usage != KeyUsage::EncryptDecrypt {
            return Err(KmsError::invalid_request("key_usage", "only encrypt_decrypt keys are supported"));
        }
        let mut record = KeyRecord {
            format: RECORD_FORMAT,
            key_id: key_id.clone(),
            key_state: KeyState::Enabled,
            key_usage: request.key_usage,
            key_spec: KeySpec::Aes256,
            origin: KeyOrigin::Kms,
            description: request.description,
            tags: request.tags,
            policy: request.policy,
            creation_date: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            deletion_date: None,
            rotation_date: None,
            current_version: 1,
            provisioned: false,
        };
        // 1. Claim the id in KV (create-only): two servers cannot both create it. A claim of
        //    ours left by an attempt that failed retryably is recognised and carried on.
        let (claimed, fresh) = match self.write(&record, 0, "create_key").await.map(|v| (v, true)) {
            Ok(v) => v,
            Err(e) if e.says("check-and-set") => match self.resume_create(&key_id).await? {
                Some((existing, _)) if existing.provisioned => {
                    return Ok(CreateKeyResponse { key_id, key_metadata: existing.metadata() });
                }
                Some((existing, version)) => {
                    record = existing;
                    (version, false)
                }
                None => return Err(KmsError::KeyAlreadyExists { key_id }),
            },
            Err(e) => return Err(e.into_kms("create key metadata")),
        };
        // Until provisioning ends for good, the claim is ours to resume: a retryable failure
        // or an abandoned attempt leaves a note the next attempt recognises.
        let guard = InFlight::new(self, (key_id, "create_key"), record.clone());
        let result = self.provision(record, claimed, fresh).await;
        if !result.as_ref().is_err_and(KmsError::is_retryable) {
            guard.settle();
        }
        result
    }

    /// Steps 2-4 of a create, after the claim (record at KV version `claimed`; `fresh`: this
    /// attempt made the claim, so no Transit key of that name may exist yet).
    async fn provision(&self, mut record: KeyRecord, claimed: u64, fresh: bool) -> Result<CreateKeyResponse> {
        let key_id = record.key_id.clone();
        // A Transit key that already exists is someone else's: not adopted. (A resumed
        // claim may already have its key, made by the attempt that lost its reply.)
        if fresh {
            let path = format!("{}/keys/{key_id}", self.transit);
            match self.call(Route::Active, Method::Get, &path, None).await {
                Ok(_) => {
                    self.release_claim(&key_id).await;
                    return Err(KmsError::KeyAlreadyExists { key_id });
                }
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e.into_kms("read the Transit key")),
            }
        }
        // 2. Create the Transit key: AES-256-GCM96, never exportable. Transit's create is an
        //    upsert, so a key someone else made under this name meanwhile would be kept:
        // 3. read it back and adopt nothing but the key we asked for, at version 1.
        let path = format!("{}/keys/{key_id}", self.transit);
        let body =
            json!({ "type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false, "derived": false })
                .to_string()
                .into_bytes();
        let checked = match self.call(Route::Active, Method::Post, &path, Some(body)).await {
            Ok(_) => self.check_transit_key(&key_id).await,
            Err(e) => Err(e.into_kms("create the Transit key")),
        };
        match checked {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(key_id = %key_id, "a Transit key of this name already existed with other settings; not adopted");
                self.release_claim(&key_id).await;
                return Err(KmsError::KeyAlreadyExists { key_id });
            }
            Err(e) => {
                if !e.is_retryable() {
                    self.release_claim(&key_id).await;
                }
                return Err(e);
            }
        }
        // 4. Mark the record provisioned: only now may Transit be called for this key.
        record.provisioned = true;
        if let Err(e) = self.write(&record, claimed, "create_key").await {
            if e.says("check-and-set") && self.landed_earlier(&record, "create_key") {
                return Ok(CreateKeyResponse { key_id, key_metadata: record.metadata() });
            }
            return Err(e.into_kms("write key metadata"));
        }
        tracing::info!(key_id = %key_id, "key created");
        Ok(CreateKeyResponse { key_id, key_metadata: record.metadata() })
    }

    /// After a create-only write found a record: ours (a retry of a create whose reply was
    /// lost) with its version, or `None` (someone else's key).
    async fn resume_create(&self, key_id: &str) -> Result<Option<(KeyRecord, u64)>> {
        let pending = self.unconfirmed_lock().remove(&(key_id.to_owned(), "create_key"));
        let Some(pending) = pending else { return Ok(None) };
        match self.load_fresh(key_id).await? {
            Loaded::Record(now, version) => {
                let mut unprovisioned = now.clone();
                unprovisioned.provisioned = false;
                Ok((unprovisioned == pending || now == pending).then_some((now, version)))
            }
            Loaded::Unreadable { .. } => Ok(None),
        }
    }

    /// Whether the Transit key `key_id` is exactly what `create` asks for: `aes256-gcm96`,
    /// not exportable, no plaintext backup, not derived, one version.
    async fn check_transit_key(&self, key_id: &str) -> Result<bool> {
        let path = format!("{}/keys/{key_id}", self.transit);
        let reply =
            self.call(Route::Active, Method::Get, &path, None).await.map_err(|e| e.into_kms("read the Transit key"))?;
        let data = reply.as_ref().and_then(|v| v.get("data")).cloned().unwrap_or(Value::Null);
        Ok(data.get("type").and_then(Value::as_str) == Some("aes256-gcm96")
            && data.get("exportable").and_then(Value::as_bool) == Some(false)
            && data.get("allow_plaintext_backup").and_then(Value::as_bool) == Some(false)
            && data.get("derived").and_then(Value::as_bool) == Some(false)
            && data.get("latest_version").and_then(Value::as_u64) == Some(1))
    }

    async fn release_claim(&self, key_id: &str) {
        if let Err(e) = self.delete_record(key_id).await {
            tracing::warn!(key_id, error = %e, "could not release the claim of a key that was not created");
        }
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
        let mut ids = self.list_ids(request.marker.as_deref(), limit + 1).await?;
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

    /// Rotates a key, safe to call again after a lost reply: when Transit already holds a
    /// version newer than the record (a rotate whose reply was lost, or one another server
    /// is recording right now), that version is recorded instead of rotating a second time.
    async fn rotate(&self, key_id: &str) -> Result<KeyMetadataResponse> {
        let record = match self.load_fresh(key_id).await? {
            Loaded::Record(r, _) if r.effective_state() == KeyState::Enabled => r,
            Loaded::Record(r, _) => return Err(KmsError::invalid_key_state(key_id, r.effective_state(), "rotate_key")),
            Loaded::Unreadable { .. } => {
                return Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, "rotate_key"));
            }
        };
        let mut latest = self.transit_latest_version(key_id).await?;
        if latest <= record.current_version {
            let path = format!("{}/keys/{key_id}/rotate", self.transit);
            match self.call(Route::Active, Method::Post, &path, None).await {
                Ok(_) => {}
                Err(e) if e.is_lost() && self.transit_latest_version(key_id).await.is_ok_and(|now| now > latest) => {}
                Err(e) => return Err(self.map_key_error(key_id, e, "rotate")),
            }
            latest = self.transit_latest_version(key_id).await?;
        }
        let record = self
            .update(key_id, "rotate_key", |r| {
                if r.current_version < latest {
                    r.current_version = latest;
                    r.rotation_date = Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(r.creation_date));
                }
                Ok(())
            })
            .await?;
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }

    async fn transit_latest_version(&self, key_id: &str) -> Result<u32> {
        let path = format!("{}/keys/{key_id}", self.transit);
        let reply = self
            .call(Route::Active, Method::Get, &path, None)
            .await
            .map_err(|e| self.map_key_error(key_id, e, "read the Transit key"))?;
        reply
            .as_ref()
            .and_then(|v| v.get("data")?.get("latest_version")?.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| KmsError::backend("vault: Transit key without latest_version"))
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

/// A write in flight: dropped before [`settle`](Self::settle) (the attempt was abandoned, or
/// its reply lost and unreadable), it leaves an unconfirmed note for the next attempt.
struct InFlight<'a> {
    inner: &'a Inner,
    note: Option<((String, &'static str), KeyRecord)>,
}

impl<'a> InFlight<'a> {
    fn new(inner: &'a Inner, note: (String, &'static str), record: KeyRecord) -> Self {
        Self { inner, note: Some((note, record)) }
    }

    /// The write's outcome is known: no note.
    fn settle(mut self) {
        self.note = None;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some((note, record)) = self.note.take() {
            self.inner.note_unconfirmed(note, record);
        }
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
