//! [`ObjectMetadata`]: what an object store keeps beside an encrypted object (versioned,
//! [`METADATA_FORMAT_VERSION`]; specified field by field in `docs/sse-integration.md`), with
//! the parts of a multipart object and the layout and range plans read from it.

use std::ops::Range;

use kms_crypto::stream::{ObjectLayout, Part, PartLayout, RangePlan, STREAM_FORMAT_VERSION};
use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;
use serde::{Deserialize, Serialize};

use super::mode::SseKind;

/// Version of the [`ObjectMetadata`] shape (its `"v"` field).
pub const METADATA_FORMAT_VERSION: u32 = 1;

/// The `algorithm` of every object: AES-256-GCM segments of `kms-crypto`'s streaming format.
pub const DATA_CIPHER: &str = "AES-256-GCM";

/// Largest S3 part number.
pub const MAX_PART_NUMBER: u32 = 10_000;

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
