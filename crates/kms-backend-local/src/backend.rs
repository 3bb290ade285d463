//! [`LocalBackend`]: the in-memory key index over the key directory, and the lifecycle.
//!
//! Every key is loaded at start and held in memory (material zeroized when dropped), so the
//! data path (encrypt, decrypt, data keys) reads only memory. Changes to one key are
//! serialized by that key's own lock and made durable on disk before they become visible;
//! changes to different keys proceed in parallel.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use kms_types::config::LocalConfig;
use kms_types::error::{KmsError, Result};
use kms_types::types::{
    KeyListEntry, KeyOrigin, KeySpec, KeyState, ListKeysRequest, ListKeysResponse, validate_key_id, validate_list_limit,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use tokio::sync::Mutex as AsyncMutex;
use zeroize::Zeroizing;

use crate::clock::{Clock, SystemClock};
use crate::dir::{KeyDir, io_error, record_name};
use crate::master_key::{MasterSecret, RecordProtection};
use crate::record::{KeyRecord, KeyVersion, MATERIAL_LEN, RecordError, StoredMeta, StoredState};

/// How often the deletion worker started by the factory sweeps.
pub const DEFAULT_DELETION_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Options of [`LocalBackend::open_with`] beyond the configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LocalOptions {
    /// Where "now" comes from (deletion dates, creation and rotation dates).
    pub clock: Arc<dyn Clock>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock) }
    }
}

impl LocalOptions {
    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// The state of one key id in the index.
#[derive(Clone)]
enum SlotState {
    /// Reserved by a create whose record is not yet on disk: invisible.
    Creating,
    /// Loaded and usable according to its lifecycle state.
    Ready(Arc<KeyRecord>),
    /// The record exists but cannot be read; listed as `Unavailable`.
    Unavailable(Arc<str>),
    /// Removed (deleted, or a failed create); invisible.
    Removed,
}

/// One key id: its current snapshot and the lock that serializes its changes.
struct Slot {
    state: RwLock<SlotState>,
    write: Arc<AsyncMutex<()>>,
}

impl Slot {
    fn new(state: SlotState) -> Arc<Self> {
        Arc::new(Self { state: RwLock::new(state), write: Arc::new(AsyncMutex::new(())) })
    }

    fn get(&self) -> SlotState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: SlotState) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// The loaded key, or the error a caller of `operation` gets.
    fn ready(&self, key_id: &str, operation: &'static str) -> Result<Arc<KeyRecord>> {
        match self.get() {
            SlotState::Ready(record) => Ok(record),
            SlotState::Unavailable(_) => Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation)),
            SlotState::Creating | SlotState::Removed => Err(KmsError::key_not_found(key_id)),
        }
    }
}

pub(crate) struct Inner {
    dir: KeyDir,
    protection: RecordProtection,
    clock: Arc<dyn Clock>,
    keys: RwLock<BTreeMap<String, Arc<Slot>>>,
    closed: AtomicBool,
}

impl Inner {
    fn keys(&self) -> RwLockReadGuard<'_, BTreeMap<String, Arc<Slot>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    fn keys_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<String, Arc<Slot>>> {
        self.keys.write().unwrap_or_else(|e| e.into_inner())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(KmsError::ServiceUnavailable { message: "the local key store is closed".into() });
        }
        Ok(())
    }

    fn slot(&self, key_id: &str) -> Result<Arc<Slot>> {
        self.keys().get(key_id).cloned().ok_or_else(|| KmsError::key_not_found(key_id))
    }

    /// The loaded key for a cryptographic or read operation (no disk access).
    pub(crate) fn loaded(&self, key_id: &str, operation: &'static str) -> Result<Arc<KeyRecord>> {
        self.check_open()?;
        self.slot(key_id)?.ready(key_id, operation)
    }

    fn persist(&self, record: &KeyRecord, create_only: bool) -> Result<()> {
        let bytes = record.encode(&self.protection)?;
        let name = record_name(&record.key_id);
        self.dir.write_atomic(&name, &bytes, create_only).map_err(|e| {
            if create_only && e.kind() == std::io::ErrorKind::AlreadyExists {
                KmsError::KeyAlreadyExists { key_id: record.key_id.clone() }
            } else {
                io_error(format!("cannot write key record {}", self.dir.path().join(&name).display()), e)
            }
        })
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }
}

