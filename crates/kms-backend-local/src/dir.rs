//! The key directory on disk: permissions, the advisory lock, atomic writes, start-up cleanup.
//!
//! Everything here is synchronous file-system work; the backend runs it on tokio's blocking
//! pool. The directory holds the key store (`keys.redb`) and names starting with `.`:
//! `.lock`, `.verifier.json` and `.tmp-*` leftovers. A directory of format 1 also holds one
//! `<key_id>.key` file per key until it is migrated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kms_types::error::KmsError;

/// The advisory lock file.
pub(crate) const LOCK_FILE: &str = ".lock";
/// The master-key verifier record.
pub(crate) const VERIFIER_FILE: &str = ".verifier.json";
/// Prefix of temporary files of an in-progress write.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// Largest file read (a legacy record or the verifier); anything bigger is not ours.
const MAX_RECORD_BYTES: u64 = crate::record::MAX_RECORD_BYTES as u64;

/// An opened, checked and locked key directory.
#[derive(Debug)]
pub(crate) struct KeyDir {
    path: PathBuf,
    /// Held (exclusively locked) until [`KeyDir::release`] or drop; dropping it releases the lock.
    lock: Mutex<Option<File>>,
}

impl KeyDir {
    /// Creates the directory (mode 0700) or checks an existing one, then takes its lock.
    ///
    /// Refused: a symlink, a non-directory, a directory writable by group or others, a
    /// directory owned by another user, and a directory another process has locked.
    pub(crate) fn open(path: &Path) -> Result<Self, KmsError> {
        const FIELD: &str = "backend_config.key_dir";
        let shown = path.display();
        // The shared trust checks (kms_core::fs_trust), as for the server's data directory.
        kms_core::fs_trust::ensure_private_dir(path).map_err(|e| match e {
            kms_core::fs_trust::TrustError::Io { source, .. } => io_error(format!("key directory {shown}"), source),
            other => KmsError::configuration(FIELD, other.to_string()),
        })?;

        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| io_error(format!("cannot open lock file {}", lock_path.display()), e))?;
        let dir_meta = fs::metadata(path).map_err(|e| io_error(format!("cannot inspect {shown}"), e))?;
        let lock_meta = lock.metadata().map_err(|e| io_error(format!("cannot inspect {}", lock_path.display()), e))?;
        if dir_meta.uid() != lock_meta.uid() {
            return Err(KmsError::configuration(
                FIELD,
                format!("{shown} is owned by uid {}, not by this process's user", dir_meta.uid()),
            ));
        }
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(KmsError::backend(format!(
                    "key directory {shown} is in use by another kms process (its lock file is held)"
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(format!("cannot lock {}", lock_path.display()), e)),
        }
        Ok(Self { path: path.to_owned(), lock: Mutex::new(Some(lock)) })
    }

