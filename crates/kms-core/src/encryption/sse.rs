//! The vocabulary of server-side encryption: SSE modes, customer keys, the object context,
//! the S3 headers and the stored object metadata.
//!
//! [`ObjectMetadata`] is what an object store keeps beside an encrypted object (as one
//! internal metadata entry, [`ObjectMetadata::to_json`]); it is versioned
//! ([`METADATA_FORMAT_VERSION`]) and specified field by field in `docs/sse-integration.md`.
//! [`S3Headers`] are the response headers of a PUT, GET or HEAD.
//!
//! Every object's encryption context holds the bucket and the object key (and the SSE mode)
//! under reserved names ([`object_encryption_context`]): a wrapped data key, and every stream
//! of the object, only open for the object they were made for.

use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_crypto::stream::{ObjectLayout, Part, PartLayout, RangePlan, STREAM_FORMAT_VERSION};
use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;
use md5::Digest as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Version of the [`ObjectMetadata`] shape (its `"v"` field).
pub const METADATA_FORMAT_VERSION: u32 = 1;

/// Context keys starting with this prefix are reserved: a caller's SSE-KMS context may not
/// use them.
pub const RESERVED_CONTEXT_PREFIX: &str = "kms:";
/// Reserved context key holding the bucket.
pub const CONTEXT_BUCKET: &str = "kms:bucket";
/// Reserved context key holding the object key.
pub const CONTEXT_OBJECT: &str = "kms:object";
/// Reserved context key holding the SSE mode (`SSE-S3`, `SSE-KMS`, `SSE-C`).
pub const CONTEXT_MODE: &str = "kms:sse";

/// The `algorithm` of every object: AES-256-GCM segments of `kms-crypto`'s streaming format.
pub const DATA_CIPHER: &str = "AES-256-GCM";

/// Largest S3 part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

/// Length of an SSE-C customer key: 256 bits.
pub const CUSTOMER_KEY_LEN: usize = 32;

/// The S3 header names this module reads and writes (lower case, as HTTP/2 sends them).
pub mod headers {
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub const SSE: &str = "x-amz-server-side-encryption";
    /// The SSE-KMS master key id.
    pub const SSE_KMS_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
    /// The SSE-KMS caller encryption context: base64 of a JSON object of strings.
    pub const SSE_CONTEXT: &str = "x-amz-server-side-encryption-context";
    /// `AES256` for SSE-C.
    pub const SSE_C_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";
    /// The SSE-C customer key, base64 (request only, never stored or returned).
    pub const SSE_C_KEY: &str = "x-amz-server-side-encryption-customer-key";
    /// Base64 of the MD5 of the SSE-C customer key.
    pub const SSE_C_KEY_MD5: &str = "x-amz-server-side-encryption-customer-key-md5";
}

/// The value of [`headers::SSE`] for SSE-S3 and of [`headers::SSE_C_ALGORITHM`].
pub const AES256: &str = "AES256";
/// The value of [`headers::SSE`] for SSE-KMS.
pub const AWS_KMS: &str = "aws:kms";

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
    /// [`RESERVED_CONTEXT_PREFIX`].
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

/// A new object to encrypt: where it lives and how to encrypt it.
#[derive(Debug)]
pub struct ObjectContext {
    /// The bucket.
    pub bucket: String,
    /// The object key.
    pub object_key: String,
    /// The SSE mode.
    pub sse: SseMode,
}

/// The encryption context of an object: the caller's context (SSE-KMS) plus the bucket, the
/// object key and the mode under the reserved names [`CONTEXT_BUCKET`], [`CONTEXT_OBJECT`]
/// and [`CONTEXT_MODE`]. Refuses an empty bucket or key and a caller key in the reserved
/// namespace.
pub fn object_encryption_context(
    bucket: &str,
    object_key: &str,
    kind: SseKind,
    caller: &EncryptionContext,
) -> Result<EncryptionContext> {
    if bucket.is_empty() {
        return Err(KmsError::invalid_request("bucket", "must not be empty"));
    }
    if object_key.is_empty() {
        return Err(KmsError::invalid_request("object_key", "must not be empty"));
    }
    if let Some(reserved) = caller.keys().find(|k| k.starts_with(RESERVED_CONTEXT_PREFIX)) {
        return Err(KmsError::invalid_request(
            "encryption_context",
            format!("key {reserved:?} is in the reserved namespace {RESERVED_CONTEXT_PREFIX:?}"),
        ));
    }
    let mut context = caller.clone();
    context.insert(CONTEXT_BUCKET.into(), bucket.into());
    context.insert(CONTEXT_OBJECT.into(), object_key.into());
    context.insert(CONTEXT_MODE.into(), kind.as_str().into());
    Ok(context)
}

