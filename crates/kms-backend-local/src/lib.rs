//! The embedded key store of **kms**: master keys in files on local disk, nothing to install.
//!
//! [`LocalBackend`] implements `kms_core::backends::KmsBackend` over a key directory; the
//! facade `kms` registers [`LocalBackendFactory`] for `KmsBackend::Local` (feature `local`).
//! It sits beside the Vault backend, above `kms-core` (the trait) and `kms-crypto` (the
//! AEAD and envelopes it uses).
//!
//! # What it guarantees
//!
//! - **Layout**: a directory created 0700 (refused if it is a symlink, writable by group or
//!   others, or owned by someone else) holding one 0600 key store file, `keys.redb` (an
//!   embedded `redb` database: one B-tree of records keyed by key id), in a versioned format
//!   (`docs/formats.md`, "Local key records"). A directory of the earlier one-file-per-key
//!   format is migrated into it once, atomically, when it is opened.
//! - **At rest**: every record is sealed with AES-256-GCM under a key-encryption key derived
//!   (HKDF-SHA256) from the master key (32 random bytes, or a passphrase through Argon2id),
//!   with the key id, current version and format version as associated data: a record copied
//!   under another key's id does not open. A verifier record makes a wrong master key a clear
//!   error at start. The master key is never written. Plaintext records exist only with the
//!   loudly named `MasterKeySource::InsecurePlaintextForDevelopment`. A record is at most
//!   1 MiB, checked when it is written and when it is read.
//! - **Lifecycle**: create (optionally named), describe, list (marker-paged, optionally one
//!   literal id prefix, read as a range), enable, disable, update description, tag/untag,
//!   rotate (old versions keep decrypting; every ciphertext names its key and version),
//!   schedule deletion (7-30 days) and cancel it (the key comes back `Disabled`), and a
//!   deletion worker with an injectable [`Clock`]. Encrypt, decrypt and data keys need an
//!   `Enabled` key (`docs/key-states.md`).
//! - **Durability**: a change is answered only once its transaction is committed (fsynced);
//!   a crash leaves each commit whole or absent; an unreadable record makes its key
//!   `Unavailable`, not the store.
//! - **Backup**: [`LocalBackend::snapshot`] reads every record in one read transaction (a
//!   consistent state while the writer keeps committing) into a bundle of the sealed records
//!   and the verifier, authenticated as a whole under the record KEK; the master key is not in
//!   it. [`LocalBackend::restore_into`] writes a bundle into an empty key directory, offline,
//!   refusing a truncated or altered bundle, another master key, or a store that holds keys,
//!   before writing anything (`docs/formats.md`, "Backup bundle").
//! - **Concurrency**: one writer thread applies every change in order (no lost update) and
//!   commits all changes queued at that moment together: group commit, one fsync for many
//!   callers, none for a single caller beyond its own. A second process on the same directory
//!   is refused ("in use") by an advisory lock.
//! - **Scale**: opening reads no key; a key is read and opened on first use and kept in a
//!   bounded LRU cache ([`LocalOptions::with_cache_capacity`], figures in
//!   [`LocalBackend::cache_stats`]), so start-up and memory do not grow with the number of
//!   keys (`cargo xtask bench scale` measures a million).
//! - **Speed**: an opened key holds each version's AES-256-GCM cipher set up once
//!   (`kms_crypto::envelope::PreparedKek`); the data path of a cached key does no disk I/O,
//!   and a data key costs one random draw (key and envelope salt together), one HKDF and one AEAD
//!   seal.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use kms_backend_local::LocalBackend;
//! use kms_core::backends::KmsBackend;
//! use kms_types::config::{LocalConfig, MasterKeySource};
//! use kms_types::types::{CreateKeyRequest, DecryptRequest, GenerateDataKeyRequest, KeySpec};
//!
//! let dir = tempfile::tempdir().unwrap();
//! // In production the key comes from `Env`, `File` or a passphrase, never from source code.
//! let master_key = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
//! let backend = LocalBackend::open(&LocalConfig::new(dir.path().join("keys"), master_key)).await?;
//!
//! let key = backend.create_key(CreateKeyRequest { key_name: Some("app".into()), ..Default::default() }).await?;
//! let data_key = backend
//!     .generate_data_key(GenerateDataKeyRequest {
//!         key_id: key.key_id.clone(),
//!         key_spec: KeySpec::Aes256,
//!         encryption_context: [("bucket".to_owned(), "photos".to_owned())].into(),
//!     })
//!     .await?;
//! let opened = backend
//!     .decrypt(DecryptRequest {
//!         ciphertext_blob: data_key.ciphertext_blob,
//!         encryption_context: [("bucket".to_owned(), "photos".to_owned())].into(),
//!         key_id: None,
//!     })
//!     .await?;
//! assert_eq!(opened.plaintext, data_key.plaintext_key);
//! # Ok::<(), kms_types::KmsError>(()) }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! None: the crate has no optional parts.

#![forbid(unsafe_code)]

mod aliases;
mod backend;
mod backup;
mod bundle;
mod byok;
mod cache;
mod ciphertext;
mod clock;
mod dir;
mod factory;
mod import;
mod legacy;
mod master_key;
mod record;
mod rustfs;
mod service;
mod store;
mod writer;

pub use backend::{DEFAULT_DELETION_SWEEP_INTERVAL, LocalBackend, LocalOptions};
pub use backup::RestoreSummary;
pub use cache::KeyCacheStats;
pub use clock::{Clock, ManualClock, SystemClock};
pub use factory::LocalBackendFactory;
pub use service::MAX_DESCRIPTION_LEN;
