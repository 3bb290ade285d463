//! `cargo xtask bench local`: throughput and latency of the local backend's data path through
//! `EncryptionService` (manager timeouts included), on one core and on two, against two
//! baselines measured in the same process (the bare kms-crypto work, through the free
//! functions and through a `PreparedKek`, and the backend called directly); and `create_key` with real fsyncs.
//!
//! Then the ratios of issue #17: `generate_data_key` and `decrypt` through `EncryptionService`
//! against the crypto floor (44 random bytes and one AES-256-GCM seal of a 32-byte key under a
//! key prepared once; one AES-256-GCM open of that blob), alternated with kms round by round
//! in one thread, median of the per-round ratios of CPU time per operation. Beside it the
//! envelope-format floor: the same through `PreparedKek`, which adds what format v2 requires
//! per envelope (an HKDF-SHA256 derivation and an AES key schedule, `docs/formats.md`).
//! `KMS_BENCH_ROUNDS` and `KMS_BENCH_OPS` size it; `KMS_BENCH_FLOORS_ONLY=1` runs nothing
//! else (for profiling: `docs/performance.md`).
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_core::encryption::service::EncryptionService;
use kms_core::manager::KmsManager;
use kms_crypto::aead::{Algorithm, RandomNonceKey};
use kms_crypto::context::canonical_context;
use kms_crypto::envelope::{self, Binding, PreparedKek};
use kms_crypto::keys::{KeyEncryptionKey, PlaintextDataKey};
use kms_types::config::{KmsConfig, LocalConfig, MasterKeySource};
use kms_types::types::{CreateKeyRequest, DecryptRequest, EncryptionContext, GenerateDataKeyRequest, KeySpec};

const OPS: usize = 200_000;
/// Alternated rounds of the floor comparison (`KMS_BENCH_ROUNDS`, default 5), each of
/// `KMS_BENCH_OPS` operations per side (default 50 000).
const ROUNDS: usize = 5;
const ROUND_OPS: usize = 50_000;

fn context() -> EncryptionContext {
    [("bucket".to_owned(), "photos".to_owned()), ("object".to_owned(), "2026/cat.jpg".to_owned())].into()
}

struct Stats {
    ops_per_sec: f64,
    /// Operations per second of CPU time the measuring threads got (`None` without /proc).
    ops_per_cpu_sec: Option<f64>,
    p50: Duration,
    p99: Duration,
}

fn stats(mut lat: Vec<Duration>, wall: Duration, cpu: Option<Duration>) -> Stats {
    let n = lat.len();
    lat.sort_unstable();
    Stats {
        ops_per_sec: n as f64 / wall.as_secs_f64(),
        ops_per_cpu_sec: cpu.map(|c| n as f64 / c.as_secs_f64()),
        p50: lat[n / 2],
        p99: lat[n * 99 / 100],
    }
}

fn print(name: &str, s: &Stats) {
    let cpu = s.ops_per_cpu_sec.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.0}"));
    println!(
        "{name:<52} {:>8.0} ops/s wall  {cpu:>8} ops/CPU-s   p50 {:>8.2?}   p99 {:>8.2?}",
        s.ops_per_sec, s.p50, s.p99
    );
}

/// The machine's load, printed beside the figures. This machine is shared: when other
/// processes take the cores, wall-clock ops/s drop, while ops per CPU-second (the measuring
/// threads' own CPU time, from the scheduler) and p50 stay close to the unloaded cost.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "unknown".into(), |l| l.trim().to_owned())
}

/// CPU time the calling thread has run for (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

/// Runs `f` on this thread, returning its result and the CPU time it took.
fn on_cpu<T>(f: impl FnOnce() -> T) -> (T, Option<Duration>) {
    let before = thread_cpu();
    let out = f();
    (out, before.zip(thread_cpu()).map(|(b, a)| a.saturating_sub(b)))
}

/// What the loops call: the service, or the backend directly (baseline).
trait DataPath: Send + Sync + 'static {
    fn gdk(&self, r: GenerateDataKeyRequest) -> impl Future<Output = Vec<u8>>;
    fn dec(&self, r: DecryptRequest) -> impl Future<Output = ()>;
}

