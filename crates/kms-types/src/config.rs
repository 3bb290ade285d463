//! Typed configuration: which backend, how to reach it, and how the manager behaves.
//!
//! [`KmsConfig`] and [`VaultConfig`] have exactly the public fields the spec's samples name, so
//! they can be built with struct literals; further options live in nested types
//! ([`VaultAuthMethod`], [`TlsConfig`], [`CacheConfig`]). Call [`KmsConfig::validate`] before
//! use: it rejects bad values with an error naming the field.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::backend_kind::{BackendSettings, CustomBackendConfig, KmsBackend};
use crate::error::{KmsError, Result};
use crate::secret::{REDACTED, SecretString};
use crate::serde_helpers::duration_secs;
pub use crate::vault_addresses::VaultAddresses;

/// Default per-call budget (longer than an OpenBao Raft election with default timing).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default retry attempts for idempotent calls.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;
/// Largest accepted `retry_attempts`.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// Largest accepted timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Backend-specific settings; the variant must match [`KmsConfig::backend`]. Serialized as
/// an object whose `type` names the backend (serde in `backend_kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// Built once per (re)configuration; boxing the larger variant would only cost ergonomics.
#[allow(clippy::large_enum_variant)]
pub enum BackendConfig {
    /// Settings of the local backend.
    Local(LocalConfig),
    /// Settings of the Vault backend.
    Vault(VaultConfig),
    /// Settings of a backend registered by another crate, read by its factory as its own type.
    Custom(CustomBackendConfig),
}

impl BackendConfig {
    /// Which backend these settings are for.
    pub fn backend(&self) -> KmsBackend {
        match self {
            Self::Local(_) => KmsBackend::Local,
            Self::Vault(_) => KmsBackend::Vault,
            Self::Custom(custom) => custom.backend_type().clone(),
        }
    }
}

/// The whole KMS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmsConfig {
    /// Which backend.
    pub backend: KmsBackend,
    /// That backend's settings.
    pub backend_config: BackendConfig,
    /// Key used when a caller names none (SSE-S3).
    #[serde(default)]
    pub default_key_id: Option<String>,
    /// Budget of every call through the manager: all its attempts and the pauses between them
    /// (each attempt gets a quarter of it, 1 to 10 s).
    #[serde(with = "duration_secs", rename = "timeout_seconds", default = "default_timeout")]
    pub timeout: Duration,
    /// Retries of a transient failure of a call (0 = no retry at all). Failures that mean "this
    /// node cannot serve now" (a node down, no leader elected yet) are retried for the whole
    /// budget instead; see `kms_core::manager`.
    #[serde(default = "default_retry_attempts")]
    pub retry_attempts: u32,
    /// Whether key metadata is cached.
    #[serde(default = "default_true")]
    pub enable_cache: bool,
    /// Cache bounds.
    #[serde(default)]
    pub cache_config: CacheConfig,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}
fn default_retry_attempts() -> u32 {
    DEFAULT_RETRY_ATTEMPTS
}
fn default_true() -> bool {
    true
}

impl KmsConfig {
    /// A configuration for the local backend with default manager settings.
    pub fn local(local: LocalConfig) -> Self {
        Self::with_backend(BackendConfig::Local(local))
    }

    /// A configuration for the Vault backend with default manager settings.
    pub fn vault(vault: VaultConfig) -> Self {
        Self::with_backend(BackendConfig::Vault(vault))
    }

    /// A configuration for a backend registered by another crate, with default manager
    /// settings.
    pub fn custom(custom: CustomBackendConfig) -> Self {
        Self::with_backend(BackendConfig::Custom(custom))
    }

    fn with_backend(backend_config: BackendConfig) -> Self {
        Self {
            backend: backend_config.backend(),
            backend_config,
            default_key_id: None,
            timeout: DEFAULT_TIMEOUT,
            retry_attempts: DEFAULT_RETRY_ATTEMPTS,
            enable_cache: true,
            cache_config: CacheConfig::default(),
        }
    }