/// The local file key store. Build it with [`LocalBackend::open`] (or through
/// [`LocalBackendFactory`](crate::LocalBackendFactory)); it implements
/// `kms_core::backends::KmsBackend`.
pub struct LocalBackend {
    pub(crate) inner: Arc<Inner>,
    worker: Mutex<Option<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBackend")
            .field("key_dir", &self.inner.dir.path())
            .field("keys", &self.inner.keys().len())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

/// Runs `f` on the blocking pool. Once started it runs to the end even if the caller's future
/// is dropped, so a change is never half-applied (on disk but not in memory, or the reverse).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
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
    /// the directory's verifier record. Leftovers of interrupted writes are removed. A record
    /// that cannot be read does not fail the start: its key is listed as `Unavailable`.
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
            let ids = dir.record_ids().map_err(|e| io_error(format!("cannot list {shown}"), e))?;
            if matches!(secret, MasterSecret::InsecurePlaintext) {
                tracing::error!(
                    key_dir = %shown,
                    "INSECURE: master key source is InsecurePlaintextForDevelopment; key material is stored \
                     UNENCRYPTED on disk. Never use this outside development."
                );
            }
            let protection = RecordProtection::establish(&dir, secret, !ids.is_empty())?;
            let mut keys = BTreeMap::new();
            for id in ids {
                let state = match load(&dir, &protection, &id) {
                    Ok(record) => SlotState::Ready(Arc::new(record)),
                    Err(err) => {
                        tracing::error!(key_id = %id, error = %err, "key record is unreadable; the key is Unavailable");
                        SlotState::Unavailable(err.to_string().into())
                    }
                };
                keys.insert(id, Slot::new(state));
            }
            Ok(Inner { dir, protection, clock: options.clock, keys: RwLock::new(keys), closed: AtomicBool::new(false) })
        })
        .await?;
        Ok(Self { inner: Arc::new(inner), worker: Mutex::new(None) })
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
        purge_expired(&self.inner).await
    }

    /// Stops the deletion worker, waits for changes in flight, refuses further calls and
    /// releases the directory lock, so another backend may open the directory.
    pub async fn shutdown(&self) {
        self.stop_worker();
        let slots: Vec<Arc<Slot>> = {
            let keys = self.inner.keys_mut();
            self.inner.closed.store(true, Ordering::Release);
            keys.values().cloned().collect()
        };
        for slot in slots {
            drop(slot.write.lock().await);
        }
        self.inner.dir.release();
    }

    pub(crate) async fn create(&self, key_id: Option<String>, meta: StoredMeta) -> Result<Arc<KeyRecord>> {
        if meta.origin != KeyOrigin::Kms {
            return Err(KmsError::Unsupported { operation: "create_key with an external origin", backend: "local" });
        }
        if let Some(id) = &key_id {
            validate_key_id("key_name", id)?;
        }
        let material = random_material()?;
        let slot = Slot::new(SlotState::Creating);
        let guard = slot.write.clone().try_lock_owned().expect("a new slot is unlocked");
        let key_id = {
            let mut keys = self.inner.keys_mut();
            self.inner.check_open()?;
            let id = match key_id {
                Some(id) if keys.contains_key(&id) => return Err(KmsError::KeyAlreadyExists { key_id: id }),
                Some(id) => id,
                None => loop {
                    let id = generated_key_id()?;
                    if !keys.contains_key(&id) {
                        break id;
                    }
                },
            };
            keys.insert(id.clone(), slot.clone());
            id
        };
        let version = KeyVersion::new(1, meta.creation_date, material.as_ref())?;
        let record = KeyRecord { key_id: key_id.clone(), meta, versions: vec![Arc::new(version)] };
        let inner = self.inner.clone();
        blocking(move || {
            let _guard = guard;
            match inner.persist(&record, true) {
                Ok(()) => {
                    let record = Arc::new(record);
                    slot.set(SlotState::Ready(record.clone()));
                    Ok(record)
                }
                Err(err) => {
                    slot.set(SlotState::Removed);
                    let mut keys = inner.keys_mut();
                    if keys.get(&key_id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                        keys.remove(&key_id);
                    }
                    Err(err)
                }
            }
        })
        .await
    }

    /// Applies `change` to a key under its lock; `Ok(None)` from `change` means "no change"
    /// (nothing is written). The new record is on disk before anyone can see it.
    pub(crate) async fn mutate<F>(&self, key_id: &str, operation: &'static str, change: F) -> Result<Arc<KeyRecord>>
    where
        F: FnOnce(&KeyRecord, OffsetDateTime) -> Result<Option<KeyRecord>> + Send + 'static,
    {
        validate_key_id("key_id", key_id)?;
        self.inner.check_open()?;
        let slot = self.inner.slot(key_id)?;
        let guard = slot.write.clone().lock_owned().await;
        let inner = self.inner.clone();
        let key_id = key_id.to_owned();
        blocking(move || {
            let _guard = guard;
            inner.check_open()?;
            let current = slot.ready(&key_id, operation)?;
            match change(&current, inner.now())? {
                None => Ok(current),
                Some(next) => {
                    inner.persist(&next, false)?;
                    let next = Arc::new(next);
                    slot.set(SlotState::Ready(next.clone()));
                    Ok(next)
                }
            }
        })
        .await
    }

    /// The metadata view of a key (an unreadable record is an error naming the reason).
    pub(crate) fn describe(&self, key_id: &str) -> Result<Arc<KeyRecord>> {
        validate_key_id("key_id", key_id)?;
        self.inner.check_open()?;
        match self.inner.slot(key_id)?.get() {
            SlotState::Ready(record) => Ok(record),
            SlotState::Unavailable(why) => {
                Err(KmsError::backend(format!("the record of key {key_id} cannot be read: {why}")))
            }
            SlotState::Creating | SlotState::Removed => Err(KmsError::key_not_found(key_id)),
        }
    }

    pub(crate) fn list(&self, request: &ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = validate_list_limit(request.limit)?;
        if let Some(marker) = &request.marker {
            validate_key_id("marker", marker)?;
        }
        self.inner.check_open()?;
        let keys = self.inner.keys();
        // The marker is a position (exclusive lower bound), not a cursor: it stays valid when
        // its key is deleted, and keys created behind it are simply not on later pages.
        let start = request.marker.as_ref().map_or(Bound::Unbounded, |m| Bound::Excluded(m.clone()));
        let mut page = Vec::with_capacity(limit.min(keys.len()) + 1);
        for (id, slot) in keys.range((start, Bound::Unbounded)) {
            let key_state = match slot.get() {
                SlotState::Ready(record) => record.meta.state.into(),
                SlotState::Unavailable(_) => KeyState::Unavailable,
                SlotState::Creating | SlotState::Removed => continue,
            };
            page.push(KeyListEntry { key_id: id.clone(), key_state });
            if page.len() > limit {
                break;
            }
        }
        let truncated = page.len() > limit;
        page.truncate(limit);
        let next_marker = if truncated { page.last().map(|e| e.key_id.clone()) } else { None };
        Ok(ListKeysResponse { keys: page, next_marker, truncated })
    }

    pub(crate) fn healthy(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire) && self.inner.dir.path().is_dir()
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.inner.now()
    }
}

