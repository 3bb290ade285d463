//! The three SSE modes: [`SseKind`] (what an object records), [`SseMode`] (how to encrypt a
//! new object, read from the request headers) and the SSE-C [`CustomerKey`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::headers::{self, AES256, AWS_KMS};

/// Length of an SSE-C customer key: 256 bits.
pub const CUSTOMER_KEY_LEN: usize = 32;

/// Which of the three server-side encryption modes an object uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SseKind {
    /// SSE-S3: the store's default master key.
    #[serde(rename = "SSE-S3")]
    S3,
    /// SSE-KMS: a named master key and a caller encryption context.
    #[serde(rename = "SSE-KMS")]
    Kms,
    /// SSE-C: a key the customer sends with every request; the KMS is not involved.
    #[serde(rename = "SSE-C")]
    Customer,
}

impl SseKind {
    /// `SSE-S3`, `SSE-KMS` or `SSE-C`: the name in metadata and in the context.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "SSE-S3",
            Self::Kms => "SSE-KMS",
            Self::Customer => "SSE-C",
        }
    }
}

impl fmt::Display for SseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SSE-C customer key: 32 bytes, checked against the MD5 the client sent.
///
/// Never stored: the object keeps only a keyed verifier, so a wrong key is refused before any
/// data is read. Not `Clone`, zeroized on drop, redacted in `Debug`.
pub struct CustomerKey {
    key: Zeroizing<[u8; CUSTOMER_KEY_LEN]>,
    md5: String,
}

impl CustomerKey {
    /// The key `key` (32 bytes), whose MD5 the client sent as `key_md5` (base64, the
    /// `...-customer-key-MD5` header). Refuses another length or an MD5 that does not match.
    pub fn new(key: &[u8], key_md5: &str) -> Result<Self> {
        let bytes: [u8; CUSTOMER_KEY_LEN] = key
            .try_into()
            .map_err(|_| KmsError::invalid_request(headers::SSE_C_KEY, "an SSE-C key is 256 bits (32 bytes) long"))?;
        let key = Zeroizing::new(bytes);
        let md5 = Self::md5_of(&key[..]);
        if md5 != key_md5.trim() {
            return Err(KmsError::invalid_request(
                headers::SSE_C_KEY_MD5,
                "the MD5 of the customer key does not match the one sent",
            ));
        }
        Ok(Self { key, md5 })
    }

    /// The key and its MD5 as the headers carry them (both base64).
    pub fn from_base64(key_b64: &str, key_md5_b64: &str) -> Result<Self> {
        let raw = Zeroizing::new(
            B64.decode(key_b64.trim())
                .map_err(|_| KmsError::invalid_request(headers::SSE_C_KEY, "the customer key is not valid base64"))?,
        );
        Self::new(&raw, key_md5_b64)
    }

    /// Base64 of the MD5 of `key`: what a client sends as `...-customer-key-MD5`.
    pub fn md5_of(key: &[u8]) -> String {
        B64.encode(md5::Md5::digest(key))
    }

    /// Base64 of the key's MD5 (the value of the `...-customer-key-MD5` response header).
    pub fn key_md5(&self) -> &str {
        &self.md5
    }

    pub(crate) fn expose_secret(&self) -> &[u8] {
        &self.key[..]
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerKey").field("key", &"[REDACTED]").field("md5", &self.md5).finish()
    }
}

/// How to encrypt a new object.
#[derive(Debug)]
#[non_exhaustive]
pub enum SseMode {
    /// SSE-S3: the service's default key (created on first use).
    S3,
    /// SSE-KMS: `key_id` (the default key when `None`) and a caller context, which the object
    /// needs again, identical, to be read; its keys may not start with
    /// [`RESERVED_CONTEXT_PREFIX`](super::RESERVED_CONTEXT_PREFIX).
    Kms {
        /// The master key; `None` for the default key.
        key_id: Option<String>,
        /// The caller's encryption context.
        context: EncryptionContext,
    },
    /// SSE-C with the customer's key.
    Customer(CustomerKey),
}

impl SseMode {
    /// The mode's kind.
    pub fn kind(&self) -> SseKind {
        match self {
            Self::S3 => SseKind::S3,
            Self::Kms { .. } => SseKind::Kms,
            Self::Customer(_) => SseKind::Customer,
        }
    }

    /// SSE-KMS with `key_id` and no caller context.
    pub fn kms(key_id: impl Into<String>) -> Self {
        Self::Kms { key_id: Some(key_id.into()), context: EncryptionContext::new() }
    }

    /// Reads the SSE request headers of a PUT or CreateMultipartUpload; `get` returns a
    /// header's value by its lower-case name. `None` when the request asks for no encryption.
    ///
    /// Refuses (as `InvalidRequest` naming the header) an unknown `x-amz-server-side-encryption`
    /// value, a KMS key id or context without `aws:kms`, both SSE and SSE-C, an SSE-C
    /// algorithm other than `AES256`, a missing key or MD5, a key that is not 32 bytes, an MD5
    /// that does not match, and a context that is not base64 of a JSON object of strings.
    pub fn from_request_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Option<Self>> {
        let sse = get(headers::SSE);
        let key_id = get(headers::SSE_KMS_KEY_ID);
        let context = get(headers::SSE_CONTEXT);
        if let Some(algorithm) = get(headers::SSE_C_ALGORITHM) {
            if sse.is_some() {
                return Err(KmsError::invalid_request(headers::SSE, "SSE and SSE-C cannot be combined"));
            }
            if algorithm != AES256 {
                return Err(KmsError::invalid_request(headers::SSE_C_ALGORITHM, "only AES256 is supported"));
            }
            let key = get(headers::SSE_C_KEY)
                .ok_or_else(|| KmsError::invalid_request(headers::SSE_C_KEY, "SSE-C requires the customer key"))?;
            let md5 = get(headers::SSE_C_KEY_MD5)
                .ok_or_else(|| KmsError::invalid_request(headers::SSE_C_KEY_MD5, "SSE-C requires the key's MD5"))?;
            return CustomerKey::from_base64(key, md5).map(|k| Some(Self::Customer(k)));
        }
        if get(headers::SSE_C_KEY).is_some() || get(headers::SSE_C_KEY_MD5).is_some() {
            return Err(KmsError::invalid_request(headers::SSE_C_ALGORITHM, "SSE-C requires the customer algorithm"));
        }
        match sse {
            None if key_id.is_some() || context.is_some() => {
                Err(KmsError::invalid_request(headers::SSE, "a KMS key id or context requires aws:kms"))
            }
            None => Ok(None),
            Some(AES256) if key_id.is_some() || context.is_some() => {
                Err(KmsError::invalid_request(headers::SSE, "a KMS key id or context requires aws:kms"))
            }
            Some(AES256) => Ok(Some(Self::S3)),
            Some(AWS_KMS) => {
                let context = context.map(decode_context_header).transpose()?.unwrap_or_default();
                Ok(Some(Self::Kms { key_id: key_id.map(str::to_owned), context }))
            }
            Some(_) => Err(KmsError::invalid_request(headers::SSE, "must be AES256 or aws:kms")),
        }
    }
}

fn decode_context_header(value: &str) -> Result<EncryptionContext> {
    let bad = || KmsError::invalid_request(headers::SSE_CONTEXT, "must be base64 of a JSON object of strings");
    let json = B64.decode(value.trim()).map_err(|_| bad())?;
    serde_json::from_slice(&json).map_err(|_| bad())
}
