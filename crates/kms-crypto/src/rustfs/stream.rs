//! Single-part objects of RustFS's S3 streaming format (`crates/rio/src/encrypt_reader.rs`),
//! read-only.
//!
//! The body is a run of blocks, then an end header:
//!
//! ```text
//! block:  u8 0x00 ‖ u24 LE len ‖ u32 LE crc32(plaintext) ‖ uvarint(plaintext_len) ‖ AES-256-GCM(ciphertext ‖ tag)
//!         (len = varint bytes + ciphertext and tag + 4)
//! end:    u8 0xFF ‖ 7 bytes (zero)
//! ```
//!
//! Each block holds at most 8 KiB of plaintext (fewer when RustFS's source returned a short
//! read), sealed with the object's data key, **no AAD**, and nonce = the base nonce
//! (`x-rustfs-encryption-iv`) with its last four bytes read as a big-endian u32 plus the block
//! index. Older RustFS wrote every block with the base nonce itself; such blocks are accepted too.
//!
//! What is authenticated: each block's plaintext and, through the nonce, its position (except in
//! the older single-nonce streams, whose blocks can be reordered undetected). Nothing
//! authenticates the **end**: the end header is plain, and RustFS's own reader even accepts a
//! stream that stops at a block boundary. So kms requires the end header, refuses trailing bytes,
//! and requires the caller to pass the object's expected plaintext length (from the object's
//! metadata, stored apart from the body); a body cut at a block boundary is then refused.
//! The CRC32, stored in the clear, is not checked: the GCM tag covers the same bytes.

use zeroize::Zeroizing;

use super::RustfsError;
use crate::cipher::{Aes256GcmCipher, ObjectCipher};

/// Largest plaintext of one block.
pub const BLOCK_SIZE: usize = 8 * 1024;
const HEADER_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TYPE_BLOCK: u8 = 0x00;
const TYPE_END: u8 = 0xFF;

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
    if data_key.len() != 32 {
        return Err(RustfsError::Malformed("stream data key"));
    }
    let cipher = Aes256GcmCipher::new(data_key)?;
    let capacity = usize::try_from(expected_len).map_err(|_| RustfsError::Malformed("stream length"))?;
    let mut plaintext = Zeroizing::new(Vec::with_capacity(capacity.min(body.len())));
    let mut rest = body;
    let mut index: u32 = 0;
    loop {
        let header: &[u8; HEADER_LEN] =
            rest.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(RustfsError::Unauthenticated)?;
        rest = &rest[HEADER_LEN..];
        match header[0] {
            TYPE_END if rest.is_empty() => break,
            TYPE_END => return Err(RustfsError::Unauthenticated),
            TYPE_BLOCK => {}
            _ => return Err(RustfsError::Malformed("stream block type")),
        }
        let len = usize::from(header[1]) | usize::from(header[2]) << 8 | usize::from(header[3]) << 16;
        let payload_len = len.checked_sub(4).ok_or(RustfsError::Malformed("stream block length"))?;
        let payload = rest.get(..payload_len).ok_or(RustfsError::Unauthenticated)?;
        rest = &rest[payload_len..];
        let (declared, varint_len) = uvarint(payload).ok_or(RustfsError::Malformed("stream block length"))?;
        let sealed = &payload[varint_len..];
        let body_len = sealed.len().checked_sub(TAG_LEN).ok_or(RustfsError::Malformed("stream block length"))?;
        if declared != body_len as u64 || body_len == 0 || body_len > BLOCK_SIZE {
            return Err(RustfsError::Malformed("stream block length"));
        }
        let (ciphertext, tag) = sealed.split_at(body_len);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| RustfsError::Malformed("stream block length"))?;
        let block = cipher
            .decrypt(ciphertext, &block_nonce(base_nonce, index), tag, &[])
            .or_else(|_| cipher.decrypt(ciphertext, base_nonce, tag, &[]))?;
        plaintext.extend_from_slice(&block);
        index = index.checked_add(1).ok_or(RustfsError::Malformed("stream block count"))?;
    }
    if plaintext.len() as u64 != expected_len {
        return Err(RustfsError::Unauthenticated);
    }
    Ok(plaintext)
}

/// The base nonce with its last four bytes, as a big-endian u32, plus `index` (wrapping).
fn block_nonce(base: &[u8; NONCE_LEN], index: u32) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    let counter = u32::from_be_bytes([base[8], base[9], base[10], base[11]]).wrapping_add(index);
    nonce[8..].copy_from_slice(&counter.to_be_bytes());
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
        assert_eq!(block_nonce(&base, 0), base);
        assert_eq!(block_nonce(&base, 1)[8..], [0xFF, 0xFF, 0xFF, 0xFF]);
        assert_eq!(block_nonce(&base, 2)[..], [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0]);
    }
}
