//! [`LocalBackend`]: the key store, the cache of opened keys, and the lifecycle.
//!
//! Nothing is read per key at start: a key is read from the store and opened the first time
//! it is used, then kept in a bounded cache ([`crate::cache`]), so the data path of a key in
//! use reads only memory. Every change goes through the writer ([`crate::writer`]): durable
//! (committed, fsynced) before it is answered or visible, many changes to one fsync.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use kms_types::config::LocalConfig;
use kms_types::error::{KmsError, Result};
use kms_types::types::{
    KeyListEntry, KeyOrigin, KeySpec, KeyState, ListKeysRequest, ListKeysResponse, validate_key_id, validate_list_limit,
};
use redb::Database;
use time::OffsetDateTime;
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use crate::cache::{Cached, DEFAULT_CACHE_CAPACITY, KeyCache, KeyCacheStats};
use crate::clock::{Clock, SystemClock};
use crate::dir::{KeyDir, io_error};
use crate::master_key::{MasterSecret, RecordProtection};
use crate::record::{ImportedMeta, KeyRecord, KeyVersion, MATERIAL_LEN, StoredMeta, StoredState};
use crate::store;
use crate::writer::{Change, Op, Writer, WriterContext};

/// How often the deletion worker started by the factory sweeps.
pub const DEFAULT_DELETION_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Options of [`LocalBackend::open_with`] beyond the configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalOptions {
    /// Where "now" comes from (deletion dates, creation and rotation dates).
    pub clock: Arc<dyn Clock>,
    /// Most opened keys kept in memory (least recently used first out); 32768 by default.
    pub cache_capacity: NonZeroUsize,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            cache_capacity: NonZeroUsize::new(DEFAULT_CACHE_CAPACITY).expect("non-zero"),
        }
    }
}

impl LocalOptions {
    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps at most `capacity` opened keys in memory.
    pub fn with_cache_capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.cache_capacity = capacity;
        self
    }
}

pub(crate) struct Inner {
    dir: KeyDir,
    protection: Arc<RecordProtection>,
    clock: Arc<dyn Clock>,
    /// The store; taken out when the last handle shuts down (which closes the file).
    db: RwLock<Option<Arc<Database>>>,
    cache: Arc<KeyCache>,
    writer: Writer,
    /// Set when the last handle is shut down (or dropped).
    closed: AtomicBool,
    /// Open [`LocalBackend`] handles on this store (changed under `handles_lock`).
    handles: AtomicUsize,
    handles_lock: Mutex<()>,
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        Ok(())
    }

    pub(crate) fn db(&self) -> Result<Arc<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(closed)
    }

    /// The key as the cache holds it, reading and opening its record on a miss; `None` if
    /// the store has no such key.
    pub(crate) async fn lookup(self: &Arc<Self>, key_id: &str) -> Result<Option<Cached>> {
        let ticket = match self.cache.get(key_id) {
            Ok(found) => return Ok(Some(found)),
            Err(ticket) => ticket,
        };
        let inner = self.clone();
        let key_id = key_id.to_owned();
        blocking(move || {
            let Some(bytes) = store::read(&*inner.db()?, &key_id)? else { return Ok(None) };
            let found = inner.open_record(&key_id, &bytes);
            inner.cache.fill(&key_id, ticket, found.clone());
            Ok(Some(found))
        })
        .await
    }

    fn open_record(&self, key_id: &str, bytes: &[u8]) -> Cached {
        self.cache.opened.fetch_add(1, Ordering::Relaxed);
        match KeyRecord::decode(key_id, bytes, &self.protection) {
            Ok(record) => Cached::Ready(Arc::new(record)),
            Err(err) => {
                tracing::error!(key_id = %key_id, error = %err, "key record is unreadable; the key is Unavailable");
                Cached::Unavailable(err.to_string().into())
            }
        }
    }

    /// A backup bundle of the store as one read transaction sees it ([`crate::backup`]).
    pub(crate) async fn snapshot(self: &Arc<Self>) -> Result<Vec<u8>> {
        self.check_open()?;
        let inner = self.clone();
        blocking(move || {
            let verifier = inner
                .dir
                .read(crate::dir::VERIFIER_FILE)
                .map_err(|e| io_error("cannot read the verifier record".to_owned(), e))?;
            let snapshot = store::snapshot(&*inner.db()?)?;
            let entries = snapshot
                .keys
                .into_iter()
                .map(|(id, record, pending)| crate::bundle::Entry { id, record, pending })
                .collect::<Vec<_>>();
            crate::bundle::encode(&verifier, &entries, &snapshot.aliases, &inner.protection)
        })
        .await
    }

    /// The usable key for a cryptographic or read operation.
    pub(crate) async fn loaded(self: &Arc<Self>, key_id: &str, operation: &'static str) -> Result<Arc<KeyRecord>> {
        match self.lookup(key_id).await? {
            Some(Cached::Ready(record)) => Ok(record),
            Some(Cached::Unavailable(_)) => Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation)),
            None => Err(KmsError::key_not_found(key_id)),
        }
    }

    /// Queues `op` (built around `reply`) and waits for the writer's answer: the change is
    /// committed when this returns `Ok`.
    async fn submit<T>(&self, op: Op, answer: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.check_open()?;
        if !self.writer.submit(op) {
            return Err(closed());
        }
        answer.await.map_err(|_| KmsError::backend("the key store writer stopped"))?
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

fn closed() -> KmsError {
    KmsError::ServiceUnavailable { message: "the local key store is closed".into() }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Answer what is queued, then close the file (the writer holds the last other handle).
        self.writer.stop();
    }
}

