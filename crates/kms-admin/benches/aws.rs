//! `cargo xtask bench aws`: `GenerateDataKey` and `Decrypt` through the AWS KMS protocol
//! against the same operations through the native `/kms/v1` API, in one run on one server
//! (local backend, audit log on), as a ratio.
//!
//! Every AWS request is signed by the load generator (SigV4 with the crate's client signer, a
//! fresh `X-Amz-Date` each time) as a real client would; the server verifies each signature.
//! Both APIs are driven the same way: N keep-alive HTTP/1.1 connections, each sending its next
//! request as soon as the previous answer is read. The server and the load generator share
//! this machine's cores. Environment: `KMS_BENCH_SECONDS` (default 5) per measurement.
#![allow(clippy::print_stdout, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::aws::settings::{AccessKeyConfig, generate_access_key};
use kms_admin::aws::sigv4::Signer;
use kms_admin::config::ServerConfig;
use kms_admin::store::ConfigStore;
use kms_admin::{App, Server};
use kms_core::backends::BackendRegistry;
use kms_core::service_manager::KmsServiceManager;
use kms_types::config::{KmsConfig, LocalConfig, MasterKeySource};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

const TOKEN: &str = "bench-token-0123456789abcdef";

/// How one request is made.
#[derive(Clone)]
enum Api {
    Native { path: &'static str },
    Aws { target: &'static str, access_key_id: String, secret: Arc<Zeroizing<String>> },
}

#[derive(Clone)]
struct Target {
    api: Api,
    addr: SocketAddr,
    body: Bytes,
}

impl Target {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&self.addr.to_string()).unwrap());
        let path = match &self.api {
            Api::Native { path } => {
                headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap());
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                *path
            }
            Api::Aws { target, access_key_id, secret } => {
                headers.insert("x-amz-target", HeaderValue::from_str(&format!("TrentService.{target}")).unwrap());
                headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
                let signer = Signer { access_key_id, secret: secret.as_bytes(), region: "us-east-1", service: "kms" };
                signer.sign("POST", "/", &mut headers, &self.body, time::OffsetDateTime::now_utc());
                "/"
            }
        };
        let mut req = Request::builder().method("POST").uri(path);
        for (name, value) in &headers {
            req = req.header(name, value);
        }
        req.body(Full::new(self.body.clone())).unwrap()
    }
}

/// Requests per second over `duration` (after a short warm-up); panics on any failed request.
async fn measure(target: &Target, concurrency: usize, duration: Duration) -> f64 {
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(target.addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.expect("handshake");
            tokio::spawn(conn);
            let mut requests = 0u64;
            while Instant::now() < end {
                let now = Instant::now();
                sender.ready().await.expect("connection");
                let resp = sender.send_request(target.request()).await.expect("request");
                let status = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
                if now >= start {
                    requests += 1;
                }
            }
            requests
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("load task");
    }
    total as f64 / duration.as_secs_f64()
}

async fn one(target: &Target) -> serde_json::Value {
    let stream = TcpStream::connect(target.addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(target.request()).await.expect("request");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{status} {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).expect("JSON")
}

/// The server: local backend, one identity with a bearer token and an access key.
fn kms_server(rt: &tokio::runtime::Runtime, data: &Path) -> (SocketAddr, String, Zeroizing<String>) {
    rt.block_on(async {
        let mut registry = BackendRegistry::new();
        registry.register(Arc::new(kms_backend_local::LocalBackendFactory::new()));
        let manager = Arc::new(KmsServiceManager::new(registry));
        let master = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
        manager.configure(KmsConfig::local(LocalConfig::new(data.join("keys"), master))).await.expect("configure");
        manager.start().await.expect("start");
        let store = ConfigStore::open(data, None).expect("seal key");
        let (access_key_id, secret) = generate_access_key();
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_connections: 256,
            audit_log: Some(data.join("audit.log")),
            identities: vec![IdentityConfig {
                name: "bench".into(),
                token_sha256: hash_token(TOKEN),
                allow: vec![Grant { operations: vec!["*".into()], keys: vec!["*".into()] }],
            }],
            ..ServerConfig::default()
        };
        config.aws.access_keys.push(AccessKeyConfig {
            identity: "bench".into(),
            access_key_id: access_key_id.clone(),
            secret_access_key: store.seal_secret(&secret, &AccessKeyConfig::seal_field(&access_key_id)).expect("seal"),
        });
        let app = Arc::new(App::new(manager, &config, Some(store)).expect("app"));
        let server = Server::bind(&config, app).await.expect("bind");
        let addr = server.local_addr();
        tokio::spawn(server.run_until(std::future::pending()));
        (addr, access_key_id, secret)
    })
}

fn main() {
    let seconds: u64 = std::env::var("KMS_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    // Server and load generator each get a runtime of two workers.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = std::env::temp_dir().join(format!("kms-bench-aws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let (addr, access_key_id, secret) = kms_server(&server_rt, &data);
    let secret = Arc::new(secret);
    let aws = |target: &'static str, body: String| Target {
        api: Api::Aws { target, access_key_id: access_key_id.clone(), secret: secret.clone() },
        addr,
        body: Bytes::from(body),
    };
    let native = |path: &'static str, body: String| Target { api: Api::Native { path }, addr, body: Bytes::from(body) };

    let blob = client_rt.block_on(async {
        one(&native("/kms/v1/keys", r#"{"key_name":"bench"}"#.into())).await;
        let dk = one(&aws("GenerateDataKey", r#"{"KeyId":"bench","KeySpec":"AES_256"}"#.into())).await;
        dk["CiphertextBlob"].as_str().unwrap().to_owned()
    });
    let pairs = [
        (
            "GenerateDataKey",
            native("/kms/v1/keys/bench/generate-data-key", "{}".into()),
            aws("GenerateDataKey", r#"{"KeyId":"bench","KeySpec":"AES_256"}"#.into()),
        ),
        (
            "Decrypt",
            native("/kms/v1/decrypt", format!(r#"{{"ciphertext_blob":"{blob}"}}"#)),
            aws("Decrypt", format!(r#"{{"CiphertextBlob":"{blob}"}}"#)),
        ),
    ];
    println!("AWS KMS protocol vs native /kms/v1, same server, same run ({seconds} s each, 2-core machine shared)");
    println!("{:<18} {:>5} {:>14} {:>14} {:>8}", "operation", "conc", "native req/s", "aws req/s", "ratio");
    for concurrency in [1, 8] {
        for (name, native_target, aws_target) in &pairs {
            let native_rps = client_rt.block_on(measure(native_target, concurrency, duration));
            let aws_rps = client_rt.block_on(measure(aws_target, concurrency, duration));
            println!("{name:<18} {concurrency:>5} {native_rps:>14.0} {aws_rps:>14.0} {:>8.2}", aws_rps / native_rps);
        }
    }
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&data);
}
