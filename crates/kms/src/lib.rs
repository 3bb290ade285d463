//! **kms**: a key-management library. Master keys live in a backend (local files, or
//! HashiCorp Vault / OpenBao); applications get data keys and envelope encryption from them,
//! with AWS KMS semantics (key states, a 7-30 day deletion window, encryption contexts).
//!
//! This is the facade: it re-exports the workspace's crates as modules and picks the
//! backends with Cargo features. The paths are those of the developer API document:
//!
//! | path | from | holds |
//! |---|---|---|
//! | [`config`], [`types`], [`api_types`], [`error`], [`secret`], [`alias`], [`limits`], [`serde_helpers`] | `kms-types` | configuration, DTOs, admin payloads, [`error::KmsError`], redacted secrets, alias rules, metadata limits |
//! | [`backends`] | `kms-core` | the [`backends::KmsBackend`] trait, [`backends::BackendFactory`], [`backends::BackendRegistry`] |
//! | [`manager`] | `kms-core` | [`manager::KmsManager`]: timeouts, retries, metadata cache |
//! | [`service_manager`] | `kms-core` | [`service_manager::KmsServiceManager`]: configure/start/stop/reconfigure |
//! | [`encryption`] | `kms-core` | [`encryption::service::EncryptionService`], what S3 handlers call |
//! | [`mock`] | `kms-core` | [`mock::MemoryBackend`], an in-memory backend for tests |
//! | [`aliases`], `fs_trust` (unix) | `kms-core` | the alias table; the file trust checks of key and data directories |
//! | [`crypto`] | `kms-crypto` | ciphers, data keys, envelopes |
//! | `local`, `vault`, `admin`, `testing` | backend, admin and test-kit crates | behind their features |
//!
//! The process-wide service: [`init_global_kms_service_manager`] (builds it once, with the
//! backends this build enables), [`get_global_kms_service_manager`] and
//! [`get_global_encryption_service`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms::config::{KmsConfig, VaultAuthMethod, VaultConfig};
//! use kms::encryption::service::EncryptionService;
//! use kms::manager::{KmsManager, ManagerOptions};
//! use kms::mock::MemoryBackend;
//! use kms::types::{CreateKeyRequest, GenerateDataKeyRequest, KeySpec};
//!
//! // A configuration is plain data, validated before use.
//! let config = KmsConfig::vault(VaultConfig {
//!     address: "https://vault.example.com:8200".into(),
//!     auth_method: VaultAuthMethod::Token { token: "s.XYZ".into() },
//!     namespace: None,
//!     mount_path: "transit".into(),
//!     kv_mount: "secret".into(),
//!     key_path_prefix: "kms/keys".into(),
//!     tls: None,
//! });
//! config.validate()?;
//!
//! // The service over an in-memory backend (tests); production goes through the service manager.
//! let manager = KmsManager::new(Arc::new(MemoryBackend::new()), &config);
//! let service = EncryptionService::new(Arc::new(manager));
//! let key = service.create_key(CreateKeyRequest::default()).await?;
//! let data_key = service
//!     .generate_data_key(GenerateDataKeyRequest {
//!         key_id: key.key_id,
//!         key_spec: KeySpec::Aes256,
//!         encryption_context: [("bucket".into(), "photos".into())].into(),
//!     })
//!     .await?;
//! assert_eq!(data_key.plaintext_key.len(), 32);
//! # Ok::<(), kms::error::KmsError>(()) }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! - `local` (default): the file-backed key store, `kms::local` (crate `kms-backend-local`).
//! - `vault`: HashiCorp Vault / OpenBao over Transit and KV v2, `kms::vault` (crate
//!   `kms-backend-vault`).
//! - `admin`: the admin HTTP API, `kms::admin` (crate `kms-admin`).
//! - `sse` (default): the S3 server-side encryption pipeline, `kms::encryption::{sse,
//!   pipeline, stream, rewrap, key_cache}` (kms-core's `sse` feature, which alone pulls
//!   `md-5`, `base64` and `serde_json`).
//! - `full`: all of the above.
//! - `testing`: test support for applications, `kms::testing` (crate `kms-testkit`): a local
//!   test environment (temporary key store, running service, ready `EncryptionService`), with
//!   `vault` also an OpenBao one, the forwarding backend and the backend contract suite.
//!
//! On docs.rs every feature is on and each gated item says which feature it needs.
//!
//! With `default-features = false` the facade has no backend: the service manager then
//! accepts no configuration until you register a [`backends::BackendFactory`] of your own in
//! a [`backends::BackendRegistry`] and pass it to
//! [`service_manager::init_global_kms_service_manager`].
//!
//! ```toml
//! [dependencies]
//! kms = { version = "0.1", features = ["vault"] }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

use std::sync::Arc;

#[cfg(unix)]
pub use kms_core::fs_trust;
pub use kms_core::{aliases, backends, encryption, manager, mock, service_manager};
pub use kms_crypto as crypto;
pub use kms_types::{alias, api_types, byok, config, error, import, limits, operation, secret, serde_helpers, types};

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub use kms_admin as admin;
#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub use kms_backend_local as local;
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub use kms_backend_vault as vault;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub use kms_testkit as testing;

pub use kms_core::service_manager::{get_global_encryption_service, get_global_kms_service_manager};

use backends::BackendRegistry;
use service_manager::KmsServiceManager;

/// A registry holding the backend factories this build's features enable.
pub fn default_registry() -> BackendRegistry {
    #[allow(unused_mut)] // empty when no backend feature is on
    let mut registry = BackendRegistry::new();
    // Backend factories, one line per feature:
    #[cfg(feature = "local")]
    registry.register(Arc::new(kms_backend_local::LocalBackendFactory::new()));
    #[cfg(feature = "vault")]
    registry.register(Arc::new(kms_backend_vault::VaultBackendFactory::new()));
    registry
}

/// The process-wide [`KmsServiceManager`], created on the first call with
/// [`default_registry`]; later calls return the same manager. Synchronous, as the spec calls
/// it: `let manager = kms::init_global_kms_service_manager();`.
pub fn init_global_kms_service_manager() -> Arc<KmsServiceManager> {
    kms_core::service_manager::init_global_kms_service_manager(default_registry())
}
