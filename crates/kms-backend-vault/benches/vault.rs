//! `cargo xtask bench vault`: `generate_data_key` throughput against one OpenBao dev server,
//! through [`VaultBackend`] and through a bare HTTP client making the same
//! `transit/datakey/plaintext` call (same associated data, reply parsed and decoded), at
//! concurrency 1 and 32, from one process. Target: ours / bare ≥ 0.8.
//!
//! Uses `KMS_TEST_VAULT_ADDR`/`KMS_TEST_VAULT_TOKEN` when set; otherwise starts its own
//! `bao server -dev` with `kms_testkit::openbao` (`KMS_TEST_BAO_BIN`, `bao` on PATH, or the
//! project's `.tools/openbao`).

#![allow(clippy::print_stdout, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_testkit::openbao::OpenBao;
use kms_types::config::{KmsConfig, VaultAuthMethod, VaultConfig};
use kms_types::types::{CreateKeyRequest, EncryptionContext, GenerateDataKeyRequest, KeySpec};

const WARMUP: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_secs(3);
const ROUNDS: usize = 2;

/// The shared server's address and token, or a private dev server (the workspace's one
/// launcher: `KMS_TEST_BAO_BIN`, `bao` on PATH, or `.tools/openbao`, installed on demand).
fn server() -> (Option<OpenBao>, String, String) {
    if let (Ok(addr), Ok(token)) = (std::env::var("KMS_TEST_VAULT_ADDR"), std::env::var("KMS_TEST_VAULT_TOKEN")) {
        return (None, addr, token);
    }
    let server = OpenBao::start().unwrap_or_else(|e| panic!("{e}"));
    let (addr, token) = (server.addr().to_owned(), server.token().to_owned());
    (Some(server), addr, token)
}

/// Runs `op` from `concurrency` tasks for `RUN` (after `WARMUP`); returns ops/s.
async fn measure<F, Fut>(concurrency: usize, op: F) -> f64
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + RUN;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                op().await;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if now >= measure_from {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / RUN.as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let (_server, addr, token) = server();
    let mut config = KmsConfig::vault(VaultConfig {
        address: addr.as_str().into(),
        auth_method: VaultAuthMethod::Token { token: token.clone().into() },
        namespace: None,
        mount_path: "transit".into(),
        kv_mount: "secret".into(),
        key_path_prefix: format!("kms-bench/{}", std::process::id()),
        tls: None,
    });
    config.timeout = Duration::from_secs(30);
    let backend = Arc::new(VaultBackend::connect(&config).await.expect("connect"));
    let key_id = backend
        .create_key(CreateKeyRequest { key_name: Some(format!("bench-{}", std::process::id())), ..Default::default() })
        .await
        .unwrap()
        .key_id;
    let context: EncryptionContext = [("bucket".to_owned(), "bench".to_owned())].into();

    // The bare client: same call, same associated data, reply parsed and the key decoded.
    let bare = reqwest::Client::builder()
        .tls_backend_preconfigured(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let url = format!("{addr}/v1/transit/datakey/plaintext/{key_id}");
    let body = serde_json::to_vec(&serde_json::json!({
        "bits": 256,
        "associated_data": B64.encode(kms_crypto::context::canonical_context(&context)),
    }))
    .unwrap();

    let ours = {
        let backend = backend.clone();
        let key_id = key_id.clone();
        let context = context.clone();
        move || {
            let backend = backend.clone();
            let request = GenerateDataKeyRequest {
                key_id: key_id.clone(),
                key_spec: KeySpec::Aes256,
                encryption_context: context.clone(),
            };
            async move {
                let dk = backend.generate_data_key(request).await.expect("generate_data_key");
                assert_eq!(dk.plaintext_key.len(), 32);
            }
        }
    };
    let bare_op = {
        move || {
            let request = bare.post(&url).header("X-Vault-Token", &token).body(body.clone());
            async move {
                let reply = request.send().await.expect("datakey");
                assert!(reply.status().is_success());
                let json: serde_json::Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
                let key = B64.decode(json["data"]["plaintext"].as_str().unwrap()).unwrap();
                assert_eq!(key.len(), 32);
            }
        }
    };
    let ours = Arc::new(ours);
    let bare_op = Arc::new(bare_op);

    println!("generate_data_key against OpenBao at {addr} (dev server, in-memory), {RUN:?} per run, best of {ROUNDS}");
    println!("{:>11} | {:>12} | {:>12} | {:>10}", "concurrency", "ours ops/s", "bare ops/s", "ours/bare");
    for concurrency in [1usize, 32] {
        let (mut best_ours, mut best_bare) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            let b = bare_op.clone();
            best_bare = best_bare.max(measure(concurrency, move || b()).await);
            let o = ours.clone();
            best_ours = best_ours.max(measure(concurrency, move || o()).await);
        }
        println!("{concurrency:>11} | {best_ours:>12.0} | {best_bare:>12.0} | {:>10.2}", best_ours / best_bare);
    }
    let stats = backend.transport_stats();
    println!("backend transport: {} requests, {} probes", stats.requests, stats.probes);
}
