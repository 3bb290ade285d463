//! The encryption context of an object: the caller's context plus the bucket, the object key
//! and the mode under reserved names, so a wrapped data key and every stream of the object
//! only open for the object they were made for.

use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;

use super::mode::{SseKind, SseMode};

/// Context keys starting with this prefix are reserved: a caller's SSE-KMS context may not
/// use them.
pub const RESERVED_CONTEXT_PREFIX: &str = "kms:";
/// Reserved context key holding the bucket.
pub const CONTEXT_BUCKET: &str = "kms:bucket";
/// Reserved context key holding the object key.
pub const CONTEXT_OBJECT: &str = "kms:object";
/// Reserved context key holding the SSE mode (`SSE-S3`, `SSE-KMS`, `SSE-C`).
pub const CONTEXT_MODE: &str = "kms:sse";

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