    /// Checks every field; the error names the first bad one. The settings of a custom
    /// backend are checked by its factory (`kms_core::backends::BackendRegistry::check`).
    pub fn validate(&self) -> Result<()> {
        if self.backend != self.backend_config.backend() {
            return Err(KmsError::configuration(
                "backend",
                format!(
                    "is {} but backend_config is for {}",
                    self.backend.as_str(),
                    self.backend_config.backend().as_str()
                ),
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(KmsError::configuration("timeout", "must be between 1 and 600 seconds"));
        }
        if self.retry_attempts > MAX_RETRY_ATTEMPTS {
            return Err(KmsError::configuration("retry_attempts", "must be at most 10"));
        }
        if let Some(id) = &self.default_key_id {
            crate::types::validate_key_id("default_key_id", id)
                .map_err(|e| KmsError::configuration("default_key_id", inner_message(e)))?;
        }
        self.cache_config.validate()?;
        match &self.backend_config {
            BackendConfig::Local(local) => local.validate(),
            BackendConfig::Vault(vault) => vault.validate(),
            BackendConfig::Custom(_) => Ok(()),
        }
    }

    /// A copy with every secret replaced by `[REDACTED]`, for status output and logs. A custom
    /// backend's settings are all hidden (only its factory knows which are secret:
    /// `kms_core::backends::BackendRegistry::redacted` shows the others).
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        match &mut copy.backend_config {
            BackendConfig::Local(local) => local.master_key = local.master_key.redacted(),
            BackendConfig::Vault(vault) => vault.auth_method = vault.auth_method.redacted(),
            BackendConfig::Custom(custom) => *custom = custom.fully_redacted(),
        }
        copy
    }
}

fn inner_message(e: KmsError) -> String {
    match e {
        KmsError::InvalidRequest { message, .. } => message,
        other => other.to_string(),
    }
}

/// Bounds of the key-metadata cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Most entries kept.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// How long an entry stays valid.
    #[serde(with = "duration_secs", rename = "ttl_seconds", default = "default_ttl")]
    pub ttl: Duration,
    /// Bound on how long a key-state change made through another server sharing the backend
    /// (Vault) may go unseen here: cached state older than this is re-read before a key is
    /// used. Local keys have one writer and keep `ttl`.
    #[serde(with = "duration_secs", rename = "coherence_seconds", default = "default_coherence")]
    pub coherence: Duration,
}

fn default_max_keys() -> usize {
    1024
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
/// Default [`CacheConfig::coherence`]: a state change reaches every server within 2 s.
pub const DEFAULT_COHERENCE: Duration = Duration::from_secs(2);
fn default_coherence() -> Duration {
    DEFAULT_COHERENCE
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { max_keys: default_max_keys(), ttl: default_ttl(), coherence: DEFAULT_COHERENCE }
    }
}

impl CacheConfig {
    /// A cache of at most `max_keys` entries, each valid for `ttl`.
    pub fn new(max_keys: usize, ttl: Duration) -> Self {
        Self { max_keys, ttl, coherence: DEFAULT_COHERENCE }
    }

    /// How long cached state of a key held by a shared backend may be used: the smaller of
    /// `ttl` and `coherence`.
    pub fn shared_ttl(&self) -> Duration {
        self.ttl.min(self.coherence)
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<()> {
        if self.max_keys == 0 || self.max_keys > 1_000_000 {
            return Err(KmsError::configuration("cache_config.max_keys", "must be between 1 and 1000000"));
        }
        if self.ttl.is_zero() || self.ttl > Duration::from_secs(86_400) {
            return Err(KmsError::configuration("cache_config.ttl", "must be between 1 second and 1 day"));
        }
        if self.coherence.is_zero() || self.coherence > Duration::from_secs(3600) {
            return Err(KmsError::configuration("cache_config.coherence", "must be between 1 second and 1 hour"));
        }
        Ok(())
    }
}

/// Where the local backend gets the master key that seals key files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum MasterKeySource {
    /// A random 32-byte key, standard base64.
    Key {
        /// The base64 key.
        key: SecretString,
    },
    /// A passphrase stretched with a memory-hard KDF (Argon2id).
    Passphrase {
        /// The passphrase.
        passphrase: SecretString,
    },
    /// An environment variable holding a base64 32-byte key.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A file (mode 0600) holding a base64 32-byte key.
    File {
        /// The file's path.
        path: PathBuf,
    },
    /// **Development only**: key material is stored on disk unencrypted.
    InsecurePlaintextForDevelopment,
}

impl MasterKeySource {
    fn redacted(&self) -> Self {
        match self {
            Self::Key { .. } => Self::Key { key: REDACTED.into() },
            Self::Passphrase { .. } => Self::Passphrase { passphrase: REDACTED.into() },
            other => other.clone(),
        }
    }
}

/// Settings of the local backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalConfig {
    /// Directory of key files (created 0700).
    pub key_dir: PathBuf,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
}