/// S3 response headers, in a fixed order, names in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Headers(Vec<(&'static str, String)>);

impl S3Headers {
    /// The value of `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_str()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One part of a completed multipart object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartInfo {
    /// The S3 part number, 1..=10000.
    pub number: u32,
    /// Plaintext bytes of the part.
    pub plaintext_size: u64,
    /// Stored (encrypted) bytes of the part.
    pub ciphertext_size: u64,
}

/// What an object store keeps beside an encrypted object (format version 1; every field in
/// `docs/sse-integration.md`). Produced by `encrypt_stream`, `create_multipart_upload` +
/// [`complete_multipart`](Self::complete_multipart), and `rewrap`; read back with
/// [`from_json`](Self::from_json).
///
/// It holds no secret: the data key is wrapped (under a master key, or for SSE-C under a key
/// derived from the customer key), and for SSE-C only a salted verifier of the customer key
/// is kept. The bucket and object key are not stored: the reader supplies them, so metadata
/// copied to another object does not open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ObjectMetadata {
    /// Format version of this record: [`METADATA_FORMAT_VERSION`].
    #[serde(rename = "v")]
    pub version: u32,
    /// The SSE mode.
    pub mode: SseKind,
    /// The data cipher (`AES-256-GCM`).
    pub algorithm: String,
    /// Version of `kms-crypto`'s streaming format the data is in.
    pub stream_version: u8,
    /// Plaintext bytes per segment.
    pub segment_size: u32,
    /// The master key wrapping the data key (SSE-S3, SSE-KMS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_id: Option<String>,
    /// The master key version wrapping it (SSE-S3, SSE-KMS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_version: Option<u32>,
    /// The wrapped data key (base64 in JSON).
    #[serde(with = "b64")]
    pub wrapped_data_key: Vec<u8>,
    /// The caller's SSE-KMS encryption context (without the reserved entries).
    #[serde(default, skip_serializing_if = "EncryptionContext::is_empty")]
    pub context: EncryptionContext,
    /// SSE-C: the random salt of the key derivation (base64).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub customer_key_salt: Option<Vec<u8>>,
    /// SSE-C: the keyed verifier of the customer key (base64).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub customer_key_verifier: Option<Vec<u8>>,
    /// Plaintext size of the object.
    pub plaintext_size: u64,
    /// Stored (encrypted) size of the object.
    pub ciphertext_size: u64,
    /// The parts of a multipart object, in order (`Some(empty)` while the upload is open);
    /// `None` for a single-part object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartInfo>>,
}

impl ObjectMetadata {
    pub(crate) fn new(mode: SseKind, segment_size: u32) -> Self {
        Self {
            version: METADATA_FORMAT_VERSION,
            mode,
            algorithm: DATA_CIPHER.to_owned(),
            stream_version: STREAM_FORMAT_VERSION,
            segment_size,
            master_key_id: None,
            master_key_version: None,
            wrapped_data_key: Vec::new(),
            context: EncryptionContext::new(),
            customer_key_salt: None,
            customer_key_verifier: None,
            plaintext_size: 0,
            ciphertext_size: 0,
            parts: None,
        }
    }

