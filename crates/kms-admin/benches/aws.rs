//! `cargo xtask bench aws`: `GenerateDataKey` and `Decrypt` through the AWS KMS protocol
//! against the same operations through the native `/kms/v1` API, in one run on one server
//! (local backend, audit log on), as a ratio.
//!
//! Every AWS request is signed by the load generator (SigV4 with the crate's client signer, a
//! fresh `X-Amz-Date` each time) as a real client would; the server verifies each signature.
//! Both APIs are driven the same way: N keep-alive HTTP/1.1 connections, each sending its next
//! request as soon as the previous answer is read. The server and the load generator share
//! this machine's cores. Each figure is measured in rounds, native and AWS alternating (one
//! second each), and the median of the rounds' ratios is reported: on a machine shared with
//! other work, a load change then hits both sides of a round instead of one whole side.
//! Environment: `KMS_BENCH_SECONDS` (default 5) rounds per figure.
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

/// What one side of a round measured.
struct Measured {
    /// Requests per second after the warm-up.
    rps: f64,
    /// CPU seconds of the whole process (server and load generator) per request, warm-up
    /// included: what the request costs this machine, whatever else runs on it.
    cpu_per_request: f64,
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, clock ticks of 1/100 s).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// Requests per second over `duration` (after a short warm-up) and CPU per request; panics on
/// any failed request.
async fn measure(target: &Target, concurrency: usize, duration: Duration) -> Measured {
    let cpu_before = process_cpu_seconds();
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
            let (mut requests, mut all) = (0u64, 0u64);
            while Instant::now() < end {
                let now = Instant::now();
                sender.ready().await.expect("connection");
                let resp = sender.send_request(target.request()).await.expect("request");
                let status = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&body));
                all += 1;
                if now >= start {
                    requests += 1;
                }
            }
            (requests, all)
        }));
    }
    let (mut total, mut all) = (0, 0);
    for task in tasks {
        let (requests, every) = task.await.expect("load task");
        total += requests;
        all += every;
    }
    let cpu = process_cpu_seconds() - cpu_before;
    Measured { rps: total as f64 / duration.as_secs_f64(), cpu_per_request: cpu / all.max(1) as f64 }
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

/// One round of one side.
const ROUND: Duration = Duration::from_secs(1);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let seconds: u64 = std::env::var("KMS_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
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
    println!(
        "AWS KMS protocol vs native /kms/v1, same server, same run ({seconds} alternating 1 s rounds each, \
         2-core machine shared; medians)"
    );
    println!(
        "ratio: AWS req/s over native req/s; cpu ratio: native CPU per request over AWS CPU per request \
         (server and load generator together), the steadier figure when other work shares the cores"
    );
    println!(
        "{:<18} {:>5} {:>14} {:>14} {:>8} {:>10} {:>10} {:>10}",
        "operation", "conc", "native req/s", "aws req/s", "ratio", "native µs", "aws µs", "cpu ratio"
    );
    for concurrency in [1, 8] {
        for (name, native_target, aws_target) in &pairs {
            let mut rounds = Vec::new();
            for _ in 0..seconds.max(1) {
                let native = client_rt.block_on(measure(native_target, concurrency, ROUND));
                let aws = client_rt.block_on(measure(aws_target, concurrency, ROUND));
                rounds.push((native, aws));
            }
            let of = |f: &dyn Fn(&(Measured, Measured)) -> f64| median(rounds.iter().map(f).collect());
            let (native_rps, aws_rps) = (of(&|r| r.0.rps), of(&|r| r.1.rps));
            let ratio = of(&|r| r.1.rps / r.0.rps);
            let (native_cpu, aws_cpu) = (of(&|r| r.0.cpu_per_request), of(&|r| r.1.cpu_per_request));
            let cpu_ratio = of(&|r| r.0.cpu_per_request / r.1.cpu_per_request);
            println!(
                "{name:<18} {concurrency:>5} {native_rps:>14.0} {aws_rps:>14.0} {ratio:>8.2} {:>10.1} {:>10.1} {cpu_ratio:>10.2}",
                native_cpu * 1e6,
                aws_cpu * 1e6
            );
        }
    }
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&data);
}
