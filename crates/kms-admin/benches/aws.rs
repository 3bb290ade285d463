//! `cargo xtask bench aws`: `GenerateDataKey` and `Decrypt` through the AWS KMS protocol
//! against the same operations through the native `/kms/v1` API, in one run on one server
//! (local backend, audit log on), as a ratio; and against a moto server (the Python AWS mock)
//! on the same machine when `KMS_BENCH_MOTO_URL` names one (`cargo xtask bench aws` installs
//! moto into `.tools/python`, starts it on a free loopback port and stops it after).
//!
//! Every AWS request is signed by the load generator (SigV4 with the crate's client signer, a
//! fresh `X-Amz-Date` each time) as a real client would; the server verifies each signature.
//! The signing key is derived once a day and kept, as the SDKs do: the load generator shares
//! the process and the cores with the server, and four HMACs a request of its own would be
//! counted against the server. Both APIs are driven the same way: N keep-alive HTTP/1.1
//! connections, each sending its next request as soon as the previous answer is read. The
//! server and the load generator share this machine's cores. Each figure is measured in rounds,
//! native, AWS (and moto) alternating (one second each), and the median of the rounds' ratios
//! is reported: on a machine shared with other work, a load change then hits every side of a
//! round instead of one whole side.
//! Environment: `KMS_BENCH_SECONDS` (default 5) rounds per figure; `KMS_BENCH_MOTO_URL`
//! (`http://127.0.0.1:PORT`) the moto server.
#![allow(clippy::print_stdout, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use kms_admin::auth::{Grant, IdentityConfig, hash_token};
use kms_admin::aws::settings::{AccessKeyConfig, generate_access_key};
use kms_admin::aws::sigv4::{Signer, SigningKey};
use kms_admin::config::ServerConfig;
use kms_admin::store::ConfigStore;
use kms_admin::{App, Server};
use kms_core::backends::BackendRegistry;
use kms_core::service_manager::KmsServiceManager;
use kms_types::config::{KmsConfig, LocalConfig, MasterKeySource};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use zeroize::Zeroizing;

const TOKEN: &str = "bench-token-0123456789abcdef";

/// The bench's AWS client: an access key and the signing key of the day, derived on the
/// day's first request and kept.
struct AwsClient {
    access_key_id: String,
    secret: Zeroizing<String>,
    day_key: Mutex<Option<(String, SigningKey)>>,
}

impl AwsClient {
    fn new(access_key_id: String, secret: Zeroizing<String>) -> Arc<Self> {
        Arc::new(Self { access_key_id, secret, day_key: Mutex::new(None) })
    }

    /// Adds `x-amz-date` (now) and the `Authorization` header.
    fn sign(&self, headers: &mut HeaderMap, body: &[u8]) {
        let signer = Signer {
            access_key_id: &self.access_key_id,
            secret: self.secret.as_bytes(),
            region: "us-east-1",
            service: "kms",
        };
        let now = OffsetDateTime::now_utc();
        let date = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
        let key = {
            let mut day_key = self.day_key.lock().unwrap();
            match day_key.as_ref() {
                Some((day, key)) if *day == date => key.clone(),
                _ => day_key.insert((date.clone(), signer.signing_key(&date))).1.clone(),
            }
        };
        signer.sign_with_key("POST", "/", headers, body, now, &key);
    }
}

/// How one request is made.
#[derive(Clone)]
enum Api {
    Native { path: &'static str, authorization: HeaderValue },
    Aws { target: HeaderValue, client: Arc<AwsClient> },
}

#[derive(Clone)]
struct Target {
    api: Api,
    addr: SocketAddr,
    host: HeaderValue,
    body: Bytes,
}

impl Target {
    fn new(api: Api, addr: SocketAddr, body: impl Into<Bytes>) -> Self {
        Self { api, addr, host: HeaderValue::from_str(&addr.to_string()).unwrap(), body: body.into() }
    }

    fn native(addr: SocketAddr, path: &'static str, body: impl Into<Bytes>) -> Self {
        let authorization = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
        Self::new(Api::Native { path, authorization }, addr, body)
    }

