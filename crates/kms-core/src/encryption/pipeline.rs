//! The S3 PUT/GET pipeline of [`EncryptionService`]: `encrypt_stream`, `decrypt_stream`,
//! multipart uploads, and the KMS-unavailable policy.
//!
//! One data key per object (per multipart upload), from the KMS for SSE-S3/SSE-KMS, random
//! and wrapped under a key derived from the customer key for SSE-C. The object's data is in
//! `kms-crypto`'s streaming format under that key, with the object's encryption context
//! (bucket, object key, mode, caller context) and the part number bound into every stream.

use std::ops::Range;

use kms_crypto::envelope::{self, Binding};
use kms_crypto::keys::{KeyEncryptionKey, PlaintextDataKey, WrappedDataKey};
use kms_crypto::stream::{AsyncDecryptingReader, AsyncEncryptingReader, DEFAULT_SEGMENT_SIZE, Part, StreamParams};
use kms_types::error::{KmsError, Result};
use kms_types::types::{DecryptRequest, EncryptionContext, GenerateDataKeyRequest, KeySpec};
use tokio::io::{AsyncRead, AsyncSeek};
use zeroize::Zeroizing;

use super::key_cache::{KmsUnavailablePolicy, cache_id, is_outage};
use super::service::EncryptionService;
use super::sse::{
    CustomerKey, MAX_PART_NUMBER, ObjectContext, ObjectMetadata, S3Headers, SseKind, SseMode, headers,
    object_encryption_context,
};
use super::stream::{DecryptStream, EncryptStream, PartStream, RangeFetcher};

/// Plaintext bytes per segment of every object this service writes (64 KiB).
pub const SEGMENT_SIZE: u32 = DEFAULT_SEGMENT_SIZE;

/// Length of the SSE-C key-derivation salt.
const CUSTOMER_SALT_LEN: usize = 32;
const CUSTOMER_KEK_LABEL: &[u8] = b"kms-sse-c v1 key-encryption key";
const CUSTOMER_VERIFIER_LABEL: &[u8] = b"kms-sse-c v1 verifier";
/// The binding of an SSE-C wrapped data key (it has no master key).
const CUSTOMER_BINDING_ID: &str = "sse-c";

/// A GET: which object, its stored metadata, the customer key of an SSE-C object, and an
/// optional plaintext byte range (end exclusive; HTTP's `bytes=a-b` is `a..b+1`).
#[derive(Debug, Clone)]
pub struct DecryptStreamRequest<'a> {
    /// The bucket the object is read from.
    pub bucket: &'a str,
    /// The key the object is read under.
    pub object_key: &'a str,
    /// The metadata stored with it.
    pub metadata: &'a ObjectMetadata,
    /// The customer key (SSE-C objects only).
    pub customer_key: Option<&'a CustomerKey>,
    /// The plaintext range to read; `None` for the whole object.
    pub range: Option<Range<u64>>,
}

/// An open multipart upload: the metadata to keep with it (it holds the wrapped data key
/// every part is encrypted under) and the response headers of CreateMultipartUpload.
#[derive(Debug, Clone)]
pub struct MultipartUpload {
    /// The upload's metadata: pass it to `encrypt_part`, then `complete_multipart`.
    pub metadata: ObjectMetadata,
    /// The S3 response headers.
    pub headers: S3Headers,
}

/// One UploadPart: the object, the open upload's metadata, the part number and, for SSE-C,
/// the customer key (S3 sends it with every part).
#[derive(Debug, Clone, Copy)]
pub struct PartRequest<'a> {
    /// The bucket.
    pub bucket: &'a str,
    /// The object key.
    pub object_key: &'a str,
    /// The metadata from `create_multipart_upload`.
    pub upload: &'a ObjectMetadata,
    /// The part number, 1..=10000.
    pub part_number: u32,
    /// The customer key (SSE-C uploads only).
    pub customer_key: Option<&'a CustomerKey>,
}

/// The SSE-C keys derived from a customer key and an object's salt.
struct CustomerKeys {
    kek: KeyEncryptionKey,
    verifier_key: Zeroizing<[u8; 32]>,
}