impl DataPath for EncryptionService {
    async fn gdk(&self, r: GenerateDataKeyRequest) -> Vec<u8> {
        self.generate_data_key(r).await.unwrap().ciphertext_blob
    }
    async fn dec(&self, r: DecryptRequest) {
        self.decrypt(r).await.unwrap();
    }
}

impl DataPath for LocalBackend {
    async fn gdk(&self, r: GenerateDataKeyRequest) -> Vec<u8> {
        self.generate_data_key(r).await.unwrap().ciphertext_blob
    }
    async fn dec(&self, r: DecryptRequest) {
        self.decrypt(r).await.unwrap();
    }
}

async fn gdk_loop(backend: &impl DataPath, n: usize) -> (Vec<Duration>, Vec<Vec<u8>>) {
    let mut lat = Vec::with_capacity(n);
    let mut blobs = Vec::with_capacity(1024);
    let ctx = context();
    for i in 0..n {
        let t = Instant::now();
        let blob = backend
            .gdk(GenerateDataKeyRequest {
                key_id: "bench".into(),
                key_spec: KeySpec::Aes256,
                encryption_context: ctx.clone(),
            })
            .await;
        lat.push(t.elapsed());
        if i < 1024 {
            blobs.push(blob);
        }
    }
    (lat, blobs)
}

async fn decrypt_loop(backend: &impl DataPath, blobs: &[Vec<u8>], n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    let ctx = context();
    for i in 0..n {
        let blob = blobs[i % blobs.len()].clone();
        let t = Instant::now();
        backend.dec(DecryptRequest { ciphertext_blob: blob, encryption_context: ctx.clone(), key_id: None }).await;
        lat.push(t.elapsed());
    }
    lat
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn run_pair(label: &str, path: Arc<impl DataPath>, blobs: &[Vec<u8>]) -> (Stats, Stats) {
    let runtime = rt();
    let start = Instant::now();
    let ((lat, _), cpu) = on_cpu(|| runtime.block_on(gdk_loop(&*path, OPS)));
    let gdk = stats(lat, start.elapsed(), cpu);
    print(&format!("{label}generate_data_key, 1 core"), &gdk);
    let start = Instant::now();
    let (lat, cpu) = on_cpu(|| runtime.block_on(decrypt_loop(&*path, blobs, OPS)));
    let dec = stats(lat, start.elapsed(), cpu);
    print(&format!("{label}decrypt, 1 core"), &dec);
    (gdk, dec)
}

fn run_two_cores(label: &str, path: Arc<impl DataPath>, blobs: &[Vec<u8>]) {
    for (name, is_gdk) in [("generate_data_key, 2 cores", true), ("decrypt, 2 cores", false)] {
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                let blobs = blobs.to_vec();
                std::thread::spawn(move || {
                    let runtime = rt();
                    on_cpu(|| {
                        if is_gdk {
                            runtime.block_on(gdk_loop(&*path, OPS / 2)).0
                        } else {
                            runtime.block_on(decrypt_loop(&*path, &blobs, OPS / 2))
                        }
                    })
                })
            })
            .collect();
        let mut lat = Vec::with_capacity(OPS);
        let mut cpu = Some(Duration::ZERO);
        for thread in threads {
            let (l, c) = thread.join().unwrap();
            lat.extend(l);
            cpu = cpu.zip(c).map(|(a, b)| a + b);
        }
        // Two threads' CPU time: ops per CPU-second is per core; the two-core capacity is twice it.
        print(&format!("{label}{name}"), &stats(lat, start.elapsed(), cpu));
    }
}

