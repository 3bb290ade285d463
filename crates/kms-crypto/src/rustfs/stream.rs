//! Objects of RustFS's S3 streaming format (`crates/rio/src/encrypt_reader.rs`), single-part
//! and multipart, read-only.
//!
//! A single-part body is one *segment*; a multipart body is the parts' segments concatenated
//! in part-number order. A segment is a run of blocks, then an end header:
//!
//! ```text
//! block:  u8 0x00 ‖ u24 LE len ‖ u32 LE crc32(plaintext) ‖ uvarint(plaintext_len) ‖ AES-256-GCM(ciphertext ‖ tag)
//!         (len = varint bytes + ciphertext and tag + 4)
//! end:    u8 0xFF ‖ 7 bytes (zero)
//! ```
//!
//! Each block holds at most 8 KiB of plaintext (fewer when RustFS's source returned a short
//! read), sealed with the object's data key and **no AAD**. Block `i`'s nonce is the segment's
//! nonce with its last four bytes (a big-endian u32) plus `i`, wrapping. The segment's nonce is
//! the base nonce (`x-rustfs-encryption-iv`) for a single-part object, and for part `n` of a
//! multipart object the base nonce with bytes 4..8 (a big-endian u32) plus `n`.
//!
//! Older RustFS wrote two other layouts, also read ([`NonceLayout`]): every block of a segment
//! under the segment's nonce itself (single-part), and for multipart the part number added to
//! bytes 8..12 instead of 4..8, with the block counter then added on top, or with that part
//! nonce for every block. A segment's blocks must all follow one layout; a segment mixing
//! layouts is refused.
//!
//! What is authenticated: each block's plaintext and, through the nonce, its part and position
//! in the current layout. The older layouts **reuse nonces** (every block of a segment, or part
//! `n` block `i + 1` and part `n + 1` block `i`): GCM does not protect such blocks against
//! reordering between the colliding positions, and nonce reuse under one key weakens GCM's
//! authenticity itself; `docs/migration.md` says to re-encrypt them. Nothing authenticates the
//! **end** of a segment: the end header is plain, and RustFS's own reader even accepts a stream
//! that stops at a block boundary. So kms requires every end header, refuses trailing bytes,
//! and requires the caller to pass the expected plaintext length of the object, and of every
//! part of a multipart object (from the object's metadata, stored apart from the body); a body
//! cut at a block boundary, or a part moved, dropped or repeated, is then refused.
//! The CRC32, stored in the clear, is not checked: the GCM tag covers the same bytes.
//!
//! Nothing is released before the whole body has been checked: both readers return the
//! plaintext only after every block, every end header and every length matched.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_types::types::EncryptionContext;
use zeroize::Zeroizing;

use super::RustfsError;
use super::envelope::DataKeyEnvelope;
use super::object::HEADER_PREFIX;
use crate::cipher::{Aes256GcmCipher, ObjectCipher};

/// Largest plaintext of one block.
pub const BLOCK_SIZE: usize = 8 * 1024;
/// Largest part number RustFS (like S3) accepts.
pub const MAX_PART_NUMBER: u32 = 10_000;
const HEADER_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TYPE_BLOCK: u8 = 0x00;
const TYPE_END: u8 = 0xFF;

/// One part of a multipart streaming object, as the object's metadata lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPart {
    /// The part number (1..=10000); it selects the part's nonce.
    pub number: u32,
    /// The part's plaintext length.
    pub plaintext_len: u64,
}

/// How a segment's block nonces were derived; which one a segment used is found by its first
/// block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceLayout {
    /// Current RustFS: the segment nonce plus the block index in bytes 8..12.
    Counter,
    /// Older single-part streams: the base nonce for every block.
    SingleNonce,
    /// Older multipart: base nonce plus the part number in bytes 8..12, plus the block index.
    LegacyPartCounter,
    /// Older multipart: base nonce plus the part number in bytes 8..12, for every block.
    LegacyPartSingleNonce,
}

