//! The bad-input matrix: every malformed request is a 4xx naming what is wrong, never a 500.

mod common;

use common::{ADMIN, Http, Options, TestServer};
use http::{Method, StatusCode};
use serde_json::json;

const JSON: Option<&str> = Some("application/json");

/// (method, path, content type, body, status, error code, field)
type Case<'a> = (Method, &'a str, Option<&'a str>, &'a str, u16, &'a str, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_4xx_and_name_the_field() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "k1"}))).await;

    let cases: Vec<Case<'_>> = vec![
        // Malformed JSON.
        (Method::POST, "/kms/v1/keys", JSON, "{", 400, "invalid_request", "body"),
        (Method::POST, "/kms/v1/keys", JSON, "not json", 400, "invalid_request", "body"),
        (Method::POST, "/kms/v1/keys", JSON, r#"{"key_name":"a"} {}"#, 400, "invalid_request", "body"),
        (Method::POST, "/kms/v1/decrypt", JSON, "[]", 400, "invalid_request", "body"),
        // Wrong types.
        (Method::POST, "/kms/v1/keys", JSON, r#"{"key_name":5}"#, 400, "invalid_request", "key_name"),
        (Method::POST, "/kms/v1/keys", JSON, r#"{"tags":{"a":1}}"#, 400, "invalid_request", "tags.a"),
        (
            Method::POST,
            "/kms/v1/keys/k1/generate-data-key",
            JSON,
            r#"{"key_spec":"aes512"}"#,
            400,
            "invalid_request",
            "key_spec",
        ),
        (
            Method::POST,
            "/kms/v1/keys/k1/generate-data-key",
            JSON,
            r#"{"encryption_context":["a"]}"#,
            400,
            "invalid_request",
            "encryption_context",
        ),
        (Method::POST, "/kms/v1/keys/k1/untag", JSON, r#"{"tag_keys":"a"}"#, 400, "invalid_request", "tag_keys"),
        // Unknown fields.
        (Method::POST, "/kms/v1/keys", JSON, r#"{"key_nam":"a"}"#, 400, "invalid_request", "key_nam"),
        (Method::POST, "/kms/v1/keys/k1/enable", JSON, r#"{"force":true}"#, 400, "invalid_request", "force"),
        (
            Method::POST,
            "/kms/v1/keys/k1/generate-data-key",
            JSON,
            r#"{"key_id":"k1"}"#,
            400,
            "invalid_request",
            "key_id",
        ),
        (
            Method::POST,
            "/kms/v1/configure",
            JSON,
            r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"},"colour":1}"#,
            400,
            "invalid_request",
            "colour",
        ),
        // Missing and empty bodies.
        (Method::POST, "/kms/v1/decrypt", JSON, "", 400, "invalid_request", "body"),
        (Method::POST, "/kms/v1/decrypt", JSON, "{}", 400, "invalid_request", "ciphertext_blob"),
        (Method::PUT, "/kms/v1/keys/k1/description", JSON, "", 400, "invalid_request", "body"),
        (Method::POST, "/kms/v1/keys/k1/encrypt", JSON, "{}", 400, "invalid_request", "plaintext"),
        (Method::POST, "/kms/v1/configure", JSON, "{}", 400, "invalid_request", "backend_type"),
        // Bad base64.
        (
            Method::POST,
            "/kms/v1/decrypt",
            JSON,
            r#"{"ciphertext_blob":"***"}"#,
            400,
            "invalid_request",
            "ciphertext_blob",
        ),
        (Method::POST, "/kms/v1/keys/k1/encrypt", JSON, r#"{"plaintext":"a b"}"#, 400, "invalid_request", "plaintext"),
        (
            Method::POST,
            "/kms/v1/re-encrypt",
            JSON,
            r#"{"ciphertext_blob":"%%"}"#,
            400,
            "invalid_request",
            "ciphertext_blob",
        ),
        // Out-of-range and invalid values.
        (Method::POST, "/kms/v1/keys/k1/encrypt", JSON, r#"{"plaintext":""}"#, 400, "invalid_request", "plaintext"),
        (
            Method::DELETE,
            "/kms/v1/keys/k1?pending_window_in_days=6",
            None,
            "",
            400,
            "invalid_request",
            "pending_window_in_days",
        ),
        (
            Method::DELETE,
            "/kms/v1/keys/k1?pending_window_in_days=31",
            None,
            "",
            400,
            "invalid_request",
            "pending_window_in_days",
        ),
        (
            Method::DELETE,
            "/kms/v1/keys/k1?pending_window_in_days=x",
            None,
            "",
            400,
            "invalid_request",
            "pending_window_in_days",
        ),
        (
            Method::DELETE,
            "/kms/v1/keys/k1?pending_window_in_days=0",
            None,
            "",
            400,
            "invalid_request",
            "pending_window_in_days",
        ),
        (Method::GET, "/kms/v1/keys?limit=0", None, "", 400, "invalid_request", "limit"),
        (Method::GET, "/kms/v1/keys?limit=1001", None, "", 400, "invalid_request", "limit"),
        (Method::GET, "/kms/v1/keys?limit=-3", None, "", 400, "invalid_request", "limit"),
        (Method::GET, "/kms/v1/keys?sort=asc", None, "", 400, "invalid_request", "sort"),
        (
            Method::POST,
            "/kms/v1/configure",
            JSON,
            r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"},"timeout_seconds":0}"#,
            400,
            "configuration_error",
            "timeout",
        ),
        (
            Method::POST,
            "/kms/v1/configure",
            JSON,
            r#"{"backend_type":"vault","address":"not a url","auth_method":{"type":"token","token":"t"}}"#,
            400,
            "configuration_error",
            "backend_config.address",
        ),
        (Method::POST, "/kms/v1/configure", JSON, r#"{"backend_type":"s3"}"#, 400, "invalid_request", "backend_type"),
        // Invalid key ids, in the path and in bodies.
        (Method::GET, "/kms/v1/keys/a%2Fb", None, "", 400, "invalid_request", "key_id"),
        (Method::GET, "/kms/v1/keys/.hidden", None, "", 400, "invalid_request", "key_id"),
        (Method::POST, "/kms/v1/keys/bad:id/rotate", None, "", 400, "invalid_request", "key_id"),
        (Method::POST, "/kms/v1/keys", JSON, r#"{"key_name":"../etc/passwd"}"#, 400, "invalid_request", "key_name"),
        (Method::POST, "/kms/v1/keys", JSON, r#"{"key_name":""}"#, 400, "invalid_request", "key_name"),
        (Method::GET, "/kms/v1/keys?marker=a%2Fb", None, "", 400, "invalid_request", "marker"),
        (
            Method::POST,
            "/kms/v1/decrypt",
            JSON,
            r#"{"ciphertext_blob":"AAAA","key_id":"a b"}"#,
            400,
            "invalid_request",
            "key_id",
        ),
        (
            Method::POST,
            "/kms/v1/re-encrypt",
            JSON,
            r#"{"ciphertext_blob":"AAAA","destination_key_id":"x/y"}"#,
            400,
            "invalid_request",
            "destination_key_id",
        ),
        // Content type.
        (Method::POST, "/kms/v1/keys", Some("text/plain"), r#"{"key_name":"z"}"#, 415, "unsupported_media_type", ""),
        (Method::POST, "/kms/v1/keys", None, r#"{"key_name":"z"}"#, 415, "unsupported_media_type", ""),
        (
            Method::POST,
            "/kms/v1/decrypt",
            Some("application/x-www-form-urlencoded"),
            "a=b",
            415,
            "unsupported_media_type",
            "",
        ),
        // A ciphertext that is not ours: the caller's input, not a server failure.
        (Method::POST, "/kms/v1/decrypt", JSON, r#"{"ciphertext_blob":"AAAAAAAAAAAAAAAA"}"#, 400, "crypto_error", ""),
        // Unknown keys and routes, wrong methods.
        (Method::GET, "/kms/v1/keys/nope", None, "", 404, "key_not_found", ""),
        (Method::POST, "/kms/v1/keys/nope/generate-data-key", None, "", 404, "key_not_found", ""),
        (Method::GET, "/kms/v1/nothing", None, "", 404, "not_found", ""),
        (Method::GET, "/", None, "", 404, "not_found", ""),
        (Method::PATCH, "/kms/v1/keys/k1", None, "", 405, "method_not_allowed", ""),
        (Method::GET, "/kms/v1/decrypt", None, "", 405, "method_not_allowed", ""),
        // Conflicts.
        (Method::POST, "/kms/v1/keys", JSON, r#"{"key_name":"k1"}"#, 409, "key_already_exists", ""),
        (Method::POST, "/kms/v1/keys/k1/cancel-deletion", None, "", 409, "invalid_key_state", ""),
        (
            Method::POST,
            "/kms/v1/configure",
            JSON,
            r#"{"backend_type":"local","key_dir":"/k","master_key":{"type":"env","var":"X"}}"#,
            409,
            "service_running",
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, ct, body, status, code, field) in cases {
        let reply = http.raw(method.clone(), path, Some(ADMIN), ct, body.to_owned()).await;
        let got = (reply.status.as_u16(), reply.code(), reply.field());
        if got != (status, code.to_owned(), field.to_owned()) {
            failures.push(format!("{method} {path} {body:?}: want {status} {code} {field:?}, got {got:?}"));
        }
        assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{method} {path}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let mut options = Options::default();
    options.config.max_body_bytes = 4096;
    let server = TestServer::with(options).await;
    let http = Http::new(&server);
    let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(5000));
    let reply = http.raw(Method::PUT, "/kms/v1/keys/k/description", Some(ADMIN), JSON, big).await;
    assert_eq!((reply.status.as_u16(), reply.code().as_str()), (413, "body_too_large"));
    // Under the limit, the same route goes through to the service (404: no such key).
    let reply = http.raw(Method::PUT, "/kms/v1/keys/k/description", Some(ADMIN), JSON, r#"{"description":"x"}"#).await;
    assert_eq!(reply.status.as_u16(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_is_one_mebibyte_and_encrypt_takes_at_most_4096_bytes() {
    use base64::Engine as _;
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "k1"}))).await;
    let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(1024 * 1024));
    let reply = http.raw(Method::PUT, "/kms/v1/keys/k1/description", Some(ADMIN), JSON, big).await;
    assert_eq!(reply.status.as_u16(), 413);
    let plaintext = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 4097]);
    let reply = http.call(Method::POST, "/kms/v1/keys/k1/encrypt", ADMIN, Some(json!({"plaintext": plaintext}))).await;
    assert_eq!((reply.status.as_u16(), reply.field().as_str()), (400, "plaintext"));
    let plaintext = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 4096]);
    let reply = http.call(Method::POST, "/kms/v1/keys/k1/encrypt", ADMIN, Some(json!({"plaintext": plaintext}))).await;
    assert_eq!(reply.status.as_u16(), 200);
    server.stop().await;
}
