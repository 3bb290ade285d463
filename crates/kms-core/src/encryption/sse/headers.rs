//! The S3 header names the pipeline reads and writes (lower case, as HTTP/2 sends them),
//! their values, and [`S3Headers`], the response headers of a PUT, GET or HEAD
//! ([`ObjectMetadata::response_headers`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::metadata::ObjectMetadata;
use super::mode::{CustomerKey, SseKind};

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

/// The value of [`SSE`] for SSE-S3 and of [`SSE_C_ALGORITHM`].
pub const AES256: &str = "AES256";
/// The value of [`SSE`] for SSE-KMS.
pub const AWS_KMS: &str = "aws:kms";

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

impl ObjectMetadata {
    /// The S3 response headers of this object; `customer_key` supplies the MD5 header of an
    /// SSE-C object (S3 returns the MD5 of the key the request carried).
    pub fn response_headers(&self, customer_key: Option<&CustomerKey>) -> S3Headers {
        let mut out = Vec::new();
        match self.mode {
            SseKind::S3 => out.push((SSE, AES256.to_owned())),
            SseKind::Kms => {
                out.push((SSE, AWS_KMS.to_owned()));
                if let Some(id) = &self.master_key_id {
                    out.push((SSE_KMS_KEY_ID, id.clone()));
                }
                if !self.context.is_empty() {
                    let json = serde_json::to_vec(&self.context).expect("a string map serializes");
                    out.push((SSE_CONTEXT, B64.encode(json)));
                }
            }
            SseKind::Customer => {
                out.push((SSE_C_ALGORITHM, AES256.to_owned()));
                if let Some(key) = customer_key {
                    out.push((SSE_C_KEY_MD5, key.key_md5().to_owned()));
                }
            }
        }
        S3Headers(out)
    }
}
