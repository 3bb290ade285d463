//! [`VaultBackend`]: the [`KmsBackend`] on Transit (key material) and KV v2 (metadata).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_core::backends::{BackendFactory, KmsBackend};
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
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::{CreateKeyRequestBuilder, UpdateKeyConfigurationRequestBuilder};
use zeroize::Zeroizing;

use crate::auth::Auth;
use crate::blob::VaultBlob;
use crate::record::{KeyRecord, RECORD_FORMAT, parse_record};
use crate::transport::{CallError, Method, Transport, TransportStats, backoff};

/// How many times a check-and-set update is tried before giving up on a contended key (the
/// operation deadline bounds it too).
const CAS_ATTEMPTS: u32 = 32;
/// How many key records `list_keys` reads at once.
const LIST_CONCURRENCY: usize = 16;

/// The Vault / OpenBao backend. Cheap to clone (shares one connection pool and session).
#[derive(Clone)]
pub struct VaultBackend {
    inner: Arc<Inner>,
}

struct Inner {
    transit: String,
    kv: String,
    prefix: String,
    address: String,
    timeout: Duration,
    transport: Arc<Transport>,
    auth: Arc<Auth>,
    cache: Option<(Mutex<LruCache<String, Cached>>, Duration)>,
}

#[derive(Clone)]
struct Cached {
    record: KeyRecord,
    version: u64,
    at: Instant,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("address", &self.inner.address)
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
    /// Uses `config.timeout` as the deadline of every operation, `config.retry_attempts` for
    /// retries of idempotent calls, and caches key records for `config.cache_config.ttl` when
    /// `config.enable_cache` is set.
    pub async fn connect(config: &KmsConfig) -> Result<Self> {
        config.validate()?;
        let BackendConfig::Vault(vault) = &config.backend_config else {
            return Err(KmsError::configuration("backend_config", "is not a vault configuration"));
        };
        let transport = Arc::new(Transport::new(vault, config.timeout, config.retry_attempts)?);
        let auth = tokio::time::timeout(config.timeout, Auth::new(transport.clone(), &vault.auth_method))
            .await
            .map_err(|_| KmsError::Timeout { operation: "vault login", after: config.timeout })??;
        let cache = config.enable_cache.then(|| {
            let size = NonZeroUsize::new(config.cache_config.max_keys).unwrap_or(NonZeroUsize::MIN);
            (Mutex::new(LruCache::new(size)), config.cache_config.ttl)
        });
        Ok(Self {
            inner: Arc::new(Inner {
                transit: vault.mount_path.trim_matches('/').to_owned(),
                kv: vault.kv_mount.trim_matches('/').to_owned(),
                prefix: vault.key_path_prefix.trim_matches('/').to_owned(),
                address: vault.address.clone(),
                timeout: config.timeout,
                transport,
                auth,
                cache,
            }),
        })
    }

    /// What the transport did so far (requests, retries, logins, renewals).
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

