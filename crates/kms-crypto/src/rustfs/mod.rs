//! Read-only readers of RustFS's KMS formats, for migrating a RustFS deployment to kms.
//!
//! RustFS (github rustfs/rustfs, `crates/kms`) persists three things a migration must read;
//! each has its own module. kms never *writes* any of them: new data always uses kms's own
//! formats (`docs/formats.md`), and `docs/migration.md` tells the whole story.
//!
//! | module | reads | authenticated by |
//! |---|---|---|
//! | [`record`] | a local key directory's `<key_id>.key` records, under the Argon2id KEK of [`MasterKeyString`] (or the legacy SHA-256 KEK, or in the clear) | AES-256-GCM over the 32-byte material only; the JSON metadata around it (state, tags, dates) is **not** authenticated |
//! | [`envelope`] | a `DataKeyEnvelope` (compact JSON): a data key, or an `encrypt` payload, wrapped under a master key's material | AES-256-GCM over the wrapped bytes only; the envelope's key ids, key spec and context are **not** bound |
//! | [`object`] | an object written by RustFS's whole-object helper (`x-rustfs-encryption-*` headers) | AES-256-GCM or ChaCha20-Poly1305 over the whole body, AAD = the stored context JSON; one tag, so truncation is detected |
//! | [`stream`] | single-part and multipart objects of RustFS's S3 streaming format (8 KiB AES-256-GCM blocks) | each block and its part and position (not in the older layouts, which reuse nonces); **not the end**: kms requires every end header and the expected lengths from the caller |
//!
//! Every failure is a [`RustfsError`]: [`Malformed`](RustfsError::Malformed) (not RustFS's
//! format, with the part that is wrong), [`Unsupported`](RustfsError::Unsupported) (a valid
//! RustFS value kms does not read) or [`Unauthenticated`](RustfsError::Unauthenticated), which
//! deliberately does not say whether the key, the master-key string or the data was wrong.
//!
//! kms's SSE pipeline reads objects through these with the data key unwrapped by the backend
//! (`kms_core::encryption::rustfs`); `docs/migration.md` tells the whole story.

pub mod envelope;
mod error;
pub mod object;
pub mod record;
pub mod stream;
mod timestamp;

pub use error::RustfsError;
pub use record::MasterKeyString;
