//! The route table: `(method, path)` → [`Route`].
//!
//! Paths are matched segment by segment; the key id (or an alias, `alias%2Fname`: see
//! [`crate::aliases`]) sits in the path and is validated here, so handlers only ever see
//! well-formed references.

use http::Method;

use crate::auth::Operation;
use crate::error::ApiError;

/// A matched route: the operation and, for key routes, the key id from the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The operation.
    pub operation: Operation,
    /// The key id from the path.
    pub key_id: Option<String>,
}

impl Route {
    fn new(operation: Operation) -> Self {
        Self { operation, key_id: None }
    }
}

/// The most segments of a routed path (`kms/v1/keys/{id}/{action}`).
const MAX_SEGMENTS: usize = 5;

/// Matches a request line. Unknown paths are 404; known paths with another method are 405;
/// a malformed key id in the path is 400 naming `key_id`.
pub fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    // The segments in a fixed array, not a `Vec`: a heap allocation per request for a list
    // that is never longer than the deepest route (`kms/v1/keys/{id}/{action}`); a path with
    // more segments than that matches nothing, as before.
    let mut parts = [""; MAX_SEGMENTS];
    let mut count = 0;
    for segment in path.strip_prefix('/').unwrap_or(path).split('/') {
        if count == MAX_SEGMENTS {
            return Err(ApiError::no_route());
        }
        parts[count] = segment;
        count += 1;
    }
    let segments = &parts[..count];
    let expect = |allowed: &Method, op: Operation| -> Result<Route, ApiError> {
        if method == allowed { Ok(Route::new(op)) } else { Err(ApiError::method_not_allowed()) }
    };
    use Operation as Op;
    match segments {
        ["health"] => expect(&Method::GET, Op::Health),
        ["metrics"] => expect(&Method::GET, Op::Metrics),
        ["kms", "v1", rest @ ..] => match rest {
            ["configure"] => expect(&Method::POST, Op::Configure),
            ["reconfigure"] => expect(&Method::POST, Op::Reconfigure),
            ["start"] => expect(&Method::POST, Op::Start),
            ["stop"] => expect(&Method::POST, Op::Stop),
            ["status"] => expect(&Method::GET, Op::Status),
            ["config"] => expect(&Method::GET, Op::GetConfig),
            ["cache", "clear"] => expect(&Method::POST, Op::ClearCache),
            ["backup"] => expect(&Method::POST, Op::Backup),
            ["import"] => expect(&Method::POST, Op::ImportKey),
            ["adopt"] => expect(&Method::POST, Op::AdoptKey),
            ["decrypt"] => expect(&Method::POST, Op::Decrypt),
            ["re-encrypt"] => expect(&Method::POST, Op::ReEncrypt),
            ["keys"] => match *method {
                Method::POST => Ok(Route::new(Op::CreateKey)),
                Method::GET => Ok(Route::new(Op::ListKeys)),
                _ => Err(ApiError::method_not_allowed()),
            },
            ["keys", key_id, action @ ..] => {
                let op = match (action, method) {
                    ([], &Method::GET) => Op::DescribeKey,
                    ([], &Method::DELETE) => Op::ScheduleKeyDeletion,
                    (["enable"], &Method::POST) => Op::EnableKey,
                    (["disable"], &Method::POST) => Op::DisableKey,
                    (["rotate"], &Method::POST) => Op::RotateKey,
                    (["description"], &Method::PUT) => Op::UpdateKeyDescription,
                    (["tags"], &Method::POST) => Op::TagKey,
                    (["untag"], &Method::POST) => Op::UntagKey,
                    (["cancel-deletion"], &Method::POST) => Op::CancelKeyDeletion,
                    (["generate-data-key"], &Method::POST) => Op::GenerateDataKey,
                    (["generate-data-key-without-plaintext"], &Method::POST) => Op::GenerateDataKeyWithoutPlaintext,
                    (["encrypt"], &Method::POST) => Op::Encrypt,
                    (["import-parameters"], &Method::POST) => Op::GetParametersForImport,
                    (["import-material"], &Method::POST) => Op::ImportKeyMaterial,
                    (["import-material"], &Method::DELETE) => Op::DeleteImportedKeyMaterial,
                    (
                        []
                        | [
                            "enable"
                            | "disable"
                            | "rotate"
                            | "description"
                            | "tags"
                            | "untag"
                            | "cancel-deletion"
                            | "generate-data-key"
                            | "generate-data-key-without-plaintext"
                            | "encrypt"
                            | "import-parameters"
                            | "import-material",
                        ],
                        _,
                    ) => return Err(ApiError::method_not_allowed()),
                    _ => return Err(ApiError::no_route()),
                };
                // A key id, or an alias as one segment (`alias%2Fname`, see `crate::aliases`).
                Ok(Route { operation: op, key_id: Some(crate::aliases::key_ref_from_segment(key_id)?) })
            }
            _ => Err(ApiError::no_route()),
        },
        _ => Err(ApiError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_route_matches() {
        let cases = [
            (Method::GET, "/health", Operation::Health, None),
            (Method::GET, "/metrics", Operation::Metrics, None),
            (Method::POST, "/kms/v1/configure", Operation::Configure, None),
            (Method::POST, "/kms/v1/reconfigure", Operation::Reconfigure, None),
            (Method::POST, "/kms/v1/start", Operation::Start, None),
            (Method::POST, "/kms/v1/stop", Operation::Stop, None),
            (Method::GET, "/kms/v1/status", Operation::Status, None),
            (Method::GET, "/kms/v1/config", Operation::GetConfig, None),
            (Method::POST, "/kms/v1/cache/clear", Operation::ClearCache, None),
            (Method::POST, "/kms/v1/backup", Operation::Backup, None),
            (Method::POST, "/kms/v1/import", Operation::ImportKey, None),
            (Method::POST, "/kms/v1/adopt", Operation::AdoptKey, None),
            (Method::POST, "/kms/v1/keys", Operation::CreateKey, None),
            (Method::GET, "/kms/v1/keys", Operation::ListKeys, None),
            (Method::GET, "/kms/v1/keys/k1", Operation::DescribeKey, Some("k1")),
            (Method::DELETE, "/kms/v1/keys/k1", Operation::ScheduleKeyDeletion, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/enable", Operation::EnableKey, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/disable", Operation::DisableKey, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/rotate", Operation::RotateKey, Some("k1")),
            (Method::PUT, "/kms/v1/keys/k1/description", Operation::UpdateKeyDescription, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/tags", Operation::TagKey, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/untag", Operation::UntagKey, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/cancel-deletion", Operation::CancelKeyDeletion, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/generate-data-key", Operation::GenerateDataKey, Some("k1")),
            (
                Method::POST,
                "/kms/v1/keys/k1/generate-data-key-without-plaintext",
                Operation::GenerateDataKeyWithoutPlaintext,
                Some("k1"),
            ),
            (Method::POST, "/kms/v1/keys/k1/encrypt", Operation::Encrypt, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/import-parameters", Operation::GetParametersForImport, Some("k1")),
            (Method::POST, "/kms/v1/keys/k1/import-material", Operation::ImportKeyMaterial, Some("k1")),
            (Method::DELETE, "/kms/v1/keys/k1/import-material", Operation::DeleteImportedKeyMaterial, Some("k1")),
            (Method::POST, "/kms/v1/decrypt", Operation::Decrypt, None),
            (Method::POST, "/kms/v1/re-encrypt", Operation::ReEncrypt, None),
        ];
        for (method, path, op, key) in cases {
            let r = route(&method, path).unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
            assert_eq!((r.operation, r.key_id.as_deref()), (op, key), "{method} {path}");
        }
    }

    #[test]
    fn wrong_methods_are_405_and_unknown_paths_404() {
        for (method, path) in [
            (Method::POST, "/health"),
            (Method::GET, "/kms/v1/configure"),
            (Method::PUT, "/kms/v1/keys"),
            (Method::GET, "/kms/v1/keys/k1/encrypt"),
            (Method::POST, "/kms/v1/keys/k1"),
        ] {
            assert_eq!(route(&method, path).unwrap_err().status, 405, "{method} {path}");
        }
        for path in ["/", "/kms", "/kms/v1", "/kms/v2/keys", "/kms/v1/keys/k1/explode", "/kms/v1/keys/k1/enable/x"] {
            assert_eq!(route(&Method::GET, path).unwrap_err().status, 404, "{path}");
        }
        // Deeper than any route (more segments than the router keeps): 404 whatever the method.
        for path in ["/kms/v1/keys/k1/enable/", "/kms/v1/keys/k1/enable/x/y", "/a/b/c/d/e/f/g/h/i"] {
            assert_eq!(route(&Method::POST, path).unwrap_err().status, 404, "{path}");
        }
    }

    #[test]
    fn malformed_key_ids_in_the_path_are_400() {
        // Each with the method its route takes, so only the key id can be what is refused.
        for (method, path) in [
            (Method::POST, "/kms/v1/keys//enable"),
            (Method::GET, "/kms/v1/keys/a%2Fb"),
            (Method::GET, "/kms/v1/keys/.hidden"),
            (Method::POST, "/kms/v1/keys/a:b/rotate"),
        ] {
            let err = route(&method, path).unwrap_err();
            assert_eq!((err.status.as_u16(), err.field.as_deref()), (400, Some("key_id")), "{method} {path}");
        }
        let long = format!("/kms/v1/keys/{}", "x".repeat(300));
        assert_eq!(route(&Method::GET, &long).unwrap_err().status, 400);
    }
}