impl LocalConfig {
    /// Keys in `key_dir`, sealed with the master key from `master_key`.
    pub fn new(key_dir: impl Into<PathBuf>, master_key: MasterKeySource) -> Self {
        Self { key_dir: key_dir.into(), master_key }
    }

    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        if self.key_dir.as_os_str().is_empty() {
            return Err(KmsError::configuration("backend_config.key_dir", "must not be empty"));
        }
        match &self.master_key {
            MasterKeySource::Key { key } if key.is_empty() => {
                Err(KmsError::configuration("backend_config.master_key.key", "must not be empty"))
            }
            MasterKeySource::Passphrase { passphrase } if passphrase.expose_secret().len() < 12 => {
                Err(KmsError::configuration("backend_config.master_key.passphrase", "must be at least 12 characters"))
            }
            MasterKeySource::Env { var } if var.is_empty() => {
                Err(KmsError::configuration("backend_config.master_key.var", "must not be empty"))
            }
            MasterKeySource::File { path } if path.as_os_str().is_empty() => {
                Err(KmsError::configuration("backend_config.master_key.path", "must not be empty"))
            }
            _ => Ok(()),
        }
    }
}

/// How the Vault backend authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum VaultAuthMethod {
    /// A static token.
    Token {
        /// The token.
        token: SecretString,
    },
    /// AppRole login; the token is renewed before expiry and re-obtained by login when needed.
    AppRole {
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
        /// Where AppRole is mounted (default `approle`).
        #[serde(default = "default_approle_mount")]
        mount_path: String,
    },
}

fn default_approle_mount() -> String {
    "approle".into()
}

impl VaultAuthMethod {
    /// AppRole at the default mount.
    pub fn app_role(role_id: impl Into<String>, secret_id: impl Into<SecretString>) -> Self {
        Self::AppRole { role_id: role_id.into(), secret_id: secret_id.into(), mount_path: default_approle_mount() }
    }

    fn redacted(&self) -> Self {
        match self {
            Self::Token { .. } => Self::Token { token: REDACTED.into() },
            Self::AppRole { role_id, mount_path, .. } => {
                Self::AppRole { role_id: role_id.clone(), secret_id: REDACTED.into(), mount_path: mount_path.clone() }
            }
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            Self::Token { token } if token.is_empty() => {
                Err(KmsError::configuration("backend_config.auth_method.token", "must not be empty"))
            }
            Self::AppRole { role_id, .. } if role_id.is_empty() => {
                Err(KmsError::configuration("backend_config.auth_method.role_id", "must not be empty"))
            }
            Self::AppRole { secret_id, .. } if secret_id.is_empty() => {
                Err(KmsError::configuration("backend_config.auth_method.secret_id", "must not be empty"))
            }
            Self::AppRole { mount_path, .. } if !is_mount_path(mount_path) => {
                Err(KmsError::configuration("backend_config.auth_method.mount_path", "is not a valid mount path"))
            }
            _ => Ok(()),
        }
    }
}

/// TLS settings for the connection to Vault.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM bundle of CA certificates to trust (instead of the system roots).
    #[serde(default)]
    pub ca_cert_path: Option<PathBuf>,
    /// PEM client certificate for mTLS (needs `client_key_path`).
    #[serde(default)]
    pub client_cert_path: Option<PathBuf>,
    /// PEM private key for mTLS (needs `client_cert_path`).
    #[serde(default)]
    pub client_key_path: Option<PathBuf>,
    /// Accept any server certificate. Dangerous; only when asked for explicitly.
    #[serde(default)]
    pub skip_verify: bool,
}

impl TlsConfig {
    fn validate(&self) -> Result<()> {
        if self.client_cert_path.is_some() != self.client_key_path.is_some() {
            return Err(KmsError::configuration(
                "backend_config.tls.client_cert_path",
                "client_cert_path and client_key_path must be given together",
            ));
        }
        if self.skip_verify && self.ca_cert_path.is_some() {
            return Err(KmsError::configuration(
                "backend_config.tls.skip_verify",
                "contradicts ca_cert_path: verify against the CA or skip verification, not both",
            ));
        }
        Ok(())
    }
}

/// Settings of the Vault backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// The cluster's node addresses (`https://vault.example.com:8200`, or several: a
    /// comma-separated string or, in JSON/TOML, an array). Plain `http://` only on loopback.
    pub address: VaultAddresses,
    /// How to authenticate.
    pub auth_method: VaultAuthMethod,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Mount of the Transit engine holding key material.
    pub mount_path: String,
    /// Mount of the KV v2 engine holding key metadata.
    pub kv_mount: String,
    /// Path prefix of metadata records in KV.
    pub key_path_prefix: String,
    /// TLS settings (`None`: system roots, verification on).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl VaultConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<()> {
        self.address.validate()?;
        if !self.address.any_https() && self.tls.is_some() {
            return Err(KmsError::configuration("backend_config.tls", "is set but the address is http://"));
        }
        self.auth_method.validate()?;
        if let Some(ns) = &self.namespace
            && !is_mount_path(ns)
        {
            return Err(KmsError::configuration("backend_config.namespace", "is not a valid namespace path"));
        }
        if !is_mount_path(&self.mount_path) {
            return Err(KmsError::configuration("backend_config.mount_path", "is not a valid mount path"));
        }
        if !is_mount_path(&self.kv_mount) {
            return Err(KmsError::configuration("backend_config.kv_mount", "is not a valid mount path"));
        }
        if !is_mount_path(&self.key_path_prefix) {
            return Err(KmsError::configuration("backend_config.key_path_prefix", "is not a valid path"));
        }
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        Ok(())
    }
}

