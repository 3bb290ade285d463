//! Group commit: one thread applies every change to the key store, many per transaction.
//!
//! Callers queue a change and wait for its answer. The writer takes the first queued change,
//! then everything else already queued (up to [`MAX_BATCH`]), applies them in order in one
//! write transaction and commits it with one fsync; only then does it update the cache of
//! opened keys and answer every caller. So an answered change is durable, a single caller
//! waits for one commit (nothing waits for a batch to fill), and 64 concurrent callers share
//! one fsync between them.
//!
//! Changes to one key are serialized by construction (one writer, changes applied in order,
//! each reading the state the previous one left): no lost update, no per-key lock. A change
//! that is refused (wrong state, duplicate id) answers its own error and does not affect the
//! others; a storage failure aborts the transaction and every change in it gets the error.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kms_types::error::{KmsError, Result};
use kms_types::types::KeyState;
use redb::{Database, ReadableTable, Table};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use crate::cache::KeyCache;
use crate::clock::Clock;
use crate::master_key::RecordProtection;
use crate::record::{KeyRecord, StoredState};
use crate::store::{KEYS, PENDING, storage};

/// Most changes in one transaction: enough to share a fsync between many callers, few enough
/// that one commit does not make redb grow its file far ahead of use (measured: batches of
/// 512 took about 1.5× the disk of batches of 64).
pub(crate) const MAX_BATCH: usize = 256;

/// Longest wait for more changes before a commit, and only after a commit of several: a small
/// fraction of one fsync.
const GATHER_WINDOW: std::time::Duration = std::time::Duration::from_micros(200);

/// A change of one key: `Ok(None)` means "nothing to change" (nothing is written).
pub(crate) type Change = Box<dyn FnOnce(&KeyRecord, OffsetDateTime) -> Result<Option<KeyRecord>> + Send>;

/// One queued change.
pub(crate) enum Op {
    /// Stores a new key, already sealed by the caller (`bytes`); refused if the id exists.
    Create { record: KeyRecord, bytes: Vec<u8>, reply: oneshot::Sender<Result<Arc<KeyRecord>>> },
    /// Applies `change` to the stored key `key_id`.
    Mutate { key_id: String, operation: &'static str, change: Change, reply: oneshot::Sender<Result<Arc<KeyRecord>>> },
    /// Removes every key in `PendingDeletion` whose deletion date has passed.
    PurgeDue { reply: oneshot::Sender<Result<Vec<String>>> },
}

/// What the writer thread needs.
pub(crate) struct WriterContext {
    pub(crate) db: Arc<Database>,
    pub(crate) protection: Arc<RecordProtection>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) cache: Arc<KeyCache>,
}

/// The queue into the writer thread, and the thread.
pub(crate) struct Writer {
    queue: Mutex<Option<Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn start(context: WriterContext) -> Result<Self> {
        let (queue, ops) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("kms-local-writer".into())
            .spawn(move || run(&context, &ops))
            .map_err(|e| KmsError::backend_with_source("cannot start the key store writer", false, e))?;
        Ok(Self { queue: Mutex::new(Some(queue)), thread: Mutex::new(Some(thread)) })
    }

    /// Queues `op`; `false` if the writer has stopped.
    pub(crate) fn submit(&self, op: Op) -> bool {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.as_ref().is_some_and(|q| q.send(op).is_ok())
    }

    /// Stops taking changes, lets the writer finish those queued, and waits for it.
    pub(crate) fn stop(&self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(context: &WriterContext, ops: &Receiver<Op>) {
    let mut last_batch = 1;
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        // The callers the last commit answered are likely to come back at once: when it had
        // several, wait a moment for them (never longer than GATHER_WINDOW) so the next commit
        // carries them all instead of splitting them over two fsyncs. A lone caller (last
        // batch of one) never waits.
        let deadline = (last_batch > 1).then(|| std::time::Instant::now() + GATHER_WINDOW);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => match deadline {
                    Some(deadline) if batch.len() < last_batch && std::time::Instant::now() < deadline => {
                        std::thread::yield_now();
                    }
                    _ => break,
                },
            }
        }
        last_batch = batch.len();
        commit_batch(context, batch);
    }
}

/// An answer held back until the commit.
enum Reply {
    Record(oneshot::Sender<Result<Arc<KeyRecord>>>, Result<Arc<KeyRecord>>),
    Purged(oneshot::Sender<Result<Vec<String>>>, Result<Vec<String>>),
}

impl Reply {
    fn send(self, failure: Option<&KmsError>) {
        let fail = |e: &KmsError| KmsError::backend(format!("the key store change was not committed: {e}"));
        match self {
            Self::Record(tx, result) => {
                let _ = tx.send(match (failure, result) {
                    (Some(e), Ok(_)) => Err(fail(e)),
                    (_, result) => result,
                });
            }
            Self::Purged(tx, result) => {
                let _ = tx.send(match (failure, result) {
                    (Some(e), Ok(_)) => Err(fail(e)),
                    (_, result) => result,
                });
            }
        }
    }
}

