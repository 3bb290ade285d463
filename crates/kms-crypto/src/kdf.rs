//! HKDF-SHA256 (RFC 5869) for the crates above that derive keys of their own (the local
//! backend's key-encryption key, the SSE-C keys), so that they need not call ring.

use ring::hkdf;

use crate::error::CryptoError;

/// The largest output HKDF-SHA256 gives: 255 blocks of 32 bytes.
pub const MAX_OUTPUT_LEN: usize = 255 * 32;

/// An output length, as ring's HKDF wants it.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// Fills `out` with HKDF-SHA256: extract with `salt` from `secret`, expand with `info` (the
/// concatenation of its parts). Refuses an `out` longer than [`MAX_OUTPUT_LEN`].
pub fn hkdf_sha256(salt: &[u8], secret: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), CryptoError> {
    let too_long = || CryptoError::invalid("out", "HKDF-SHA256 gives at most 8160 bytes");
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    prk.expand(info, OutputLen(out.len())).and_then(|okm| okm.fill(out)).map_err(|_| too_long())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::hex;

    /// RFC 5869 appendix A.1 (basic test case with SHA-256), the info given in two parts.
    #[test]
    fn rfc5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info[..4], &info[4..]], &mut okm).unwrap();
        assert_eq!(
            okm.to_vec(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    #[test]
    fn refuses_more_than_255_blocks() {
        let mut out = vec![0u8; MAX_OUTPUT_LEN + 1];
        assert!(matches!(
            hkdf_sha256(b"s", b"k", &[], &mut out),
            Err(CryptoError::InvalidArgument { field: "out", .. })
        ));
        hkdf_sha256(b"s", b"k", &[], &mut out[..MAX_OUTPUT_LEN]).unwrap();
    }
}
