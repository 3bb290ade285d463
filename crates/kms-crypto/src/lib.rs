//! All the cryptography of **kms**, on [`ring`]: data keys, envelopes that wrap them under a
//! master key, the canonical encoding of encryption contexts, the spec's [`cipher::ObjectCipher`]
//! and a seekable streaming format for objects of any size.
//!
//! This crate sits just above `kms-types` and below every backend and the S3 encryption
//! service: the local backend seals its key records with [`aead::RandomNonceKey`] and wraps
//! data keys with [`envelope`]; the Vault backend sends [`context::canonical_context`] as
//! Transit `associated_data`; object data goes through [`stream`]. It is synchronous; the only
//! I/O is through the `Read`/`Write` (and, with `tokio`, `AsyncRead`) values callers hand it.
//! The stream seals its segments through the [`cipher::ObjectCipher`] of its algorithm, so a
//! cipher suite is one implementation. No other crate of the workspace calls ring's AEAD, HKDF,
//! HMAC or random number generator (`cargo xtask ci` checks): they use [`rand`], [`kdf`],
//! [`mac`] and the types here.
//!
//! | module | holds |
//! |---|---|
//! | [`keys`] | [`keys::PlaintextDataKey`], [`keys::WrappedDataKey`], [`keys::KeyEncryptionKey`]: roles as types |
//! | [`aead`] | [`aead::Algorithm`] and [`aead::RandomNonceKey`] (`nonce ‖ ciphertext ‖ tag`) |
//! | [`context`] | [`context::canonical_context`]: one injective, order-independent, versioned encoding |
//! | [`envelope`] | seal/open ≤ 4096 bytes, wrap/unwrap data keys, bound to key id, version and context |
//! | [`cipher`] | [`cipher::ObjectCipher`]: AES-256-GCM and ChaCha20-Poly1305, caller-chosen nonces, in place; [`cipher::SuiteCipher`] picks one at run time without `dyn` |
//! | [`stream`] | segments under a per-object key: `Write`/`Read` adapters, ranges, multipart, parallel |
//! | [`rand`] | random bytes, new key ids (UUID v7) and retry jitter for every crate above |
//! | [`kdf`], [`mac`] | HKDF-SHA256 and HMAC-SHA256 for the crates above (key derivation, SigV4, verifiers) |
//! | [`wrapping`] | BYOK: one-time RSA-OAEP-SHA-256 wrapping keys, the client-side wrap, the material fingerprint |
//! | [`rustfs`] | read-only readers of RustFS's key records, data-key envelopes and objects (migration) |
//!
//! Every failure is a [`CryptoError`], deliberately without detail; it converts into
//! `kms_types::error::KmsError` (`Crypto`, or `InvalidRequest` for caller mistakes).
//! Every format is versioned and specified byte by byte in `docs/formats.md`.
//!
//! ```
//! use kms_crypto::envelope::{self, Binding};
//! use kms_crypto::keys::{KeyEncryptionKey, PlaintextDataKey};
//! use kms_types::types::{EncryptionContext, KeySpec};
//!
//! let kek = KeyEncryptionKey::generate()?;
//! let context: EncryptionContext = [("bucket".to_owned(), "photos".to_owned())].into();
//! let binding = Binding { master_key_id: "master-1", master_key_version: 1, context: &context };
//!
//! let data_key = PlaintextDataKey::generate(KeySpec::Aes256)?;
//! let wrapped = envelope::wrap_data_key(&kek, &data_key, &binding)?;
//! // `wrapped` is plain bytes, stored with the object; the plaintext key never is.
//! let again = envelope::unwrap_data_key(&kek, &wrapped, &binding)?;
//! assert_eq!(again.expose_secret(), data_key.expose_secret());
//! # Ok::<(), kms_crypto::CryptoError>(())
//! ```
//!
//! # Feature flags
//!
//! - `tokio` (off by default): `stream::AsyncEncryptingReader` and `stream::AsyncDecryptingReader`,
//!   `tokio::io::AsyncRead` adapters for the streaming format. Without it the crate does not
//!   depend on tokio.
//!
//! ```toml
//! kms-crypto = { workspace = true, features = ["tokio"] }
//! ```
#![forbid(unsafe_code)]

pub mod aead;
pub mod cipher;
pub mod context;
pub mod envelope;
mod error;
pub mod kdf;
pub mod keys;
pub mod mac;
pub mod rand;
pub mod rustfs;
pub mod stream;
#[cfg(test)]
mod vectors;
pub mod wrapping;

pub use error::CryptoError;
