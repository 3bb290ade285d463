//! The key store file: one `redb` database, `keys.redb`, in the key directory.
//!
//! Why `redb`: it is a maintained, pure-Rust, embedded B-tree with ACID transactions and
//! checksummed commits (a commit is whole after a crash or not there at all), and it keeps
//! reads in its own bounded page cache. That gives what one file per key could not at a
//! million keys: opening does no work per key, a key is one B-tree lookup, a page of ids is a
//! range scan, a record costs its bytes and not a 4 KiB block and a directory entry, and many
//! changes share one commit, so one fsync ([`crate::writer`], group commit).
//!
//! Tables (`docs/formats.md`, "Local key store"):
//! - `keys`: key id → sealed record ([`crate::record`]);
//! - `pending_deletion`: key id → `()`, the keys in `PendingDeletion` (what the deletion
//!   sweep reads instead of every record);
//! - `store_info`: `"format_version"` → 1.
//!
//! [`snapshot`] reads every record in one read transaction (a backup, [`crate::bundle`]);
//! [`build_and_install`] builds a whole store aside and moves it into place (migration, restore).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use kms_types::error::KmsError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::dir::{KeyDir, io_error};
use crate::legacy::LEGACY_SUFFIX;
use crate::master_key::RecordProtection;
use crate::record::StoredState;

/// The store file in the key directory.
pub(crate) const STORE_FILE: &str = "keys.redb";
/// Key id → record.
pub(crate) const KEYS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("keys");
/// Key id → (), for keys in `PendingDeletion`.
pub(crate) const PENDING: TableDefinition<'_, &str, ()> = TableDefinition::new("pending_deletion");
/// Facts about the store itself.
const INFO: TableDefinition<'_, &str, u64> = TableDefinition::new("store_info");
/// The store layout version this code writes and reads.
const STORE_FORMAT_VERSION: u64 = 1;
/// Memory redb may use for its page cache: bounded whatever the number of keys.
pub(crate) const PAGE_CACHE_BYTES: usize = 32 << 20;

/// A storage failure as a backend error. It names no path: it may reach a client.
pub(crate) fn storage(source: impl Into<redb::Error>) -> KmsError {
    KmsError::backend_with_source("the local key store failed", false, source.into())
}

/// Opens the store file of `dir`, creating it (0600, with its tables) if it does not exist.
pub(crate) fn open(dir: &KeyDir) -> Result<Database, KmsError> {
    let path = dir.path().join(STORE_FILE);
    let existed = dir.exists(STORE_FILE).map_err(|e| io_error(format!("cannot inspect {}", path.display()), e))?;
    let file = open_file(&path, !existed).map_err(|e| io_error(format!("cannot open {}", path.display()), e))?;
    let db = builder().create_file(file).map_err(|e| {
        KmsError::backend_with_source(format!("cannot open the key store {}", path.display()), false, e)
    })?;
    if existed {
        check_format(&db)?;
    } else {
        initialize(&db)?;
        dir.sync().map_err(|e| io_error(format!("cannot sync {}", dir.path().display()), e))?;
    }
    Ok(db)
}

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(PAGE_CACHE_BYTES);
    builder.set_repair_callback(|session| {
        tracing::warn!(progress = session.progress(), "repairing the key store after an unclean shutdown");
    });
    builder
}

/// Opens a regular file (never a symlink) for the database: created 0600 if `create`.
fn open_file(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create_new(create).mode(0o600).open(path)?;
    let opened = file.metadata()?;
    let named = fs::symlink_metadata(path)?;
    if !named.file_type().is_file() || opened.dev() != named.dev() || opened.ino() != named.ino() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file (a symlink?)"));
    }
    Ok(file)
}

fn initialize(db: &Database) -> Result<(), KmsError> {
    let txn = db.begin_write().map_err(storage)?;
    {
        txn.open_table(KEYS).map_err(storage)?;
        txn.open_table(PENDING).map_err(storage)?;
        txn.open_table(INFO).map_err(storage)?.insert("format_version", STORE_FORMAT_VERSION).map_err(storage)?;
    }
    txn.commit().map_err(storage)
}

