//! The streaming format: objects of any size as fixed-size, individually authenticated
//! segments under a per-object key, with random access and multipart uploads.
//!
//! Version 1 layout (every byte in `docs/formats.md`, "Streaming format"):
//!
//! ```text
//! header (81 bytes):
//!   0   4   magic "KMSS"
//!   4   1   format version 0x01
//!   5   1   algorithm id (0x01 AES-256-GCM, 0x02 ChaCha20-Poly1305)
//!   6   4   segment size S (plaintext bytes per segment), u32 BE, 16..=4 MiB
//!   10  32  salt (random)
//!   42  7   nonce prefix (random)
//!   49  32  key commitment
//! segments: ciphertext ‖ tag(16), each of S plaintext bytes but the last (1..=S bytes; 0 only
//!   for an empty stream)
//! ```
//!
//! * **Key derivation.** PRK = HKDF-Extract-SHA256(salt, data key); segment key =
//!   HKDF-Expand(PRK, "kms-stream-v1 segment key" ‖ header\[0..10\] ‖ u32 BE part number ‖
//!   canonical context); commitment key likewise with "kms-stream-v1 commitment key". The
//!   commitment is HMAC-SHA256(commitment key, header\[0..49\]): a wrong data key, context or
//!   part number, or any change to the header, fails at the header, before any segment.
//! * **Nonces.** prefix(7) ‖ u32 BE segment number ‖ last flag (0x00 / 0x01): truncation,
//!   reordering, duplication and appended data all fail authentication.
//! * **Random access.** [`ObjectLayout::plan`] maps a plaintext range to the header and the
//!   segments to fetch; [`decrypt_range`] or [`DecryptingReader::range`] decrypt them.
//! * **Multipart.** Each part is its own stream, with its part number bound into the
//!   derivation; their concatenation is the object ([`ObjectLayout::multipart`]).
//!
//! ```
//! use std::io::{Read, Write};
//! use kms_crypto::keys::PlaintextDataKey;
//! use kms_crypto::stream::{DecryptingReader, EncryptingWriter, ObjectLayout, Part, StreamParams};
//! use kms_types::types::{EncryptionContext, KeySpec};
//!
//! let data_key = PlaintextDataKey::generate(KeySpec::Aes256)?;
//! let context: EncryptionContext = [("bucket".to_owned(), "photos".to_owned())].into();
//! let plaintext = vec![7u8; 200_000];
//!
//! let mut writer = EncryptingWriter::new(Vec::new(), &data_key, &context, Part::Whole, StreamParams::default())?;
//! writer.write_all(&plaintext)?;
//! let ciphertext = writer.finish()?;
//!
//! let mut back = Vec::new();
//! DecryptingReader::new(&ciphertext[..], &data_key, &context, Part::Whole).read_to_end(&mut back)?;
//! assert_eq!(back, plaintext);
//!
//! // A ranged read fetches only the header and the segments covering the range.
//! let layout = ObjectLayout::single(StreamParams::default().segment_size, plaintext.len() as u64)?;
//! let plan = layout.plan(150_000..150_010)?;
//! let fetched: Vec<u8> = plan.fetch_ranges().into_iter()
//!     .flat_map(|r| ciphertext[r.start as usize..r.end as usize].to_vec())
//!     .collect();
//! let range = kms_crypto::stream::decrypt_range(&data_key, &context, &plan, &fetched)?;
//! assert_eq!(&range[..], &plaintext[150_000..150_010]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "tokio")]
mod async_io;
mod buffer;
mod io;
mod keys;
mod layout;
mod pump;
mod scratch;

#[cfg(feature = "tokio")]
pub use async_io::{AsyncDecryptingReader, AsyncEncryptingReader};
pub use buffer::{
    decrypt, decrypt_into, decrypt_object, decrypt_object_into, decrypt_range, decrypt_range_into, encrypt,
    encrypt_into, encrypt_into_vec, encrypt_parallel,
};
pub use io::{DecryptingReader, EncryptingReader, EncryptingWriter};
pub use keys::{COMMITMENT_LEN, Header, NONCE_PREFIX_LEN, Part, SALT_LEN, StreamOpener, StreamParams, StreamSealer};
pub use layout::{ObjectLayout, PartLayout, PartRange, RangePlan, ciphertext_len, plaintext_len, segment_count};

/// The first four bytes of every stream.
pub const MAGIC: [u8; 4] = *b"KMSS";
/// Version byte of the streaming format.
pub const STREAM_FORMAT_VERSION: u8 = 1;
/// Length of the stream header.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 4 + SALT_LEN + NONCE_PREFIX_LEN + COMMITMENT_LEN;
/// Default plaintext bytes per segment: 64 KiB.
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
/// Smallest segment size a header may declare.
pub const MIN_SEGMENT_SIZE: u32 = 16;
/// Largest segment size a header may declare (4 MiB): a hostile header cannot make a reader
/// allocate more than this per segment.
pub const MAX_SEGMENT_SIZE: u32 = 4 * 1024 * 1024;
/// Most segments in one stream (the segment number is 32 bits): 256 TiB at the default
/// segment size.
pub const MAX_SEGMENTS: u64 = 1 << 32;

#[cfg(test)]
mod kat;
