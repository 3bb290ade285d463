//! The vocabulary of **kms**: configuration, request/response types and errors.
//!
//! This is the small, stable bottom of the workspace (in the manner of `tracing-core`): it is
//! synchronous and pulls in no async runtime, no crypto library and no HTTP stack, so anything
//! that only needs to *describe* keys, requests or configuration can depend on it cheaply.
//! Most users want the facade crate `kms`, which re-exports these modules as `kms::config`,
//! `kms::types`, `kms::api_types` and `kms::error`; backend implementors depend on this crate
//! and `kms-core`.
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | [`config::KmsConfig`] and the backend, TLS, auth and cache options, with `validate()` |
//! | [`types`] | key metadata and the request/response pair of every KMS operation |
//! | [`api_types`] | the admin REST payloads (`ConfigureKmsRequest`, status) |
//! | [`error`] | [`error::KmsError`], one enum for the whole library |
//! | [`byok`] | import of key material (BYOK): wrapping parameters, import token, [`byok::ImportMaterial`] |
//! | [`import`] | [`import::ImportKeyRequest`]: a key migrated from another KMS, with its material |
//! | [`limits`] | the size limits on key metadata (tags, description, policy), for every backend |
//! | [`operation`] | [`operation::Operation`] and the key-state table every backend follows |
//! | [`secret`] | [`secret::SecretString`] and [`secret::SecretBytes`]: zeroized, redacted |
//!
//! Serde shapes are stable: `snake_case` fields and enum values, RFC 3339 timestamps,
//! durations as whole seconds, binary as standard base64 (`docs/http-api.md`).
//!
//! ```
//! use kms_types::config::{KmsConfig, LocalConfig, MasterKeySource};
//!
//! let config = KmsConfig::local(LocalConfig::new(
//!     "/var/lib/kms/keys",
//!     MasterKeySource::Env { var: "KMS_MASTER_KEY".into() },
//! ));
//! config.validate().expect("a valid local configuration");
//! // Secrets never show in Debug output.
//! let token = kms_types::secret::SecretString::from("s.XYZ");
//! assert_eq!(format!("{token:?}"), "SecretString([REDACTED])");
//! ```

#![forbid(unsafe_code)]

pub mod alias;
pub mod api_types;
mod backend_kind;
pub mod byok;
pub mod config;
pub mod error;
pub mod import;
pub mod limits;
pub mod operation;
pub mod secret;
pub mod serde_helpers;
pub mod types;
pub mod vault_addresses;

pub use error::{KmsError, Result};
