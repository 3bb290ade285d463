//! RustFS's `DataKeyEnvelope`: the ciphertext its local backend returns from
//! `generate_data_key` and `encrypt`.
//!
//! Compact JSON (`serde_json::to_vec`):
//! `{"key_id","master_key_id","key_spec","encrypted_key":[bytes],"nonce":[12 bytes],
//! "encryption_context":{..},"created_at"}` plus an optional `master_key_version`.
//! `encrypted_key` is AES-256-GCM ciphertext‖tag of the data key (or of an `encrypt` payload)
//! under the 32-byte material of `master_key_id`, with `nonce` and **no AAD**. The envelope's
//! own `key_id` is a fresh UUID per envelope, not a key id.
//!
//! What is authenticated: only the wrapped bytes. The master key id, key spec and context are
//! plain JSON beside them; RustFS checks the context as strings (and skips the check when the
//! request context is empty). kms checks it as strictly as its own envelopes: the request
//! context must **equal** the envelope's, as maps, empty or not ([`DataKeyEnvelope::unwrap`]).
//! That is still a comparison, not cryptography: someone who can rewrite the envelope can
//! rewrite its context; `docs/migration.md` says so, and `rewrap` moves such envelopes to
//! kms's own format, which binds the context.

use std::fmt;

use kms_types::types::EncryptionContext;
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{RustfsError, timestamp};
use crate::cipher::{Aes256GcmCipher, ObjectCipher};
use crate::keys::KeyEncryptionKey;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The fields RustFS's `is_data_key_envelope` requires.
const REQUIRED_FIELDS: [&str; 7] =
    ["key_id", "master_key_id", "key_spec", "encrypted_key", "nonce", "encryption_context", "created_at"];

/// An envelope's `key_spec`: what kind of data key it claims to wrap (not authenticated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum EnvelopeKeySpec {
    /// A 32-byte AES key (also the spec of every `encrypt` payload).
    #[serde(rename = "AES_256")]
    Aes256,
    /// A 16-byte AES key.
    #[serde(rename = "AES_128")]
    Aes128,
    /// A 32-byte ChaCha20 key.
    #[serde(rename = "ChaCha20")]
    ChaCha20,
}

#[derive(Deserialize)]
struct RawEnvelope {
    key_id: String,
    master_key_id: String,
    #[serde(default)]
    master_key_version: Option<u32>,
    key_spec: EnvelopeKeySpec,
    encrypted_key: Vec<u8>,
    nonce: Vec<u8>,
    encryption_context: EncryptionContext,
    created_at: String,
}

/// A parsed RustFS data-key envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyEnvelope {
    /// The envelope's own id (a UUID per envelope, **not** a key id).
    pub envelope_id: String,
    /// The RustFS (and, once migrated, kms) key that wrapped it.
    pub master_key_id: String,
    /// The master key's version, when RustFS recorded one (never on its local backend).
    pub master_key_version: Option<u32>,
    /// The claimed key spec.
    pub key_spec: EnvelopeKeySpec,
    /// The context stored beside the wrapped key.
    pub context: EncryptionContext,
    /// When it was made.
    pub created_at: OffsetDateTime,
    nonce: [u8; NONCE_LEN],
    encrypted_key: Vec<u8>,
}

impl DataKeyEnvelope {
    /// Whether `bytes` look like a RustFS envelope rather than a kms ciphertext: a JSON object
    /// (first byte `{`) with the seven required fields, as RustFS's `is_data_key_envelope`
    /// decides. kms's own ciphertexts are binary and never start with `{`.
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.first() == Some(&b'{')
            && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
                .is_ok_and(|fields| REQUIRED_FIELDS.iter().all(|name| fields.contains_key(*name)))
    }

    /// Parses an envelope. Refused: invalid JSON, a missing or duplicate field, an unknown key
    /// spec, a nonce other than 12 bytes, wrapped bytes shorter than a tag, a bad timestamp.
    pub fn parse(bytes: &[u8]) -> Result<Self, RustfsError> {
        let raw: RawEnvelope =
            serde_json::from_slice(bytes).map_err(|_| RustfsError::Malformed("data-key envelope"))?;
        let nonce = raw.nonce.as_slice().try_into().map_err(|_| RustfsError::Malformed("data-key envelope nonce"))?;
        if raw.encrypted_key.len() < TAG_LEN {
            return Err(RustfsError::Malformed("data-key envelope encrypted_key"));
        }
        if raw.master_key_id.is_empty() {
            return Err(RustfsError::Malformed("data-key envelope master_key_id"));
        }
        Ok(Self {
            created_at: timestamp::parse(&raw.created_at, "data-key envelope created_at")?,
            envelope_id: raw.key_id,
            master_key_id: raw.master_key_id,
            master_key_version: raw.master_key_version,
            key_spec: raw.key_spec,
            context: raw.encryption_context,
            nonce,
            encrypted_key: raw.encrypted_key,
        })
    }

    /// The wrapped plaintext (a data key, or an `encrypt` payload), unwrapped with the 32-byte
    /// material of [`master_key_id`](Self::master_key_id). `request_context` must equal the
    /// envelope's context (as maps); a different context, a wrong key or tampered bytes are
    /// all [`RustfsError::Unauthenticated`].
    pub fn unwrap(
        &self,
        master_key: &KeyEncryptionKey,
        request_context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, RustfsError> {
        if *request_context != self.context {
            return Err(RustfsError::Unauthenticated);
        }
        let (ciphertext, tag) = self.encrypted_key.split_at(self.encrypted_key.len() - TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| RustfsError::Malformed("data-key envelope tag"))?;
        let cipher = Aes256GcmCipher::new(master_key.expose_secret())?;
        Ok(cipher.decrypt(ciphertext, &self.nonce, &tag, &[])?)
    }
}

impl DataKeyEnvelope {
    /// The AES-256-GCM nonce and `ciphertext ‖ tag` of the wrapped bytes (no AAD), for a key
    /// store that keeps the material itself and opens them there: the Vault backend hands them
    /// to Transit as `vault:v1:base64(nonce ‖ ciphertext ‖ tag)`. Check the context with
    /// [`context_matches`](Self::context_matches) first, as [`unwrap`](Self::unwrap) does.
    pub fn sealed(&self) -> (&[u8; NONCE_LEN], &[u8]) {
        (&self.nonce, &self.encrypted_key)
    }

    /// Whether `request_context` equals the envelope's context as a map (kms's rule, an empty
    /// request included; see [`unwrap`](Self::unwrap)).
    pub fn context_matches(&self, request_context: &EncryptionContext) -> bool {
        *request_context == self.context
    }
}

impl fmt::Debug for DataKeyEnvelope {
    /// Everything but the wrapped bytes, which say nothing to a reader.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyEnvelope")
            .field("envelope_id", &self.envelope_id)
            .field("master_key_id", &self.master_key_id)
            .field("key_spec", &self.key_spec)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}