fn derive_customer_keys(key: &CustomerKey, salt: &[u8]) -> Result<CustomerKeys> {
    let mut kek = Zeroizing::new([0u8; 32]);
    kms_crypto::kdf::hkdf_sha256(salt, key.expose_secret(), &[CUSTOMER_KEK_LABEL], &mut kek[..])?;
    let mut verifier_key = Zeroizing::new([0u8; 32]);
    kms_crypto::kdf::hkdf_sha256(salt, key.expose_secret(), &[CUSTOMER_VERIFIER_LABEL], &mut verifier_key[..])?;
    Ok(CustomerKeys { kek: KeyEncryptionKey::from_bytes(&kek[..])?, verifier_key })
}

fn customer_binding(context: &EncryptionContext) -> Binding<'_> {
    Binding { master_key_id: CUSTOMER_BINDING_ID, master_key_version: 1, context }
}

fn params() -> StreamParams {
    StreamParams { segment_size: SEGMENT_SIZE, ..StreamParams::default() }
}

impl EncryptionService {
    /// Starts a PUT: a fresh data key for the object (from the KMS for SSE-S3 and SSE-KMS,
    /// random and wrapped under the customer key for SSE-C), and a reader that yields the
    /// encrypted object as it reads `plaintext`. Store what it yields, then call
    /// [`EncryptStream::finish`] for the [`ObjectMetadata`] to store beside it;
    /// [`EncryptStream::response_headers`] are the PUT's SSE response headers.
    ///
    /// SSE-S3 uses the default key (created on first use); SSE-KMS without a key id too.
    pub async fn encrypt_stream<R: AsyncRead + Unpin>(
        &self,
        plaintext: R,
        object: ObjectContext,
    ) -> Result<EncryptStream<R>> {
        let ObjectContext { bucket, object_key, sse } = object;
        let (data_key, metadata, context) = self.new_object_key(&bucket, &object_key, &sse).await?;
        let headers = metadata.response_headers(customer_key_of(&sse));
        let reader = AsyncEncryptingReader::new(plaintext, &data_key, &context, Part::Whole, params())?;
        Ok(EncryptStream::new(reader, metadata, headers))
    }

    /// Starts a GET: unwraps the object's data key (through the KMS, or with the customer key
    /// for SSE-C, whose verifier is checked first) and returns a reader of the plaintext.
    ///
    /// `ciphertext` yields the stored object, or for a ranged GET the concatenation of
    /// `metadata.plan(range)?.fetch_ranges()` (only the part headers and the segments covering
    /// the range; [`RangeFetcher`] reads them from a seekable source, and
    /// [`decrypt_seekable`](Self::decrypt_seekable) does both).
    ///
    /// Fails before reading any data for: malformed metadata (`InvalidRequest`), an SSE-C
    /// object without its key or with another key (`Unauthorized`), a key that is disabled or
    /// pending deletion (`InvalidKeyState`), metadata or a context that does not belong to
    /// this object (`Crypto`), and an unavailable KMS (unless the data-key cache is enabled,
    /// see [`KmsUnavailablePolicy`]).
    pub async fn decrypt_stream<R: AsyncRead + Unpin>(
        &self,
        ciphertext: R,
        request: DecryptStreamRequest<'_>,
    ) -> Result<DecryptStream<R>> {
        let metadata = request.metadata;
        metadata.validate()?;
        let layout = metadata.layout()?;
        let plan = request.range.map(|r| layout.plan(r)).transpose()?;
        let (data_key, context) =
            self.open_object_key(request.bucket, request.object_key, metadata, request.customer_key).await?;
        let headers = metadata.response_headers(request.customer_key);
        let (reader, len) = match plan {
            None => (AsyncDecryptingReader::object(ciphertext, &data_key, &context, &layout)?, layout.plaintext_len()),
            Some(plan) => (AsyncDecryptingReader::range(ciphertext, &data_key, &context, &plan), plan.plaintext_len()),
        };
        Ok(DecryptStream::new(reader, len, headers))
    }

    /// [`decrypt_stream`](Self::decrypt_stream) over a seekable stored object: reads only the
    /// bytes the request needs (the whole object, or the headers and covering segments of the
    /// range).
    pub async fn decrypt_seekable<S: AsyncRead + AsyncSeek + Unpin>(
        &self,
        source: S,
        request: DecryptStreamRequest<'_>,
    ) -> Result<DecryptStream<RangeFetcher<S>>> {
        request.metadata.validate()?;
        let ranges = match &request.range {
            None => std::iter::once(0..request.metadata.ciphertext_size).collect::<Vec<_>>(),
            Some(range) => request.metadata.plan(range.clone())?.fetch_ranges(),
        };
        self.decrypt_stream(RangeFetcher::new(source, ranges), request).await
    }