/// `a`, `a/b`, `a-b_c/d.e`: non-empty segments of safe characters, no leading/trailing slash.
fn is_mount_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> VaultConfig {
        VaultConfig {
            address: "https://vault.example.com:8200".into(),
            auth_method: VaultAuthMethod::Token { token: "s.XYZ".into() },
            namespace: None,
            mount_path: "transit".into(),
            kv_mount: "secret".into(),
            key_path_prefix: "kms/keys".into(),
            tls: None,
        }
    }

    fn field_of(err: KmsError) -> String {
        match err {
            KmsError::Configuration { field, .. } => field,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_vault_config_validates() {
        KmsConfig::vault(vault()).validate().unwrap();
    }

    #[test]
    fn bad_values_are_rejected_naming_the_field() {
        let mut c = KmsConfig::vault(vault());
        c.timeout = Duration::ZERO;
        assert_eq!(field_of(c.validate().unwrap_err()), "timeout");

        let mut c = KmsConfig::vault(vault());
        c.backend = KmsBackend::Local;
        assert_eq!(field_of(c.validate().unwrap_err()), "backend");

        let mut c = KmsConfig::vault(vault());
        c.retry_attempts = 99;
        assert_eq!(field_of(c.validate().unwrap_err()), "retry_attempts");

        let mut v = vault();
        v.address = "not a url".into();
        assert_eq!(field_of(KmsConfig::vault(v).validate().unwrap_err()), "backend_config.address");

        let mut v = vault();
        v.address = "ftp://vault:8200".into();
        assert_eq!(field_of(KmsConfig::vault(v).validate().unwrap_err()), "backend_config.address");

        let mut v = vault();
        v.mount_path = "../transit".into();
        assert_eq!(field_of(KmsConfig::vault(v).validate().unwrap_err()), "backend_config.mount_path");

        let mut v = vault();
        v.auth_method = VaultAuthMethod::Token { token: "".into() };
        assert_eq!(field_of(KmsConfig::vault(v).validate().unwrap_err()), "backend_config.auth_method.token");

        let mut v = vault();
        v.tls = Some(TlsConfig { client_cert_path: Some("/c.pem".into()), ..TlsConfig::default() });
        assert_eq!(field_of(KmsConfig::vault(v).validate().unwrap_err()), "backend_config.tls.client_cert_path");

        let mut c = KmsConfig::vault(vault());
        c.cache_config.max_keys = 0;
        assert_eq!(field_of(c.validate().unwrap_err()), "cache_config.max_keys");

        let mut c = KmsConfig::vault(vault());
        c.default_key_id = Some("bad id".into());
        assert_eq!(field_of(c.validate().unwrap_err()), "default_key_id");

        let c = KmsConfig::local(LocalConfig::new("", MasterKeySource::InsecurePlaintextForDevelopment));
        assert_eq!(field_of(c.validate().unwrap_err()), "backend_config.key_dir");
    }

    #[test]
    fn json_shape_uses_seconds_and_tags() {
        let c = KmsConfig::vault(vault());
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["timeout_seconds"], 30);
        assert_eq!(json["backend"], "vault");
        assert_eq!(json["backend_config"]["type"], "vault");
        assert_eq!(json["backend_config"]["auth_method"]["type"], "token");
        assert_eq!(json["cache_config"]["ttl_seconds"], 300);
        let back: KmsConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn redacted_config_hides_every_secret() {
        let mut v = vault();
        v.auth_method = VaultAuthMethod::app_role("role-id-value", "secret-id-value");
        let shown = serde_json::to_string(&KmsConfig::vault(v).redacted()).unwrap();
        assert!(!shown.contains("secret-id-value"));
        // The role id is not a secret: it stays, so an operator can tell which role is used.
        assert!(shown.contains("\"role_id\":\"role-id-value\""), "{shown}");
        let local = KmsConfig::local(LocalConfig::new(
            "/k",
            MasterKeySource::Passphrase { passphrase: "correct horse battery".into() },
        ));
        let shown = format!("{:?} {}", local, serde_json::to_string(&local.redacted()).unwrap());
        assert!(!shown.contains("correct horse"));
    }
}
