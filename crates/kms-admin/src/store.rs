//! [`ConfigStore`]: the service configuration persisted in the data folder, secrets sealed.
//!
//! `configure`, `reconfigure`, `start` and `stop` over the API save the configuration and the
//! desired state (running or not) to `<data_dir>/service-state.json`, so a restarted server
//! resumes where it was. The file is versioned (format `kms-service-state`, version 1,
//! documented in `docs/dynamic-configuration-guide.md`):
//!
//! ```json
//! {"format":"kms-service-state","version":1,"running":true,
//!  "config":{"backend":"vault","backend_config":{"type":"vault",
//!            "auth_method":{"type":"token","token":"sealed:v1:...."}, ...}, ...}}
//! ```
//!
//! Secrets that the configuration holds inline (a Vault token, an AppRole secret id, a local
//! master key or passphrase) never reach the disk in the clear: each is replaced by
//! `sealed:v1:` + base64(nonce ‖ AES-256-GCM ciphertext ‖ tag), with the field's JSON path as
//! associated data, under a 32-byte seal key. Secrets given by reference (an environment
//! variable, a file) are stored as the reference. The seal key comes from a file outside the
//! data folder when the operator names one, else from `<data_dir>/config-seal.key` (0600,
//! created on first use).

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_crypto::CryptoError;
use kms_crypto::aead::{Algorithm, RandomNonceKey};
use kms_crypto::keys::KeyEncryptionKey;
use kms_types::config::KmsConfig;
use serde_json::Value;
use zeroize::Zeroizing;

/// The format name in the state file.
pub const FORMAT: &str = "kms-service-state";
/// The format version written.
pub const VERSION: u64 = 1;
/// Prefix of a sealed secret.
pub const SEALED_PREFIX: &str = "sealed:v1:";
/// The state file's name in the data folder.
pub const STATE_FILE: &str = "service-state.json";
/// The default seal key file's name in the data folder.
pub const SEAL_KEY_FILE: &str = "config-seal.key";

/// JSON paths (inside `config`) of the secrets a configuration may hold inline.
const SECRET_PATHS: [&[&str]; 4] = [
    &["backend_config", "master_key", "key"],
    &["backend_config", "master_key", "passphrase"],
    &["backend_config", "auth_method", "token"],
    &["backend_config", "auth_method", "secret_id"],
];

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file is not a state file this version understands.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A secret could not be sealed (the system random number generator failed).
    #[error("{path}: cannot seal the secret at {field}: {source}")]
    Seal {
        /// The file.
        path: PathBuf,
        /// The secret's JSON path.
        field: String,
        /// The error.
        #[source]
        source: CryptoError,
    },
    /// The data directory or a file in it fails the trust checks (see [`prepare_data_dir`]).
    #[error("untrusted: {0}")]
    Untrusted(#[from] TrustError),
    /// A sealed secret did not open: wrong seal key or a tampered file.
    #[error("{path}: the sealed secret at {field} does not open with this seal key")]
    Unseal {
        /// The file.
        path: PathBuf,
        /// The secret's JSON path.
        field: String,
    },
}

/// The persisted service state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedState {
    /// The configuration.
    pub config: KmsConfig,
    /// Whether the service should be running.
    pub running: bool,
}

/// Reads and writes the persisted service state.
pub struct ConfigStore {
    path: PathBuf,
    key: RandomNonceKey,
}

impl std::fmt::Debug for ConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigStore").field("path", &self.path).finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

pub use kms_core::fs_trust::write_private_file;
use kms_core::fs_trust::{self, TrustError};

/// Largest seal key file read (a 32-byte key in base64 is 44 bytes; whitespace allowed).
const MAX_SEAL_KEY_FILE_BYTES: u64 = 4096;
/// Largest state file read.
const MAX_STATE_FILE_BYTES: u64 = 1 << 20;