    /// Reads a key's record from KV (never from the cache).
    async fn load_fresh(&self, key_id: &str) -> Result<Loaded> {
        let session = self.auth.session().await?;
        let path = self.kv_path(key_id);
        let read = self
            .transport
            .retry(true, || async {
                let endpoint = ReadSecretRequest::builder()
                    .mount(self.kv.as_str())
                    .path(path.as_str())
                    .build()
                    .map_err(|e| CallError::Decode(e.to_string()))?;
                self.transport.count_request();
                vaultrs::api::exec_with_result(&session.client, endpoint).await.map_err(CallError::from)
            })
            .await;
        let read = match read {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => return Err(KmsError::key_not_found(key_id)),
            Err(e) => return Err(e.into_kms("read key metadata")),
        };
        let created =
            OffsetDateTime::parse(&read.metadata.created_time, &time::format_description::well_known::Rfc3339).ok();
        match parse_record(key_id, read.data) {
            Some(record) => {
                self.cache_put(&record, read.metadata.version);
                Ok(Loaded::Record(record, read.metadata.version))
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

    /// Writes a record with check-and-set against `cas` (0: create only).
    async fn write(&self, record: &KeyRecord, cas: u64) -> std::result::Result<u64, CallError> {
        let session = self.auth.session().await.map_err(|e| CallError::Session(Box::new(e)))?;
        let path = self.kv_path(&record.key_id);
        let cas = u32::try_from(cas).map_err(|_| CallError::Decode("KV version out of range".into()))?;
        self.transport.count_request();
        let meta =
            vaultrs::kv2::set_with_options(&session.client, &self.kv, &path, record, SetSecretRequestOptions { cas })
                .await?;
        self.cache_put(record, meta.version);
        Ok(meta.version)
    }

    /// Read-modify-write of a record with check-and-set; `change` may refuse.
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
            if record.deletion_due(OffsetDateTime::now_utc()) {
                self.purge(&record).await?;
                return Err(KmsError::key_not_found(key_id));
            }
            if !record.provisioned {
                return Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation));
            }
            change(&mut record)?;
            match self.write(&record, version).await {
                Ok(_) => return Ok(record),
                Err(e) if e.says("check-and-set") => {
                    // Lost a race with another writer: back off (with jitter, so the
                    // contenders spread out), then read the winner's record and reapply.
                    self.cache_drop(key_id);
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
        let session = self.auth.session().await?;
        let name = record.key_id.as_str();
        if record.provisioned {
            let mut opts = UpdateKeyConfigurationRequestBuilder::default();
            opts.deletion_allowed(true);
            self.transport.count_request();
            match vaultrs::transit::key::update(&session.client, &self.transit, name, Some(&mut opts)).await {
                Ok(()) => {}
                Err(e) => {
                    let e = CallError::from(e);
                    if !(e.status() == Some(404) || e.status() == Some(400) && e.says("not found")) {
                        return Err(e.into_kms("allow deletion of the Transit key"));
                    }
                }
            }
            self.transport.count_request();
            if let Err(e) = vaultrs::transit::key::delete(&session.client, &self.transit, name).await {
                let e = CallError::from(e);
                if e.status() != Some(404) {
                    return Err(e.into_kms("delete the Transit key"));
                }
            }
        }
        self.transport.count_request();
        if let Err(e) = vaultrs::kv2::delete_metadata(&session.client, &self.kv, &self.kv_path(name)).await {
            let e = CallError::from(e);
            if e.status() != Some(404) {
                return Err(e.into_kms("delete key metadata"));
            }
        }
        self.cache_drop(name);
        tracing::info!(key_id = name, "key deleted after its waiting period");
        Ok(())
    }

    /// Key ids after `after`, ascending, at most `limit` (KV `LIST` with OpenBao's
    /// `after`/`limit`; filtered and sorted here too, for servers that ignore them).
    async fn list_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let session = self.auth.session().await?;
        let path = format!("{}/metadata/{}/", self.kv, self.prefix);
        let mut query = Vec::new();
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        if limit != usize::MAX {
            query.push(("limit", limit.to_string()));
        }
        let token = session.token.expose_secret();
        let reply =
            self.transport.retry(true, || self.transport.raw(Some(token), Method::List, &path, &query, None)).await;
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

    async fn transit_encrypt(&self, key_id: &str, plaintext: &[u8], context: &EncryptionContext) -> Result<VaultBlob> {
        let session = self.auth.session().await?;
        let plaintext_b64 = Zeroizing::new(B64.encode(plaintext));
        let ad = associated_data(context);
        let reply = self
            .transport
            .retry(true, || async {
                let mut opts = vaultrs::api::transit::requests::EncryptDataRequestBuilder::default();
                opts.associated_data(ad.as_str());
                self.transport.count_request();
                vaultrs::transit::data::encrypt(&session.client, &self.transit, key_id, &plaintext_b64, Some(&mut opts))
                    .await
                    .map_err(CallError::from)
            })
            .await
            .map_err(|e| self.map_key_error(key_id, e, "encrypt"))?;
        VaultBlob::new(key_id, reply.ciphertext)
    }

    async fn transit_decrypt(&self, blob: &VaultBlob, context: &EncryptionContext) -> Result<SecretBytes> {
        let session = self.auth.session().await?;
        let ad = associated_data(context);
        let reply = self
            .transport
            .retry(true, || async {
                let mut opts = vaultrs::api::transit::requests::DecryptDataRequestBuilder::default();
                opts.associated_data(ad.as_str());
                self.transport.count_request();
                vaultrs::transit::data::decrypt(
                    &session.client,
                    &self.transit,
                    &blob.key_id,
                    &blob.transit_ciphertext,
                    Some(&mut opts),
                )
                .await
                .map_err(CallError::from)
            })
            .await;
        match reply {
            Ok(r) => {
                let b64 = Zeroizing::new(r.plaintext);
                B64.decode(b64.as_bytes()).map(SecretBytes::new).map_err(|_| KmsError::backend("vault: bad plaintext"))
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
        key_id: &str,
        spec: KeySpec,
        context: &EncryptionContext,
        with_plaintext: bool,
    ) -> Result<(VaultBlob, Option<SecretBytes>)> {
        let session = self.auth.session().await?;
        let kind = if with_plaintext { "plaintext" } else { "wrapped" };
        let path = format!("{}/datakey/{kind}/{key_id}", self.transit);
        let body = serde_json::to_vec(&json!({ "bits": bits(spec), "associated_data": associated_data(context) }))
            .map_err(|e| KmsError::backend(format!("cannot encode the request: {e}")))?;
        let token = session.token.expose_secret();
        let reply = self
            .transport
            .retry(true, || self.transport.raw(Some(token), Method::Post, &path, &[], Some(body.clone())))
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

    async fn create(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        let key_id = match request.key_name {
            Some(name) => {
                validate_key_id("key_name", &name)?;
                name
            }
            None => new_key_id()?,
        };
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
        // 1. Claim the id in KV (create-only): two servers cannot both create it.
        let claimed = match self.write(&record, 0).await {
            Ok(v) => v,
            Err(e) if e.says("check-and-set") => return Err(KmsError::KeyAlreadyExists { key_id }),
            Err(e) => return Err(e.into_kms("create key metadata")),
        };
        // 2. A Transit key of that name that we did not create is not adopted.
        let session = self.auth.session().await?;
        self.transport.count_request();
        match vaultrs::transit::key::read(&session.client, &self.transit, &key_id).await.map_err(CallError::from) {
            Ok(_) => {
                self.release_claim(&key_id).await;
                return Err(KmsError::KeyAlreadyExists { key_id });
            }
            Err(e) if e.status() == Some(404) => {}
            Err(e) => {
                self.release_claim(&key_id).await;
                return Err(e.into_kms("read the Transit key"));
            }
        }
        // 3. Create the Transit key: AES-256-GCM96, never exportable.
        let created = self
            .transport
            .retry(true, || async {
                let mut opts = CreateKeyRequestBuilder::default();
                opts.key_type(KeyType::Aes256Gcm96).exportable(false).allow_plaintext_backup(false).derived(false);
                self.transport.count_request();
                vaultrs::transit::key::create(&session.client, &self.transit, &key_id, Some(&mut opts))
                    .await
                    .map_err(CallError::from)
            })
            .await;
        if let Err(e) = created {
            self.release_claim(&key_id).await;
            return Err(e.into_kms("create the Transit key"));
        }
        // 4. Mark the record provisioned: only now may Transit be called for this key.
        record.provisioned = true;
        if let Err(e) = self.write(&record, claimed).await {
            return Err(e.into_kms("write key metadata"));
        }
        tracing::info!(key_id = %key_id, "key created");
        Ok(CreateKeyResponse { key_id, key_metadata: record.metadata() })
    }

    async fn release_claim(&self, key_id: &str) {
        self.cache_drop(key_id);
        if let Ok(session) = self.auth.session().await {
            self.transport.count_request();
            let _ = vaultrs::kv2::delete_metadata(&session.client, &self.kv, &self.kv_path(key_id)).await;
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

    async fn rotate(&self, key_id: &str) -> Result<KeyMetadataResponse> {
        self.usable(key_id, "rotate_key").await?;
        let session = self.auth.session().await?;
        // Not retried: a retry after a lost reply would rotate twice.
        self.transport.count_request();
        vaultrs::transit::key::rotate(&session.client, &self.transit, key_id)
            .await
            .map_err(|e| self.map_key_error(key_id, CallError::from(e), "rotate"))?;
        let latest = self.transit_latest_version(key_id).await?;
        let record = self
            .update(key_id, "rotate_key", |r| {
                r.current_version = r.current_version.max(latest);
                r.rotation_date = Some(OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(r.creation_date));
                Ok(())
            })
            .await?;
        Ok(KeyMetadataResponse { key_metadata: record.metadata() })
    }

    async fn transit_latest_version(&self, key_id: &str) -> Result<u32> {
        let session = self.auth.session().await?;
        let path = format!("{}/keys/{key_id}", self.transit);
        let token = session.token.expose_secret();
        let reply = self
            .transport
            .retry(true, || self.transport.raw(Some(token), Method::Get, &path, &[], None))
            .await
            .map_err(|e| self.map_key_error(key_id, e, "read the Transit key"))?;
        reply
            .as_ref()
            .and_then(|v| v.get("data")?.get("latest_version")?.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| KmsError::backend("vault: Transit key without latest_version"))
    }
}

#[async_trait]
impl KmsBackend for VaultBackend {
    async fn create_key(&self, request: CreateKeyRequest) -> Result<CreateKeyResponse> {
        deadline("create_key", self.inner.timeout, self.inner.create(request)).await
    }

    async fn encrypt(&self, request: EncryptRequest) -> Result<EncryptResponse> {
        let inner = &self.inner;
        deadline("encrypt", inner.timeout, async {
            if request.plaintext.len() > MAX_ENCRYPT_PLAINTEXT_BYTES {
                return Err(KmsError::invalid_request("plaintext", "must be at most 4096 bytes"));
            }
            inner.usable(&request.key_id, "encrypt").await?;
            let blob = inner
                .transit_encrypt(&request.key_id, request.plaintext.expose_secret(), &request.encryption_context)
                .await?;
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
        deadline("decrypt", inner.timeout, async {
            let blob = VaultBlob::decode(&request.ciphertext_blob)?;
            if let Some(expected) = &request.key_id
                && expected != &blob.key_id
            {
                // As a wrong key: opaque, like any ciphertext that does not open under it.
                return Err(KmsError::crypto());
            }
            inner.usable(&blob.key_id, "decrypt").await?;
            let plaintext = inner.transit_decrypt(&blob, &request.encryption_context).await?;
            Ok(DecryptResponse { key_id: blob.key_id, key_version: blob.key_version, plaintext })
        })
        .await
    }

    async fn generate_data_key(&self, request: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        let inner = &self.inner;
        deadline("generate_data_key", inner.timeout, async {
            inner.usable(&request.key_id, "generate_data_key").await?;
            let (blob, plaintext) =
                inner.transit_datakey(&request.key_id, request.key_spec, &request.encryption_context, true).await?;
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
        deadline("generate_data_key_without_plaintext", inner.timeout, async {
            inner.usable(&request.key_id, "generate_data_key_without_plaintext").await?;
            let (blob, _) =
                inner.transit_datakey(&request.key_id, request.key_spec, &request.encryption_context, false).await?;
            Ok(GenerateDataKeyWithoutPlaintextResponse {
                key_id: request.key_id,
                key_version: blob.key_version,
                ciphertext_blob: blob.encode(),
            })
        })
        .await
    }

    async fn describe_key(&self, request: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        deadline("describe_key", self.inner.timeout, self.inner.describe(&request.key_id)).await
    }

    async fn list_keys(&self, request: ListKeysRequest) -> Result<ListKeysResponse> {
        deadline("list_keys", self.inner.timeout, self.inner.list(request)).await
    }

    async fn delete_key(&self, request: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        let inner = &self.inner;
        deadline("delete_key", inner.timeout, async {
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
        deadline("cancel_key_deletion", inner.timeout, async {
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
        let inner = &self.inner;
        deadline("health_check", inner.timeout, async {
            let query = [("standbyok", "true".to_owned()), ("perfstandbyok", "true".to_owned())];
            let (status, _) = inner
                .transport
                .retry(true, || inner.transport.raw_status(None, Method::Get, "sys/health", &query, None))
                .await
                .map_err(|e| e.into_kms("health check"))?;
            // 200 active, 429 standby, 473 performance standby: serving. 472 DR secondary,
            // 501 not initialised, 503 sealed: not serving.
            Ok(matches!(status, 200 | 429 | 473))
        })
        .await
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
        deadline("rotate_key", self.inner.timeout, self.inner.rotate(&request.key_id)).await
    }

    async fn re_encrypt(&self, request: ReEncryptRequest) -> Result<ReEncryptResponse> {
        let inner = &self.inner;
        deadline("re_encrypt", inner.timeout, async {
            // Transit's rewrap takes no associated data, so a context-bound ciphertext is moved
            // by decrypting and encrypting inside this process; the plaintext is zeroized and
            // never returned.
            let source = VaultBlob::decode(&request.ciphertext_blob)?;
            inner.usable(&source.key_id, "re_encrypt").await?;
            let destination = request.destination_key_id.clone().unwrap_or_else(|| source.key_id.clone());
            inner.usable(&destination, "re_encrypt").await?;
            let plaintext = inner.transit_decrypt(&source, &request.source_encryption_context).await?;
            let context = request.destination_encryption_context.as_ref().unwrap_or(&request.source_encryption_context);
            let blob = inner.transit_encrypt(&destination, plaintext.expose_secret(), context).await?;
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
        deadline("update_key_description", inner.timeout, async {
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
        deadline("tag_key", inner.timeout, async {
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
        deadline("untag_key", inner.timeout, async {
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
        deadline(operation, self.inner.timeout, async {
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