    /// Releases the directory lock (another backend may then open the directory).
    pub(crate) fn release(&self) {
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the temporary files interrupted writes left behind; returns how many.
    pub(crate) fn clean_temp_files(&self) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.path)?;
        }
        Ok(removed)
    }

    /// The key ids that have a format 1 record file, in no particular order.
    pub(crate) fn legacy_record_ids(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            if let Some(id) = name.strip_suffix(crate::legacy::LEGACY_SUFFIX) {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }

    /// Whether `name` exists (as anything, a dangling symlink included).
    pub(crate) fn exists(&self, name: &str) -> io::Result<bool> {
        match fs::symlink_metadata(self.path.join(name)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads a regular file of the directory; symlinks and oversized files are refused.
    pub(crate) fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let path = self.path.join(name);
        // Open first, then prove that what was opened is the regular file the name holds now:
        // a symlink swapped in between a check and an open would otherwise be followed.
        let file = File::open(&path)?;
        let opened = file.metadata()?;
        let named = fs::symlink_metadata(&path)?;
        if !named.file_type().is_file() || opened.dev() != named.dev() || opened.ino() != named.ino() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file (a symlink?)"));
        }
        if opened.len() > MAX_RECORD_BYTES {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file too large to be a key record"));
        }
        let mut bytes = Vec::with_capacity(opened.len() as usize);
        file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Writes `bytes` as `name` atomically and durably: a new 0600 temporary file is written
    /// and fsynced, moved into place, and the directory is fsynced. With `create_only` an
    /// existing `name` is never replaced (the move is a hard link, which fails if it exists).
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8], create_only: bool) -> io::Result<()> {
        let temp = self.path.join(temp_name()?);
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            drop(file);
            let target = self.path.join(name);
            if create_only {
                fs::hard_link(&temp, &target)?;
                fs::remove_file(&temp)?;
            } else {
                fs::rename(&temp, &target)?;
            }
            sync_dir(&self.path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Removes `name`; the caller syncs the directory ([`KeyDir::sync`]). A missing file is
    /// not an error.
    pub(crate) fn remove_unsynced(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path.join(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes the directory's entries durable.
    pub(crate) fn sync(&self) -> io::Result<()> {
        sync_dir(&self.path)
    }

    /// A fresh temporary name (removed at the next start if it is left behind).
    pub(crate) fn temp_name(&self) -> io::Result<String> {
        temp_name()
    }

    /// Moves the finished temporary file `temp` to `name` and makes the move durable.
    pub(crate) fn install(&self, temp: &str, name: &str) -> io::Result<()> {
        fs::rename(self.path.join(temp), self.path.join(name))?;
        sync_dir(&self.path)
    }
}

fn temp_name() -> io::Result<String> {
    let mut random = [0u8; 12];
    kms_crypto::rand::fill(&mut random).map_err(io::Error::other)?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{TEMP_PREFIX}{hex}"))
}

/// Makes the directory's entries (creations, renames, removals) durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// A disk error as a (non-retryable) backend error keeping its source.
pub(crate) fn io_error(message: String, source: io::Error) -> KmsError {
    KmsError::backend_with_source(message, false, source)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_a_0700_directory_and_writes_0600_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("nested/keys");
        let dir = KeyDir::open(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        dir.write_atomic("a.key", b"one", true).unwrap();
        assert_eq!(fs::metadata(path.join("a.key")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(dir.read("a.key").unwrap(), b"one");
        dir.write_atomic("a.key", b"two", false).unwrap();
        assert_eq!(dir.read("a.key").unwrap(), b"two");
        let err = dir.write_atomic("a.key", b"three", true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(dir.read("a.key").unwrap(), b"two");
        assert_eq!(dir.legacy_record_ids().unwrap(), vec!["a".to_owned()]);
        // No temporary file survives a successful or a failed write.
        assert_eq!(dir.clean_temp_files().unwrap(), 0);
        dir.remove_unsynced("a.key").unwrap();
        dir.remove_unsynced("a.key").unwrap();
        dir.sync().unwrap();
        assert!(!dir.exists("a.key").unwrap());
    }

    #[test]
    fn cleans_leftover_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open(tmp.path()).unwrap();
        fs::write(tmp.path().join(".tmp-deadbeef"), b"half a record").unwrap();
        fs::write(tmp.path().join("k.key"), b"x").unwrap();
        assert_eq!(dir.clean_temp_files().unwrap(), 1);
        assert!(!dir.exists(".tmp-deadbeef").unwrap());
        assert!(dir.exists("k.key").unwrap());
    }

    #[test]
    fn narrows_a_group_readable_directory() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o750)).unwrap();
        KeyDir::open(tmp.path()).unwrap();
        assert_eq!(fs::metadata(tmp.path()).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn refuses_symlinked_records() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = KeyDir::open(&tmp.path().join("keys")).unwrap();
        fs::write(tmp.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), tmp.path().join("keys/evil.key")).unwrap();
        assert_eq!(dir.read("evil.key").unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
