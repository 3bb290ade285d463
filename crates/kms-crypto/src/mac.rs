//! HMAC-SHA256 (RFC 2104) for the crates above: AWS Signature Version 4, the SSE-C key
//! verifier. Verification compares in constant time.

use ring::hmac;

use crate::error::CryptoError;

/// Length of an HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

/// The HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks, in constant time, that `tag` is the HMAC-SHA256 of `data` under `key`; any
/// mismatch (including another length) is [`CryptoError::Unauthenticated`].
pub fn verify_hmac_sha256(key: &[u8], data: &[u8], tag: &[u8]) -> Result<(), CryptoError> {
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), data, tag).map_err(|_| CryptoError::Unauthenticated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::hex;

    /// RFC 4231 test case 2.
    #[test]
    fn rfc4231_test_case_2() {
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(tag.to_vec(), hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
        verify_hmac_sha256(b"Jefe", b"what do ya want for nothing?", &tag).unwrap();
    }

    #[test]
    fn verify_refuses_other_data_key_and_truncated_tags() {
        let tag = hmac_sha256(b"key", b"data");
        assert_eq!(verify_hmac_sha256(b"key", b"Data", &tag), Err(CryptoError::Unauthenticated));
        assert_eq!(verify_hmac_sha256(b"kez", b"data", &tag), Err(CryptoError::Unauthenticated));
        assert_eq!(verify_hmac_sha256(b"key", b"data", &tag[..31]), Err(CryptoError::Unauthenticated));
    }
}
