//! **kms-testkit**: what a project using kms needs in its integration tests.
//!
//! | item | feature | gives |
//! |---|---|---|
//! | [`LocalTestEnvironment`] | `local` (default) | a running service on the file backend in a temporary directory, a ready `EncryptionService`, removed on drop |
//! | [`VaultTestEnvironment`] | `vault` | the same on a private OpenBao dev server (Transit + KV v2), stopped on drop |
//! | [`openbao`] | none | the OpenBao launcher: find or install `bao`, a dev server on a free loopback port |
//! | [`forwarding`] | `backend` | [`forwarding::Forwarding`], a backend that forwards every call through hooks (faults, delays, counts) |
//! | [`contract`], [`backend_contract_tests!`] | `backend` | the kms-core backend contract suite, for a backend of your own |
//! | [`skipped`] | none | the line a plain `cargo test` prints about the live tests it left out |
//!
//! The workspace's own tests, benches and `cargo xtask` use the same pieces: there is one
//! OpenBao launcher. Without features the crate is `std` only, so `xtask` depends on it at no
//! cost.
//!
//! ```
//! # #[cfg(feature = "local")]
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use kms_testkit::LocalTestEnvironment;
//! use kms_types::types::CreateKeyRequest;
//!
//! let env = LocalTestEnvironment::start().await?;
//! let key = env.service().create_key(CreateKeyRequest::default()).await?;
//! assert!(!key.key_id.is_empty());
//! # Ok::<(), kms_testkit::TestEnvError>(()) }).unwrap();
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "backend")]
mod environment;
#[cfg(feature = "backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "backend")))]
pub mod forwarding;
pub mod openbao;
pub mod skipped;
#[cfg(feature = "vectors")]
#[cfg_attr(docsrs, doc(cfg(feature = "vectors")))]
pub mod vectors;

#[cfg(feature = "local")]
#[cfg_attr(docsrs, doc(cfg(feature = "local")))]
pub use environment::LocalTestEnvironment;
#[cfg(feature = "backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "backend")))]
pub use environment::TestEnvError;
#[cfg(feature = "vault")]
#[cfg_attr(docsrs, doc(cfg(feature = "vault")))]
pub use environment::VaultTestEnvironment;

/// The kms-core backend contract suite (`kms_core::testkit`).
#[cfg(feature = "backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "backend")))]
pub use kms_core::testkit as contract;

/// Generates one `#[test]` per contract case for a backend builder (`kms_core`'s macro).
#[cfg(feature = "backend")]
#[cfg_attr(docsrs, doc(cfg(feature = "backend")))]
pub use kms_core::backend_contract_tests;
