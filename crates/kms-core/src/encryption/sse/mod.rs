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

//!
//! | module | holds |
//! |---|---|
//! | [`mode`] | [`SseKind`], [`SseMode`] (from the request headers), the SSE-C [`CustomerKey`] |
//! | [`headers`] | the S3 header names and values, [`S3Headers`] |
//! | [`context`] | [`ObjectContext`], [`object_encryption_context`] and the reserved context keys |
//! | [`metadata`] | [`ObjectMetadata`], [`PartInfo`] |
//!
//! Every item is also re-exported here, so `sse::ObjectMetadata` and `sse::headers::SSE` both
//! name what they always did.

pub mod context;
pub mod headers;
pub mod metadata;
pub mod mode;

pub use context::{
    CONTEXT_BUCKET, CONTEXT_MODE, CONTEXT_OBJECT, ObjectContext, RESERVED_CONTEXT_PREFIX, object_encryption_context,
};
pub use headers::{AES256, AWS_KMS, S3Headers};
pub use metadata::{DATA_CIPHER, MAX_PART_NUMBER, METADATA_FORMAT_VERSION, ObjectMetadata, PartInfo};
pub use mode::{CUSTOMER_KEY_LEN, CustomerKey, SseKind, SseMode};

#[cfg(test)]
mod tests;
