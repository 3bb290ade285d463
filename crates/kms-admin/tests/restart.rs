//! Restart keeps keys and configuration: the service state is saved in the data folder and a
//! new server over the same folder resumes it.

mod common;

use common::{ADMIN, Http, Options, TestServer};
use http::Method;
use kms_types::error::Result;
use kms_types::types::{
    CancelKeyDeletionRequest, CancelKeyDeletionResponse, CreateKeyRequest, CreateKeyResponse, DecryptRequest,
    DecryptResponse, DeleteKeyRequest, DeleteKeyResponse, DescribeKeyRequest, DescribeKeyResponse, EncryptRequest,
    EncryptResponse, GenerateDataKeyRequest, GenerateDataKeyResponse, ListKeysRequest, ListKeysResponse,
};
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

/// A backend whose `close` takes a while (as a remote one may), so that a reconfigure spends
/// time after the switch, retiring the old backend.
struct SlowClose;

#[async_trait::async_trait]
impl kms_core::backends::KmsBackend for SlowClose {
    async fn create_key(&self, _: CreateKeyRequest) -> Result<CreateKeyResponse> {
        Err(unavailable())
    }
    async fn encrypt(&self, _: EncryptRequest) -> Result<EncryptResponse> {
        Err(unavailable())
    }
    async fn decrypt(&self, _: DecryptRequest) -> Result<DecryptResponse> {
        Err(unavailable())
    }
    async fn generate_data_key(&self, _: GenerateDataKeyRequest) -> Result<GenerateDataKeyResponse> {
        Err(unavailable())
    }
    async fn describe_key(&self, _: DescribeKeyRequest) -> Result<DescribeKeyResponse> {
        Err(unavailable())
    }
    async fn list_keys(&self, _: ListKeysRequest) -> Result<ListKeysResponse> {
        Err(unavailable())
    }
    async fn delete_key(&self, _: DeleteKeyRequest) -> Result<DeleteKeyResponse> {
        Err(unavailable())
    }
    async fn cancel_key_deletion(&self, _: CancelKeyDeletionRequest) -> Result<CancelKeyDeletionResponse> {
        Err(unavailable())
    }
    async fn health_check(&self) -> Result<bool> {
        Ok(true)
    }
    async fn close(&self) -> Result<()> {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        Ok(())
    }
}

fn unavailable() -> kms_types::error::KmsError {
    kms_types::error::KmsError::ServiceUnavailable { message: "test backend".into() }
}

struct SlowCloseFactory;

#[async_trait::async_trait]
impl kms_core::backends::BackendFactory for SlowCloseFactory {
    fn kind(&self) -> kms_types::config::KmsBackend {
        kms_types::config::KmsBackend::Local
    }
    async fn build(
        &self,
        _: &kms_types::config::KmsConfig,
    ) -> Result<std::sync::Arc<dyn kms_core::backends::KmsBackend>> {
        Ok(std::sync::Arc::new(SlowClose))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfigure_that_outlives_its_request_is_still_saved() {
    use std::sync::Arc;
    let dir = common::temp_dir("slow-reconfigure");
    let mut registry = kms_core::backends::BackendRegistry::new();
    registry.register(Arc::new(SlowCloseFactory));
    let manager = Arc::new(kms_core::service_manager::KmsServiceManager::new(registry));
    let mut config = Options::default().config;
    config.request_timeout = std::time::Duration::from_secs(1);
    let store = kms_admin::store::ConfigStore::open(&dir, None).unwrap();
    let app = Arc::new(kms_admin::App::new(manager.clone(), &config, Some(store)).unwrap());
    let server = kms_admin::Server::bind(&config, app).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let post = |path: &str, body: serde_json::Value| {
        let req = http::Request::post(format!("{base}{path}"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(serde_json::to_vec(&body).unwrap())))
            .unwrap();
        client.request(req)
    };
    let config_with = |ttl: u64| {
        json!({"backend_type": "local", "key_dir": "/unused",
            "master_key": {"type": "insecure_plaintext_for_development"}, "cache_ttl_seconds": ttl})
    };
    assert!(post("/kms/v1/configure", config_with(10)).await.unwrap().status().is_success());
    assert!(post("/kms/v1/start", json!({})).await.unwrap().status().is_success());
    // The switch happens at once; retiring the old backend outlasts the request's 1 s.
    let _ = post("/kms/v1/reconfigure", config_with(20)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let running = manager.current_config().await.unwrap();
    assert_eq!(running.cache_config.ttl, std::time::Duration::from_secs(20));
    let saved = kms_admin::store::ConfigStore::open(&dir, None).unwrap().load().unwrap().unwrap();
    assert_eq!(saved.config, running, "the service runs one configuration and a restart would resume another");
    let _ = tx.send(());
    tokio::time::timeout(std::time::Duration::from_secs(30), task).await.unwrap().unwrap();
}

/// A change that took effect but could not be saved says so (`500 persist_failed`), and the
/// service is in the state the change left it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_saved_is_a_persist_failure_after_it_took_effect() {
    let dir = common::temp_dir("unsaveable");
    let server = TestServer::with(Options { data_dir: Some(dir.clone()), ..Options::default() }).await;
    let http = Http::new(&server);
    // The state file's place is taken by a directory: the save's final rename fails.
    std::fs::create_dir_all(dir.join(kms_admin::store::STATE_FILE).join("occupied")).unwrap();
    let reply = http.call(Method::POST, "/kms/v1/stop", ADMIN, None).await;
    assert_eq!((reply.status.as_u16(), reply.code()), (500, "persist_failed".to_owned()));
    let status = http.ok(Method::GET, "/kms/v1/status", ADMIN, None).await;
    assert_eq!(status["status"]["state"], "stopped");
    server.stop().await;
}