/// The stored metadata of a streaming-format object that kms reads (lower-case names):
///
/// | header | value |
/// |---|---|
/// | `x-rustfs-encryption-key` | base64 of the data key's [`DataKeyEnvelope`] (required) |
/// | `x-rustfs-encryption-iv` | base64 of the 12-byte base nonce (required) |
/// | `x-rustfs-encryption-key-id` | the master key id; when present it must be the envelope's |
/// | `x-rustfs-encryption-context` | the caller's SSE-KMS context as a JSON object, any order; absent = empty |
/// | `x-rustfs-encryption-original-size` | the plaintext length, decimal; optional |
/// | `x-rustfs-encryption-algorithm` | optional; `AES256` or `aws:kms` (the stream is AES-256-GCM either way) |
///
/// A `x-rustfs-encryption-tag` header means a whole-object-helper object, not a stream: refused.
#[derive(Debug, Clone)]
pub struct StreamHeaders {
    /// The master key that wrapped the data key.
    pub master_key_id: String,
    /// The data key's envelope, parsed.
    pub envelope: DataKeyEnvelope,
    /// The base nonce.
    pub base_nonce: [u8; NONCE_LEN],
    /// The caller's context as stored (without the bucket pair RustFS adds).
    pub stored_context: EncryptionContext,
    /// The plaintext length, when stored.
    pub original_size: Option<u64>,
    envelope_bytes: Vec<u8>,
}

impl StreamHeaders {
    /// Reads the headers above. Refused ([`RustfsError::Malformed`] naming the header): a
    /// missing envelope or IV, bad base64, an IV other than 12 bytes, an envelope that does not
    /// parse or names another key than the key-id header, a context that is not a JSON object
    /// of strings, a size that is not a decimal u64, a tag header; an algorithm other than
    /// AES-256-GCM's two names is [`RustfsError::Unsupported`].
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Result<Self, RustfsError> {
        let get = |name: &str| headers.get(&format!("{HEADER_PREFIX}{name}")).map(String::as_str);
        let required = |name: &'static str| get(name).ok_or(RustfsError::Malformed(name));
        let base64 = |name: &'static str| STANDARD.decode(required(name)?).map_err(|_| RustfsError::Malformed(name));
        if get("tag").is_some() {
            return Err(RustfsError::Malformed("tag"));
        }
        if let Some(algorithm) = get("algorithm")
            && !matches!(algorithm, "AES256" | "aws:kms")
        {
            return Err(RustfsError::Unsupported("x-rustfs-encryption-algorithm"));
        }
        let base_nonce = base64("iv")?.try_into().map_err(|_| RustfsError::Malformed("iv"))?;
        let envelope_bytes = base64("key")?;
        let envelope = DataKeyEnvelope::parse(&envelope_bytes)?;
        if get("key-id").is_some_and(|id| id != envelope.master_key_id) {
            return Err(RustfsError::Malformed("key-id"));
        }
        let stored_context = match get("context") {
            Some(json) => serde_json::from_str(json).map_err(|_| RustfsError::Malformed("context"))?,
            None => EncryptionContext::new(),
        };
        let original_size = get("original-size")
            .map(|size| size.parse::<u64>().map_err(|_| RustfsError::Malformed("original-size")))
            .transpose()?;
        Ok(Self {
            master_key_id: envelope.master_key_id.clone(),
            envelope,
            base_nonce,
            stored_context,
            original_size,
            envelope_bytes,
        })
    }

    /// The envelope's bytes as stored (decoded from base64).
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }

    /// The context RustFS's S3 server unwraps the data key with, for the object `object_key`
    /// of `bucket`: the stored context plus `{bucket: "bucket/object_key"}` (the path cleaned
    /// as Go's `path.Clean` does). RustFS keeps a stored pair under the bucket's name as it is;
    /// kms requires it to be that same path, so an object's metadata and envelope only open
    /// for the object they were written for ([`RustfsError::Unauthenticated`] otherwise).
    pub fn request_context(&self, bucket: &str, object_key: &str) -> Result<EncryptionContext, RustfsError> {
        let path = bucket_path(bucket, object_key);
        let mut context = self.stored_context.clone();
        if context.entry(bucket.to_owned()).or_insert_with(|| path.clone()) != &path {
            return Err(RustfsError::Unauthenticated);
        }
        Ok(context)
    }
}