    /// The JSON form to store (one line, fields as documented).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metadata always serializes")
    }

    /// Reads the stored JSON form; refuses unknown fields and versions.
    pub fn from_json(json: &str) -> Result<Self> {
        let metadata: Self = serde_json::from_str(json)
            .map_err(|e| KmsError::invalid_request("metadata", format!("not SSE metadata: {e}")))?;
        metadata.validate()?;
        Ok(metadata)
    }

    /// Whether this is a multipart object (or an open multipart upload).
    pub fn is_multipart(&self) -> bool {
        self.parts.is_some()
    }

    /// Checks the framing: version, cipher, stream version, segment size, the fields each
    /// mode needs. Says nothing about authenticity (that is the keys' job).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: &str| Err(KmsError::invalid_request(format!("metadata.{field}"), message));
        if self.version != METADATA_FORMAT_VERSION {
            return bad("v", "unsupported metadata format version");
        }
        if self.algorithm != DATA_CIPHER {
            return bad("algorithm", "unsupported data cipher");
        }
        if self.stream_version != STREAM_FORMAT_VERSION {
            return bad("stream_version", "unsupported streaming format version");
        }
        if !(kms_crypto::stream::MIN_SEGMENT_SIZE..=kms_crypto::stream::MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return bad("segment_size", "out of range");
        }
        if self.wrapped_data_key.is_empty() {
            return bad("wrapped_data_key", "missing");
        }
        let has_master = self.master_key_id.is_some() && self.master_key_version.is_some();
        let has_customer = self.customer_key_salt.is_some() && self.customer_key_verifier.is_some();
        match self.mode {
            SseKind::Customer if !has_customer || self.master_key_id.is_some() || !self.context.is_empty() => {
                bad("mode", "SSE-C metadata needs the customer key salt and verifier, and no master key or context")
            }
            SseKind::S3 | SseKind::Kms if !has_master || self.customer_key_salt.is_some() => {
                bad("mode", "SSE-S3 and SSE-KMS metadata need the master key id and version")
            }
            SseKind::S3 if !self.context.is_empty() => bad("context", "SSE-S3 has no caller context"),
            _ => Ok(()),
        }
    }

    /// Where the object's streams lie (one for a single-part object, one per part).
    pub fn layout(&self) -> Result<ObjectLayout> {
        let layout = match &self.parts {
            None => ObjectLayout::single(self.segment_size, self.plaintext_size)?,
            Some(parts) => {
                let parts = parts
                    .iter()
                    .map(|p| {
                        Part::number(p.number)
                            .map(|part| PartLayout { part, plaintext_len: p.plaintext_size })
                            .ok_or_else(|| KmsError::invalid_request("metadata.parts", "part number 0"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                ObjectLayout::multipart(self.segment_size, parts)?
            }
        };
        if layout.plaintext_len() != self.plaintext_size || layout.ciphertext_len() != self.ciphertext_size {
            return Err(KmsError::invalid_request("metadata", "sizes do not match the layout"));
        }
        Ok(layout)
    }

    /// What to fetch for the plaintext bytes `range` (end exclusive): the stored byte ranges,
    /// `plan.fetch_ranges()`, whose concatenation `decrypt_stream` then takes. Only the part
    /// headers and the segments covering the range.
    pub fn plan(&self, range: Range<u64>) -> Result<RangePlan> {
        Ok(self.layout()?.plan(range)?)
    }

    /// The S3 response headers of this object; `customer_key` supplies the MD5 header of an
    /// SSE-C object (S3 returns the MD5 of the key the request carried).
    pub fn response_headers(&self, customer_key: Option<&CustomerKey>) -> S3Headers {
        let mut out = Vec::new();
        match self.mode {
            SseKind::S3 => out.push((headers::SSE, AES256.to_owned())),
            SseKind::Kms => {
                out.push((headers::SSE, AWS_KMS.to_owned()));
                if let Some(id) = &self.master_key_id {
                    out.push((headers::SSE_KMS_KEY_ID, id.clone()));
                }
                if !self.context.is_empty() {
                    let json = serde_json::to_vec(&self.context).expect("a string map serializes");
                    out.push((headers::SSE_CONTEXT, B64.encode(json)));
                }
            }
            SseKind::Customer => {
                out.push((headers::SSE_C_ALGORITHM, AES256.to_owned()));
                if let Some(key) = customer_key {
                    out.push((headers::SSE_C_KEY_MD5, key.key_md5().to_owned()));
                }
            }
        }
        S3Headers(out)
    }

    /// The metadata of the completed object from an open multipart upload's metadata and the
    /// parts the client chose, in ascending part order (numbers 1..=10000, strictly increasing,
    /// at least one). No KMS call: the data key is the upload's.
    pub fn complete_multipart(&self, parts: Vec<PartInfo>) -> Result<Self> {
        if self.parts.as_ref().is_none_or(|p| !p.is_empty()) {
            return Err(KmsError::invalid_request("upload", "not an open multipart upload"));
        }
        if parts.iter().any(|p| p.number == 0 || p.number > MAX_PART_NUMBER) {
            return Err(KmsError::invalid_request("parts", "part numbers are 1..=10000"));
        }
        let mut plaintext_size = 0u64;
        let mut ciphertext_size = 0u64;
        for p in &parts {
            let expected = kms_crypto::stream::ciphertext_len(p.plaintext_size, self.segment_size)?;
            if expected != p.ciphertext_size {
                return Err(KmsError::invalid_request("parts", "a part's sizes do not match"));
            }
            plaintext_size = plaintext_size.saturating_add(p.plaintext_size);
            ciphertext_size = ciphertext_size.saturating_add(p.ciphertext_size);
        }
        let mut done = self.clone();
        done.plaintext_size = plaintext_size;
        done.ciphertext_size = ciphertext_size;
        done.parts = Some(parts);
        done.layout()?; // increasing numbers, at least one part, sizes in range
        Ok(done)
    }
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(value))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => super::b64::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::b64")] Vec<u8>);
        Option::<Wrap>::deserialize(d).map(|w| w.map(|Wrap(v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MD5 of 32 zero bytes, computed independently
    /// (Python: `base64.b64encode(hashlib.md5(bytes(32)).digest())`).
    #[test]
    fn customer_key_md5_is_checked() {
        let key = [0u8; 32];
        let md5 = "cLyPS3KoaSFGi/joRB3OUQ==";
        assert_eq!(CustomerKey::md5_of(&key), md5);
        let k = CustomerKey::new(&key, md5).unwrap();
        assert_eq!(k.key_md5(), md5);
        let err = CustomerKey::new(&key, "AAAAAAAAAAAAAAAAAAAAAA==").unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == headers::SSE_C_KEY_MD5));
        let err = CustomerKey::new(&[0u8; 16], md5).unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == headers::SSE_C_KEY));
        let k = CustomerKey::from_base64(&B64.encode(key), md5).unwrap();
        assert_eq!(k.expose_secret(), &key);
        assert!(CustomerKey::from_base64("%%%", md5).is_err());
    }

    #[test]
    fn customer_key_debug_shows_no_key_material() {
        // Distinct bytes, so every encoding of the key is recognisable in the output.
        let key: [u8; 32] = std::array::from_fn(|i| 0xA0 + i as u8);
        let k = CustomerKey::new(&key, &CustomerKey::md5_of(&key)).unwrap();
        let shown = format!("{k:?} {k:#?}");
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        for encoding in [B64.encode(key), hex, format!("{key:?}"), format!("{:?}", &key[..4])] {
            assert!(!shown.contains(&encoding[..12]), "{encoding} in {shown}");
        }
        assert!(shown.contains("[REDACTED]"), "{shown}");
        assert!(shown.contains(&CustomerKey::md5_of(&key)), "the MD5 is not secret and helps debugging: {shown}");
    }

    #[test]
    fn request_headers_select_the_mode() {
        fn parse(pairs: &[(&str, &str)]) -> Result<Option<SseMode>> {
            SseMode::from_request_headers(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
        }
        assert!(parse(&[]).unwrap().is_none());
        assert_eq!(parse(&[(headers::SSE, "AES256")]).unwrap().unwrap().kind(), SseKind::S3);
        let ctx = B64.encode(br#"{"tenant":"a"}"#);
        match parse(&[(headers::SSE, "aws:kms"), (headers::SSE_KMS_KEY_ID, "k1"), (headers::SSE_CONTEXT, &ctx)])
            .unwrap()
            .unwrap()
        {
            SseMode::Kms { key_id, context } => {
                assert_eq!(key_id.as_deref(), Some("k1"));
                assert_eq!(context["tenant"], "a");
            }
            other => panic!("{other:?}"),
        }
        let key = B64.encode([0u8; 32]);
        let sse_c = [
            (headers::SSE_C_ALGORITHM, "AES256"),
            (headers::SSE_C_KEY, key.as_str()),
            (headers::SSE_C_KEY_MD5, "cLyPS3KoaSFGi/joRB3OUQ=="),
        ];
        assert_eq!(parse(&sse_c).unwrap().unwrap().kind(), SseKind::Customer);

        let bad: &[&[(&str, &str)]] = &[
            &[(headers::SSE, "aws:kms2")],
            &[(headers::SSE, "AES256"), (headers::SSE_KMS_KEY_ID, "k")],
            &[(headers::SSE_KMS_KEY_ID, "k")],
            &[(headers::SSE, "aws:kms"), (headers::SSE_CONTEXT, "not base64!")],
            &[(headers::SSE, "aws:kms"), (headers::SSE_CONTEXT, "WzFd")], // [1]
            &[(headers::SSE_C_ALGORITHM, "AES128"), (headers::SSE_C_KEY, &key)],
            &[(headers::SSE_C_ALGORITHM, "AES256"), (headers::SSE_C_KEY, &key)],
            &[(headers::SSE_C_KEY, &key)],
            &[(headers::SSE, "AES256"), sse_c[0], sse_c[1], sse_c[2]],
        ];
        for case in bad {
            assert!(matches!(parse(case), Err(KmsError::InvalidRequest { .. })), "{case:?}");
        }
    }

    #[test]
    fn context_always_names_the_object_and_refuses_reserved_keys() {
        let caller: EncryptionContext = [("tenant".to_owned(), "a".to_owned())].into();
        let ctx = object_encryption_context("b", "k/1", SseKind::Kms, &caller).unwrap();
        assert_eq!(ctx[CONTEXT_BUCKET], "b");
        assert_eq!(ctx[CONTEXT_OBJECT], "k/1");
        assert_eq!(ctx[CONTEXT_MODE], "SSE-KMS");
        assert_eq!(ctx["tenant"], "a");
        let reserved: EncryptionContext = [(CONTEXT_BUCKET.to_owned(), "x".to_owned())].into();
        assert!(object_encryption_context("b", "k", SseKind::Kms, &reserved).is_err());
        assert!(object_encryption_context("", "k", SseKind::S3, &EncryptionContext::new()).is_err());
        assert!(object_encryption_context("b", "", SseKind::S3, &EncryptionContext::new()).is_err());
    }

    fn kms_metadata() -> ObjectMetadata {
        let mut m = ObjectMetadata::new(SseKind::Kms, 65536);
        m.master_key_id = Some("k1".into());
        m.master_key_version = Some(2);
        m.wrapped_data_key = vec![1, 2, 3];
        m.context = [("tenant".to_owned(), "a".to_owned())].into();
        m.plaintext_size = 5;
        m.ciphertext_size = kms_crypto::stream::ciphertext_len(5, 65536).unwrap();
        m
    }

    /// The documented JSON shape, byte for byte (docs/sse-integration.md, "Internal metadata").
    #[test]
    fn json_shape_is_the_documented_one() {
        let m = kms_metadata();
        let json = m.to_json();
        assert_eq!(
            json,
            r#"{"v":1,"mode":"SSE-KMS","algorithm":"AES-256-GCM","stream_version":1,"segment_size":65536,"master_key_id":"k1","master_key_version":2,"wrapped_data_key":"AQID","context":{"tenant":"a"},"plaintext_size":5,"ciphertext_size":102}"#
        );
        assert_eq!(ObjectMetadata::from_json(&json).unwrap(), m);
        let mut c = ObjectMetadata::new(SseKind::Customer, 65536);
        c.wrapped_data_key = vec![9];
        c.customer_key_salt = Some(vec![0; 3]);
        c.customer_key_verifier = Some(vec![255; 3]);
        c.parts = Some(vec![PartInfo { number: 1, plaintext_size: 0, ciphertext_size: 97 }]);
        c.ciphertext_size = 97;
        let json = c.to_json();
        assert_eq!(
            json,
            r#"{"v":1,"mode":"SSE-C","algorithm":"AES-256-GCM","stream_version":1,"segment_size":65536,"wrapped_data_key":"CQ==","customer_key_salt":"AAAA","customer_key_verifier":"////","plaintext_size":0,"ciphertext_size":97,"parts":[{"number":1,"plaintext_size":0,"ciphertext_size":97}]}"#
        );
        assert_eq!(ObjectMetadata::from_json(&json).unwrap(), c);
    }

    #[test]
    fn malformed_metadata_is_refused_naming_the_field() {
        let json = kms_metadata().to_json();
        for (from, to, field) in [
            (r#""v":1"#, r#""v":2"#, "metadata.v"),
            (r#""AES-256-GCM""#, r#""AES-128-GCM""#, "metadata.algorithm"),
            (r#""stream_version":1"#, r#""stream_version":9"#, "metadata.stream_version"),
            (r#""segment_size":65536"#, r#""segment_size":8"#, "metadata.segment_size"),
            (r#""master_key_version":2,"#, "", "metadata.mode"),
            (r#""SSE-KMS""#, r#""SSE-C""#, "metadata.mode"),
            (r#""SSE-KMS""#, r#""SSE-S3""#, "metadata.context"),
        ] {
            let err = ObjectMetadata::from_json(&json.replace(from, to)).unwrap_err();
            assert!(matches!(err, KmsError::InvalidRequest { field: ref f, .. } if f == field), "{from}: {err:?}");
        }
        for broken in [r#"{"v":1}"#, "", "[]", &json.replace(r#""v":1"#, r#""v":1,"extra":0"#)] {
            assert!(ObjectMetadata::from_json(broken).is_err());
        }
        let mut sizes = kms_metadata();
        sizes.ciphertext_size += 1;
        assert!(sizes.layout().is_err());
    }

    #[test]
    fn headers_per_mode() {
        let kms = kms_metadata().response_headers(None);
        assert_eq!(kms.get("X-Amz-Server-Side-Encryption"), Some("aws:kms"));
        assert_eq!(kms.get(headers::SSE_KMS_KEY_ID), Some("k1"));
        assert_eq!(kms.get(headers::SSE_CONTEXT), Some(B64.encode(br#"{"tenant":"a"}"#).as_str()));
        let mut s3 = ObjectMetadata::new(SseKind::S3, 65536);
        s3.master_key_id = Some("default".into());
        assert_eq!(s3.response_headers(None).iter().collect::<Vec<_>>(), vec![(headers::SSE, "AES256")]);
        let c = ObjectMetadata::new(SseKind::Customer, 65536);
        let key = CustomerKey::new(&[0; 32], "cLyPS3KoaSFGi/joRB3OUQ==").unwrap();
        let h = c.response_headers(Some(&key));
        assert_eq!(h.get(headers::SSE_C_ALGORITHM), Some("AES256"));
        assert_eq!(h.get(headers::SSE_C_KEY_MD5), Some("cLyPS3KoaSFGi/joRB3OUQ=="));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn completing_a_multipart_upload_checks_the_parts() {
        let mut upload = kms_metadata();
        upload.plaintext_size = 0;
        upload.ciphertext_size = 0;
        upload.parts = Some(Vec::new());
        let part = |number, size| PartInfo {
            number,
            plaintext_size: size,
            ciphertext_size: kms_crypto::stream::ciphertext_len(size, 65536).unwrap(),
        };
        let done = upload.complete_multipart(vec![part(1, 100), part(3, 7)]).unwrap();
        assert_eq!(done.plaintext_size, 107);
        assert_eq!(done.layout().unwrap().parts().len(), 2);
        assert!(done.complete_multipart(vec![part(4, 1)]).is_err(), "already completed");
        assert!(upload.complete_multipart(vec![]).is_err());
        assert!(upload.complete_multipart(vec![part(2, 1), part(1, 1)]).is_err());
        assert!(upload.complete_multipart(vec![part(1, 1), part(1, 1)]).is_err());
        assert!(upload.complete_multipart(vec![part(0, 1)]).is_err());
        assert!(upload.complete_multipart(vec![part(10_001, 1)]).is_err());
        let mut lying = part(1, 10);
        lying.ciphertext_size += 1;
        assert!(upload.complete_multipart(vec![lying]).is_err());
        assert!(kms_metadata().complete_multipart(vec![part(1, 1)]).is_err(), "not a multipart upload");
    }
}