    /// CreateMultipartUpload: one data key for the whole object, wrapped in the returned
    /// metadata; nothing else is kept between parts.
    pub async fn create_multipart_upload(&self, object: ObjectContext) -> Result<MultipartUpload> {
        let (_data_key, mut metadata, _) = self.new_object_key(&object.bucket, &object.object_key, &object.sse).await?;
        metadata.parts = Some(Vec::new());
        let headers = metadata.response_headers(customer_key_of(&object.sse));
        Ok(MultipartUpload { metadata, headers })
    }

    /// UploadPart: unwraps the upload's data key and returns a reader yielding the encrypted
    /// part, its number bound into the stream. Parts are independent: any order, any
    /// concurrency, re-uploads allowed. [`PartStream::finish`] gives the part's sizes for
    /// [`ObjectMetadata::complete_multipart`].
    pub async fn encrypt_part<R: AsyncRead + Unpin>(
        &self,
        plaintext: R,
        request: PartRequest<'_>,
    ) -> Result<PartStream<R>> {
        let upload = request.upload;
        if upload.parts.as_ref().is_none_or(|p| !p.is_empty()) {
            return Err(KmsError::invalid_request("upload", "not the metadata of an open multipart upload"));
        }
        let part = Part::number(request.part_number)
            .filter(|_| request.part_number <= MAX_PART_NUMBER)
            .ok_or_else(|| KmsError::invalid_request("part_number", "must be between 1 and 10000"))?;
        let (data_key, context) =
            self.open_object_key(request.bucket, request.object_key, upload, request.customer_key).await?;
        let headers = upload.response_headers(request.customer_key);
        let reader = AsyncEncryptingReader::new(plaintext, &data_key, &context, part, params())?;
        Ok(PartStream::new(reader, request.part_number, upload.segment_size, headers))
    }

    /// Sets what reads do when the KMS is unavailable (default: fail). Changing the policy
    /// drops every cached data key.
    pub fn set_kms_unavailable_policy(&self, policy: KmsUnavailablePolicy) -> Result<()> {
        self.data_keys.set_policy(policy)
    }

    /// The policy in force.
    pub fn kms_unavailable_policy(&self) -> KmsUnavailablePolicy {
        self.data_keys.policy()
    }

    /// Drops every cached data key (e.g. after revoking access during an outage).
    pub fn flush_data_key_cache(&self) {
        self.data_keys.flush();
    }

    /// Number of data keys in the cache (0 unless the policy caches).
    pub fn cached_data_keys(&self) -> usize {
        self.data_keys.len()
    }

    /// A new data key for an object, its metadata (sizes not yet known) and its context.
    async fn new_object_key(
        &self,
        bucket: &str,
        object_key: &str,
        sse: &SseMode,
    ) -> Result<(PlaintextDataKey, ObjectMetadata, EncryptionContext)> {
        let kind = sse.kind();
        let no_context = EncryptionContext::new();
        let caller = match sse {
            SseMode::Kms { context, .. } => context,
            _ => &no_context,
        };
        let context = object_encryption_context(bucket, object_key, kind, caller)?;
        let mut metadata = ObjectMetadata::new(kind, SEGMENT_SIZE);
        metadata.context = caller.clone();
        let data_key = match sse {
            SseMode::Customer(key) => {
                let data_key = PlaintextDataKey::generate(KeySpec::Aes256)?;
                let mut salt = vec![0u8; CUSTOMER_SALT_LEN];
                kms_crypto::rand::fill(&mut salt)?;
                let keys = derive_customer_keys(key, &salt)?;
                let wrapped = envelope::wrap_data_key(&keys.kek, &data_key, &customer_binding(&context))?;
                metadata.customer_key_verifier =
                    Some(kms_crypto::mac::hmac_sha256(&keys.verifier_key[..], &salt).to_vec());
                metadata.customer_key_salt = Some(salt);
                metadata.wrapped_data_key = wrapped.into_vec();
                data_key
            }
            SseMode::S3 | SseMode::Kms { .. } => {
                let requested = match sse {
                    SseMode::Kms { key_id, .. } => key_id.as_deref(),
                    _ => None,
                };
                let key_id = self.resolve_key_id(requested).await?;
                let request =
                    GenerateDataKeyRequest { key_id, key_spec: KeySpec::Aes256, encryption_context: context.clone() };
                let response = match self.generate_data_key(request.clone()).await {
                    // The default key is created on first use.
                    Err(KmsError::KeyNotFound { .. }) if requested.is_none() => {
                        self.ensure_default_key().await?;
                        self.generate_data_key(request).await?
                    }
                    other => other?,
                };
                let data_key = PlaintextDataKey::from_bytes(response.plaintext_key.expose_secret())?;
                let id = cache_id(&response.key_id, response.key_version, &response.ciphertext_blob, &context);
                self.data_keys.remember(id, &data_key);
                metadata.master_key_id = Some(response.key_id);
                metadata.master_key_version = Some(response.key_version);
                metadata.wrapped_data_key = response.ciphertext_blob;
                data_key
            }
        };
        Ok((data_key, metadata, context))
    }

