//! Trust checks for the directories and files a kms process relies on, and the safe ways to
//! read, write and append to them (Unix).
//!
//! A directory or file is *trusted* when it is not a symbolic link, is owned by the process's
//! effective user (or by root, who could replace it anyway: a root-owned seal key from systemd
//! credentials, say) and is writable by nobody else (no group or other write bit). Anything else
//! could have been planted or swapped by another local user: an admin token hash the server
//! would accept, a seal key, a saved configuration pointing at another Vault. The local key
//! directory, the server's data directory and every file the server reads from it go through
//! these checks; files are checked on the opened descriptor (`fstat`), so what is checked is
//! what is read.
//!
//! Writes go to a temporary file with a random name, created exclusively (`O_EXCL`) without
//! following symbolic links (`O_NOFOLLOW`), mode 0600, synced, then renamed over the target;
//! appends (the audit log) open without following symbolic links.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use zeroize::Zeroizing;

/// Why a path is not trusted (or could not be checked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The path is a symbolic link.
    #[error("{path} is a symbolic link; refusing to use it")]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// The path is not the kind of entry expected.
    #[error("{path} exists and is not a {expected}")]
    WrongType {
        /// The path.
        path: PathBuf,
        /// `directory` or `regular file`.
        expected: &'static str,
    },
    /// Another user (not root) owns the path.
    #[error("{path} is owned by uid {owner}, not by this process's user (uid {euid}) nor root; refusing to trust it")]
    ForeignOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// Group or others may write the path.
    #[error("{path} is writable by group or others (mode {mode:o}); refusing to trust it")]
    Writable {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than the reader accepts.
    #[error("{path} is larger than {limit} bytes; refusing to read it")]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A file system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl TrustError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_owned(), source }
    }
}

/// The process's effective user id.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether a file owned by `owner` may be trusted by a process running as `euid`: its own
/// files, and root's.
fn owner_is_trusted(owner: u32, euid: u32) -> bool {
    owner == euid || owner == 0
}

/// Checks metadata of `path` (from `lstat` or `fstat`) against the trust rules.
fn check_metadata(path: &Path, meta: &Metadata, want_dir: bool) -> Result<(), TrustError> {
    if meta.file_type().is_symlink() {
        return Err(TrustError::Symlink { path: path.to_owned() });
    }
    if want_dir && !meta.is_dir() {
        return Err(TrustError::WrongType { path: path.to_owned(), expected: "directory" });
    }
    if !want_dir && !meta.is_file() {
        return Err(TrustError::WrongType { path: path.to_owned(), expected: "regular file" });
    }
    let euid = effective_uid();
    if !owner_is_trusted(meta.uid(), euid) {
        return Err(TrustError::ForeignOwner { path: path.to_owned(), owner: meta.uid(), euid });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(TrustError::Writable { path: path.to_owned(), mode });
    }
    Ok(())
}

/// Checks an existing directory: not a symbolic link, owned by this user, writable by nobody
/// else.
pub fn check_dir(path: &Path) -> Result<Metadata, TrustError> {
    let meta = fs::symlink_metadata(path).map_err(TrustError::io(path))?;
    check_metadata(path, &meta, true)?;
    Ok(meta)
}

/// Creates `path` with mode 0700 (its missing parents with the default mode), or checks the
/// existing directory with [`check_dir`] and narrows it to 0700 if group or others may read
/// or enter it. Returns whether it was created.
pub fn ensure_private_dir(path: &Path) -> Result<bool, TrustError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(parent) = parent {
                fs::create_dir_all(parent).map_err(TrustError::io(parent))?;
            }
            DirBuilder::new().mode(0o700).create(path).map_err(TrustError::io(path))?;
            if let Some(parent) = parent {
                sync_dir(parent).map_err(TrustError::io(parent))?;
            }
            check_dir(path)?;
            Ok(true)
        }
        Err(e) => Err(TrustError::Io { path: path.to_owned(), source: e }),
        Ok(meta) => {
            check_metadata(path, &meta, true)?;
            let mode = meta.mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format_args!("{mode:o}"), "narrowing directory to 0700");
                fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(TrustError::io(path))?;
            }
            Ok(false)
        }
    }
}

/// Checks every entry directly inside the trusted directory `dir` that is not itself a
/// directory: no symbolic links, every file owned by this user and writable by nobody else.
/// (Subdirectories are checked by whoever uses them.)
pub fn check_dir_entries(dir: &Path) -> Result<(), TrustError> {
    for entry in fs::read_dir(dir).map_err(TrustError::io(dir))? {
        let entry = entry.map_err(TrustError::io(dir))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(TrustError::io(&path))?;
        if !meta.is_dir() {
            check_metadata(&path, &meta, false)?;
        }
    }
    Ok(())
}

fn nofollow() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

fn is_symlink_loop(err: &io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Opens `path` for reading without following a symbolic link and checks the opened file;
/// `None` if it does not exist.
pub fn open_trusted(path: &Path) -> Result<Option<File>, TrustError> {
    let file = match OpenOptions::new().read(true).custom_flags(nofollow()).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if is_symlink_loop(&e) => return Err(TrustError::Symlink { path: path.to_owned() }),
        Err(e) => return Err(TrustError::Io { path: path.to_owned(), source: e }),
    };
    let meta = file.metadata().map_err(TrustError::io(path))?;
    check_metadata(path, &meta, false)?;
    Ok(Some(file))
}