fn main() {
    println!("load average at start: {}", load_average());
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterKeySource::Key { key: STANDARD.encode([9u8; 32]).into() };
    let config = LocalConfig::new(tmp.path().join("keys"), master);
    let backend = Arc::new(rt().block_on(LocalBackend::open(&config)).unwrap());
    let manager = KmsManager::new(backend.clone() as Arc<dyn KmsBackend>, &KmsConfig::local(config.clone()));
    let service = Arc::new(EncryptionService::new(Arc::new(manager)));
    rt().block_on(service.create_key(CreateKeyRequest { key_name: Some("bench".into()), ..Default::default() }))
        .unwrap();

    // Baseline 1: one data key + one envelope wrap through the free functions (two random
    // draws, the cipher set up per call), same process.
    let kek = KeyEncryptionKey::generate().unwrap();
    let ctx = context();
    let start = Instant::now();
    let (lat, cpu) = on_cpu(|| {
        let mut lat = Vec::with_capacity(OPS);
        for _ in 0..OPS {
            let t = Instant::now();
            let dk = PlaintextDataKey::generate(KeySpec::Aes256).unwrap();
            let binding = Binding { master_key_id: "bench", master_key_version: 1, context: &ctx };
            std::hint::black_box(envelope::wrap_data_key(&kek, &dk, &binding).unwrap());
            lat.push(t.elapsed());
        }
        lat
    });
    print("baseline: generate + wrap, unprepared KEK", &stats(lat, start.elapsed(), cpu));

    // Baseline 2: what the backend does per data key (one draw, one seal, cipher prepared once).
    let prepared = PreparedKek::new(kek);
    let start = Instant::now();
    let (lat, cpu) = on_cpu(|| {
        let mut lat = Vec::with_capacity(OPS);
        for _ in 0..OPS {
            let t = Instant::now();
            let binding = Binding { master_key_id: "bench", master_key_version: 1, context: &ctx };
            std::hint::black_box(prepared.generate_and_wrap_data_key(KeySpec::Aes256, &binding).unwrap());
            lat.push(t.elapsed());
        }
        lat
    });
    let floor = stats(lat, start.elapsed(), cpu);
    print("baseline: generate_and_wrap, PreparedKek (floor)", &floor);

    // Warm key (and a set of blobs to decrypt).
    let (_, blobs) = rt().block_on(gdk_loop(&*service, 10_000));
    if std::env::var_os("KMS_BENCH_FLOORS_ONLY").is_some() {
        // Only the floor comparison: short enough to run under `perf record` or callgrind.
        floor_ratios(&service, &blobs);
        return;
    }

    let (direct_gdk, _) = run_pair("baseline: backend direct, ", backend.clone(), &blobs);
    let (gdk1, dec1) = run_pair("EncryptionService: ", service.clone(), &blobs);
    run_two_cores("EncryptionService: ", service.clone(), &blobs);
    let per_cpu = |s: &Stats| s.ops_per_cpu_sec.unwrap_or(s.ops_per_sec);
    println!(
        "generate_data_key via EncryptionService, 1 core: {:.2}x the CPU time per op of the crypto floor, \
         {:.2}x that of the backend called directly (decrypt: {:.0} ops/CPU-s)",
        per_cpu(&floor) / per_cpu(&gdk1),
        per_cpu(&direct_gdk) / per_cpu(&gdk1),
        per_cpu(&dec1)
    );

    floor_ratios(&service, &blobs);

    // create_key with real fsyncs (each create: temp write, fsync, link, fsync of the directory).
    let n = 300;
    let mut lat = Vec::with_capacity(n);
    let runtime = rt();
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        runtime
            .block_on(service.create_key(CreateKeyRequest { key_name: Some(format!("c-{i}")), ..Default::default() }))
            .unwrap();
        lat.push(t.elapsed());
    }
    // Bound by the disk's fsync latency, not the CPU: only wall-clock figures mean anything.
    print("EncryptionService: create_key (fsync), 1 task", &stats(lat, start.elapsed(), None));
    println!("(key directory on {}; load average at end: {})", tmp.path().display(), load_average());
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(default)
}

/// CPU time per operation of `run`, which makes `n` operations on this thread (wall time
/// without /proc).
fn per_op(n: usize, run: impl FnOnce()) -> Duration {
    let start = Instant::now();
    let ((), cpu) = on_cpu(run);
    cpu.unwrap_or_else(|| start.elapsed()) / n as u32
}