    /// The data key of an existing object (or open upload) and its context.
    pub(super) async fn open_object_key(
        &self,
        bucket: &str,
        object_key: &str,
        metadata: &ObjectMetadata,
        customer_key: Option<&CustomerKey>,
    ) -> Result<(PlaintextDataKey, EncryptionContext)> {
        metadata.validate()?;
        let context = object_encryption_context(bucket, object_key, metadata.mode, &metadata.context)?;
        if metadata.mode == SseKind::Customer {
            let key = customer_key.ok_or_else(|| {
                KmsError::invalid_request(headers::SSE_C_KEY, "the object is SSE-C encrypted: send its customer key")
            })?;
            let salt = metadata.customer_key_salt.as_deref().unwrap_or_default();
            let keys = derive_customer_keys(key, salt)?;
            let verifier = metadata.customer_key_verifier.as_deref().unwrap_or_default();
            kms_crypto::mac::verify_hmac_sha256(&keys.verifier_key[..], salt, verifier).map_err(|_| {
                KmsError::Unauthorized {
                    message: "the SSE-C customer key is not the key the object was encrypted with".into(),
                    source: None,
                }
            })?;
            let wrapped = WrappedDataKey::from(metadata.wrapped_data_key.clone());
            let data_key = envelope::unwrap_data_key(&keys.kek, &wrapped, &customer_binding(&context))?;
            return Ok((data_key, context));
        }
        if customer_key.is_some() {
            return Err(KmsError::invalid_request(headers::SSE_C_ALGORITHM, "the object is not SSE-C encrypted"));
        }
        let (Some(key_id), Some(version)) = (metadata.master_key_id.as_deref(), metadata.master_key_version) else {
            return Err(KmsError::invalid_request("metadata.mode", "missing master key"));
        };
        let id = cache_id(key_id, version, &metadata.wrapped_data_key, &context);
        let request = DecryptRequest {
            ciphertext_blob: metadata.wrapped_data_key.clone(),
            encryption_context: context.clone(),
            key_id: Some(key_id.to_owned()),
        };
        match self.decrypt(request).await {
            Ok(response) => {
                if response.key_id != key_id || response.key_version != version {
                    // The metadata names another key or version than the one that wrapped it.
                    return Err(KmsError::crypto());
                }
                let data_key = PlaintextDataKey::from_bytes(response.plaintext.expose_secret())?;
                self.data_keys.remember(id, &data_key);
                Ok((data_key, context))
            }
            Err(e) if is_outage(&e) => match self.data_keys.recall(&id) {
                Some(data_key) => {
                    tracing::warn!(key_id, error = %e, "kms unavailable: serving a cached data key");
                    Ok((data_key, context))
                }
                None => Err(e),
            },
            Err(e) => {
                // The KMS answered and refused: a cached copy must not outlive that answer.
                self.data_keys.forget(&id);
                Err(e)
            }
        }
    }
}

fn customer_key_of(sse: &SseMode) -> Option<&CustomerKey> {
    match sse {
        SseMode::Customer(key) => Some(key),
        _ => None,
    }
}
