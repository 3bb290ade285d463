//! A real server on a loopback port over the in-memory backend, and a small HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::config::ServerConfig;
use kms_admin::store::ConfigStore;
use kms_admin::{App, Server};
use kms_core::backends::BackendRegistry;
use kms_core::mock::{MemoryBackend, MemoryBackendFactory};
use kms_core::service_manager::KmsServiceManager;
use kms_types::config::{KmsBackend, KmsConfig, LocalConfig, MasterKeySource};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "admin-token-0123456789";
pub const APP: &str = "app-token-0123456789";
pub const AUDITOR: &str = "auditor-token-0123456789";

pub fn identities() -> Vec<IdentityConfig> {
    let grant = |ops: &[&str], keys: &[&str]| Grant {
        operations: ops.iter().map(|s| s.to_string()).collect(),
        keys: keys.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        IdentityConfig { name: "admin".into(), token_sha256: hash_token(ADMIN), allow: vec![grant(&["*"], &["*"])] },
        IdentityConfig {
            name: "app".into(),
            token_sha256: hash_token(APP),
            allow: vec![grant(&["generate_data_key", "decrypt"], &["app-*"])],
        },
        IdentityConfig {
            name: "auditor".into(),
            token_sha256: hash_token(AUDITOR),
            allow: vec![grant(&["read"], &["*"])],
        },
    ]
}

/// A configuration the memory factory (registered for `Local`) accepts.
pub fn memory_config() -> KmsConfig {
    KmsConfig::local(LocalConfig::new("/unused", MasterKeySource::InsecurePlaintextForDevelopment))
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kms-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub manager: Arc<KmsServiceManager>,
    pub backend: Arc<MemoryBackend>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub struct Options {
    pub config: ServerConfig,
    pub start: bool,
    pub data_dir: Option<PathBuf>,
    pub backend: Option<Arc<MemoryBackend>>,
    /// Serves this backend instead of the memory one (`TestServer::backend` is then unused).
    pub custom_backend: Option<Arc<dyn kms_core::backends::KmsBackend>>,
}

/// A factory (for `Local`) handing out one given backend.
struct SharedFactory(Arc<dyn kms_core::backends::KmsBackend>);

#[async_trait::async_trait]
impl kms_core::backends::BackendFactory for SharedFactory {
    fn kind(&self) -> KmsBackend {
        KmsBackend::Local
    }
    async fn build(&self, _: &KmsConfig) -> kms_types::error::Result<Arc<dyn kms_core::backends::KmsBackend>> {
        Ok(self.0.clone())
    }
}

impl Default for Options {
    fn default() -> Self {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            identities: identities(),
            ..ServerConfig::default()
        };
        Self { config, start: true, data_dir: None, backend: None, custom_backend: None }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Self {
        let backend = options.backend.unwrap_or_else(|| Arc::new(MemoryBackend::new()));
        let mut registry = BackendRegistry::new();
        match options.custom_backend {
            Some(custom) => registry.register(Arc::new(SharedFactory(custom))),
            None => registry.register(Arc::new(MemoryBackendFactory::sharing(KmsBackend::Local, backend.clone()))),
        };
        let manager = Arc::new(KmsServiceManager::new(registry));
        let store = options.data_dir.as_ref().map(|d| ConfigStore::open(d, None).unwrap());
        if let Some(state) = store.as_ref().and_then(|s| s.load().unwrap()) {
            manager.configure(state.config).await.unwrap();
            if state.running {
                manager.start().await.unwrap();
            }
        } else if options.start {
            manager.configure(memory_config()).await.unwrap();
            manager.start().await.unwrap();
        }
        let app = Arc::new(App::new(manager.clone(), &options.config, store).unwrap());
        let server = Server::bind(&options.config, app).await.unwrap();
        let addr = server.local_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        Self { addr, manager, backend, shutdown: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
        }
    }
}

#[derive(Clone)]
pub struct Http {
    client: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }
    pub fn field(&self) -> String {
        self.json()["error"]["field"].as_str().unwrap_or("").to_owned()
    }
}

impl Http {
    pub fn new(server: &TestServer) -> Self {
        let client = HyperClient::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build_http();
        Self { client, base: format!("http://{}", server.addr) }
    }

    /// Sends a raw request: `content_type: None` sends none.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = self.client.request(req.body(Full::new(body.into())).unwrap()).await.expect("request failed");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Reply { status, headers, body }
    }

    pub async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        match body {
            Some(v) => {
                self.raw(method, path, Some(token), Some("application/json"), serde_json::to_vec(&v).unwrap()).await
            }
            None => self.raw(method, path, Some(token), None, Bytes::new()).await,
        }
    }

    pub async fn ok(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Value {
        let reply = self.call(method.clone(), path, token, body).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()
    }
}