/// RustFS's `path_join_buf([bucket, key])`: the two joined with `/` and cleaned (`.` and empty
/// elements dropped, `..` applied), a trailing slash of the key kept.
fn bucket_path(bucket: &str, object_key: &str) -> String {
    let joined = if bucket.is_empty() { object_key.to_owned() } else { format!("{bucket}/{object_key}") };
    let rooted = joined.starts_with('/');
    let mut elements: Vec<&str> = Vec::new();
    for element in joined.split('/') {
        match element {
            "" | "." => {}
            ".." if elements.last().is_some_and(|last| *last != "..") => {
                elements.pop();
            }
            ".." if rooted => {}
            other => elements.push(other),
        }
    }
    let mut cleaned = elements.join("/");
    if rooted {
        cleaned.insert(0, '/');
    }
    if cleaned.is_empty() {
        cleaned.push('.');
    }
    if object_key.ends_with('/') && !cleaned.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

/// The plaintext of a single-part RustFS streaming body. `data_key` is the object's 32-byte
/// data key (unwrapped from its envelope), `base_nonce` the decoded `x-rustfs-encryption-iv`,
/// `expected_len` the object's plaintext size. Refused: a malformed header or block
/// ([`RustfsError::Malformed`]); a block that does not authenticate, a body cut anywhere
/// (mid-block, or at a block boundary with or without a forged end header), trailing bytes
/// ([`RustfsError::Unauthenticated`]).
pub fn decrypt_stream(
    data_key: &[u8],
    base_nonce: &[u8; NONCE_LEN],
    body: &[u8],
    expected_len: u64,
) -> Result<Zeroizing<Vec<u8>>, RustfsError> {
    decrypt_stream_with_layout(data_key, base_nonce, body, expected_len).map(|(plaintext, _)| plaintext)
}

/// [`decrypt_stream`], also saying which [`NonceLayout`] the body used (for a body without
/// blocks, [`NonceLayout::Counter`]).
pub fn decrypt_stream_with_layout(
    data_key: &[u8],
    base_nonce: &[u8; NONCE_LEN],
    body: &[u8],
    expected_len: u64,
) -> Result<(Zeroizing<Vec<u8>>, NonceLayout), RustfsError> {
    let cipher = cipher(data_key)?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(capacity(expected_len, body)?));
    let mut rest = body;
    let layouts = [(NonceLayout::Counter, *base_nonce), (NonceLayout::SingleNonce, *base_nonce)];
    let layout = read_segment(&cipher, &mut rest, &layouts, &mut plaintext)?;
    if !rest.is_empty() || plaintext.len() as u64 != expected_len {
        return Err(RustfsError::Unauthenticated);
    }
    Ok((plaintext, layout))
}

/// The plaintext of a multipart RustFS streaming body: the parts' segments concatenated.
/// `parts` lists every part of the object in order, with its plaintext length, as the object's
/// metadata does; the numbers must be strictly increasing and in 1..=10000
/// ([`RustfsError::Malformed`] otherwise, or for an empty list). Refused as
/// [`RustfsError::Unauthenticated`]: a block that does not authenticate as its part and
/// position, a part shorter or longer than listed, a missing end header, trailing bytes.
pub fn decrypt_multipart_stream(
    data_key: &[u8],
    base_nonce: &[u8; NONCE_LEN],
    body: &[u8],
    parts: &[StreamPart],
) -> Result<Zeroizing<Vec<u8>>, RustfsError> {
    decrypt_multipart_stream_with_layouts(data_key, base_nonce, body, parts).map(|(plaintext, _)| plaintext)
}

