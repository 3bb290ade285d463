//! What object stores call: [`service::EncryptionService`], and its S3 server-side
//! encryption pipeline.
//!
//! | module | holds |
//! |---|---|
//! | [`service`] | [`service::EncryptionService`]: the KMS operations, default key |
//! | [`sse`] | SSE modes, [`sse::CustomerKey`], [`sse::ObjectContext`], [`sse::ObjectMetadata`], [`sse::S3Headers`] |
//! | [`pipeline`] | `encrypt_stream`, `decrypt_stream`, multipart uploads (methods of `EncryptionService`) |
//! | [`stream`] | the async readers: [`stream::EncryptStream`], [`stream::PartStream`], [`stream::DecryptStream`], [`stream::RangeFetcher`] |
//! | [`rewrap`] | `rewrap` and the resumable bulk `rewrap_all` |
//! | [`rustfs`] | `decrypt_rustfs_object`: the read-only path for objects RustFS wrote (`x-rustfs-encryption-*`) |
//! | [`key_cache`] | [`key_cache::KmsUnavailablePolicy`]: what reads do when the KMS is down |
//!
//! Every module but [`service`] is the S3 pipeline and needs feature `sse`.
//!
//! `docs/sse-integration.md` describes the modes, headers, metadata, context rules,
//! multipart uploads, ranges, rotation and the KMS-unavailable policy, with a worked
//! PutObject/GetObject example.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::encryption::pipeline::DecryptStreamRequest;
//! use kms_core::encryption::service::EncryptionService;
//! use kms_core::encryption::sse::{ObjectContext, SseMode};
//! use kms_core::manager::{KmsManager, ManagerOptions};
//! use kms_core::mock::MemoryBackend;
//! use tokio::io::AsyncReadExt;
//!
//! let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
//! let service = EncryptionService::new(Arc::new(manager)).with_default_key_id("store-default");
//!
//! // PUT: encrypt while streaming; store the bytes and the metadata.
//! let body = b"hello, encrypted world".to_vec();
//! let object = ObjectContext { bucket: "photos".into(), object_key: "cat.txt".into(), sse: SseMode::S3 };
//! let mut put = service.encrypt_stream(&body[..], object).await?;
//! let mut stored = Vec::new();
//! put.read_to_end(&mut stored).await?;
//! assert_eq!(put.response_headers().get("x-amz-server-side-encryption"), Some("AES256"));
//! let metadata = put.finish()?;
//!
//! // GET bytes 7..16.
//! let plan = metadata.plan(7..16)?;
//! let fetched: Vec<u8> = plan.fetch_ranges().into_iter()
//!     .flat_map(|r| stored[r.start as usize..r.end as usize].to_vec()).collect();
//! let request = DecryptStreamRequest {
//!     bucket: "photos", object_key: "cat.txt", metadata: &metadata, customer_key: None, range: Some(7..16),
//! };
//! let mut get = service.decrypt_stream(&fetched[..], request).await?;
//! let mut range = Vec::new();
//! get.read_to_end(&mut range).await?;
//! assert_eq!(range, b"encrypted");
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

pub mod aliases;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod key_cache;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod pipeline;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod rewrap;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod rustfs;
pub mod service;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod sse;
#[cfg(feature = "sse")]
#[cfg_attr(docsrs, doc(cfg(feature = "sse")))]
pub mod stream;
