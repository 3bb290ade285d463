//! Objects written by RustFS's whole-object helper (`ObjectEncryptionService::encrypt_object`),
//! read from their `x-rustfs-encryption-*` headers and body.
//!
//! | header | value |
//! |---|---|
//! | `x-rustfs-encryption-key-id` | the master key id |
//! | `x-rustfs-encryption-algorithm` | `AES256` or `aws:kms` (AES-256-GCM), `ChaCha20Poly1305` |
//! | `x-rustfs-encryption-iv` | base64 of the 12-byte nonce |
//! | `x-rustfs-encryption-tag` | base64 of the 16-byte tag (kept apart from the body) |
//! | `x-rustfs-encryption-key` | base64 of the [`DataKeyEnvelope`] bytes |
//! | `x-rustfs-encryption-context` | the AAD: compact JSON of the context with sorted keys |
//!
//! The body is exactly as long as the plaintext. What is authenticated: the whole body and the
//! context string, under one tag, so a truncated, extended or altered body or a changed context
//! is refused. The data key inside the envelope must equal what the body was sealed with, so a
//! swapped envelope fails the tag too. The header names and the algorithm are not bound, but an
//! algorithm changed between the two AEADs fails the tag.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_types::types::EncryptionContext;
use zeroize::Zeroizing;

use super::RustfsError;
use super::envelope::DataKeyEnvelope;
use crate::aead::Algorithm;
use crate::cipher::new_cipher;
use crate::keys::KeyEncryptionKey;

/// Header prefix of every RustFS object-encryption header.
pub const HEADER_PREFIX: &str = "x-rustfs-encryption-";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DATA_KEY_LEN: usize = 32;

/// The encryption headers of one object written by RustFS's whole-object helper, parsed.
#[derive(Debug, Clone)]
pub struct ObjectHeaders {
    /// The master key id that wrapped the object's data key.
    pub master_key_id: String,
    /// The body's AEAD.
    pub algorithm: Algorithm,
    /// The object's encryption context (parsed from the AAD string).
    pub context: EncryptionContext,
    /// The data key's envelope.
    pub envelope: DataKeyEnvelope,
    envelope_bytes: Vec<u8>,
    iv: [u8; NONCE_LEN],
    tag: [u8; TAG_LEN],
    aad: Vec<u8>,
}

impl ObjectHeaders {
    /// Reads the `x-rustfs-encryption-*` headers from `headers` (lower-case names). Refused: a
    /// missing header, bad base64, an IV or tag of the wrong length, an unknown algorithm, a
    /// context that is not a JSON object of strings, an envelope that does not parse or names
    /// another key than `x-rustfs-encryption-key-id`.
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Result<Self, RustfsError> {
        let get = |name: &'static str| {
            headers.get(&format!("{HEADER_PREFIX}{name}")).map(String::as_str).ok_or(RustfsError::Malformed(name))
        };
        let base64 = |name: &'static str| STANDARD.decode(get(name)?).map_err(|_| RustfsError::Malformed(name));
        let algorithm = match get("algorithm")? {
            "AES256" | "aws:kms" => Algorithm::Aes256Gcm,
            "ChaCha20Poly1305" => Algorithm::ChaCha20Poly1305,
            _ => return Err(RustfsError::Unsupported("x-rustfs-encryption-algorithm")),
        };
        let iv = base64("iv")?.try_into().map_err(|_| RustfsError::Malformed("iv"))?;
        let tag = base64("tag")?.try_into().map_err(|_| RustfsError::Malformed("tag"))?;
        let envelope_bytes = base64("key")?;
        let envelope = DataKeyEnvelope::parse(&envelope_bytes)?;
        let aad = get("context")?.as_bytes().to_vec();
        let context: EncryptionContext = serde_json::from_slice(&aad).map_err(|_| RustfsError::Malformed("context"))?;
        let master_key_id = get("key-id")?.to_owned();
        if envelope.master_key_id != master_key_id {
            return Err(RustfsError::Malformed("key-id"));
        }
        Ok(Self { master_key_id, algorithm, context, envelope, envelope_bytes, iv, tag, aad })
    }

    /// The plaintext of `body`, with the data key unwrapped by `master_key` (the material of
    /// [`master_key_id`](Self::master_key_id)). Every authentication failure, of the envelope
    /// or of the body, is [`RustfsError::Unauthenticated`].
    pub fn decrypt(&self, master_key: &KeyEncryptionKey, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, RustfsError> {
        let data_key = self.envelope.unwrap(master_key, &self.context)?;
        self.open_body(&data_key, body)
    }

    /// The envelope's bytes as stored (decoded from base64): what a KMS that holds the master
    /// key decrypts, with [`context`](Self::context), to the object's data key.
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }

    /// The plaintext of `body` under `data_key`, already unwrapped (by a KMS, from
    /// [`envelope_bytes`](Self::envelope_bytes)). A data key other than 32 bytes, and every
    /// tag failure, is [`RustfsError::Unauthenticated`].
    pub fn open_body(&self, data_key: &[u8], body: &[u8]) -> Result<Zeroizing<Vec<u8>>, RustfsError> {
        if data_key.len() != DATA_KEY_LEN {
            return Err(RustfsError::Unauthenticated);
        }
        let cipher = new_cipher(self.algorithm, data_key)?;
        Ok(cipher.decrypt(body, &self.iv, &self.tag, &self.aad)?)
    }
}