/// Creates the server's data directory (mode 0700) or checks an existing one, then checks
/// every file directly in it: the directory and each file must not be a symbolic link, must
/// be owned by this process's user (or root) and writable by nobody else ([`kms_core::fs_trust`]).
///
/// The server trusts what it finds there (the admin token hash, the seal key, the saved
/// configuration), so a directory another user could write, or a file they could have
/// planted, is refused before anything is read.
pub fn prepare_data_dir(data_dir: &Path) -> Result<(), StoreError> {
    fs_trust::ensure_private_dir(data_dir)?;
    fs_trust::check_dir_entries(data_dir)?;
    Ok(())
}

impl ConfigStore {
    /// Opens the store in `data_dir`, sealing with the key in `seal_key_file` (default
    /// `<data_dir>/config-seal.key`, created with 32 random bytes if missing).
    pub fn open(data_dir: &Path, seal_key_file: Option<&Path>) -> Result<Self, StoreError> {
        fs_trust::check_dir(data_dir)?;
        let key_path = seal_key_file.map(Path::to_owned).unwrap_or_else(|| data_dir.join(SEAL_KEY_FILE));
        let key_bytes = match fs_trust::read_trusted(&key_path, MAX_SEAL_KEY_FILE_BYTES)? {
            Some(text) => Zeroizing::new(STANDARD.decode(text.trim_ascii()).map_err(|_| StoreError::Format {
                path: key_path.clone(),
                message: "seal key must be 32 bytes of standard base64".into(),
            })?),
            None if seal_key_file.is_none() => {
                let fresh = KeyEncryptionKey::generate()
                    .map_err(|e| StoreError::Io { path: key_path.clone(), source: io::Error::other(e) })?;
                let encoded = Zeroizing::new(STANDARD.encode(fresh.expose_secret()));
                write_private_file(&key_path, encoded.as_bytes()).map_err(io_err(&key_path))?;
                Zeroizing::new(fresh.expose_secret().to_vec())
            }
            None => {
                let source = io::Error::new(io::ErrorKind::NotFound, "the seal key file does not exist");
                return Err(StoreError::Io { path: key_path, source });
            }
        };
        let key = RandomNonceKey::new(Algorithm::Aes256Gcm, &key_bytes).map_err(|_| StoreError::Format {
            path: key_path.clone(),
            message: "seal key must be 32 bytes of standard base64".into(),
        })?;
        Ok(Self { path: data_dir.join(STATE_FILE), key })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state, `None` if nothing was saved yet.
    pub fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let Some(bytes) = fs_trust::read_trusted(&self.path, MAX_STATE_FILE_BYTES)? else {
            return Ok(None);
        };
        let format = |message: String| StoreError::Format { path: self.path.clone(), message };
        let mut doc: Value = serde_json::from_slice(&bytes).map_err(|e| format(format!("not JSON: {e}")))?;
        if doc.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(format(format!("not a {FORMAT} file")));
        }
        match doc.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            other => return Err(format(format!("unsupported version {other:?} (this build reads {VERSION})"))),
        }
        let running = doc.get("running").and_then(Value::as_bool).ok_or_else(|| format("missing `running`".into()))?;
        let mut config = doc.get_mut("config").map(Value::take).ok_or_else(|| format("missing `config`".into()))?;
        for path in secret_paths(&config) {
            if let Some(Value::String(s)) = lookup(&mut config, &path) {
                let field = path.join(".");
                let sealed = s
                    .strip_prefix(SEALED_PREFIX)
                    .ok_or_else(|| format(format!("{field} is stored in the clear; refusing to load it")))?;
                let plain = self.unseal(sealed, &field)?;
                *s = plain.to_string();
            }
        }
        let config: KmsConfig = serde_json::from_value(config).map_err(|e| format(format!("config: {e}")))?;
        Ok(Some(PersistedState { config, running }))
    }

    /// Saves `state` atomically, secrets sealed.
    pub fn save(&self, state: &PersistedState) -> Result<(), StoreError> {
        let mut config = serde_json::to_value(&state.config).expect("configurations serialize");
        for path in secret_paths(&config) {
            if let Some(Value::String(s)) = lookup(&mut config, &path) {
                let plain = Zeroizing::new(std::mem::take(s));
                *s = format!("{SEALED_PREFIX}{}", self.seal(plain.as_bytes(), &path.join("."))?);
            }
        }
        let doc = serde_json::json!({"format": FORMAT, "version": VERSION, "running": state.running, "config": config});
        let bytes = serde_json::to_vec_pretty(&doc).expect("JSON values serialize");
        write_private_file(&self.path, &bytes).map_err(io_err(&self.path))
    }

    /// Seals a secret of the server configuration (an AWS secret access key) for `field`:
    /// `sealed:v1:...`, bound to `field` as associated data.
    pub fn seal_secret(&self, plain: &str, field: &str) -> Result<String, StoreError> {
        Ok(format!("{SEALED_PREFIX}{}", self.seal(plain.as_bytes(), field)?))
    }

    /// Opens what [`Self::seal_secret`] sealed for `field`; anything else is refused.
    pub fn unseal_secret(&self, sealed: &str, field: &str) -> Result<Zeroizing<String>, StoreError> {
        let body = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| StoreError::Unseal { path: self.path.clone(), field: field.to_owned() })?;
        self.unseal(body, field)
    }

    /// `nonce ‖ AES-256-GCM ciphertext ‖ tag` in base64, the field's JSON path as associated
    /// data: kms-crypto's [`RandomNonceKey`] layout.
    fn seal(&self, plain: &[u8], field: &str) -> Result<String, StoreError> {
        let sealed = self.key.seal(field.as_bytes(), plain).map_err(|source| StoreError::Seal {
            path: self.path.clone(),
            field: field.to_owned(),
            source,
        })?;
        Ok(STANDARD.encode(sealed))
    }

    fn unseal(&self, sealed: &str, field: &str) -> Result<Zeroizing<String>, StoreError> {
        let fail = || StoreError::Unseal { path: self.path.clone(), field: field.to_owned() };
        let bytes = Zeroizing::new(STANDARD.decode(sealed).map_err(|_| fail())?);
        let plain = self.key.open(field.as_bytes(), &bytes).map_err(|_| fail())?;
        let text = std::str::from_utf8(&plain).map_err(|_| fail())?;
        Ok(Zeroizing::new(text.to_owned()))
    }
}

