//! The Vault / OpenBao backend of **kms**: key material in the Transit engine, key metadata in
//! KV v2, over one pooled `reqwest` client (rustls on `ring`).
//!
//! For teams that outgrow one machine: many stateless `kms` servers in front of one Vault (or
//! OpenBao) cluster. Key material never leaves Vault. Each master key is a Transit key
//! (`aes256-gcm96`, not exportable) named by the key id; its state, description, tags and
//! dates live in a KV v2 record written with check-and-set, so two servers cannot lose each
//! other's update. Only keys with such a record are listed or used: a Transit key someone else
//! made in the same mount is never adopted, and Transit is never called for a key we did not
//! create, so `encrypt` cannot upsert-create a key by a typo.
//! Aliases (`alias/...`) are KV records of their own next to the key records, under
//! `<key_path_prefix>/.aliases/` (`docs/formats.md`, "Vault alias record"): created with a
//! create-only write, moved with check-and-set, read at the active node and never cached.
//!
//! The encryption context is bound to every ciphertext as Transit `associated_data`, in the
//! canonical encoding of [`kms_crypto::context::canonical_context`]. Ciphertext blobs use the
//! versioned format of [`blob`] (`vault-kms:1:<key_id>:vault:v<N>:...`).
//!
//! Authentication is a token or AppRole (renewed before expiry, re-login when needed, with
//! back-off; a node's failure never causes a login); the token is held only in a zeroizing
//! `SecretString` and sent only to the configured nodes (redirects are never followed). TLS
//! uses rustls on `ring` with the CA bundle, client certificate and `skip_verify` options of
//! [`kms_types::config::TlsConfig`].
//!
//! High availability: `address` lists the nodes of a Raft cluster. Crypto is spread over the
//! nodes that serve, storage writes and key-state reads go to the active node, a node that
//! fails is skipped for a moment, and OpenBao's consistency headers give read-your-writes
//! (see `transport.rs`). The transport never retries: each failure is classified
//! (`classify`) and the manager (`kms_core::manager`) is the one place that retries, within
//! one budget per call; every write is safe to repeat (a write whose reply was lost is read
//! back, a rotation that already happened is recorded, not repeated). Key state cached here
//! is re-read after `cache_config.coherence` (2 s by default), the bound within which a change
//! made through another kms server is seen.
//! Setup, configuration and the minimal Vault policy: `docs/vault.md`.
//!
//! Sits beside `kms-backend-local`: it implements [`kms_core::backends::KmsBackend`] and is
//! registered with a `BackendRegistry` through [`VaultBackendFactory`] (the `kms` facade does
//! this under its `vault` feature).
//!
//! ```no_run
//! use kms_backend_vault::VaultBackend;
//! use kms_core::backends::KmsBackend;
//! use kms_types::config::{KmsConfig, VaultAuthMethod, VaultConfig};
//! use kms_types::types::{CreateKeyRequest, GenerateDataKeyRequest, KeySpec};
//!
//! # async fn run() -> kms_types::Result<()> {
//! let config = KmsConfig::vault(VaultConfig {
//!     address: "https://vault-1.example.com:8200,https://vault-2.example.com:8200".into(),
//!     auth_method: VaultAuthMethod::app_role("kms-role-id", "kms-secret-id"),
//!     namespace: None,
//!     mount_path: "transit".into(),
//!     kv_mount: "secret".into(),
//!     key_path_prefix: "kms/keys".into(),
//!     tls: None,
//! });
//! let backend = VaultBackend::connect(&config).await?;
//! let key = backend.create_key(CreateKeyRequest { key_name: Some("app".into()), ..Default::default() }).await?;
//! let data_key = backend
//!     .generate_data_key(GenerateDataKeyRequest {
//!         key_id: key.key_id,
//!         key_spec: KeySpec::Aes256,
//!         encryption_context: [("bucket".to_owned(), "photos".to_owned())].into(),
//!     })
//!     .await?;
//! assert_eq!(data_key.plaintext_key.len(), 32);
//! backend.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! None. TLS is always rustls with the `ring` provider (no OpenSSL, no aws-lc).

#![forbid(unsafe_code)]

mod alias_record;
mod auth;
mod backend;
pub mod blob;
mod classify;
mod record;
mod tls;
mod transport;

pub use backend::{VaultBackend, VaultBackendFactory};
pub use record::RECORD_FORMAT;
pub use transport::TransportStats;
