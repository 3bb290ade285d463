//! `cargo xtask bench local`: data-path and create_key throughput of the local backend.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_crypto::envelope::{self, Binding};
use kms_crypto::keys::{KeyEncryptionKey, PlaintextDataKey};
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::types::{CreateKeyRequest, DecryptRequest, EncryptionContext, GenerateDataKeyRequest, KeySpec};

const OPS: usize = 200_000;

fn context() -> EncryptionContext {
    [("bucket".to_owned(), "photos".to_owned()), ("object".to_owned(), "2026/cat.jpg".to_owned())].into()
}

struct Stats {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn stats(mut lat: Vec<Duration>, wall: Duration) -> Stats {
    let n = lat.len();
    lat.sort_unstable();
    Stats { ops_per_sec: n as f64 / wall.as_secs_f64(), p50: lat[n / 2], p99: lat[n * 99 / 100] }
}

fn print(name: &str, s: &Stats) {
    println!("{name:<44} {:>10.0} ops/s   p50 {:>7.2?}   p99 {:>7.2?}", s.ops_per_sec, s.p50, s.p99);
}

async fn gdk_loop(backend: &LocalBackend, n: usize) -> (Vec<Duration>, Vec<Vec<u8>>) {
    let mut lat = Vec::with_capacity(n);
    let mut blobs = Vec::with_capacity(1024);
    let ctx = context();
    for i in 0..n {
        let t = Instant::now();
        let r = backend
            .generate_data_key(GenerateDataKeyRequest {
                key_id: "bench".into(),
                key_spec: KeySpec::Aes256,
                encryption_context: ctx.clone(),
            })
            .await
            .unwrap();
        lat.push(t.elapsed());
        if i < 1024 {
            blobs.push(r.ciphertext_blob);
        }
    }
    (lat, blobs)
}

async fn decrypt_loop(backend: &LocalBackend, blobs: &[Vec<u8>], n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    let ctx = context();
    for i in 0..n {
        let blob = blobs[i % blobs.len()].clone();
        let t = Instant::now();
        backend
            .decrypt(DecryptRequest { ciphertext_blob: blob, encryption_context: ctx.clone(), key_id: None })
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    lat
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterKeySource::Key { key: STANDARD.encode([9u8; 32]).into() };
    let config = LocalConfig::new(tmp.path().join("keys"), master);
    let backend = Arc::new(rt().block_on(LocalBackend::open(&config)).unwrap());
    rt().block_on(backend.create_key(CreateKeyRequest { key_name: Some("bench".into()), ..Default::default() }))
        .unwrap();

    // Baseline: the crypto floor (one data key + one envelope wrap), same process.
    let kek = KeyEncryptionKey::generate().unwrap();
    let ctx = context();
    let mut lat = Vec::with_capacity(OPS);
    let start = Instant::now();
    for _ in 0..OPS {
        let t = Instant::now();
        let dk = PlaintextDataKey::generate(KeySpec::Aes256).unwrap();
        let binding = Binding { master_key_id: "bench", master_key_version: 1, context: &ctx };
        std::hint::black_box(envelope::wrap_data_key(&kek, &dk, &binding).unwrap());
        lat.push(t.elapsed());
    }
    let baseline = stats(lat, start.elapsed());
    print("baseline: generate + wrap (kms-crypto)", &baseline);

    // Warm up.
    let (_, blobs) = rt().block_on(gdk_loop(&backend, 10_000));

    let start = Instant::now();
    let (lat, _) = rt().block_on(gdk_loop(&backend, OPS));
    let gdk1 = stats(lat, start.elapsed());
    print("generate_data_key, 1 core", &gdk1);

    let start = Instant::now();
    let lat = rt().block_on(decrypt_loop(&backend, &blobs, OPS));
    let dec1 = stats(lat, start.elapsed());
    print("decrypt, 1 core", &dec1);

    for (name, is_gdk) in [("generate_data_key, 2 cores", true), ("decrypt, 2 cores", false)] {
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let b = backend.clone();
                let blobs = blobs.clone();
                std::thread::spawn(move || {
                    if is_gdk {
                        rt().block_on(gdk_loop(&b, OPS / 2)).0
                    } else {
                        rt().block_on(decrypt_loop(&b, &blobs, OPS / 2))
                    }
                })
            })
            .collect();
        let lat: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        print(name, &stats(lat, start.elapsed()));
    }
    println!(
        "generate_data_key, 1 core: {:.2}x the crypto baseline's time per op",
        baseline.ops_per_sec / gdk1.ops_per_sec
    );

    // create_key with real fsyncs (each create: temp write, fsync, link, fsync of the directory).
    let n = 300;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    let runtime = rt();
    for i in 0..n {
        let t = Instant::now();
        runtime
            .block_on(backend.create_key(CreateKeyRequest { key_name: Some(format!("c-{i}")), ..Default::default() }))
            .unwrap();
        lat.push(t.elapsed());
    }
    print("create_key (fsync), 1 task", &stats(lat, start.elapsed()));
}
