//! The outside backend through a real `kms-admin` server on 127.0.0.1: configured with its own
//! `backend_type` and typed settings over `POST /kms/v1/configure`, persisted and restored,
//! and put through the whole backend contract suite on the instances the admin API built.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::config::ServerConfig;
use kms_admin::store::ConfigStore;
use kms_admin::{App, Server};
use kms_core::backends::BackendRegistry;
use kms_core::mock::MemoryBackendFactory;
use kms_core::service_manager::KmsServiceManager;
use kms_core::testkit::run_all;
use kms_types::config::{BackendConfig, KmsBackend};
use outside_backend::{OUTSIDE, OutsideFactory, OutsideSettings};
use serde_json::{Value, json};

const ADMIN: &str = "outside-admin-token-0123456789";
const TOKEN: &str = "outside-access-token-do-not-show";

struct Admin {
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Admin {
    /// A server over a manager that knows the outside backend (and, as an application would
    /// have, a built-in kind), saving its configuration in `store`.
    async fn start(factory: &OutsideFactory, store: Option<ConfigStore>) -> (Self, Arc<KmsServiceManager>) {
        let mut registry = BackendRegistry::new();
        registry.register_typed(factory.clone());
        registry.register(Arc::new(MemoryBackendFactory::new(KmsBackend::Local)));
        let manager = Arc::new(KmsServiceManager::new(registry));
        if let Some(state) = store.as_ref().and_then(|s| s.load().unwrap()) {
            manager.configure(state.config).await.unwrap();
            if state.running {
                manager.start().await.unwrap();
            }
        }
        let admin = IdentityConfig {
            name: "admin".into(),
            token_sha256: hash_token(ADMIN),
            allow: vec![Grant { operations: vec!["*".into()], keys: vec!["*".into()] }],
        };
        let config =
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), identities: vec![admin], ..ServerConfig::default() };
        let app = Arc::new(App::new(Arc::clone(&manager), &config, store).unwrap());
        let server = Server::bind(&config, app).await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        let client = Client::builder(TokioExecutor::new()).build_http();
        (Self { addr, client, shutdown: Some(tx), task: Some(task) }, manager)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("authorization", format!("Bearer {ADMIN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self.client.request(request).await.expect("the admin server answers");
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, reply) = self.call(method, path, body).await;
        assert!(status.is_success(), "{path}: {status} {reply}");
        reply
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

fn outside_body(region: &str) -> Value {
    json!({"backend_type": "outside", "region": region, "access_token": TOKEN, "timeout_seconds": 20})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_configures_an_outside_backend_and_keeps_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let factory = OutsideFactory::default();
    let (admin, _) = Admin::start(&factory, Some(ConfigStore::open(dir.path(), None).unwrap())).await;

    let configured = admin.ok(Method::POST, "/kms/v1/configure", Some(outside_body("eu-test-1"))).await;
    assert_eq!(configured["status"]["state"], "configured");
    assert_eq!(configured["persisted"], true);
    admin.ok(Method::POST, "/kms/v1/start", None).await;
    let status = admin.ok(Method::GET, "/kms/v1/status", None).await;
    assert_eq!((&status["backend"], &status["healthy"]), (&json!("outside"), &json!(true)));
    assert_eq!(factory.last_built().unwrap().region(), "eu-test-1");

    // The typed settings redact their own secret; the rest of them stays visible.
    let (_, shown) = admin.call(Method::GET, "/kms/v1/config", None).await;
    assert_eq!(shown["config"]["backend"], "outside");
    assert_eq!(shown["config"]["backend_config"]["region"], "eu-test-1");
    assert_eq!(shown["config"]["backend_config"]["access_token"], "[REDACTED]");
    assert_eq!(shown["config"]["timeout_seconds"], 20);
    assert!(!shown.to_string().contains(TOKEN));

    // Keys work through the API.
    let created = admin.ok(Method::POST, "/kms/v1/keys", Some(json!({"key_name": "outside-k1"}))).await;
    assert_eq!(created["key_id"], "outside-k1");
    let sealed =
        admin.ok(Method::POST, "/kms/v1/keys/outside-k1/encrypt", Some(json!({"plaintext": "aGVsbG8="}))).await;
    let opened =
        admin.ok(Method::POST, "/kms/v1/decrypt", Some(json!({"ciphertext_blob": sealed["ciphertext_blob"]}))).await;
    assert_eq!(opened["plaintext"], "aGVsbG8=");
    admin.stop().await;

    // On disk, every setting of the outside backend is sealed (only its factory knows which
    // are secret), and it comes back at the next start.
    let raw = std::fs::read_to_string(dir.path().join(kms_admin::store::STATE_FILE)).unwrap();
    assert!(!raw.contains(TOKEN) && !raw.contains("eu-test-1") && raw.contains("sealed:v1:"), "{raw}");
    let store = ConfigStore::open(dir.path(), None).unwrap();
    let saved = store.load().unwrap().expect("saved");
    assert!(saved.running);
    let BackendConfig::Custom(custom) = &saved.config.backend_config else { panic!("{:?}", saved.config) };
    assert_eq!(custom.settings::<OutsideSettings>().unwrap().access_token.expose_secret(), TOKEN);
    let restarted = OutsideFactory::default();
    let (admin, manager) = Admin::start(&restarted, Some(store)).await;
    assert_eq!(manager.current_config().await.unwrap().backend, OUTSIDE);
    assert_eq!(restarted.last_built().unwrap().region(), "eu-test-1");
    let status = admin.ok(Method::GET, "/kms/v1/status", None).await;
    assert_eq!(status["status"]["state"], "running");
    admin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_outside_settings_are_refused_naming_the_field() {
    let factory = OutsideFactory::default();
    let (admin, _) = Admin::start(&factory, None).await;
    let cases = [
        (
            json!({"backend_type": "outside", "region": "eu", "access_token": TOKEN, "colour": 1}),
            "configuration_error",
            "backend_config.colour",
        ),
        (
            json!({"backend_type": "outside", "region": "EU WEST", "access_token": TOKEN}),
            "configuration_error",
            "backend_config.region",
        ),
        (
            json!({"backend_type": "outside", "region": "eu", "access_token": ""}),
            "configuration_error",
            "backend_config.access_token",
        ),
        (json!({"backend_type": "outside", "region": "eu"}), "configuration_error", "backend_config.access_token"),
        (json!({"backend_type": "elsewhere", "region": "eu"}), "invalid_request", "backend_type"),
        (
            json!({"backend_type": "outside", "region": "eu", "access_token": TOKEN, "tls": {"skip_verify": true}}),
            "configuration_error",
            "tls",
        ),
    ];
    for (body, code, field) in cases {
        let (status, reply) = admin.call(Method::POST, "/kms/v1/configure", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(
            (reply["error"]["code"].as_str(), reply["error"]["field"].as_str()),
            (Some(code), Some(field)),
            "{body}"
        );
        assert!(!reply.to_string().contains(TOKEN));
    }
    let (_, status) = admin.call(Method::GET, "/kms/v1/status", None).await;
    assert_eq!(status["status"]["state"], "not_configured", "no refused body was stored");
    admin.stop().await;
}

/// Every case of the contract suite, each on a fresh backend that a `POST /kms/v1/reconfigure`
/// through the admin API built (and swapped in) from its typed settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outside_backend_passes_the_contract_suite_through_the_admin_api() {
    let factory = OutsideFactory::default();
    let (admin, manager) = Admin::start(&factory, None).await;
    let admin = Arc::new(admin);
    let regions = std::sync::atomic::AtomicUsize::new(0);
    let results = run_all(|| {
        let admin = Arc::clone(&admin);
        let factory = factory.clone();
        let region = format!("contract-{}", regions.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        async move {
            let reply = admin.ok(Method::POST, "/kms/v1/reconfigure", Some(outside_body(&region))).await;
            assert_eq!(reply["status"]["state"], "running");
            let built = factory.last_built().expect("the reconfigure built a backend");
            assert_eq!(built.region(), region, "the case runs on the backend this reconfigure built");
            built as Arc<dyn kms_core::backends::KmsBackend>
        }
    })
    .await;
    let failed: Vec<String> = results.iter().filter(|r| !r.passed()).map(ToString::to_string).collect();
    assert!(failed.is_empty(), "contract cases failed:\n{}", failed.join("\n"));
    assert!(results.len() > 20, "the whole suite ran: {} cases", results.len());
    assert_eq!(manager.current_config().await.unwrap().backend, OUTSIDE);
    Arc::try_unwrap(admin).ok().expect("no request is left").stop().await;
}
