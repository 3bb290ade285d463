//! Restart keeps keys and configuration: the service state is saved in the data folder and a
//! new server over the same folder resumes it.

mod common;

use common::{ADMIN, Http, Options, TestServer};
use http::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_configuration_and_keys() {
    let dir = common::temp_dir("restart");
    let backend = std::sync::Arc::new(kms_core::mock::MemoryBackend::new());
    let first = TestServer::with(Options {
        data_dir: Some(dir.clone()),
        backend: Some(backend.clone()),
        start: false,
        ..Options::default()
    })
    .await;
    let http = Http::new(&first);
    let body = json!({"backend_type": "local", "key_dir": "/unused",
        "master_key": {"type": "passphrase", "passphrase": "a passphrase that stays sealed"},
        "default_key_id": "k1", "cache_ttl_seconds": 42});
    http.ok(Method::POST, "/kms/v1/configure", ADMIN, Some(body)).await;
    http.ok(Method::POST, "/kms/v1/start", ADMIN, None).await;
    http.ok(Method::POST, "/kms/v1/keys", ADMIN, Some(json!({"key_name": "k1"}))).await;
    let dk = http.ok(Method::POST, "/kms/v1/keys/k1/generate-data-key", ADMIN, None).await;
    first.stop().await;

    let saved = std::fs::read_to_string(dir.join(kms_admin::store::STATE_FILE)).unwrap();
    assert!(!saved.contains("stays sealed"), "{saved}");

    // The memory backend stands in for the key store that survives on disk.
    let second = TestServer::with(Options {
        data_dir: Some(dir.clone()),
        backend: Some(backend),
        start: false,
        ..Options::default()
    })
    .await;
    let http = Http::new(&second);
    let status = http.ok(Method::GET, "/kms/v1/status", ADMIN, None).await;
    assert_eq!(status["status"]["state"], "running");
    let config = http.ok(Method::GET, "/kms/v1/config", ADMIN, None).await;
    assert_eq!(config["config"]["default_key_id"], "k1");
    assert_eq!(config["config"]["cache_config"]["ttl_seconds"], 42);
    let opened =
        http.ok(Method::POST, "/kms/v1/decrypt", ADMIN, Some(json!({"ciphertext_blob": dk["ciphertext_blob"]}))).await;
    assert_eq!(opened["plaintext"], dk["plaintext_key"]);

    // A stopped service stays stopped across a restart.
    http.ok(Method::POST, "/kms/v1/stop", ADMIN, None).await;
    second.stop().await;
    let third = TestServer::with(Options { data_dir: Some(dir), start: false, ..Options::default() }).await;
    let status = Http::new(&third).ok(Method::GET, "/kms/v1/status", ADMIN, None).await;
    assert_eq!(status["status"]["state"], "configured");
    third.stop().await;
}
