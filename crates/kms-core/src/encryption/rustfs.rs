//! The read-only path of the SSE pipeline for objects RustFS wrote:
//! [`EncryptionService::decrypt_rustfs_object`].
//!
//! It takes an object's stored `x-rustfs-encryption-*` metadata and body and returns the
//! plaintext. The object's data key is unwrapped **through the backend**: the RustFS
//! `DataKeyEnvelope` in `x-rustfs-encryption-key` goes to [`EncryptionService::decrypt`] like
//! any ciphertext, so the caller never holds master-key material; that works once the key was
//! migrated (`kms migrate rustfs-local`), under the usual key states and the backend's rule for
//! RustFS envelopes (the request context must equal the envelope's). The body is then opened
//! by `kms_crypto::rustfs` ([`object`](kms_crypto::rustfs::object) or
//! [`stream`](kms_crypto::rustfs::stream)).
//!
//! | [`RustfsBodyFormat`] | RustFS writer | context the data key is unwrapped with | body authenticated by |
//! |---|---|---|---|
//! | `WholeObject` | the KMS crate's `encrypt_object` helper | the `x-rustfs-encryption-context` AAD, whose `bucket` and `object_key` must name the object read | one tag over the body and the context |
//! | `Stream` | the S3 server's PUT (`crates/rio`) | the stored caller context plus `{bucket: "bucket/key"}`, as RustFS's server asks (a stored pair under the bucket's name must be that path) | every 8 KiB block and its position; the end by the caller's `plaintext_len` |
//! | `MultipartStream` | the S3 server's multipart upload | as `Stream` | every block and its part and position; the end of every part by the listed lengths |
//!
//! **What is released when.** Nothing before the whole body checked out: the plaintext is
//! returned only after every tag, every end header and every length matched, so a caller never
//! sees a byte of a body that turns out tampered, truncated or extended. The price is memory:
//! the body and its plaintext are both held (RustFS objects are migrated or read through, not
//! served at kms's streaming rates; new objects use kms's own streaming format).
//!
//! Errors: [`KmsError::InvalidRequest`] (field `rustfs`) for metadata that is not RustFS's
//! format or a part list that is not one; [`KmsError::Crypto`], opaque, for everything that
//! failed to authenticate (wrong key, another object's envelope or context, a tampered,
//! truncated, extended or reordered body, a wrong expected length); key-state and
//! authorization errors of `decrypt` as they are (e.g. `InvalidKeyState` for a disabled key).
//! New writes never use these formats.

use std::collections::BTreeMap;

use kms_crypto::rustfs::RustfsError;
use kms_crypto::rustfs::object::ObjectHeaders;
use kms_crypto::rustfs::stream::{StreamHeaders, StreamPart, decrypt_multipart_stream, decrypt_stream};
use kms_types::error::{KmsError, Result};
use kms_types::types::{DecryptRequest, EncryptionContext};
use zeroize::Zeroizing;

use super::service::EncryptionService;

/// Context keys RustFS's whole-object helper puts the object's location under.
const HELPER_BUCKET: &str = "bucket";
const HELPER_OBJECT_KEY: &str = "object_key";

/// Which RustFS writer produced the body, and what the object's metadata says about its length.
#[derive(Debug, Clone, Copy)]
pub enum RustfsBodyFormat<'a> {
    /// RustFS's whole-object helper (`x-rustfs-encryption-tag` present, body = plaintext length).
    WholeObject,
    /// A single-part object of the S3 streaming format, with its plaintext length from the
    /// object's metadata (the format does not authenticate its end).
    Stream {
        /// The object's plaintext length.
        plaintext_len: u64,
    },
    /// A multipart object of the S3 streaming format, with its part list from the object's
    /// metadata: every part, in order, with its number and plaintext length.
    MultipartStream {
        /// The object's parts.
        parts: &'a [StreamPart],
    },
}

/// A read of one RustFS object through the SSE pipeline.
#[derive(Debug, Clone, Copy)]
pub struct RustfsObjectRequest<'a> {
    /// The bucket the object is read from.
    pub bucket: &'a str,
    /// The key the object is read under.
    pub object_key: &'a str,
    /// The object's stored metadata (at least its `x-rustfs-encryption-*` entries), lower-case names.
    pub headers: &'a BTreeMap<String, String>,
    /// The body's format.
    pub format: RustfsBodyFormat<'a>,
}

impl EncryptionService {
    /// The plaintext of a RustFS-encrypted object (see the [module docs](self)): its data key
    /// unwrapped through the backend from the stored envelope, then its body authenticated
    /// whole before anything is returned.
    pub async fn decrypt_rustfs_object(
        &self,
        body: &[u8],
        request: RustfsObjectRequest<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        match request.format {
            RustfsBodyFormat::WholeObject => {
                let headers = ObjectHeaders::from_headers(request.headers)?;
                let names_object = headers.context.get(HELPER_BUCKET).map(String::as_str) == Some(request.bucket)
                    && headers.context.get(HELPER_OBJECT_KEY).map(String::as_str) == Some(request.object_key);
                if !names_object {
                    return Err(unauthenticated());
                }
                let data_key = self
                    .unwrap_rustfs_data_key(headers.envelope_bytes(), &headers.master_key_id, &headers.context)
                    .await?;
                Ok(headers.open_body(&data_key, body)?)
            }
            RustfsBodyFormat::Stream { plaintext_len } => {
                let headers = self.stream_headers(&request, plaintext_len)?;
                let data_key = self.unwrap_stream_key(&headers, &request).await?;
                Ok(decrypt_stream(&data_key, &headers.base_nonce, body, plaintext_len)?)
            }
            RustfsBodyFormat::MultipartStream { parts } => {
                let total = parts.iter().try_fold(0u64, |sum, part| sum.checked_add(part.plaintext_len));
                let total = total.ok_or(RustfsError::Malformed("stream part length"))?;
                let headers = self.stream_headers(&request, total)?;
                let data_key = self.unwrap_stream_key(&headers, &request).await?;
                Ok(decrypt_multipart_stream(&data_key, &headers.base_nonce, body, parts)?)
            }
        }
    }

    /// The stream's headers; a stored `original-size` must agree with the caller's length.
    fn stream_headers(&self, request: &RustfsObjectRequest<'_>, plaintext_len: u64) -> Result<StreamHeaders> {
        let headers = StreamHeaders::from_headers(request.headers)?;
        if headers.original_size.is_some_and(|size| size != plaintext_len) {
            return Err(RustfsError::Malformed("original-size").into());
        }
        Ok(headers)
    }

    async fn unwrap_stream_key(
        &self,
        headers: &StreamHeaders,
        request: &RustfsObjectRequest<'_>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let context = headers.request_context(request.bucket, request.object_key)?;
        self.unwrap_rustfs_data_key(headers.envelope_bytes(), &headers.master_key_id, &context).await
    }

    /// The 32-byte data key in a RustFS envelope, decrypted by the backend with `context`.
    async fn unwrap_rustfs_data_key(
        &self,
        envelope: &[u8],
        master_key_id: &str,
        context: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let response = self
            .decrypt(DecryptRequest {
                ciphertext_blob: envelope.to_vec(),
                encryption_context: context.clone(),
                key_id: Some(master_key_id.to_owned()),
            })
            .await?;
        let data_key = Zeroizing::new(response.plaintext.expose_secret().to_vec());
        if data_key.len() != 32 {
            return Err(unauthenticated());
        }
        Ok(data_key)
    }
}

fn unauthenticated() -> KmsError {
    KmsError::from(RustfsError::Unauthenticated)
}
