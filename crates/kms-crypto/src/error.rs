//! [`CryptoError`]: what can go wrong in this crate, deliberately without detail.

use kms_types::error::KmsError;

/// A cryptographic failure.
///
/// The variants separate only what a caller can act on: input that is not in any format this
/// crate writes ([`Malformed`](Self::Malformed)), input that is well formed but does not
/// authenticate under the key, binding and context given ([`Unauthenticated`](Self::Unauthenticated)),
/// and a caller mistake such as a plaintext that is too long
/// ([`InvalidArgument`](Self::InvalidArgument)). None of them says *which* check failed (which
/// segment, which byte, key or context), so an error cannot become an oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The input is not in a format this crate reads: too short, too long, unknown version or
    /// algorithm, out-of-range header fields.
    #[error("malformed ciphertext")]
    Malformed,
    /// The input is well formed but does not authenticate: tampered, truncated, reordered,
    /// or opened with the wrong key, key id, key version, encryption context or part number.
    #[error("ciphertext did not authenticate")]
    Unauthenticated,
    /// The caller passed an argument outside the documented range; `field` names it.
    #[error("invalid argument: {field}: {message}")]
    InvalidArgument {
        /// The offending argument.
        field: &'static str,
        /// What is wrong with it.
        message: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    RandomUnavailable,
}

impl CryptoError {
    pub(crate) const fn invalid(field: &'static str, message: &'static str) -> Self {
        Self::InvalidArgument { field, message }
    }
}

impl From<CryptoError> for KmsError {
    /// Caller mistakes become [`KmsError::InvalidRequest`]; a failed random number generator
    /// is [`KmsError::Internal`] (the server's fault, whatever the request); everything else
    /// becomes an opaque [`KmsError::Crypto`] keeping the `CryptoError` as its source.
    fn from(error: CryptoError) -> Self {
        match error {
            CryptoError::InvalidArgument { field, message } => KmsError::invalid_request(field, message),
            CryptoError::RandomUnavailable => {
                KmsError::internal_with_source("the system random number generator failed", error)
            }
            other => KmsError::crypto_with_source(other),
        }
    }
}

impl From<CryptoError> for std::io::Error {
    /// Crypto failures in a stream surface as [`std::io::ErrorKind::InvalidData`] (invalid
    /// arguments as `InvalidInput`), with the `CryptoError` as the inner error.
    fn from(error: CryptoError) -> Self {
        let kind = match error {
            CryptoError::InvalidArgument { .. } => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, error)
    }
}

impl From<ring::error::Unspecified> for CryptoError {
    fn from(_: ring::error::Unspecified) -> Self {
        Self::Unauthenticated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_into_kms_error() {
        let err: KmsError = CryptoError::Unauthenticated.into();
        assert_eq!(err.code(), "crypto_error");
        assert_eq!(err.to_string(), "cryptographic operation failed");
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.downcast_ref::<CryptoError>(), Some(&CryptoError::Unauthenticated));

        let err: KmsError = CryptoError::Malformed.into();
        assert_eq!(err.code(), "crypto_error");

        let err: KmsError = CryptoError::invalid("plaintext", "longer than 4096 bytes").into();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.to_string().contains("plaintext"));
    }

    #[test]
    fn a_random_generator_failure_is_an_internal_error_not_a_crypto_error() {
        let err: KmsError = CryptoError::RandomUnavailable.into();
        assert!(matches!(err, KmsError::Internal { .. }), "{err:?}");
        assert_eq!(err.code(), "internal_error");
        let source = std::error::Error::source(&err).expect("source kept");
        assert_eq!(source.downcast_ref::<CryptoError>(), Some(&CryptoError::RandomUnavailable));
    }

    #[test]
    fn maps_into_io_error() {
        let err: std::io::Error = CryptoError::Unauthenticated.into();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(err.get_ref().and_then(|e| e.downcast_ref::<CryptoError>()), Some(&CryptoError::Unauthenticated));
    }
}
