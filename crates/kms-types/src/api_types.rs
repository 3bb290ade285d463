//! Payloads of the admin REST API (`/kms/v1/configure`, `/kms/v1/status`, the bodies of the
//! key routes, ...): the one home of its wire types, for the server (`kms-admin`) and its
//! clients (the `kms` CLI) alike.
//!
//! [`ConfigureKmsRequest`] is what an operator sends; `KmsConfig::from(&request)` turns it into
//! a [`KmsConfig`] with defaults filled in, which is then validated before use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{
    BackendConfig, CacheConfig, CustomBackendConfig, DEFAULT_RETRY_ATTEMPTS, DEFAULT_TIMEOUT, KmsBackend, KmsConfig,
    LocalConfig, MasterKeySource, TlsConfig, VaultAddresses, VaultAuthMethod, VaultConfig,
};
use crate::error::{KmsError, Result};
use crate::secret::SecretBytes;
use crate::types::{BackendCapabilities, EncryptionContext, KeySpec, Tags};

/// Default Transit mount.
pub const DEFAULT_TRANSIT_MOUNT: &str = "transit";
/// Default KV v2 mount.
pub const DEFAULT_KV_MOUNT: &str = "secret";
/// Default metadata path prefix in KV.
pub const DEFAULT_KEY_PATH_PREFIX: &str = "kms/keys";

/// Configure (or reconfigure) the KMS; `backend_type` selects the variant in JSON (serde in
/// `backend_kind`): `local`, `vault`, or the name of a backend registered by another crate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigureKmsRequest {
    /// The local file backend.
    Local(ConfigureLocalKmsRequest),
    /// The Vault / OpenBao backend.
    Vault(ConfigureVaultKmsRequest),
    /// A backend registered by another crate.
    Custom(ConfigureCustomKmsRequest),
}

/// A backend registered by another crate, from the admin API: `backend_type` names it, the
/// manager options are read as for the built-in backends, and every other field of the body
/// is one of the backend's own settings (checked by its factory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigureCustomKmsRequest {
    /// The backend kind and its own settings.
    pub backend: CustomBackendConfig,
    /// Timeouts, retries, cache and default key.
    pub options: ManagerOptions,
}

/// The options of a configure request that set up the manager rather than the backend; each
/// omitted one takes its default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerOptions {
    /// Key used when a caller names none.
    #[serde(default)]
    pub default_key_id: Option<String>,
    /// Per-call timeout in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Retries of idempotent calls (default 3).
    #[serde(default)]
    pub retry_attempts: Option<u32>,
    /// Cache key metadata (default true).
    #[serde(default)]
    pub enable_cache: Option<bool>,
    /// Cache size (default 1024).
    #[serde(default)]
    pub max_cached_keys: Option<usize>,
    /// Cache TTL in seconds (default 300).
    #[serde(default)]
    pub cache_ttl_seconds: Option<u64>,
}

/// The names of [`ManagerOptions`]' fields, which a custom backend's settings cannot use.
pub const MANAGER_OPTIONS: [&str; 6] =
    ["default_key_id", "timeout_seconds", "retry_attempts", "enable_cache", "max_cached_keys", "cache_ttl_seconds"];

/// Local backend settings from the admin API; omitted options take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureLocalKmsRequest {
    /// Directory of key files.
    pub key_dir: String,
    /// Where the master key comes from.
    pub master_key: MasterKeySource,
    /// Key used when a caller names none.
    #[serde(default)]
    pub default_key_id: Option<String>,
    /// Per-call timeout in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Retries of idempotent calls (default 3).
    #[serde(default)]
    pub retry_attempts: Option<u32>,
    /// Cache key metadata (default true).
    #[serde(default)]
    pub enable_cache: Option<bool>,
    /// Cache size (default 1024).
    #[serde(default)]
    pub max_cached_keys: Option<usize>,
    /// Cache TTL in seconds (default 300).
    #[serde(default)]
    pub cache_ttl_seconds: Option<u64>,
}