/// Median of `ratios`.
fn median(mut ratios: Vec<f64>) -> f64 {
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// The floor comparison of issue #17 (see the module docs): floor, format floor and kms
/// alternated round by round on this thread; prints CPU time per op and the median ratios.
fn floor_ratios(service: &EncryptionService, blobs: &[Vec<u8>]) {
    let rounds = env_or("KMS_BENCH_ROUNDS", ROUNDS);
    let n = env_or("KMS_BENCH_OPS", ROUND_OPS);
    let runtime = rt();
    let ctx = context();
    // The crypto floor: a key prepared once, an AAD as long as kms binds (computed once).
    let aad = canonical_context(&ctx);
    let floor_key = RandomNonceKey::new(Algorithm::Aes256Gcm, &[7u8; 32]).unwrap();
    let floor_gdk = || {
        let data_key = PlaintextDataKey::generate(KeySpec::Aes256).unwrap(); // 32 random bytes
        let sealed = floor_key.seal(&aad, data_key.expose_secret()).unwrap(); // 12 more: the nonce
        std::hint::black_box((data_key, sealed));
    };
    let floor_blob = floor_key.seal(&aad, &[1u8; 32]).unwrap();
    let floor_dec = || {
        std::hint::black_box(floor_key.open(&aad, &floor_blob).unwrap());
    };
    // The envelope-format floor: what a v2 envelope costs through a PreparedKek.
    let prepared = PreparedKek::new(KeyEncryptionKey::generate().unwrap());
    let binding = Binding { master_key_id: "bench", master_key_version: 1, context: &ctx };
    let format_gdk = || {
        std::hint::black_box(prepared.generate_and_wrap_data_key(KeySpec::Aes256, &binding).unwrap());
    };
    let (_, wrapped) = prepared.generate_and_wrap_data_key(KeySpec::Aes256, &binding).unwrap();
    let format_dec = || {
        std::hint::black_box(prepared.open(wrapped.as_bytes(), &binding).unwrap());
    };
    // kms: one task making the `n` calls in turn, each request built as a caller builds it
    // (key id and context copied, the blob to decrypt too).
    let request = || GenerateDataKeyRequest {
        key_id: "bench".into(),
        key_spec: KeySpec::Aes256,
        encryption_context: ctx.clone(),
    };
    let kms_gdk = || {
        runtime.block_on(async {
            for _ in 0..n {
                std::hint::black_box(service.generate_data_key(request()).await.unwrap());
            }
        })
    };
    let kms_dec = || {
        runtime.block_on(async {
            for blob in blobs.iter().cycle().take(n) {
                let request =
                    DecryptRequest { ciphertext_blob: blob.clone(), encryption_context: ctx.clone(), key_id: None };
                std::hint::black_box(service.decrypt(request).await.unwrap());
            }
        })
    };
    let mut rows: [(Vec<Duration>, Vec<Duration>, Vec<Duration>); 2] = Default::default();
    for _ in 0..rounds {
        let (floor, format, kms) = &mut rows[0];
        floor.push(per_op(n, || (0..n).for_each(|_| floor_gdk())));
        format.push(per_op(n, || (0..n).for_each(|_| format_gdk())));
        kms.push(per_op(n, kms_gdk));
        let (floor, format, kms) = &mut rows[1];
        floor.push(per_op(n, || (0..n).for_each(|_| floor_dec())));
        format.push(per_op(n, || (0..n).for_each(|_| format_dec())));
        kms.push(per_op(n, kms_dec));
    }
    println!(
        "\nissue #17 floors, 1 task, {rounds} alternated rounds of {n} ops, CPU time per op (median), \
         kms speed as a share of the floor's (median of per-round ratios):"
    );
    for (name, (floor, format, kms)) in ["generate_data_key", "decrypt"].into_iter().zip(rows) {
        let ratio =
            |base: &[Duration]| median(base.iter().zip(&kms).map(|(b, k)| b.as_secs_f64() / k.as_secs_f64()).collect());
        let med = |d: &[Duration]| Duration::from_secs_f64(median(d.iter().map(Duration::as_secs_f64).collect()));
        println!(
            "  {name:<18} floor {:>8.2?}  format floor {:>8.2?}  kms {:>8.2?}   kms/floor {:.2}x   kms/format floor {:.2}x",
            med(&floor),
            med(&format),
            med(&kms),
            ratio(&floor),
            ratio(&format)
        );
    }
}
