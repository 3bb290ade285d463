//! [`KmsError`]: one error enum for every layer a caller sees.
//!
//! The variants are the distinctions a caller acts on: retry or not, 4xx or 5xx, fix the
//! request or fix the deployment. Underlying errors are kept as `source()`, not stringified.
//! Cryptographic failures are deliberately opaque: the message never says *why* a ciphertext
//! did not authenticate, so it cannot become an oracle.

use std::error::Error as StdError;
use std::time::Duration;

use crate::types::KeyState;

/// A boxed underlying error.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// `Result<T, KmsError>`.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;

/// Every error the library returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// Invalid or missing configuration; `field` names the offending option.
    #[error("invalid configuration: {field}: {message}")]
    Configuration {
        /// The configuration field, dotted (`backend_config.address`).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The backend failed (Vault error, disk I/O, ...). `retryable` marks transient failures
    /// (connection refused, 5xx) that an idempotent call may retry.
    #[error("backend error: {message}")]
    Backend {
        /// What failed, without secrets.
        message: String,
        /// Whether retrying an idempotent call may succeed.
        retryable: bool,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// An integrity or cryptographic failure: tampered, truncated or foreign ciphertext, a
    /// wrong key or a wrong encryption context. Deliberately carries no detail.
    #[error("cryptographic operation failed")]
    Crypto {
        /// The underlying (equally opaque) error.
        #[source]
        source: Option<BoxError>,
    },

    /// The metadata cache failed.
    #[error("cache error: {message}")]
    Cache {
        /// What failed.
        message: String,
    },

    /// No key with this id exists (or it is not visible to this backend).
    #[error("key not found: {key_id}")]
    KeyNotFound {
        /// The requested key id.
        key_id: String,
    },

    /// A key with this id already exists.
    #[error("key already exists: {key_id}")]
    KeyAlreadyExists {
        /// The conflicting key id.
        key_id: String,
    },

    /// The key exists but its state does not allow the operation
    /// (e.g. encrypt with a Disabled key, cancel deletion of an Enabled key).
    #[error("key {key_id} is {state}: {operation} is not allowed in this state")]
    InvalidKeyState {
        /// The key id.
        key_id: String,
        /// Its current state.
        state: KeyState,
        /// The refused operation.
        operation: &'static str,
    },

    /// The request is malformed or out of range; `field` names the offending field.
    #[error("invalid request: {field}: {message}")]
    InvalidRequest {
        /// The request field.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// An import of key material (BYOK) was refused for a reason the caller acts on: get new
    /// parameters, use the same material, or pick an external key (`docs/byok.md`).
    #[error("import of key material into {key_id} refused: {reason}")]
    ImportRefused {
        /// The key.
        key_id: String,
        /// Why.
        reason: crate::byok::ImportRefusal,
    },

    /// The backend does not implement this operation.
    #[error("operation not supported by the {backend} backend: {operation}")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend's name.
        backend: &'static str,
    },

    /// The operation did not complete within the configured timeout.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// Credentials are missing, wrong, expired or revoked (to the KMS, or the KMS to its backend).
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// What was refused, without the credential.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The KMS service is not running (not configured, stopped, or failed to start).
    #[error("kms service unavailable: {message}")]
    ServiceUnavailable {
        /// Why.
        message: String,
    },

    /// A fault of this process or its host that no request could have caused or avoided (the
    /// system random number generator failed, for example): a server error, never the caller's.
    #[error("internal error: {message}")]
    Internal {
        /// What failed, without secrets.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl KmsError {
    /// A configuration error naming `field`.
    pub fn configuration(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Configuration { field: field.into(), message: message.into() }
    }

    /// A request error naming `field`.
    pub fn invalid_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest { field: field.into(), message: message.into() }
    }

    /// A permanent backend error.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::Backend { message: message.into(), retryable: false, source: None }
    }

    /// A backend error with its source; `retryable` marks transient failures.
    pub fn backend_with_source(message: impl Into<String>, retryable: bool, source: impl Into<BoxError>) -> Self {
        Self::Backend { message: message.into(), retryable, source: Some(source.into()) }
    }

    /// An opaque cryptographic failure.
    pub fn crypto() -> Self {
        Self::Crypto { source: None }
    }

    /// An opaque cryptographic failure keeping its (equally opaque) source.
    pub fn crypto_with_source(source: impl Into<BoxError>) -> Self {
        Self::Crypto { source: Some(source.into()) }
    }

    /// An internal fault keeping its source.
    pub fn internal_with_source(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal { message: message.into(), source: Some(source.into()) }
    }

    /// `ImportRefused` for `key_id`.
    pub fn import_refused(key_id: impl Into<String>, reason: crate::byok::ImportRefusal) -> Self {
        Self::ImportRefused { key_id: key_id.into(), reason }
    }

    /// `KeyNotFound` for `key_id`.
    pub fn key_not_found(key_id: impl Into<String>) -> Self {
        Self::KeyNotFound { key_id: key_id.into() }
    }

    /// `InvalidKeyState` for `key_id` in `state`, refusing `operation`.
    pub fn invalid_key_state(key_id: impl Into<String>, state: KeyState, operation: &'static str) -> Self {
        Self::InvalidKeyState { key_id: key_id.into(), state, operation }
    }

    /// Whether retrying the same idempotent call may succeed. Only transient backend
    /// failures and timeouts qualify; crypto, not-found, state and auth errors never do.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend { retryable: true, .. } | Self::Timeout { .. })
    }

    /// A stable, machine-readable code for this error (used in HTTP error bodies and logs).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Configuration { .. } => "configuration_error",
            Self::Backend { .. } => "backend_error",
            Self::Crypto { .. } => "crypto_error",
            Self::Cache { .. } => "cache_error",
            Self::KeyNotFound { .. } => "key_not_found",
            Self::KeyAlreadyExists { .. } => "key_already_exists",
            Self::InvalidKeyState { .. } => "invalid_key_state",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::ImportRefused { reason, .. } => reason.code(),
            Self::Unsupported { .. } => "unsupported",
            Self::Timeout { .. } => "timeout",
            Self::Unauthorized { .. } => "unauthorized",
            Self::ServiceUnavailable { .. } => "service_unavailable",
            Self::Internal { .. } => "internal_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(KmsError::backend_with_source("vault unreachable", true, io).is_retryable());
        assert!(KmsError::Timeout { operation: "decrypt", after: Duration::from_secs(1) }.is_retryable());
        assert!(!KmsError::backend("permission denied").is_retryable());
        assert!(!KmsError::crypto().is_retryable());
        assert!(!KmsError::key_not_found("k").is_retryable());
        assert!(!KmsError::invalid_key_state("k", KeyState::Disabled, "encrypt").is_retryable());
        assert!(!KmsError::Unauthorized { message: "bad token".into(), source: None }.is_retryable());
    }

    #[test]
    fn sources_are_kept_not_stringified() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "disk says no");
        let err = KmsError::backend_with_source("cannot write key record", false, io);
        let source = std::error::Error::source(&err).expect("source kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn crypto_errors_say_nothing_specific() {
        let err = KmsError::crypto_with_source(std::io::Error::other("tag mismatch at segment 3"));
        assert_eq!(err.to_string(), "cryptographic operation failed");
    }
}
