//! The engine of **kms**: the [`backends::KmsBackend`] trait every key store implements, the
//! [`manager::KmsManager`] that applies timeouts, retries and a metadata cache around a
//! backend, the service lifecycle ([`service_manager::KmsServiceManager`]), the
//! [`encryption::service::EncryptionService`] façade object stores call (with the S3
//! server-side encryption pipeline: [`encryption::sse`], [`encryption::pipeline`],
//! `docs/sse-integration.md`), an in-memory backend
//! ([`mock::MemoryBackend`]) and the backend contract suite (`testkit`). The manager is also
//! where requests are validated ([`validate`]: ids, metadata limits, plaintext size, windows),
//! once for every backend; and
//! [`fs_trust`] holds the one implementation of the file trust checks (not a symlink, owned by
//! this user, writable by nobody else) that the local key directory and the server's data
//! directory share. Aliases (`alias/...`, optional backend operations) follow the rules of
//! [`aliases::AliasTable`]; the façade resolves them wherever it takes a key id
//! ([`encryption::aliases`]).
//!
//! It sits between `kms-types` (the vocabulary) and the backend crates, which implement
//! [`backends::KmsBackend`] and depend on this crate; it cannot depend on them, so backends
//! reach the service manager through a [`backends::BackendRegistry`]. Applications normally
//! use the facade crate `kms`, which re-exports these modules and registers the backends its
//! features enable.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::encryption::service::EncryptionService;
//! use kms_core::manager::{KmsManager, ManagerOptions};
//! use kms_core::mock::MemoryBackend;
//! use kms_types::types::{CreateKeyRequest, GenerateDataKeyRequest, KeySpec};
//!
//! let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
//! let service = EncryptionService::new(Arc::new(manager));
//! let key = service.create_key(CreateKeyRequest::default()).await?;
//! let data_key = service
//!     .generate_data_key(GenerateDataKeyRequest {
//!         key_id: key.key_id,
//!         key_spec: KeySpec::Aes256,
//!         encryption_context: Default::default(),
//!     })
//!     .await?;
//! assert_eq!(data_key.plaintext_key.len(), 32);
//! # Ok::<(), kms_types::KmsError>(()) }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! - `testkit` (off by default): the backend contract suite, [`testkit`] (when enabled) and
//!   the `backend_contract_tests!` macro. Backend crates enable it in their
//!   `[dev-dependencies]`: `kms-core = { workspace = true, features = ["testkit"] }`.
//! - `sse` (off by default; the facade `kms` turns it on by default): the S3 server-side
//!   encryption pipeline, `encryption::{sse, pipeline, stream, rewrap, key_cache}`. Without it
//!   the crate does not depend on `md-5`, `base64`, `serde` or `serde_json`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aliases;
pub mod backends;
pub mod encryption;
#[cfg(unix)]
pub mod fs_trust;
pub mod import_sessions;
pub mod manager;
pub mod mock;
pub mod service_manager;
mod slot;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod validate;
