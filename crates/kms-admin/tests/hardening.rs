//! What the answers themselves give away: caching of key material, server details in 5xx
//! bodies, and the status of a server fault.

mod common;

use std::sync::Arc;

use common::{ADMIN, Http, Options, TestServer};
use http::{Method, StatusCode};
use kms_core::mock::MemoryBackend;
use kms_testkit::forwarding::{Forwarding, Hooks};
use kms_types::error::{KmsError, Result};
use kms_types::types::EncryptionContext;
use serde_json::json;

/// The memory backend (forwarded, every operation), except that `generate_data_key` fails
/// with `fault` (made fresh per call).
struct Faulty {
    fault: fn() -> KmsError,
}

#[async_trait::async_trait]
impl Hooks for Faulty {
    type Guard = ();
    async fn before(&self, operation: &'static str) -> Result<()> {
        if operation == "generate_data_key" { Err((self.fault)()) } else { Ok(()) }
    }
}

async fn faulty_server(fault: fn() -> KmsError) -> TestServer {
    let backend = Arc::new(Forwarding::new(Arc::new(MemoryBackend::new()), Faulty { fault }));
    TestServer::with(Options { custom_backend: Some(backend), ..Default::default() }).await
}

async fn data_key_reply(server: &TestServer) -> common::Reply {
    let http = Http::new(server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-1"}))).await;
    http.call(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, Some(json!({}))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_with_key_material_or_plaintext_are_never_cached() {
    let server = TestServer::start().await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-1"}))).await;
    let data_key = http.call(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, Some(json!({}))).await;
    assert_eq!(data_key.status, StatusCode::OK);
    assert!(data_key.json()["plaintext_key"].is_string());
    assert_eq!(data_key.headers.get("cache-control").unwrap(), "no-store");
    let blob = data_key.json()["ciphertext_blob"].clone();
    let decrypted = http.call(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": blob}))).await;
    assert_eq!(decrypted.status, StatusCode::OK);
    assert_eq!(decrypted.headers.get("cache-control").unwrap(), "no-store");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_name_no_server_path_only_a_request_id() {
    let server = faulty_server(|| {
        KmsError::backend_with_source(
            "cannot write /var/lib/kms-secret-place/keys/app-1.key",
            false,
            std::io::Error::other("disk full"),
        )
    })
    .await;
    let reply = data_key_reply(&server).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.code(), "backend_error");
    let body = String::from_utf8_lossy(&reply.body).into_owned();
    assert!(!body.contains("/var/lib") && !body.contains("kms-secret-place"), "{body}");
    let request_id = reply.headers.get("x-request-id").expect("a request id header").to_str().unwrap().to_owned();
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains(&request_id), "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_generator_failure_is_a_server_error_not_a_bad_request() {
    let server = faulty_server(|| kms_crypto::CryptoError::RandomUnavailable.into()).await;
    let reply = data_key_reply(&server).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.code(), "internal_error");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crypto_audit_lines_carry_the_key_version_and_a_digest_of_the_context_never_its_values() {
    let dir = common::temp_dir("audit-digest");
    let log = dir.join("audit.log");
    let mut options = Options::default();
    options.config.audit_log = Some(log.clone());
    let server = TestServer::with(options).await;
    let http = Http::new(&server);
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "app-1"}))).await;
    http.ok(Method::POST, "/kms/v1/keys/app-1/rotate", ADMIN, None).await;
    let ctx = json!({"tenant": "value-must-not-leak"});
    let dk = http
        .ok(Method::POST, "/kms/v1/keys/app-1/generate-data-key", ADMIN, Some(json!({"encryption_context": ctx})))
        .await;
    let blob = dk["ciphertext_blob"].clone();
    http.ok(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": blob, "encryption_context": ctx})))
        .await;
    http.ok(Method::POST, "/kms/v1/keys/app-1/encrypt", ADMIN, Some(json!({"plaintext": "aGk="}))).await;
    server.stop().await;

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("value-must-not-leak") && !text.contains("tenant"), "{text}");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let context: EncryptionContext = [("tenant".to_owned(), "value-must-not-leak".to_owned())].into();
    let digest = ring::digest::digest(&ring::digest::SHA256, &kms_crypto::context::canonical_context(&context));
    let digest: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let empty =
        ring::digest::digest(&ring::digest::SHA256, &kms_crypto::context::canonical_context(&EncryptionContext::new()));
    let empty: String = empty.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let by_op =
        |op: &str| lines.iter().find(|l| l["operation"] == op).unwrap_or_else(|| panic!("no {op} line: {text}"));
    for (op, expected) in [("generate_data_key", &digest), ("decrypt", &digest), ("encrypt", &empty)] {
        let line = by_op(op);
        assert_eq!(line["key_version"], 2, "{op}: {line}");
        assert_eq!(line["context_sha256"].as_str(), Some(expected.as_str()), "{op}: {line}");
    }
    assert!(by_op("create_key").get("context_sha256").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