/// Vault backend settings from the admin API; omitted options take their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureVaultKmsRequest {
    /// The Vault cluster's node address(es): one URL, a comma-separated string, or an array.
    pub address: VaultAddresses,
    /// How to authenticate.
    pub auth_method: VaultAuthMethod,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Transit mount (default `transit`).
    #[serde(default)]
    pub mount_path: Option<String>,
    /// KV v2 mount (default `secret`).
    #[serde(default)]
    pub kv_mount: Option<String>,
    /// Metadata prefix in KV (default `kms/keys`).
    #[serde(default)]
    pub key_path_prefix: Option<String>,
    /// Key used when a caller names none.
    #[serde(default)]
    pub default_key_id: Option<String>,
    /// Accept any server certificate (default false). Dangerous.
    #[serde(default)]
    pub skip_tls_verify: Option<bool>,
    /// Per-call timeout in seconds (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Retries of idempotent calls (default 3).
    #[serde(default)]
    pub retry_attempts: Option<u32>,
    /// Cache key metadata (default true).
    #[serde(default)]
    pub enable_cache: Option<bool>,
    /// Cache size (default 1024).
    #[serde(default)]
    pub max_cached_keys: Option<usize>,
    /// Cache TTL in seconds (default 300).
    #[serde(default)]
    pub cache_ttl_seconds: Option<u64>,
}

impl ManagerOptions {
    /// A configuration of `backend` with these options (defaults filled in).
    pub fn into_config(self, backend: KmsBackend, backend_config: BackendConfig) -> KmsConfig {
        let defaults = CacheConfig::default();
        KmsConfig {
            backend,
            backend_config,
            default_key_id: self.default_key_id,
            timeout: self.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            retry_attempts: self.retry_attempts.unwrap_or(DEFAULT_RETRY_ATTEMPTS),
            enable_cache: self.enable_cache.unwrap_or(true),
            cache_config: CacheConfig::new(
                self.max_cached_keys.unwrap_or(defaults.max_keys),
                self.cache_ttl_seconds.map_or(defaults.ttl, Duration::from_secs),
            ),
        }
    }
}

impl From<&ConfigureKmsRequest> for KmsConfig {
    fn from(request: &ConfigureKmsRequest) -> Self {
        match request {
            ConfigureKmsRequest::Local(r) => ManagerOptions {
                default_key_id: r.default_key_id.clone(),
                timeout_seconds: r.timeout_seconds,
                retry_attempts: r.retry_attempts,
                enable_cache: r.enable_cache,
                max_cached_keys: r.max_cached_keys,
                cache_ttl_seconds: r.cache_ttl_seconds,
            }
            .into_config(KmsBackend::Local, BackendConfig::Local(LocalConfig::new(&r.key_dir, r.master_key.clone()))),
            ConfigureKmsRequest::Vault(r) => {
                let tls = r
                    .skip_tls_verify
                    .filter(|skip| *skip)
                    .map(|_| TlsConfig { skip_verify: true, ..TlsConfig::default() });
                let vault = VaultConfig {
                    address: r.address.clone(),
                    auth_method: r.auth_method.clone(),
                    namespace: r.namespace.clone(),
                    mount_path: r.mount_path.clone().unwrap_or_else(|| DEFAULT_TRANSIT_MOUNT.into()),
                    kv_mount: r.kv_mount.clone().unwrap_or_else(|| DEFAULT_KV_MOUNT.into()),
                    key_path_prefix: r.key_path_prefix.clone().unwrap_or_else(|| DEFAULT_KEY_PATH_PREFIX.into()),
                    tls,
                };
                ManagerOptions {
                    default_key_id: r.default_key_id.clone(),
                    timeout_seconds: r.timeout_seconds,
                    retry_attempts: r.retry_attempts,
                    enable_cache: r.enable_cache,
                    max_cached_keys: r.max_cached_keys,
                    cache_ttl_seconds: r.cache_ttl_seconds,
                }
                .into_config(KmsBackend::Vault, BackendConfig::Vault(vault))
            }
            ConfigureKmsRequest::Custom(r) => r
                .options
                .clone()
                .into_config(r.backend.backend_type().clone(), BackendConfig::Custom(r.backend.clone())),
        }
    }
}