    fn aws(client: &Arc<AwsClient>, addr: SocketAddr, target: &str, body: impl Into<Bytes>) -> Self {
        let target = HeaderValue::from_str(&format!("TrentService.{target}")).unwrap();
        Self::new(Api::Aws { target, client: client.clone() }, addr, body)
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut headers = HeaderMap::new();
        headers.insert("host", self.host.clone());
        let path = match &self.api {
            Api::Native { path, authorization } => {
                headers.insert("authorization", authorization.clone());
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                *path
            }
            Api::Aws { target, client } => {
                headers.insert("x-amz-target", target.clone());
                headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
                client.sign(&mut headers, &self.body);
                "/"
            }
        };
        let mut req = Request::builder().method("POST").uri(path);
        *req.headers_mut().unwrap() = headers;
        req.body(Full::new(self.body.clone())).unwrap()
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| format!("connect to {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// One request on `sender`; a connection the server closed (moto's server may) is opened
    /// again once. Anything but a 2xx answer is an error.
    async fn send(&self, sender: &mut SendRequest<Full<Bytes>>) -> Result<Bytes, String> {
        let mut response = match sender.ready().await {
            Ok(()) => sender.send_request(self.request()).await,
            Err(e) => Err(e),
        };
        if response.is_err() {
            *sender = self.connect().await?;
            response = sender.send_request(self.request()).await;
        }
        let resp = response.map_err(|e| format!("request to {}: {e}", self.addr))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(body)
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

/// Requests per second over `duration` (after a short warm-up) and CPU per request; fails on
/// any failed request.
async fn measure(target: &Target, concurrency: usize, duration: Duration) -> Result<Measured, String> {
    let cpu_before = process_cpu_seconds();
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = target.connect().await?;
            let (mut requests, mut all) = (0u64, 0u64);
            while Instant::now() < end {
                let now = Instant::now();
                target.send(&mut sender).await?;
                all += 1;
                if now >= start {
                    requests += 1;
                }
            }
            Ok::<_, String>((requests, all))
        }));
    }
    let (mut total, mut all) = (0, 0);
    for task in tasks {
        let (requests, every) = task.await.expect("load task")?;
        total += requests;
        all += every;
    }
    let cpu = process_cpu_seconds() - cpu_before;
    Ok(Measured { rps: total as f64 / duration.as_secs_f64(), cpu_per_request: cpu / all.max(1) as f64 })
}

async fn one(target: &Target) -> Result<serde_json::Value, String> {
    let body = target.send(&mut target.connect().await?).await?;
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

/// What the bench measures on the moto server `url` names: a key created there by the same
/// signed client, and `GenerateDataKey` and `Decrypt` targets on it.
async fn moto_targets(url: &str, client: &Arc<AwsClient>) -> Result<[Target; 2], String> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("KMS_BENCH_MOTO_URL {url:?} is not http://HOST:PORT"))?;
    let created = one(&Target::aws(client, addr, "CreateKey", "{}")).await?;
    let key_id = created["KeyMetadata"]["KeyId"].as_str().ok_or("CreateKey answered no KeyMetadata.KeyId")?.to_owned();
    let generate = serde_json::json!({"KeyId": key_id, "KeySpec": "AES_256"}).to_string();
    let dk = one(&Target::aws(client, addr, "GenerateDataKey", generate.clone())).await?;
    let blob = dk["CiphertextBlob"].as_str().ok_or("GenerateDataKey answered no CiphertextBlob")?.to_owned();
    Ok([
        Target::aws(client, addr, "GenerateDataKey", generate),
        Target::aws(client, addr, "Decrypt", format!(r#"{{"CiphertextBlob":"{blob}"}}"#)),
    ])
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
    let client = AwsClient::new(access_key_id, secret);

    let blob = client_rt.block_on(async {
        one(&Target::native(addr, "/kms/v1/keys", r#"{"key_name":"bench"}"#)).await.expect("create the key");
        let dk = one(&Target::aws(&client, addr, "GenerateDataKey", r#"{"KeyId":"bench","KeySpec":"AES_256"}"#))
            .await
            .expect("GenerateDataKey");
        dk["CiphertextBlob"].as_str().unwrap().to_owned()
    });
    // moto accepts any access key; it gets its own client (and so its own kept signing key).
    let moto_client = AwsClient::new("AKIAMOTOBENCH0000000".into(), Zeroizing::new("moto-bench-secret".into()));
    let mut moto = match std::env::var("KMS_BENCH_MOTO_URL") {
        Ok(url) => client_rt.block_on(moto_targets(&url, &moto_client)).map(Some),
        Err(_) => Err("KMS_BENCH_MOTO_URL is not set (`cargo xtask bench aws` starts moto)".into()),
    }
    .unwrap_or_else(|e| {
        println!("moto: not measured: {e}");
        None
    });
    let pairs = [
        (
            "GenerateDataKey",
            Target::native(addr, "/kms/v1/keys/bench/generate-data-key", "{}"),
            Target::aws(&client, addr, "GenerateDataKey", r#"{"KeyId":"bench","KeySpec":"AES_256"}"#),
        ),
        (
            "Decrypt",
            Target::native(addr, "/kms/v1/decrypt", format!(r#"{{"ciphertext_blob":"{blob}"}}"#)),
            Target::aws(&client, addr, "Decrypt", format!(r#"{{"CiphertextBlob":"{blob}"}}"#)),
        ),
    ];
    println!(
        "AWS KMS protocol vs native /kms/v1 on the same server, and vs moto on this machine, same run \
         ({seconds} alternating 1 s rounds each, 2-core machine shared; medians)"
    );
    println!(
        "ratio: AWS req/s over native req/s; cpu ratio: native CPU per request over AWS CPU per request \
         (server and load generator together), the steadier figure when other work shares the cores; \
         aws/moto: AWS req/s of kms over moto's"
    );
    println!(
        "{:<18} {:>5} {:>14} {:>14} {:>8} {:>10} {:>10} {:>10} {:>11} {:>9}",
        "operation",
        "conc",
        "native req/s",
        "aws req/s",
        "ratio",
        "native µs",
        "aws µs",
        "cpu ratio",
        "moto req/s",
        "aws/moto"
    );
    for concurrency in [1, 8] {
        for (index, (name, native_target, aws_target)) in pairs.iter().enumerate() {
            let mut rounds = Vec::new();
            let mut moto_rps = Vec::new();
            for _ in 0..seconds.max(1) {
                let native = client_rt.block_on(measure(native_target, concurrency, ROUND)).expect("native");
                let aws = client_rt.block_on(measure(aws_target, concurrency, ROUND)).expect("AWS");
                if let Some(targets) = &moto {
                    match client_rt.block_on(measure(&targets[index], concurrency, ROUND)) {
                        Ok(m) => moto_rps.push((m.rps, aws.rps / m.rps)),
                        Err(e) => {
                            println!("moto: no longer measured: {e}");
                            moto = None;
                            moto_rps.clear();
                        }
                    }
                }
                rounds.push((native, aws));
            }
            let of = |f: &dyn Fn(&(Measured, Measured)) -> f64| median(rounds.iter().map(f).collect());
            let (native_rps, aws_rps) = (of(&|r| r.0.rps), of(&|r| r.1.rps));
            let ratio = of(&|r| r.1.rps / r.0.rps);
            let (native_cpu, aws_cpu) = (of(&|r| r.0.cpu_per_request), of(&|r| r.1.cpu_per_request));
            let cpu_ratio = of(&|r| r.0.cpu_per_request / r.1.cpu_per_request);
            let (moto_shown, versus_moto) = if moto_rps.is_empty() {
                ("-".to_owned(), "-".to_owned())
            } else {
                let rps = median(moto_rps.iter().map(|m| m.0).collect());
                let ratio = median(moto_rps.iter().map(|m| m.1).collect());
                (format!("{rps:.0}"), format!("{ratio:.1}"))
            };
            println!(
                "{name:<18} {concurrency:>5} {native_rps:>14.0} {aws_rps:>14.0} {ratio:>8.2} {:>10.1} {:>10.1} \
                 {cpu_ratio:>10.2} {moto_shown:>11} {versus_moto:>9}",
                native_cpu * 1e6,
                aws_cpu * 1e6
            );
        }
    }
    drop(server_rt);
    let _ = std::fs::remove_dir_all(&data);
}
