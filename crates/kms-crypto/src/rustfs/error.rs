//! [`RustfsError`]: why a RustFS record, envelope or object was refused.

use kms_types::error::KmsError;

use crate::error::CryptoError;

/// A RustFS input that kms refuses.
///
/// `Malformed` and `Unsupported` name the part of the *public* format that is wrong (a field,
/// a header); they never depend on a key. `Unauthenticated` is one opaque answer for every
/// failed tag: wrong master-key string, wrong master key, tampered or truncated bytes, or an
/// envelope context that does not match the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RustfsError {
    /// The input is not in RustFS's format; the value names the part.
    #[error("not a valid RustFS {0}")]
    Malformed(&'static str),
    /// A well-formed RustFS value that kms does not read; the value names it.
    #[error("unsupported RustFS {0}")]
    Unsupported(&'static str),
    /// The input did not authenticate under the key and context given.
    #[error("RustFS ciphertext did not authenticate")]
    Unauthenticated,
}

impl From<CryptoError> for RustfsError {
    /// Ring's failures are tag failures; the only other failure of the primitives used here is a
    /// key of the wrong length, which the readers rule out before calling them.
    fn from(_: CryptoError) -> Self {
        Self::Unauthenticated
    }
}

impl From<RustfsError> for KmsError {
    /// `Malformed` and `Unsupported` are the caller's input ([`KmsError::InvalidRequest`] on
    /// field `rustfs`); `Unauthenticated` is an opaque [`KmsError::Crypto`].
    fn from(error: RustfsError) -> Self {
        match error {
            RustfsError::Unauthenticated => KmsError::crypto_with_source(error),
            other => KmsError::invalid_request("rustfs", other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_into_kms_error_by_kind() {
        assert!(matches!(KmsError::from(RustfsError::Unauthenticated), KmsError::Crypto { .. }));
        let err = KmsError::from(RustfsError::Malformed("key record"));
        assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");
        assert!(err.to_string().contains("key record"));
        assert!(matches!(KmsError::from(RustfsError::Unsupported("key spec")), KmsError::InvalidRequest { .. }));
        assert_eq!(RustfsError::from(CryptoError::Unauthenticated), RustfsError::Unauthenticated);
    }
}