/// Storage errors abort the whole batch; anything else is the change's own answer.
type Applied<T> = std::result::Result<Result<T>, KmsError>;

fn commit_batch(context: &WriterContext, batch: Vec<Op>) {
    let now = context.clock.now();
    let mut replies = Vec::with_capacity(batch.len());
    let mut changes: Vec<(String, Option<Arc<KeyRecord>>)> = Vec::new();
    let outcome = (|| -> Result<()> {
        let txn = context.db.begin_write().map_err(storage)?;
        {
            let mut keys = txn.open_table(KEYS).map_err(storage)?;
            let mut pending = txn.open_table(PENDING).map_err(storage)?;
            let mut tables = Tables { keys: &mut keys, pending: &mut pending, context, changes: &mut changes };
            for op in batch {
                match op {
                    Op::Create { record, bytes, reply } => {
                        replies.push(Reply::Record(reply, tables.create(record, &bytes)?));
                    }
                    Op::Mutate { key_id, operation, change, reply } => {
                        replies.push(Reply::Record(reply, tables.mutate(&key_id, operation, change, now)?));
                    }
                    Op::PurgeDue { reply } => replies.push(Reply::Purged(reply, tables.purge_due(now)?)),
                }
            }
        }
        if changes.is_empty() { txn.abort().map_err(storage) } else { txn.commit().map_err(storage) }
    })();
    match outcome {
        Ok(()) => {
            context.cache.committed(changes);
            replies.into_iter().for_each(|r| r.send(None));
        }
        Err(err) => {
            tracing::error!(error = %err, "a key store commit failed; its changes are refused");
            replies.into_iter().for_each(|r| r.send(Some(&err)));
        }
    }
}

struct Tables<'a, 't> {
    keys: &'a mut Table<'t, &'static str, &'static [u8]>,
    pending: &'a mut Table<'t, &'static str, ()>,
    context: &'a WriterContext,
    changes: &'a mut Vec<(String, Option<Arc<KeyRecord>>)>,
}

impl Tables<'_, '_> {
    fn load(&self, key_id: &str) -> std::result::Result<Option<std::result::Result<KeyRecord, String>>, KmsError> {
        let Some(value) = self.keys.get(key_id).map_err(storage)? else { return Ok(None) };
        self.context.cache.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Some(KeyRecord::decode(key_id, value.value(), &self.context.protection).map_err(|e| e.to_string())))
    }

    fn store(&mut self, record: KeyRecord, bytes: &[u8]) -> Applied<Arc<KeyRecord>> {
        let key_id = record.key_id.as_str();
        self.keys.insert(key_id, bytes).map_err(storage)?;
        if record.meta.state == StoredState::PendingDeletion {
            self.pending.insert(key_id, ()).map_err(storage)?;
        } else {
            self.pending.remove(key_id).map_err(storage)?;
        }
        let record = Arc::new(record);
        self.changes.push((record.key_id.clone(), Some(record.clone())));
        Ok(Ok(record))
    }

    fn create(&mut self, record: KeyRecord, bytes: &[u8]) -> Applied<Arc<KeyRecord>> {
        if self.keys.get(record.key_id.as_str()).map_err(storage)?.is_some() {
            return Ok(Err(KmsError::KeyAlreadyExists { key_id: record.key_id }));
        }
        self.store(record, bytes)
    }

    fn mutate(
        &mut self,
        key_id: &str,
        operation: &'static str,
        change: Change,
        now: OffsetDateTime,
    ) -> Applied<Arc<KeyRecord>> {
        let current = match self.load(key_id)? {
            None => return Ok(Err(KmsError::key_not_found(key_id))),
            Some(Err(_)) => return Ok(Err(KmsError::invalid_key_state(key_id, KeyState::Unavailable, operation))),
            Some(Ok(current)) => current,
        };
        match change(&current, now) {
            Err(refused) => Ok(Err(refused)),
            Ok(None) => Ok(Ok(Arc::new(current))),
            Ok(Some(next)) => match next.encode(&self.context.protection) {
                Ok(bytes) => self.store(next, &bytes),
                Err(refused) => Ok(Err(refused)),
            },
        }
    }

    fn purge_due(&mut self, now: OffsetDateTime) -> Applied<Vec<String>> {
        let mut listed = Vec::new();
        for entry in self.pending.iter().map_err(storage)? {
            listed.push(entry.map_err(storage)?.0.value().to_owned());
        }
        let mut removed = Vec::new();
        for key_id in listed {
            let due = match self.load(&key_id)? {
                Some(Ok(r)) if r.meta.state == StoredState::PendingDeletion => {
                    if r.meta.deletion_date.is_none_or(|d| d > now) {
                        continue;
                    }
                    true
                }
                // Unreadable: never deleted on a date nobody can read.
                Some(Err(_)) => continue,
                // Not pending (or gone): the index entry is stale.
                _ => false,
            };
            self.pending.remove(key_id.as_str()).map_err(storage)?;
            if due {
                self.keys.remove(key_id.as_str()).map_err(storage)?;
                self.changes.push((key_id.clone(), None));
                removed.push(key_id);
            }
        }
        Ok(Ok(removed))
    }
}