/// The body of `POST /kms/v1/configure` and `/reconfigure` and the `[kms]` table of `kms.toml`:
/// a [`ConfigureKmsRequest`] plus the options it has no field for (its fields are fixed by the
/// spec's samples). `tls` (CA bundle, client certificate and key, `skip_verify`) applies to the
/// Vault backend and merges with `skip_tls_verify`; `cache_coherence_seconds` is
/// [`CacheConfig::coherence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigureBody {
    /// The request proper (selected by `backend_type`).
    #[serde(flatten)]
    pub request: ConfigureKmsRequest,
    /// TLS to Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Bound in seconds on how long another server's key-state change may go unseen (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_coherence_seconds: Option<u64>,
}

impl From<ConfigureKmsRequest> for ConfigureBody {
    fn from(request: ConfigureKmsRequest) -> Self {
        Self { request, tls: None, cache_coherence_seconds: None }
    }
}

/// Environment variables [`ConfigureBody::with_vault_env`] reads: the node addresses, the CA
/// bundle, the client certificate and its key.
pub const VAULT_ENV: [&str; 4] =
    ["KMS_VAULT_ADDR", "KMS_VAULT_CACERT", "KMS_VAULT_CLIENT_CERT", "KMS_VAULT_CLIENT_KEY"];

impl ConfigureBody {
    /// Applies `KMS_VAULT_ADDR` (one URL or comma-separated), `KMS_VAULT_CACERT`,
    /// `KMS_VAULT_CLIENT_CERT` and `KMS_VAULT_CLIENT_KEY` as `lookup` finds them (a server
    /// passes `std::env::var`), over what the body says. Refused for a local backend.
    pub fn with_vault_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let [addr, ca, cert, key] = VAULT_ENV.map(|name| lookup(name).filter(|v| !v.is_empty()));
        if addr.is_none() && ca.is_none() && cert.is_none() && key.is_none() {
            return Ok(self);
        }
        let ConfigureKmsRequest::Vault(request) = &mut self.request else {
            return Err(KmsError::configuration("KMS_VAULT_*", "set, but the configured backend is not vault"));
        };
        if let Some(addr) = addr {
            request.address = VaultAddresses::from(addr);
        }
        if ca.is_some() || cert.is_some() || key.is_some() {
            let tls = self.tls.get_or_insert_with(TlsConfig::default);
            tls.ca_cert_path = ca.map(Into::into).or(tls.ca_cert_path.take());
            tls.client_cert_path = cert.map(Into::into).or(tls.client_cert_path.take());
            tls.client_key_path = key.map(Into::into).or(tls.client_key_path.take());
        }
        Ok(self)
    }

    /// The configuration this body describes (defaults filled in; not yet validated). `tls`
    /// for a local backend is refused.
    pub fn to_config(&self) -> Result<KmsConfig> {
        let mut config = KmsConfig::from(&self.request);
        if let Some(seconds) = self.cache_coherence_seconds {
            config.cache_config.coherence = Duration::from_secs(seconds);
        }
        if let Some(tls) = &self.tls {
            let BackendConfig::Vault(vault) = &mut config.backend_config else {
                return Err(KmsError::configuration("tls", "applies to the vault backend only"));
            };
            let mut tls = tls.clone();
            tls.skip_verify |= vault.tls.as_ref().is_some_and(|t| t.skip_verify);
            vault.tls = Some(tls);
        }
        Ok(config)
    }
}

impl From<ConfigureKmsRequest> for KmsConfig {
    fn from(request: ConfigureKmsRequest) -> Self {
        Self::from(&request)
    }
}

/// Lifecycle state of the KMS service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum KmsServiceStatus {
    /// No configuration yet.
    NotConfigured,
    /// Configured, not started.
    Configured,
    /// Serving requests.
    Running,
    /// Stopped by an operator; the configuration is kept.
    Stopped,
    /// Start or reconfigure failed; the message says why (no secrets).
    Error {
        /// What went wrong.
        message: String,
    },
}

/// `GET /kms/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsStatusResponse {
    /// Service state.
    pub status: KmsServiceStatus,
    /// The configured backend, if any.
    pub backend: Option<KmsBackend>,
    /// Result of the last health check, if the service is running.
    pub healthy: Option<bool>,
}

