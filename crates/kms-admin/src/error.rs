//! [`ApiError`]: what a request failure becomes on the wire.
//!
//! Every error is JSON `{"error": {"code": "...", "message": "..."}}` (plus `"field"` when one
//! request field is at fault) with the status the HTTP API documents. Bad input is always a 4xx;
//! 5xx means the server or its backend failed. A 5xx answer keeps its code but not its message,
//! which may name server paths or backend details: the message says only which request id to
//! look for in the server log (also sent as the [`REQUEST_ID_HEADER`] header).

use http::StatusCode;
use kms_types::error::KmsError;
use serde::Serialize;

/// The response header that carries a server error's request id (also in its message and,
/// with the detail, in the server log).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// A stable machine-readable code (`key_not_found`, `invalid_request`, ...).
    pub code: &'static str,
    /// A human-readable message; never contains secrets.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None }
    }

    /// 400 `invalid_request` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        Self { status: StatusCode::BAD_REQUEST, code: "invalid_request", message, field: Some(field) }
    }

    /// 401: no or unknown credentials.
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a valid bearer token is required")
    }

    /// 403: the identity may not do this.
    pub fn forbidden(identity: &str, operation: &str, key_id: Option<&str>) -> Self {
        let message = match key_id {
            Some(key) => format!("identity {identity} may not {operation} on key {key}"),
            None => format!("identity {identity} may not {operation}"),
        };
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 for a path no route serves.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
    }

    /// 413.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("request body exceeds {limit} bytes"))
    }

    /// 415.
    pub fn not_json() -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "request body must be application/json")
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Body {
            error: Inner { code: self.code, message: &self.message, field: self.field.as_deref() },
        })
        .expect("error bodies serialize")
    }
}

impl From<KmsError> for ApiError {
    fn from(err: KmsError) -> Self {
        let message = err.to_string();
        let (status, field) = match &err {
            KmsError::InvalidRequest { field, .. } => (StatusCode::BAD_REQUEST, Some(field.clone())),
            KmsError::Configuration { field, .. } => (StatusCode::BAD_REQUEST, Some(field.clone())),
            // A ciphertext that does not authenticate is the caller's input (AWS: 400 InvalidCiphertext).
            KmsError::Crypto { .. } => (StatusCode::BAD_REQUEST, None),
            KmsError::KeyNotFound { .. } => (StatusCode::NOT_FOUND, None),
            KmsError::KeyAlreadyExists { .. } | KmsError::InvalidKeyState { .. } => (StatusCode::CONFLICT, None),
            KmsError::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, None),
            // BYOK refusals the caller fixes (new parameters, the same material): `docs/byok.md`.
            KmsError::ImportRefused { .. } => (StatusCode::BAD_REQUEST, None),
            KmsError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, None),
            KmsError::ServiceUnavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, None),
            KmsError::Backend { retryable: true, .. } => (StatusCode::SERVICE_UNAVAILABLE, None),
            // The backend refused the KMS (its credentials, its permissions): the server's problem.
            KmsError::Backend { .. } | KmsError::Unauthorized { .. } => (StatusCode::BAD_GATEWAY, None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        let code = match &err {
            KmsError::Unauthorized { .. } => "backend_unauthorized",
            other => other.code(),
        };
        Self { status, code, message, field }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kms_types::types::KeyState;

    use super::*;

    #[test]
    fn kms_errors_map_to_the_documented_statuses() {
        let cases: Vec<(KmsError, u16, &str)> = vec![
            (KmsError::invalid_request("key_id", "bad"), 400, "invalid_request"),
            (KmsError::configuration("timeout", "bad"), 400, "configuration_error"),
            (KmsError::crypto(), 400, "crypto_error"),
            (KmsError::key_not_found("k"), 404, "key_not_found"),
            (KmsError::KeyAlreadyExists { key_id: "k".into() }, 409, "key_already_exists"),
            (KmsError::invalid_key_state("k", KeyState::Disabled, "encrypt"), 409, "invalid_key_state"),
            (KmsError::Unsupported { operation: "rotate_key", backend: "local" }, 501, "unsupported"),
            (
                KmsError::import_refused("k", kms_types::byok::ImportRefusal::ExpiredImportToken),
                400,
                "expired_import_token",
            ),
            (
                KmsError::import_refused("k", kms_types::byok::ImportRefusal::IncorrectKeyMaterial),
                400,
                "incorrect_key_material",
            ),
            (KmsError::Timeout { operation: "decrypt", after: Duration::from_secs(1) }, 504, "timeout"),
            (KmsError::ServiceUnavailable { message: "stopped".into() }, 503, "service_unavailable"),
            (KmsError::backend_with_source("down", true, std::io::Error::other("x")), 503, "backend_error"),
            (KmsError::backend("denied"), 502, "backend_error"),
            (KmsError::Unauthorized { message: "vault token".into(), source: None }, 502, "backend_unauthorized"),
            (KmsError::Internal { message: "rng".into(), source: None }, 500, "internal_error"),
        ];
        for (err, status, code) in cases {
            let api = ApiError::from(err);
            assert_eq!((api.status.as_u16(), api.code), (status, code), "{}", api.message);
        }
    }

    #[test]
    fn the_body_is_the_documented_json_and_names_the_field() {
        let body: serde_json::Value = serde_json::from_slice(&ApiError::invalid("limit", "too big").body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "invalid_request", "message": "limit: too big", "field": "limit"}})
        );
        let body: serde_json::Value = serde_json::from_slice(&ApiError::unauthenticated().body()).unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
        assert!(body["error"].get("field").is_none());
    }
}
