//! [`AwsError`]: a failure as AWS KMS clients read it: `{"__type": "...", "message": "..."}`
//! with a status (400 for the caller's faults, 500 for the ones a client should retry).

use http::StatusCode;
use kms_types::error::KmsError;
use kms_types::types::KeyState;

use super::sigv4::SigV4Error;

/// An AWS-shaped error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// 400 (client fault) or 500 (retryable server fault).
    pub status: StatusCode,
    /// The AWS error name clients map (`NotFoundException`).
    pub type_name: &'static str,
    /// A message without secrets.
    pub message: String,
}

impl AwsError {
    /// A 400 with this name.
    pub fn client(type_name: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, type_name, message: message.into() }
    }

    /// `ValidationException`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::client("ValidationException", message)
    }

    /// `NotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client("NotFoundException", message)
    }

    /// `AccessDeniedException`.
    pub fn access_denied(identity: &str, operation: &str, key: Option<&str>) -> Self {
        let message = match key {
            Some(key) => format!("{identity} is not authorized to perform {operation} on {key}"),
            None => format!("{identity} is not authorized to perform {operation}"),
        };
        Self::client("AccessDeniedException", message)
    }

    /// `UnsupportedOperationException` naming the target.
    pub fn unsupported(operation: &str) -> Self {
        Self::client(
            "UnsupportedOperationException",
            format!("{operation} is not supported by this kms server (see docs/aws-kms-api.md)"),
        )
    }

    /// `KMSInternalException` (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, type_name: "KMSInternalException", message: message.into() }
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"__type": self.type_name, "message": self.message}))
            .expect("error bodies serialize")
    }
}

impl From<SigV4Error> for AwsError {
    fn from(err: SigV4Error) -> Self {
        Self::client(err.aws_type(), err.to_string())
    }
}

use kms_types::byok::ImportRefusal;

impl From<KmsError> for AwsError {
    fn from(err: KmsError) -> Self {
        let message = err.to_string();
        match &err {
            KmsError::InvalidRequest { .. } | KmsError::Configuration { .. } => Self::validation(message),
            // Opaque like the native API: wrong key, wrong context and tampering look alike.
            KmsError::Crypto { .. } => Self::client("InvalidCiphertextException", ""),
            KmsError::KeyNotFound { .. } => Self::not_found(message),
            KmsError::KeyAlreadyExists { .. } => Self::client("AlreadyExistsException", message),
            KmsError::InvalidKeyState { state: KeyState::Disabled, .. } => Self::client("DisabledException", message),
            KmsError::InvalidKeyState { .. } => Self::client("KMSInvalidStateException", message),
            KmsError::Unsupported { .. } => Self::client("UnsupportedOperationException", message),
            KmsError::ImportRefused { reason, .. } => Self::client(
                match reason {
                    ImportRefusal::InvalidImportToken => "InvalidImportTokenException",
                    ImportRefusal::ExpiredImportToken => "ExpiredImportTokenException",
                    ImportRefusal::IncorrectKeyMaterial => "IncorrectKeyMaterialException",
                    ImportRefusal::NotExternalKey | ImportRefusal::NoMaterialYet => "UnsupportedOperationException",
                    _ => "ValidationException",
                },
                message,
            ),
            KmsError::Timeout { .. } => {
                Self { status: StatusCode::INTERNAL_SERVER_ERROR, type_name: "DependencyTimeoutException", message }
            }
            KmsError::ServiceUnavailable { .. } | KmsError::Backend { retryable: true, .. } => {
                Self { status: StatusCode::INTERNAL_SERVER_ERROR, type_name: "KeyUnavailableException", message }
            }
            _ => Self::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn kms_errors_get_the_names_clients_map() {
        let cases: Vec<(KmsError, u16, &str)> = vec![
            (KmsError::invalid_request("KeyId", "bad"), 400, "ValidationException"),
            (KmsError::crypto(), 400, "InvalidCiphertextException"),
            (KmsError::key_not_found("k"), 400, "NotFoundException"),
            (KmsError::KeyAlreadyExists { key_id: "k".into() }, 400, "AlreadyExistsException"),
            (KmsError::invalid_key_state("k", KeyState::Disabled, "encrypt"), 400, "DisabledException"),
            (KmsError::invalid_key_state("k", KeyState::PendingDeletion, "encrypt"), 400, "KMSInvalidStateException"),
            (KmsError::Unsupported { operation: "rotate_key", backend: "x" }, 400, "UnsupportedOperationException"),
            (
                KmsError::Timeout { operation: "decrypt", after: Duration::from_secs(1) },
                500,
                "DependencyTimeoutException",
            ),
            (KmsError::ServiceUnavailable { message: "stopped".into() }, 500, "KeyUnavailableException"),
            (KmsError::backend("denied"), 500, "KMSInternalException"),
        ];
        for (err, status, name) in cases {
            let aws = AwsError::from(err);
            assert_eq!((aws.status.as_u16(), aws.type_name), (status, name), "{}", aws.message);
        }
    }

    #[test]
    fn the_body_has_type_and_message() {
        let body: serde_json::Value = serde_json::from_slice(&AwsError::not_found("no key").body()).unwrap();
        assert_eq!(body, serde_json::json!({"__type": "NotFoundException", "message": "no key"}));
    }
}