/// [`decrypt_multipart_stream`], also saying which [`NonceLayout`] each part used.
pub fn decrypt_multipart_stream_with_layouts(
    data_key: &[u8],
    base_nonce: &[u8; NONCE_LEN],
    body: &[u8],
    parts: &[StreamPart],
) -> Result<(Zeroizing<Vec<u8>>, Vec<NonceLayout>), RustfsError> {
    check_parts(parts)?;
    let cipher = cipher(data_key)?;
    let total = parts.iter().try_fold(0u64, |sum, part| sum.checked_add(part.plaintext_len));
    let total = total.ok_or(RustfsError::Malformed("stream part length"))?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(capacity(total, body)?));
    let mut rest = body;
    let mut found = Vec::with_capacity(parts.len());
    for part in parts {
        let start = plaintext.len();
        let layouts = [
            (NonceLayout::Counter, offset_nonce(base_nonce, 4, part.number)),
            (NonceLayout::LegacyPartCounter, offset_nonce(base_nonce, 8, part.number)),
            (NonceLayout::LegacyPartSingleNonce, offset_nonce(base_nonce, 8, part.number)),
        ];
        found.push(read_segment(&cipher, &mut rest, &layouts, &mut plaintext)?);
        if (plaintext.len() - start) as u64 != part.plaintext_len {
            return Err(RustfsError::Unauthenticated);
        }
    }
    if !rest.is_empty() {
        return Err(RustfsError::Unauthenticated);
    }
    Ok((plaintext, found))
}

fn check_parts(parts: &[StreamPart]) -> Result<(), RustfsError> {
    if parts.is_empty() {
        return Err(RustfsError::Malformed("stream part list"));
    }
    let mut previous = 0;
    for part in parts {
        if part.number <= previous || part.number > MAX_PART_NUMBER {
            return Err(RustfsError::Malformed("stream part number"));
        }
        previous = part.number;
    }
    Ok(())
}

fn cipher(data_key: &[u8]) -> Result<Aes256GcmCipher, RustfsError> {
    if data_key.len() != 32 {
        return Err(RustfsError::Malformed("stream data key"));
    }
    Ok(Aes256GcmCipher::new(data_key)?)
}

/// The buffer to reserve: the expected length, but never more than the body could hold.
fn capacity(expected_len: u64, body: &[u8]) -> Result<usize, RustfsError> {
    let expected = usize::try_from(expected_len).map_err(|_| RustfsError::Malformed("stream length"))?;
    Ok(expected.min(body.len()))
}

/// Reads one segment (blocks, then the end header) from the front of `rest` into `out`, and
/// says which of `layouts` (each with its segment nonce, in order of preference) it used. A
/// layout stays possible while every block so far authenticated under it; layouts that agree
/// on a block's nonce (all of them at block 0) are told apart by the next block.
fn read_segment(
    cipher: &Aes256GcmCipher,
    rest: &mut &[u8],
    layouts: &[(NonceLayout, [u8; NONCE_LEN])],
    out: &mut Vec<u8>,
) -> Result<NonceLayout, RustfsError> {
    let mut possible = layouts.to_vec();
    let mut index: u32 = 0;
    loop {
        let header: &[u8; HEADER_LEN] =
            rest.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(RustfsError::Unauthenticated)?;
        *rest = &rest[HEADER_LEN..];
        match header[0] {
            TYPE_END => return possible.first().map(|(layout, _)| *layout).ok_or(RustfsError::Unauthenticated),
            TYPE_BLOCK => {}
            _ => return Err(RustfsError::Malformed("stream block type")),
        }
        let len = usize::from(header[1]) | usize::from(header[2]) << 8 | usize::from(header[3]) << 16;
        let payload_len = len.checked_sub(4).ok_or(RustfsError::Malformed("stream block length"))?;
        let payload = rest.get(..payload_len).ok_or(RustfsError::Unauthenticated)?;
        *rest = &rest[payload_len..];
        let (declared, varint_len) = uvarint(payload).ok_or(RustfsError::Malformed("stream block length"))?;
        let sealed = &payload[varint_len..];
        let body_len = sealed.len().checked_sub(TAG_LEN).ok_or(RustfsError::Malformed("stream block length"))?;
        if declared != body_len as u64 || body_len == 0 || body_len > BLOCK_SIZE {
            return Err(RustfsError::Malformed("stream block length"));
        }
        let (ciphertext, tag) = sealed.split_at(body_len);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| RustfsError::Malformed("stream block length"))?;
        // The first nonce that authenticates wins; a tag that verified under one nonce will
        // not under another, so only layouts giving that same nonce stay possible.
        let mut opened: Option<([u8; NONCE_LEN], Zeroizing<Vec<u8>>)> = None;
        let mut survivors = Vec::with_capacity(possible.len());
        for &(layout, segment_nonce) in &possible {
            let nonce = block_nonce(layout, &segment_nonce, index);
            match &opened {
                Some((winner, _)) if *winner == nonce => survivors.push((layout, segment_nonce)),
                Some(_) => {}
                None => {
                    if let Ok(block) = cipher.decrypt(ciphertext, &nonce, tag, &[]) {
                        opened = Some((nonce, block));
                        survivors.push((layout, segment_nonce));
                    }
                }
            }
        }
        let (_, block) = opened.ok_or(RustfsError::Unauthenticated)?;
        possible = survivors;
        out.extend_from_slice(&block);
        index = index.checked_add(1).ok_or(RustfsError::Malformed("stream block count"))?;
    }
}