fn check_format(db: &Database) -> Result<(), KmsError> {
    let txn = db.begin_read().map_err(storage)?;
    let version = txn.open_table(INFO).map_err(storage)?.get("format_version").map_err(storage)?.map(|v| v.value());
    match version {
        Some(STORE_FORMAT_VERSION) => Ok(()),
        other => Err(KmsError::backend(format!(
            "the key store has format version {other:?}; this kms reads version {STORE_FORMAT_VERSION}"
        ))),
    }
}

/// The stored record of `key_id`, if any.
pub(crate) fn read(db: &Database, key_id: &str) -> Result<Option<Vec<u8>>, KmsError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = txn.open_table(KEYS).map_err(storage)?;
    Ok(table.get(key_id).map_err(storage)?.map(|v| v.value().to_vec()))
}

/// Up to `count` (id, record) pairs in id order, after `marker` (exclusive), of ids starting
/// with `prefix`: one range scan, whatever the store holds.
pub(crate) fn page(
    db: &Database,
    marker: Option<&str>,
    prefix: &str,
    count: usize,
) -> Result<Vec<(String, Vec<u8>)>, KmsError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = txn.open_table(KEYS).map_err(storage)?;
    let start = match marker {
        Some(marker) if marker >= prefix => Bound::Excluded(marker),
        _ => Bound::Included(prefix),
    };
    let mut out = Vec::with_capacity(count.min(4096));
    for entry in table.range::<&str>((start, Bound::Unbounded)).map_err(storage)? {
        let (id, value) = entry.map_err(storage)?;
        let id = id.value();
        if !id.starts_with(prefix) || out.len() == count {
            break;
        }
        out.push((id.to_owned(), value.value().to_vec()));
    }
    Ok(out)
}

/// Migrates a key directory of format 1 (one `<key_id>.key` file per key) into a new store,
/// atomically: the store is built and committed under a temporary name, then moved into
/// place; only then are the old files removed. A crash before the move leaves the old files
/// (the temporary store is removed at the next start, which migrates again); a crash after it
/// leaves a complete store, and the next start removes the old files it holds.
///
/// A record the migration reader cannot open is kept as it was, so its key stays listed as
/// `Unavailable` with the same reason, as before.
pub(crate) fn migrate(dir: &KeyDir, protection: &RecordProtection, legacy_ids: &[String]) -> Result<usize, KmsError> {
    let migrated = build_and_install(dir, |keys, pending, _aliases| {
        let mut migrated = 0;
        for id in legacy_ids {
            let bytes = dir.read(&format!("{id}{LEGACY_SUFFIX}")).unwrap_or_default();
            let value = match crate::legacy::decode(id, &bytes, protection) {
                Ok(record) => {
                    if record.meta.state == StoredState::PendingDeletion {
                        pending.insert(id.as_str(), ()).map_err(storage)?;
                    }
                    migrated += 1;
                    record.encode(protection)?
                }
                Err(why) => {
                    tracing::error!(key_id = %id, error = %why, "legacy record is unreadable; kept as it is (Unavailable)");
                    bytes
                }
            };
            keys.insert(id.as_str(), value.as_slice()).map_err(storage)?;
        }
        Ok(migrated)
    })?;
    let shown = dir.path().display();
    tracing::info!(key_dir = %shown, keys = legacy_ids.len(), migrated, "migrated the key directory to the key store");
    Ok(migrated)
}