/// `GET /kms/v1/config`: the current configuration, secrets redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsConfigResponse {
    /// The configuration with every secret shown as `[REDACTED]`, if configured.
    pub config: Option<KmsConfig>,
}

/// Cache statistics (`GET /kms/v1/status` detail, `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that went to the backend.
    pub misses: u64,
    /// Entries currently held.
    pub entries: usize,
    /// Capacity.
    pub capacity: usize,
}

// The bodies of the routes whose key id sits in the path (the body then carries the rest),
// and the answers of the admin server that have no type of their own above. Every request
// body rejects unknown fields.

/// A body that must be empty or `{}` (enable, disable, rotate, start, stop, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `PUT /kms/v1/keys/{key_id}/description`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptionBody {
    /// The new description.
    pub description: String,
}

/// `POST /kms/v1/keys/{key_id}/tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// Tags to add or overwrite.
    pub tags: Tags,
}

/// `POST /kms/v1/keys/{key_id}/untag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UntagBody {
    /// Tag names to remove.
    pub tag_keys: Vec<String>,
}

/// `POST /kms/v1/keys/{key_id}/generate-data-key` and `.../generate-data-key-without-plaintext`;
/// the body may be omitted (AES-256, empty context).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKeyBody {
    /// The data key's size (default `aes256`).
    #[serde(default)]
    pub key_spec: KeySpec,
    /// Context bound to the wrapped key.
    #[serde(default)]
    pub encryption_context: EncryptionContext,
}

/// `POST /kms/v1/keys/{key_id}/encrypt`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptBody {
    /// At most 4096 bytes, standard base64.
    pub plaintext: SecretBytes,
    /// Context bound to the ciphertext.
    #[serde(default)]
    pub encryption_context: EncryptionContext,
}

/// `GET /kms/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBody {
    /// Service state, backend and health.
    #[serde(flatten)]
    pub status: KmsStatusResponse,
    /// Cache statistics while running.
    #[serde(default)]
    pub cache: Option<CacheStats>,
    /// What the running backend supports.
    #[serde(default)]
    pub capabilities: Option<BackendCapabilities>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBody {
    /// Always true: the process answers.
    pub live: bool,
    /// Whether the service runs and its backend is healthy.
    pub ready: bool,
}

/// Result of the lifecycle routes (configure, reconfigure, start, stop, cache/clear).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleBody {
    /// The service state afterwards.
    pub status: KmsServiceStatus,
    /// Whether the configuration was saved for the next start (false when no store is set).
    pub persisted: bool,
}

