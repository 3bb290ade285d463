//! The local backend's ciphertext blob, format version 1 (`docs/formats.md`, "Local
//! ciphertext blob"): what `Encrypt` and `GenerateDataKey` return and `Decrypt` takes.
//!
//! ```text
//! "KLC"          3 bytes  magic
//! 0x01           1 byte   blob format version
//! u16 BE         2 bytes  length of the key id
//! key id         n bytes  ASCII
//! u32 BE         4 bytes  key version
//! envelope       rest     kms_crypto envelope (v2 written, v1 read), bound to (key id, key version, context)
//! ```
//!
//! The header is not itself authenticated, but the envelope is bound to the key id and the
//! version, so a header edited to name another key or version fails to open.

use kms_types::error::KmsError;
use kms_types::types::MAX_KEY_ID_LEN;

const MAGIC: &[u8; 3] = b"KLC";
/// The blob format version this code writes and reads.
pub(crate) const BLOB_FORMAT_VERSION: u8 = 1;

/// Frames `envelope` with the key id and version that made it.
pub(crate) fn encode(key_id: &str, version: u32, envelope: &[u8]) -> Vec<u8> {
    let mut blob = header(key_id, version, envelope.len());
    blob.extend_from_slice(envelope);
    blob
}

/// The blob's header, in a buffer with room for an envelope of `envelope_len` bytes to be
/// appended (sealed straight into it: the data-key path builds its blob in one allocation).
pub(crate) fn header(key_id: &str, version: u32, envelope_len: usize) -> Vec<u8> {
    let mut blob = Vec::with_capacity(10 + key_id.len() + envelope_len);
    blob.extend_from_slice(MAGIC);
    blob.push(BLOB_FORMAT_VERSION);
    // Key ids are at most MAX_KEY_ID_LEN (256) bytes: validated before any key exists.
    blob.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
    blob.extend_from_slice(key_id.as_bytes());
    blob.extend_from_slice(&version.to_be_bytes());
    blob
}

/// Splits a blob into key id, version and envelope. Anything that is not a blob of this
/// format is an opaque crypto error (as a tampered one is).
pub(crate) fn decode(blob: &[u8]) -> Result<(&str, u32, &[u8]), KmsError> {
    let malformed = KmsError::crypto;
    let rest = blob.strip_prefix(MAGIC).ok_or_else(malformed)?;
    let (&format, rest) = rest.split_first().ok_or_else(malformed)?;
    if format != BLOB_FORMAT_VERSION || rest.len() < 2 {
        return Err(malformed());
    }
    let (len, rest) = rest.split_at(2);
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len == 0 || len > MAX_KEY_ID_LEN || rest.len() < len + 4 {
        return Err(malformed());
    }
    let (id, rest) = rest.split_at(len);
    let key_id = std::str::from_utf8(id).map_err(|_| malformed())?;
    let (version, envelope) = rest.split_at(4);
    let version = u32::from_be_bytes(version.try_into().expect("4 bytes"));
    Ok((key_id, version, envelope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_round_trip() {
        let blob = encode("k-1", 7, &[0xAA, 0xBB]);
        assert_eq!(blob, b"KLC\x01\x00\x03k-1\x00\x00\x00\x07\xAA\xBB");
        assert_eq!(decode(&blob).unwrap(), ("k-1", 7, &[0xAA, 0xBB][..]));
    }

    #[test]
    fn malformed_blobs_are_opaque_crypto_errors() {
        let good = encode("k", 1, &[1, 2, 3]);
        for bad in
            [&b""[..], b"KLC", b"XLC\x01\x00\x01k\x00\x00\x00\x01", b"KLC\x02\x00\x01k\x00\x00\x00\x01", &good[..8]]
        {
            assert!(matches!(decode(bad), Err(KmsError::Crypto { .. })), "{bad:?}");
        }
        assert!(matches!(decode(b"KLC\x01\x00\x00\x00\x00\x00\x01"), Err(KmsError::Crypto { .. })));
    }
}