/// The local file key store. Build it with [`LocalBackend::open`] (or through
/// [`LocalBackendFactory`](crate::LocalBackendFactory)); it implements
/// `kms_core::backends::KmsBackend`.
///
/// A `LocalBackend` is a handle on an open key directory. The factory hands out several
/// handles on one directory when it is asked to build a backend for a directory it already
/// has open (a service reconfigure builds the new backend before it retires the old one);
/// the directory stays locked until the last handle is shut down or dropped.
pub struct LocalBackend {
    pub(crate) inner: Arc<Inner>,
    /// This handle was shut down.
    closed: AtomicBool,
    worker: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("key_dir", &self.inner.dir.path())
            .field("cache", &self.inner.cache.stats())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        self.stop_worker();
        // The store itself goes with the last reference to it (in-flight blocking tasks hold
        // one until they finish).
        self.release_handle();
    }
}

/// Runs `f` on the blocking pool. Once started it runs to the end even if the caller's future
/// is dropped.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KmsError::backend_with_source("local key store task failed", false, e))?
}

impl LocalBackend {
    /// Opens (or creates) the key directory of `config` with the system clock.
    pub async fn open(config: &LocalConfig) -> Result<Self> {
        Self::open_with(config, LocalOptions::default()).await
    }

    /// Opens (or creates) the key directory of `config`.
    ///
    /// Fails if the directory is a symlink, writable by group or others, owned by another
    /// user, or in use by another process; if the master key cannot be read or does not match
    /// the directory's verifier record. Leftovers of interrupted writes are removed, and a
    /// directory of format 1 (one file per key) is migrated into the key store, once. No key
    /// is read: keys are opened when first used. A record that cannot be read does not fail
    /// the start: its key is listed as `Unavailable`.
    pub async fn open_with(config: &LocalConfig, options: LocalOptions) -> Result<Self> {
        config.validate()?;
        let config = config.clone();
        let inner = blocking(move || {
            let secret = MasterSecret::resolve(&config.master_key)?;
            let dir = KeyDir::open(&config.key_dir)?;
            let shown = config.key_dir.display().to_string();
            let removed = dir.clean_temp_files().map_err(|e| io_error(format!("cannot clean {shown}"), e))?;
            if removed > 0 {
                tracing::warn!(key_dir = %shown, removed, "removed leftovers of interrupted writes");
            }
            let legacy = dir.legacy_record_ids().map_err(|e| io_error(format!("cannot list {shown}"), e))?;
            let has_store =
                dir.exists(store::STORE_FILE).map_err(|e| io_error(format!("cannot inspect {shown}"), e))?;
            if matches!(secret, MasterSecret::InsecurePlaintext) {
                tracing::error!(
                    key_dir = %shown,
                    "INSECURE: master key source is InsecurePlaintextForDevelopment; key material is stored \
                     UNENCRYPTED on disk. Never use this outside development."
                );
            }
            let protection = RecordProtection::establish(&dir, secret, has_store || !legacy.is_empty())?;
            if !has_store && !legacy.is_empty() {
                let valid: Vec<String> =
                    legacy.iter().filter(|id| validate_key_id("key_id", id).is_ok()).cloned().collect();
                store::migrate(&dir, &protection, &valid)?;
            }
            let db = Arc::new(store::open(&dir)?);
            if !legacy.is_empty() {
                store::remove_migrated(&dir, &db, &legacy)?;
            }
            let protection = Arc::new(protection);
            let cache = Arc::new(KeyCache::new(options.cache_capacity));
            let writer = Writer::start(WriterContext {
                db: db.clone(),
                protection: protection.clone(),
                clock: options.clock.clone(),
                cache: cache.clone(),
            })?;
            Ok(Inner {
                dir,
                protection,
                clock: options.clock,
                db: RwLock::new(Some(db)),
                cache,
                writer,
                closed: AtomicBool::new(false),
                handles: AtomicUsize::new(1),
                handles_lock: Mutex::new(()),
            })
        })
        .await?;
        Ok(Self::handle(Arc::new(inner)))
    }