/// Block `index`'s nonce under `layout`, from the segment's nonce.
fn block_nonce(layout: NonceLayout, segment_nonce: &[u8; NONCE_LEN], index: u32) -> [u8; NONCE_LEN] {
    match layout {
        NonceLayout::Counter | NonceLayout::LegacyPartCounter => offset_nonce(segment_nonce, 8, index),
        NonceLayout::SingleNonce | NonceLayout::LegacyPartSingleNonce => *segment_nonce,
    }
}

/// `base` with the four bytes at `start`, as a big-endian u32, plus `offset` (wrapping).
fn offset_nonce(base: &[u8; NONCE_LEN], start: usize, offset: u32) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    let field = [base[start], base[start + 1], base[start + 2], base[start + 3]];
    nonce[start..start + 4].copy_from_slice(&u32::from_be_bytes(field).wrapping_add(offset).to_be_bytes());
    nonce
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`): the value and its length in bytes.
fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7F);
        if i == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_reads_go_varints_and_refuses_overlong_ones() {
        assert_eq!(uvarint(&[0x00]), Some((0, 1)));
        assert_eq!(uvarint(&[0x80, 0x40]), Some((8192, 2)));
        assert_eq!(uvarint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Some((u64::MAX, 10)));
        assert_eq!(uvarint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]), None);
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[]), None);
    }

    #[test]
    fn block_nonces_count_in_the_last_four_bytes_and_wrap() {
        let base = [1, 2, 3, 4, 5, 6, 7, 8, 0xFF, 0xFF, 0xFF, 0xFE];
        assert_eq!(block_nonce(NonceLayout::Counter, &base, 0), base);
        assert_eq!(block_nonce(NonceLayout::Counter, &base, 1)[8..], [0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(block_nonce(NonceLayout::Counter, &base, 2)[..], [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]);
        assert_eq!(block_nonce(NonceLayout::SingleNonce, &base, 2), base);
    }

    #[test]
    fn part_nonces_count_in_bytes_4_to_8_and_legacy_ones_in_the_last_four() {
        let base = [1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 9];
        assert_eq!(offset_nonce(&base, 4, 1)[..], [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(offset_nonce(&base, 8, 3)[..], [1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 12]);
    }

    #[test]
    fn bucket_paths_join_and_clean_like_go_path_join() {
        assert_eq!(bucket_path("photos", "dir/cat.jpg"), "photos/dir/cat.jpg");
        assert_eq!(bucket_path("photos", "/dir//a/./b/../cat.jpg"), "photos/dir/a/cat.jpg");
        assert_eq!(bucket_path("photos", "../../x"), "../x");
        assert_eq!(bucket_path("photos", "dir/"), "photos/dir/");
        assert_eq!(bucket_path("", ""), ".");
    }

    #[test]
    fn part_lists_must_be_strictly_increasing_and_in_range() {
        let part = |number| StreamPart { number, plaintext_len: 0 };
        assert_eq!(check_parts(&[]), Err(RustfsError::Malformed("stream part list")));
        for bad in [vec![part(0)], vec![part(2), part(1)], vec![part(1), part(1)], vec![part(10_001)]] {
            assert_eq!(check_parts(&bad), Err(RustfsError::Malformed("stream part number")), "{bad:?}");
        }
        assert_eq!(check_parts(&[part(1), part(3), part(10_000)]), Ok(()));
    }
}