/// The `keys` and `pending_deletion` tables of a store being built.
pub(crate) type KeysTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;
/// The `pending_deletion` table of a store being built.
pub(crate) type PendingTable<'t> = redb::Table<'t, &'static str, ()>;
/// The `aliases` table of a store being built.
pub(crate) type AliasesTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// Builds a new store with `fill` in one transaction under a temporary name, then moves it
/// into place as the directory's store (replacing any): a crash leaves the old state or the
/// whole new store, never a part (the temporary file is removed at the next start).
pub(crate) fn build_and_install<T>(
    dir: &KeyDir,
    fill: impl FnOnce(&mut KeysTable<'_>, &mut PendingTable<'_>, &mut AliasesTable<'_>) -> Result<T, KmsError>,
) -> Result<T, KmsError> {
    let shown = dir.path().display().to_string();
    let temp = dir.temp_name().map_err(|e| io_error(format!("cannot build a key store in {shown}"), e))?;
    let temp_path = dir.path().join(&temp);
    let built = (|| {
        let file =
            open_file(&temp_path, true).map_err(|e| io_error(format!("cannot create {}", temp_path.display()), e))?;
        let db = builder()
            .create_file(file)
            .map_err(|e| KmsError::backend_with_source("cannot create the key store", false, e))?;
        initialize(&db)?;
        let txn = db.begin_write().map_err(storage)?;
        let filled = {
            let mut keys = txn.open_table(KEYS).map_err(storage)?;
            let mut pending = txn.open_table(PENDING).map_err(storage)?;
            let mut aliases = txn.open_table(crate::aliases::ALIASES).map_err(storage)?;
            fill(&mut keys, &mut pending, &mut aliases)?
        };
        txn.commit().map_err(storage)?;
        Ok::<_, KmsError>(filled)
    })();
    let filled = match built {
        Ok(filled) => filled,
        Err(err) => {
            let _ = fs::remove_file(&temp_path);
            return Err(err);
        }
    };
    dir.install(&temp, STORE_FILE).map_err(|e| io_error(format!("cannot move the new key store into {shown}"), e))?;
    Ok(filled)
}

/// How many keys the directory's store holds (0 when there is no store file yet).
pub(crate) fn key_count(dir: &KeyDir) -> Result<u64, KmsError> {
    let path = dir.path().join(STORE_FILE);
    if !dir.exists(STORE_FILE).map_err(|e| io_error(format!("cannot inspect {}", path.display()), e))? {
        return Ok(0);
    }
    let db = open(dir)?;
    let txn = db.begin_read().map_err(storage)?;
    let count = redb::ReadableTableMetadata::len(&txn.open_table(KEYS).map_err(storage)?).map_err(storage)?;
    Ok(count)
}

/// Every (id, record, pending deletion) and every alias of the store, read in one read
/// transaction: a consistent snapshot whatever the writer commits meanwhile.
pub(crate) fn snapshot(db: &Database) -> Result<Snapshot, KmsError> {
    let txn = db.begin_read().map_err(storage)?;
    let aliases = crate::aliases::rows(&txn)?;
    let keys = txn.open_table(KEYS).map_err(storage)?;
    let pending = txn.open_table(PENDING).map_err(storage)?;
    let mut out = Vec::new();
    for entry in keys.iter().map_err(storage)? {
        let (id, value) = entry.map_err(storage)?;
        let id = id.value().to_owned();
        let is_pending = pending.get(id.as_str()).map_err(storage)?.is_some();
        out.push((id, value.value().to_vec(), is_pending));
    }
    Ok(Snapshot { keys: out, aliases })
}

/// Every row of the store, read in one transaction.
pub(crate) struct Snapshot {
    /// Key id, record as stored, whether pending deletion; in id order.
    pub(crate) keys: Vec<(String, Vec<u8>, bool)>,
    /// Alias name and record as stored, in name order.
    pub(crate) aliases: Vec<(String, Vec<u8>)>,
}

/// Removes the format 1 files a finished migration left behind: only those whose key the
/// store holds (anything else stays for the operator to look at).
pub(crate) fn remove_migrated(dir: &KeyDir, db: &Database, legacy_ids: &[String]) -> Result<(), KmsError> {
    let mut removed = 0;
    for id in legacy_ids {
        if kms_types::types::validate_key_id("key_id", id).is_ok() && read(db, id)?.is_some() {
            dir.remove_unsynced(&format!("{id}{LEGACY_SUFFIX}"))
                .map_err(|e| io_error(format!("cannot remove a migrated record of {}", dir.path().display()), e))?;
            removed += 1;
        } else {
            tracing::warn!(key_id = %id, "a legacy record file was not migrated (not a valid key id); left in place");
        }
    }
    if removed > 0 {
        dir.sync().map_err(|e| io_error(format!("cannot sync {}", dir.path().display()), e))?;
    }
    Ok(())
}