    fn handle(inner: Arc<Inner>) -> Self {
        Self { inner, closed: AtomicBool::new(false), worker: Mutex::new(None) }
    }

    /// Another handle on the store `inner`, if it is still open and `config`'s master key
    /// opens its verifier record.
    pub(crate) async fn attach(inner: Arc<Inner>, config: &LocalConfig) -> Result<Option<Self>> {
        config.validate()?;
        let source = config.master_key.clone();
        let checked = inner.clone();
        blocking(move || {
            let secret = MasterSecret::resolve(&source)?;
            RecordProtection::establish(&checked.dir, secret, true).map(drop)
        })
        .await?;
        let _handles = inner.handles_lock.lock().unwrap_or_else(|e| e.into_inner());
        if inner.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        inner.handles.fetch_add(1, Ordering::AcqRel);
        drop(_handles);
        Ok(Some(Self::handle(inner)))
    }

    /// Hit and miss counts and the size of the cache of opened keys, and how many records
    /// were opened since start (what `/metrics` shows for the local backend).
    pub fn cache_stats(&self) -> KeyCacheStats {
        self.inner.cache.stats()
    }

    /// Whether this handle, or the whole store, is closed.
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.inner.closed.load(Ordering::Acquire)
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(closed());
        }
        Ok(())
    }

    /// Marks this handle closed; returns whether it was the store's last handle (the store is
    /// then closed too).
    fn release_handle(&self) -> bool {
        if self.closed.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _handles = self.inner.handles_lock.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            self.inner.closed.store(true, Ordering::Release);
        }
        last
    }

    /// Starts the deletion worker: every `interval` it removes keys whose deletion date has
    /// passed ([`purge_expired_keys`](Self::purge_expired_keys)). Replaces a running worker;
    /// stops when the backend is closed or dropped. Needs a tokio runtime.
    pub fn start_deletion_worker(&self, interval: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(Ordering::Acquire) {
                    return;
                }
                match purge_expired(&inner).await {
                    Ok(removed) if !removed.is_empty() => {
                        tracing::info!(keys = ?removed, "deleted keys whose deletion window has passed");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "deletion sweep failed; will retry"),
                }
            }
        });
        if let Some(old) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).replace(task.abort_handle()) {
            old.abort();
        }
    }

    fn stop_worker(&self) {
        if let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            worker.abort();
        }
    }

    /// Removes, durably, every key in `PendingDeletion` whose deletion date is at or before
    /// the clock's now; returns their ids. What the deletion worker does on each sweep.
    pub async fn purge_expired_keys(&self) -> Result<Vec<String>> {
        self.check_open()?;
        purge_expired(&self.inner).await
    }

    /// Stops this handle's deletion worker and refuses further calls on it. On the store's
    /// last handle it also waits for the changes in flight, closes the store and releases the
    /// directory lock, so another backend (or process) may open the directory. Idempotent.
    pub async fn shutdown(&self) {
        self.stop_worker();
        if !self.release_handle() {
            return;
        }
        let inner = self.inner.clone();
        let _ = blocking(move || {
            inner.writer.stop();
            let db = inner.db.write().unwrap_or_else(|e| e.into_inner()).take();
            // Readers in flight hold the store for a lookup at most; wait for them.
            if let Some(mut db) = db {
                for _ in 0..1000 {
                    match Arc::try_unwrap(db) {
                        Ok(db) => {
                            drop(db);
                            break;
                        }
                        Err(shared) => {
                            db = shared;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            }
            inner.cache.clear();
            inner.dir.release();
            Ok(())
        })
        .await;
    }

    pub(crate) async fn create(&self, key_id: Option<String>, meta: StoredMeta) -> Result<Arc<KeyRecord>> {
        if let Some(id) = &key_id {
            validate_key_id("key_name", id)?;
        }
        self.check_open()?;
        let key_id = match key_id {
            Some(id) => id,
            None => kms_crypto::rand::key_id()?,
        };
        if meta.origin == KeyOrigin::External {
            // No material until it is imported (BYOK, `crate::byok`).
            let meta =
                StoredMeta { state: StoredState::PendingImport, imported: Some(ImportedMeta::default()), ..meta };
            return self.insert(KeyRecord { key_id, meta, versions: Vec::new() }).await;
        }
        let material = random_material()?;
        let version = KeyVersion::new(1, meta.creation_date, material.as_ref())?;
        self.insert(KeyRecord { key_id, meta, versions: vec![Arc::new(version)] }).await
    }

    /// Stores a new key; [`KmsError::KeyAlreadyExists`] if its id is taken.
    pub(crate) async fn insert(&self, record: KeyRecord) -> Result<Arc<KeyRecord>> {
        // Sealed here, on the caller's thread: the writer only stores it.
        let bytes = record.encode(&self.inner.protection)?;
        let (reply, answer) = oneshot::channel();
        self.inner.submit(Op::Create { record, bytes, reply }, answer).await
    }

    /// Applies `change` to a key in the writer; `Ok(None)` from `change` means "no change"
    /// (nothing is written). The new record is committed before anyone can see it.
    pub(crate) async fn mutate<F>(&self, key_id: &str, operation: &'static str, change: F) -> Result<Arc<KeyRecord>>
    where
        F: FnOnce(&KeyRecord, OffsetDateTime) -> Result<Option<KeyRecord>> + Send + 'static,
    {
        validate_key_id("key_id", key_id)?;
        self.check_open()?;
        let change: Change = Box::new(change);
        let (reply, answer) = oneshot::channel();
        self.inner.submit(Op::Mutate { key_id: key_id.to_owned(), operation, change, reply }, answer).await
    }

    /// The metadata view of a key (an unreadable record is an error naming the reason).
    pub(crate) async fn describe(&self, key_id: &str) -> Result<Arc<KeyRecord>> {
        validate_key_id("key_id", key_id)?;
        self.check_open()?;
        match self.inner.lookup(key_id).await? {
            Some(Cached::Ready(record)) => Ok(record),
            Some(Cached::Unavailable(why)) => {
                Err(KmsError::backend(format!("the record of key {key_id} cannot be read: {why}")))
            }
            None => Err(KmsError::key_not_found(key_id)),
        }
    }

    pub(crate) async fn list(&self, request: &ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = validate_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_key_id("marker", marker)?;
        }
        let prefix = request.checked_prefix()?.to_owned();
        self.check_open()?;
        let inner = self.inner.clone();
        let marker = request.marker.clone();
        // The marker is a position (exclusive lower bound), not a cursor: it stays valid when
        // its key is deleted, and keys created behind it are simply not on later pages. A
        // prefix is a range of the store: only the ids in it are read.
        let mut page = blocking(move || {
            let rows = store::page(&*inner.db()?, marker.as_deref(), &prefix, limit + 1)?;
            Ok(rows
                .into_iter()
                .map(|(key_id, bytes)| {
                    let cached = inner.cache.peek(&key_id).unwrap_or_else(|| inner.open_record(&key_id, &bytes));
                    let key_state = match cached {
                        Cached::Ready(record) => record.state_at(inner.now()),
                        Cached::Unavailable(_) => KeyState::Unavailable,
                    };
                    KeyListEntry { key_id, key_state }
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let truncated = page.len() > limit;
        page.truncate(limit);
        let next_marker = if truncated { page.last().map(|e| e.key_id.clone()) } else { None };
        Ok(ListKeysResponse { keys: page, next_marker, truncated })
    }

    pub(crate) fn healthy(&self) -> bool {
        !self.is_closed() && self.inner.dir.path().is_dir()
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.now()
    }
}

async fn purge_expired(inner: &Arc<Inner>) -> Result<Vec<String>> {
    let (reply, answer) = oneshot::channel();
    inner.submit(Op::PurgeDue { reply }, answer).await
}

fn random_material() -> Result<Zeroizing<[u8; MATERIAL_LEN]>> {
    let mut material = Zeroizing::new([0u8; MATERIAL_LEN]);
    kms_crypto::rand::fill(material.as_mut())?;
    Ok(material)
}

/// A fresh version of a key: the next number, new random material.
pub(crate) fn next_version(record: &KeyRecord, now: OffsetDateTime) -> Result<KeyVersion> {
    let number = record.current_version().checked_add(1).ok_or_else(|| KmsError::backend("key version overflow"))?;
    KeyVersion::new(number, now, random_material()?.as_ref())
}

/// The spec of every local master key.
pub(crate) const MASTER_KEY_SPEC: KeySpec = KeySpec::Aes256;