fn lookup<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Array(items) => items.get_mut(seg.parse::<usize>().ok()?),
        other => other.get_mut(seg.as_str()),
    })
}

/// The JSON paths (inside `config`) to seal: the known secrets of the built-in backends, and
/// every string setting of a backend registered by another crate (which of its settings are
/// secret only its factory knows, so none is written in the clear).
fn secret_paths(config: &Value) -> Vec<Vec<String>> {
    let mut paths: Vec<Vec<String>> =
        SECRET_PATHS.iter().map(|path| path.iter().map(|seg| (*seg).to_owned()).collect()).collect();
    let backend_config = config.get("backend_config");
    let kind = backend_config.and_then(|b| b.get("type")).and_then(Value::as_str);
    if let (Some(Value::Object(settings)), Some(kind)) = (backend_config, kind)
        && !matches!(kind, "local" | "vault")
    {
        for (name, value) in settings.iter().filter(|(name, _)| name.as_str() != "type") {
            string_leaves(value, vec!["backend_config".to_owned(), name.clone()], &mut paths);
        }
    }
    paths
}

fn string_leaves(value: &Value, at: Vec<String>, found: &mut Vec<Vec<String>>) {
    let child = |seg: String| {
        let mut path = at.clone();
        path.push(seg);
        path
    };
    match value {
        Value::String(_) => found.push(at),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| string_leaves(v, child(i.to_string()), found))
        }
        Value::Object(map) => map.iter().for_each(|(k, v)| string_leaves(v, child(k.clone()), found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use kms_types::config::{LocalConfig, MasterKeySource, VaultAuthMethod, VaultConfig};

    use super::*;

    /// The reproduction of the audit: another user makes a world-writable data directory and
    /// plants an admin token hash; the server must refuse the directory, not adopt the token.
    #[test]
    fn a_world_writable_data_dir_with_a_planted_admin_token_hash_is_refused() {
        let dir = temp_dir("planted");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        fs::write(dir.join("admin.token.sha256"), "0".repeat(64)).unwrap();
        let err = prepare_data_dir(&dir).unwrap_err();
        assert!(matches!(err, StoreError::Untrusted(TrustError::Writable { mode: 0o777, .. })), "{err}");
        assert!(matches!(ConfigStore::open(&dir, None), Err(StoreError::Untrusted(TrustError::Writable { .. }))));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn planted_or_linked_files_in_a_private_data_dir_are_refused() {
        let dir = temp_dir("planted-file");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        prepare_data_dir(&dir).unwrap();
        let token = dir.join("admin.token.sha256");
        fs::write(&token, "0".repeat(64)).unwrap();
        fs::set_permissions(&token, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(prepare_data_dir(&dir), Err(StoreError::Untrusted(TrustError::Writable { .. }))));
        fs::remove_file(&token).unwrap();

        // A state file that is a link (to another configuration) is not followed.
        let elsewhere = temp_dir("planted-elsewhere");
        fs::write(elsewhere.join(STATE_FILE), b"{}").unwrap();
        std::os::unix::fs::symlink(elsewhere.join(STATE_FILE), dir.join(STATE_FILE)).unwrap();
        assert!(matches!(prepare_data_dir(&dir), Err(StoreError::Untrusted(TrustError::Symlink { .. }))));
        let store = ConfigStore::open(&dir, None).unwrap();
        assert!(matches!(store.load(), Err(StoreError::Untrusted(TrustError::Symlink { .. }))));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&elsewhere);
    }

    #[cfg(unix)]
    #[test]
    fn a_leftover_world_readable_temp_file_does_not_make_the_result_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("leftover-tmp");
        let target = dir.join("secret.json");
        let leftover = target.with_extension("tmp");
        fs::write(&leftover, b"stale").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&target, b"{}").unwrap();
        assert_eq!(fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"{}");
        let _ = fs::remove_dir_all(&dir);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kms-admin-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn vault_config(token: &str) -> KmsConfig {
        KmsConfig::vault(VaultConfig {
            address: "http://127.0.0.1:8200".into(),
            auth_method: VaultAuthMethod::Token { token: token.into() },
            namespace: None,
            mount_path: "transit".into(),
            kv_mount: "secret".into(),
            key_path_prefix: "kms/keys".into(),
            tls: None,
        })
    }

    #[test]
    fn state_round_trips_and_secrets_never_hit_the_disk() {
        let dir = temp_dir("roundtrip");
        let store = ConfigStore::open(&dir, None).unwrap();
        assert_eq!(store.load().unwrap(), None);
        let state = PersistedState { config: vault_config("s.very-secret-token"), running: true };
        store.save(&state).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("very-secret"), "{text}");
        assert!(text.contains(SEALED_PREFIX));
        // A second store over the same folder reuses the seal key.
        let again = ConfigStore::open(&dir, None).unwrap();
        assert_eq!(again.load().unwrap(), Some(state));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [STATE_FILE, SEAL_KEY_FILE] {
                assert_eq!(fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn references_are_stored_as_references() {
        let dir = temp_dir("refs");
        let store = ConfigStore::open(&dir, None).unwrap();
        let config = KmsConfig::local(LocalConfig::new("/k", MasterKeySource::Env { var: "KMS_MK".into() }));
        store.save(&PersistedState { config: config.clone(), running: false }).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.contains("KMS_MK") && !text.contains(SEALED_PREFIX));
        assert_eq!(store.load().unwrap().unwrap().config, config);
    }

    #[test]
    fn a_wrong_seal_key_or_tampering_fails_closed() {
        let dir = temp_dir("tamper");
        let store = ConfigStore::open(&dir, None).unwrap();
        store.save(&PersistedState { config: vault_config("tok"), running: true }).unwrap();
        let other_key = dir.join("other.key");
        fs::write(&other_key, STANDARD.encode([7u8; 32])).unwrap();
        let wrong = ConfigStore::open(&dir, Some(&other_key)).unwrap();
        assert!(matches!(wrong.load(), Err(StoreError::Unseal { .. })));

        // A secret moved to another field does not open (the path is associated data).
        let text = fs::read_to_string(store.path()).unwrap();
        let mut doc: Value = serde_json::from_str(&text).unwrap();
        doc["config"]["backend_config"]["auth_method"] = serde_json::json!({"type":"app_role","role_id":"r","secret_id": doc["config"]["backend_config"]["auth_method"]["token"]});
        fs::write(store.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(matches!(store.load(), Err(StoreError::Unseal { .. })));

        // A secret written in the clear is refused rather than trusted.
        doc["config"]["backend_config"]["auth_method"] = serde_json::json!({"type":"token","token":"plain"});
        fs::write(store.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(matches!(store.load(), Err(StoreError::Format { .. })));

        doc["version"] = 2.into();
        fs::write(store.path(), serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(matches!(store.load(), Err(StoreError::Format { .. })));
    }

    /// Known-answer vector: a state file written by this version, with a fixed seal key.
    #[test]
    fn known_answer_v1_file_loads() {
        let dir = temp_dir("kat");
        let key_file = dir.join("seal.key");
        fs::write(&key_file, STANDARD.encode([0x42u8; 32])).unwrap();
        let store = ConfigStore::open(&dir, Some(&key_file)).unwrap();
        fs::write(store.path(), KAT_V1).unwrap();
        let state = store.load().unwrap().unwrap();
        assert!(state.running);
        assert_eq!(state.config, vault_config("s.kat-token"));
    }

    const KAT_V1: &str = r#"{
  "format": "kms-service-state",
  "version": 1,
  "running": true,
  "config": {
    "backend": "vault",
    "backend_config": {
      "type": "vault",
      "address": "http://127.0.0.1:8200",
      "auth_method": {"type": "token", "token": "sealed:v1:AAECAwQFBgcICQoLdvD6vMUBhmT2Yyqtvn/FLEzRvBv9IIlkAC5x"},
      "namespace": null,
      "mount_path": "transit",
      "kv_mount": "secret",
      "key_path_prefix": "kms/keys",
      "tls": null
    },
    "default_key_id": null,
    "timeout_seconds": 30,
    "retry_attempts": 3,
    "enable_cache": true,
    "cache_config": {"max_keys": 1024, "ttl_seconds": 300}
  }
}"#;

    /// Regenerates the sealed value of `KAT_V1` (nonce 00..0b, key 0x42 × 32) with kms-crypto's
    /// caller-nonce AES-256-GCM cipher, independently of the random-nonce layout the store
    /// seals with; the value was cross-checked with an independent AES-GCM implementation
    /// (Python `cryptography`, `docs/vectors/check.py`).
    #[test]
    fn known_answer_sealed_value_is_reproducible() {
        use kms_crypto::cipher::{Aes256GcmCipher, ObjectCipher};
        let cipher = Aes256GcmCipher::new(&[0x42u8; 32]).unwrap();
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
        let (body, tag) = cipher.encrypt(b"s.kat-token", &nonce, b"backend_config.auth_method.token").unwrap();
        let mut all = nonce.to_vec();
        all.extend_from_slice(&body);
        all.extend_from_slice(&tag);
        let expected = KAT_V1.split("sealed:v1:").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(STANDARD.encode(all), expected);
    }
}