/// Result of `POST /kms/v1/cache/clear`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheClearedBody {
    /// Always true: the caches were emptied.
    pub cleared: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_request_fills_defaults_and_maps_skip_verify() {
        let json = r#"{"backend_type":"vault","address":"http://127.0.0.1:8200",
            "auth_method":{"type":"token","token":"root"},"skip_tls_verify":false}"#;
        let request: ConfigureKmsRequest = serde_json::from_str(json).unwrap();
        let config = KmsConfig::from(&request);
        let BackendConfig::Vault(vault) = &config.backend_config else { panic!() };
        assert_eq!(vault.mount_path, "transit");
        assert_eq!(vault.kv_mount, "secret");
        assert_eq!(vault.tls, None);
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        config.validate().unwrap();
    }

    #[test]
    fn local_request_converts_and_validates() {
        let json = r#"{"backend_type":"local","key_dir":"/tmp/k",
            "master_key":{"type":"env","var":"KMS_MASTER_KEY"},"max_cached_keys":10,"cache_ttl_seconds":5}"#;
        let request: ConfigureKmsRequest = serde_json::from_str(json).unwrap();
        let config = KmsConfig::from(&request);
        assert_eq!(config.backend, KmsBackend::Local);
        assert_eq!(config.cache_config.max_keys, 10);
        assert_eq!(config.cache_config.ttl, Duration::from_secs(5));
        config.validate().unwrap();
    }

    #[test]
    fn bad_backend_names_and_unknown_fields_are_rejected() {
        for bad in [r#"{}"#, r#"{"backend_type":"S 3"}"#, r#"{"backend_type":7}"#] {
            let err = serde_json::from_str::<ConfigureKmsRequest>(bad).unwrap_err().to_string();
            assert!(err.contains("`backend_type`"), "{bad}: {err}");
        }
        let extra = r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"},"bogus":1}"#;
        let err = serde_json::from_str::<ConfigureKmsRequest>(extra).unwrap_err();
        assert!(err.is_data() && err.to_string().contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn configure_body_carries_tls_and_several_addresses() {
        let json = r#"{"backend_type":"vault","address":["https://a:8200","https://b:8200"],
            "auth_method":{"type":"token","token":"root"},"cache_coherence_seconds":1,
            "tls":{"ca_cert_path":"/etc/kms/vault-ca.pem","client_cert_path":"/c.pem","client_key_path":"/k.pem"}}"#;
        let body: ConfigureBody = serde_json::from_str(json).unwrap();
        let config = body.to_config().unwrap();
        config.validate().unwrap();
        assert_eq!(config.cache_config.coherence, Duration::from_secs(1));
        let BackendConfig::Vault(vault) = &config.backend_config else { panic!() };
        assert_eq!(vault.address.len(), 2);
        let tls = vault.tls.as_ref().unwrap();
        assert_eq!(tls.ca_cert_path.as_deref(), Some(std::path::Path::new("/etc/kms/vault-ca.pem")));
        assert!(!tls.skip_verify);

        let unknown = r#"{"backend_type":"vault","address":"https://a:8200","auth_method":{"type":"token","token":"t"},"tlz":{}}"#;
        let err = serde_json::from_str::<ConfigureBody>(unknown).unwrap_err();
        assert!(err.is_data() && err.to_string().contains("unknown field `tlz`"), "unknown fields stay refused: {err}");
        let local = r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"},"tls":{}}"#;
        let err = serde_json::from_str::<ConfigureBody>(local).unwrap().to_config().unwrap_err();
        assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "tls"));
    }

    #[test]
    fn vault_environment_overrides_address_and_tls() {
        let json = r#"{"backend_type":"vault","address":"https://a:8200","auth_method":{"type":"token","token":"t"},
            "tls":{"ca_cert_path":"/file-ca.pem"}}"#;
        let body: ConfigureBody = serde_json::from_str(json).unwrap();
        let env = |name: &str| match name {
            "KMS_VAULT_ADDR" => Some("https://b:8200,https://c:8200".to_owned()),
            "KMS_VAULT_CLIENT_CERT" => Some("/c.pem".to_owned()),
            "KMS_VAULT_CLIENT_KEY" => Some("/k.pem".to_owned()),
            _ => None,
        };
        let config = body.clone().with_vault_env(env).unwrap().to_config().unwrap();
        config.validate().unwrap();
        let BackendConfig::Vault(vault) = &config.backend_config else { panic!() };
        assert_eq!(vault.address.urls(), ["https://b:8200", "https://c:8200"]);
        let tls = vault.tls.as_ref().unwrap();
        assert_eq!(tls.ca_cert_path.as_deref(), Some(std::path::Path::new("/file-ca.pem")), "kept from the file");
        assert_eq!(tls.client_key_path.as_deref(), Some(std::path::Path::new("/k.pem")));
        assert_eq!(body.clone().with_vault_env(|_| None).unwrap(), body, "no variables: unchanged");
        let local: ConfigureBody =
            serde_json::from_str(r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"}}"#)
                .unwrap();
        assert!(matches!(local.with_vault_env(env), Err(KmsError::Configuration { .. })));
    }

    #[test]
    fn status_serializes_with_a_state_tag() {
        let s = serde_json::to_value(KmsServiceStatus::Error { message: "x".into() }).unwrap();
        assert_eq!(s, serde_json::json!({"state": "error", "message": "x"}));
        let s = serde_json::to_value(KmsServiceStatus::Running).unwrap();
        assert_eq!(s, serde_json::json!({"state": "running"}));
    }
}