/// Reads a trusted file of at most `limit` bytes ([`open_trusted`]); `None` if it does not
/// exist. The buffer is zeroized on drop (the file may hold a secret).
pub fn read_trusted(path: &Path, limit: u64) -> Result<Option<Zeroizing<Vec<u8>>>, TrustError> {
    let Some(file) = open_trusted(path)? else { return Ok(None) };
    let len = file.metadata().map_err(TrustError::io(path))?.len();
    if len > limit {
        return Err(TrustError::TooLarge { path: path.to_owned(), limit });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(limit + 1).read_to_end(&mut bytes).map_err(TrustError::io(path))?;
    if bytes.len() as u64 > limit {
        return Err(TrustError::TooLarge { path: path.to_owned(), limit });
    }
    Ok(Some(bytes))
}

/// Writes `bytes` to `path` atomically with mode 0600: a temporary file with a random name in
/// the same directory, created exclusively and without following symbolic links, synced,
/// renamed over `path`; then the directory is synced.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut random = [0u8; 8];
    kms_crypto::rand::fill(&mut random).map_err(io::Error::other)?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{}.tmp-{suffix}", name.to_string_lossy()));
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(nofollow()).open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Opens `path` for appending (created with mode 0600) without following a symbolic link,
/// checks the opened file and narrows an existing one to 0600.
pub fn open_append_private(path: &Path) -> Result<File, TrustError> {
    let file =
        OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(nofollow()).open(path).map_err(|e| {
            if is_symlink_loop(&e) {
                TrustError::Symlink { path: path.to_owned() }
            } else {
                TrustError::Io { path: path.to_owned(), source: e }
            }
        })?;
    let meta = file.metadata().map_err(TrustError::io(path))?;
    check_metadata(path, &meta, false)?;
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(fs::Permissions::from_mode(0o600)).map_err(TrustError::io(path))?;
    }
    Ok(file)
}

/// Syncs a directory, so a rename or a create inside it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kms-fs-trust-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_world_writable_or_symlinked_directory_is_refused() {
        let base = temp_dir("dirs");
        let open = base.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(ensure_private_dir(&open), Err(TrustError::Writable { mode: 0o777, .. })));
        let link = base.join("link");
        std::os::unix::fs::symlink(base.join("private"), &link).unwrap();
        fs::create_dir(base.join("private")).unwrap();
        assert!(matches!(ensure_private_dir(&link), Err(TrustError::Symlink { .. })));
        let file = base.join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(check_dir(&file), Err(TrustError::WrongType { expected: "directory", .. })));

        let fresh = base.join("a/b/fresh");
        assert!(ensure_private_dir(&fresh).unwrap());
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!ensure_private_dir(&fresh).unwrap());
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700, "narrowed");
        let _ = fs::remove_dir_all(&base);
    }

    #[test]
    fn only_our_own_and_roots_files_are_trusted() {
        assert!(owner_is_trusted(1000, 1000));
        assert!(owner_is_trusted(0, 1000));
        assert!(!owner_is_trusted(1001, 1000));
        assert!(!owner_is_trusted(1000, 0), "root does not trust another user's file");
        // With the privilege to give a file away, check it on a real file too.
        if effective_uid() == 0 {
            let dir = temp_dir("owner");
            let file = dir.join("planted");
            fs::write(&file, b"x").unwrap();
            std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
            assert!(matches!(read_trusted(&file, 10), Err(TrustError::ForeignOwner { owner: 4242, .. })));
            std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
            assert!(matches!(check_dir(&dir), Err(TrustError::ForeignOwner { owner: 4242, .. })));
            let _ = fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn trusted_reads_refuse_symlinks_writable_and_oversized_files() {
        let dir = temp_dir("reads");
        let good = dir.join("good");
        fs::write(&good, b"secret").unwrap();
        fs::set_permissions(&good, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&**read_trusted(&good, 100).unwrap().unwrap(), b"secret");
        assert!(read_trusted(&dir.join("absent"), 100).unwrap().is_none());
        assert!(matches!(read_trusted(&good, 3), Err(TrustError::TooLarge { limit: 3, .. })));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(matches!(read_trusted(&link, 100), Err(TrustError::Symlink { .. })));
        fs::set_permissions(&good, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(read_trusted(&good, 100), Err(TrustError::Writable { .. })));
        assert!(matches!(check_dir_entries(&dir), Err(TrustError::Symlink { .. } | TrustError::Writable { .. })));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn private_writes_use_fresh_exclusive_temp_files_and_never_follow_a_planted_link() {
        let dir = temp_dir("writes");
        let target = dir.join("state.json");
        // A link planted where the old fixed temp name was: it must not be followed.
        let victim = dir.join("victim");
        fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, target.with_extension("tmp")).unwrap();
        write_private_file(&target, b"{}").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&target).unwrap(), b"{}");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn appends_never_follow_a_symlink() {
        let dir = temp_dir("append");
        let victim = dir.join("victim");
        fs::write(&victim, b"").unwrap();
        let log = dir.join("audit.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        assert!(matches!(open_append_private(&log), Err(TrustError::Symlink { .. })));
        fs::remove_file(&log).unwrap();
        fs::write(&log, b"old\n").unwrap();
        fs::set_permissions(&log, fs::Permissions::from_mode(0o644)).unwrap();
        let mut file = open_append_private(&log).unwrap();
        file.write_all(b"new\n").unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"old\nnew\n");
        assert_eq!(fs::metadata(&log).unwrap().mode() & 0o777, 0o600);
        let _ = fs::remove_dir_all(&dir);
    }
}