fn load(dir: &KeyDir, protection: &RecordProtection, key_id: &str) -> std::result::Result<KeyRecord, RecordError> {
    validate_key_id("key_id", key_id).map_err(|_| RecordError::Malformed("file name is not a valid key id".into()))?;
    let bytes = dir.read(&record_name(key_id)).map_err(|e| RecordError::Io(e.to_string()))?;
    KeyRecord::decode(key_id, &bytes, protection)
}

async fn purge_expired(inner: &Arc<Inner>) -> Result<Vec<String>> {
    inner.check_open()?;
    let now = inner.now();
    let due = move |state: &SlotState| {
        matches!(state, SlotState::Ready(r)
            if r.meta.state == StoredState::PendingDeletion && r.meta.deletion_date.is_some_and(|d| d <= now))
    };
    let candidates: Vec<(String, Arc<Slot>)> =
        inner.keys().iter().filter(|(_, slot)| due(&slot.get())).map(|(id, s)| (id.clone(), s.clone())).collect();
    let mut removed = Vec::new();
    let mut first_error = None;
    for (key_id, slot) in candidates {
        let guard = slot.write.clone().lock_owned().await;
        let inner = inner.clone();
        let result = blocking(move || {
            let _guard = guard;
            inner.check_open()?;
            // Re-checked under the key's lock: a cancel may have won the race.
            if !due(&slot.get()) {
                return Ok(None);
            }
            inner
                .dir
                .remove(&record_name(&key_id))
                .map_err(|e| io_error(format!("cannot delete the record of key {key_id}"), e))?;
            slot.set(SlotState::Removed);
            let mut keys = inner.keys_mut();
            if keys.get(&key_id).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                keys.remove(&key_id);
            }
            Ok(Some(key_id))
        })
        .await;
        match result {
            Ok(Some(id)) => removed.push(id),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "could not delete an expired key");
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(removed),
    }
}

fn random_material() -> Result<Zeroizing<[u8; MATERIAL_LEN]>> {
    let mut material = Zeroizing::new([0u8; MATERIAL_LEN]);
    SystemRandom::new().fill(material.as_mut()).map_err(|_| KmsError::crypto())?;
    Ok(material)
}

/// A fresh version of a key: the next number, new random material.
pub(crate) fn next_version(record: &KeyRecord, now: OffsetDateTime) -> Result<KeyVersion> {
    let number = record.current().version.checked_add(1).ok_or_else(|| KmsError::backend("key version overflow"))?;
    KeyVersion::new(number, now, random_material()?.as_ref())
}

/// A random id shaped like a UUID v4.
fn generated_key_id() -> Result<String> {
    let mut raw = [0u8; 16];
    SystemRandom::new().fill(&mut raw).map_err(|_| KmsError::crypto())?;
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
}

/// The spec of every local master key.
pub(crate) const MASTER_KEY_SPEC: KeySpec = KeySpec::Aes256;
