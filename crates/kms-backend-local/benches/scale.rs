//! `cargo xtask bench scale`: the local key store at a million keys (issue 16), through the
//! library. `KMS_SCALE_KEYS` sets the size (default 1,000,000).
//!
//! The parent builds three stores, of 1,000 and 10,000 keys (the baselines: 10k is the
//! smallest that holds the whole 10k-key spread) and of the full size,
//! with 64 concurrent creators, and prints the build's create rate and the bytes per key on
//! disk. Then, for each store, a fresh child process (this executable, `KMS_SCALE_ROLE=measure`)
//! opens it and prints: start-up time, RSS after start and after touching 10k distinct keys,
//! `generate_data_key` and `decrypt` on one core (ops per CPU-second) for a hot key and spread
//! over 10k keys, a page of 1000 from random markers, the single-caller create latency beside
//! a bare fsync's in the same directory, and the 64-caller create rate; then one more child is
//! SIGKILLed after a commit and the parent times the start-up after that crash (redb's
//! repair). The parent prints the
//! full-size figures as ratios against the baselines', measured in the same run. The machine
//! may be shared: the load average is printed, ops per CPU-second are the stable figure.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, EncryptionContext, GenerateDataKeyRequest, KeySpec, ListKeysRequest,
};

const CALLERS: usize = 64;
const SPREAD: usize = 10_000;
const DATA_OPS: usize = 100_000;

fn config(dir: &Path) -> LocalConfig {
    LocalConfig::new(dir, MasterKeySource::Key { key: STANDARD.encode([9u8; 32]).into() })
}

fn context() -> EncryptionContext {
    [("bucket".to_owned(), "photos".to_owned())].into()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "unknown".into(), |l| l.trim().to_owned())
}

/// A marker at a random moment between `first` (a key id) and now: generated ids begin with
/// their creation time in milliseconds (UUID v7 layout), so this lands among the keys.
fn random_marker(first: &str) -> String {
    let hex: String = first.chars().filter(|c| *c != '-').take(12).collect();
    let start = u64::from_str_radix(&hex, 16).unwrap_or(0);
    let now = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .unwrap_or(u64::MAX);
    let mut b = [0u8; 8];
    kms_crypto::rand::fill(&mut b).expect("random");
    let at = start + u64::from_le_bytes(b) % (now.saturating_sub(start) + 1);
    format!("{:08x}-{:04x}", at >> 16, at & 0xffff)
}

fn percentile(mut samples: Vec<Duration>, p: usize) -> Duration {
    samples.sort_unstable();
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

/// Creates `count` keys with `callers` concurrent callers; returns the wall time.
async fn create_many(backend: &Arc<LocalBackend>, count: usize, callers: usize) -> Duration {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let backend = backend.clone();
        let share = count / callers + usize::from(caller < count % callers);
        tasks.spawn(async move {
            for _ in 0..share {
                backend.create_key(CreateKeyRequest::default()).await.expect("create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("creator");
    }
    started.elapsed()
}

fn build(dir: &Path, keys: usize) -> f64 {
    let rt = runtime();
    rt.block_on(async {
        let backend = Arc::new(LocalBackend::open(&config(dir)).await.expect("open"));
        let mut done = 0;
        let mut wall = Duration::ZERO;
        while done < keys {
            let step = (keys - done).min(100_000);
            wall += create_many(&backend, step, CALLERS).await;
            done += step;
            if keys > 100_000 {
                print!("\r  built {done}/{keys} keys ({:.0}/s)", done as f64 / wall.as_secs_f64());
                std::io::stdout().flush().ok();
            }
        }
        if keys > 100_000 {
            println!();
        }
        backend.shutdown().await;
        keys as f64 / wall.as_secs_f64()
    })
}

fn disk_bytes_per_key(dir: &Path, keys: usize) -> (f64, f64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join("keys.redb")).expect("store file");
    (meta.len() as f64 / keys as f64, (meta.blocks() * 512) as f64 / keys as f64)
}

/// One figure a measuring child prints: `FIGURE name value`.
fn figure(name: &str, value: f64) {
    println!("FIGURE {name} {value}");
}

/// The child: opens `dir` and measures (see the module docs).
fn measure(dir: &Path) {
    let rt = runtime();
    rt.block_on(async {
        let started = Instant::now();
        let backend = Arc::new(LocalBackend::open(&config(dir)).await.expect("open"));
        figure("startup_ms", started.elapsed().as_secs_f64() * 1e3);
        figure("rss_after_start_mib", rss_mib());
        figure("records_opened_at_start", backend.cache_stats().records_opened as f64);

        // Keys to use: pages of 1000 from random markers, timed.
        let mut spread = std::collections::BTreeSet::new();
        let mut page_times = Vec::new();
        let first = backend.list_keys(ListKeysRequest { limit: Some(1), ..Default::default() }).await.expect("list");
        let first = first.keys[0].key_id.clone();
        for _ in 0..40 {
            if spread.len() >= SPREAD {
                break;
            }
            let request =
                ListKeysRequest { limit: Some(1000), marker: Some(random_marker(&first)), ..Default::default() };
            let t = Instant::now();
            let page = backend.list_keys(request).await.expect("list");
            page_times.push(t.elapsed());
            spread.extend(page.keys.into_iter().map(|k| k.key_id));
        }
        let spread: Vec<String> = spread.into_iter().take(SPREAD).collect();
        figure("list_1000_p50_ms", percentile(page_times.clone(), 50).as_secs_f64() * 1e3);
        figure("list_1000_max_ms", percentile(page_times, 100).as_secs_f64() * 1e3);

        // Touch every spread key once (opens them), then the data path on one core.
        let mut blobs = Vec::with_capacity(spread.len());
        for key_id in &spread {
            let request = GenerateDataKeyRequest {
                key_id: key_id.clone(),
                key_spec: KeySpec::Aes256,
                encryption_context: context(),
            };
            blobs.push(backend.generate_data_key(request).await.expect("data key").ciphertext_blob);
        }
        figure("rss_after_touching_10k_mib", rss_mib());
        let hot = spread[0].clone();
        let data_path = |keys: Vec<String>, blobs: Vec<Vec<u8>>| {
            let backend = backend.clone();
            async move {
                let cpu = thread_cpu();
                for i in 0..DATA_OPS {
                    let key_id = keys[i % keys.len()].clone();
                    let request =
                        GenerateDataKeyRequest { key_id, key_spec: KeySpec::Aes256, encryption_context: context() };
                    backend.generate_data_key(request).await.expect("data key");
                }
                let gdk =
                    DATA_OPS as f64 / (thread_cpu().zip(cpu).map(|(a, b)| a - b).unwrap_or_default()).as_secs_f64();
                let cpu = thread_cpu();
                for i in 0..DATA_OPS {
                    let request = DecryptRequest {
                        ciphertext_blob: blobs[i % blobs.len()].clone(),
                        encryption_context: context(),
                        key_id: None,
                    };
                    backend.decrypt(request).await.expect("decrypt");
                }
                let dec =
                    DATA_OPS as f64 / (thread_cpu().zip(cpu).map(|(a, b)| a - b).unwrap_or_default()).as_secs_f64();
                (gdk, dec)
            }
        };
        // On one worker thread, so the CPU time read is the loop's own.
        let (gdk, dec) = tokio::task::spawn(data_path(vec![hot], vec![blobs[0].clone()])).await.expect("hot");
        figure("hot_generate_data_key_per_cpu_s", gdk);
        figure("hot_decrypt_per_cpu_s", dec);
        let (gdk, dec) = tokio::task::spawn(data_path(spread.clone(), blobs.clone())).await.expect("spread");
        figure("spread_generate_data_key_per_cpu_s", gdk);
        figure("spread_decrypt_per_cpu_s", dec);
        let stats = backend.cache_stats();
        figure("cache_entries", stats.entries as f64);
        figure("cache_hits", stats.hits as f64);
        figure("cache_misses", stats.misses as f64);

        // Writes: a bare fsync in the directory, one caller, 64 callers.
        // The probe: a 4 KiB page rewritten in an existing file and fsynced, as a commit does.
        let probe = dir.join(".tmp-fsync-probe");
        let mut file = std::fs::File::create(&probe).expect("probe");
        file.write_all(&[0u8; 64 * 1024]).expect("write");
        file.sync_all().expect("fsync");
        let mut fsyncs = Vec::new();
        for i in 0..50u64 {
            use std::io::{Seek, SeekFrom};
            let t = Instant::now();
            file.seek(SeekFrom::Start(i % 16 * 4096)).expect("seek");
            file.write_all(&[i as u8; 4096]).expect("write");
            file.sync_all().expect("fsync");
            fsyncs.push(t.elapsed());
        }
        drop(file);
        std::fs::remove_file(&probe).ok();
        figure("fsync_p50_ms", percentile(fsyncs, 50).as_secs_f64() * 1e3);
        let mut single = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            backend.create_key(CreateKeyRequest::default()).await.expect("create");
            single.push(t.elapsed());
        }
        figure("single_create_p50_ms", percentile(single.clone(), 50).as_secs_f64() * 1e3);
        figure("single_create_per_s", 200.0 / single.iter().sum::<Duration>().as_secs_f64());
        let count = 20_000;
        let wall = create_many(&backend, count, CALLERS).await;
        figure("concurrent_create_per_s", count as f64 / wall.as_secs_f64());
        backend.shutdown().await;
    });
}

fn run_child(dir: &Path) -> Vec<(String, f64)> {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .env("KMS_SCALE_ROLE", "measure")
        .env("KMS_SCALE_DIR", dir)
        .output()
        .expect("measuring child");
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.strip_prefix("FIGURE ")?.split(' ');
            Some((parts.next()?.to_owned(), parts.next()?.parse().ok()?))
        })
        .collect()
}

/// The child that is killed: opens the store, commits one key, says so, and waits.
fn dirty(dir: &Path) {
    let rt = runtime();
    rt.block_on(async {
        let backend = LocalBackend::open(&config(dir)).await.expect("open");
        backend.create_key(CreateKeyRequest::default()).await.expect("create");
        println!("READY");
        std::io::stdout().flush().ok();
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

/// Start-up after a SIGKILL: redb checks the file and rebuilds its allocator state first.
fn startup_after_crash_ms(dir: &Path) -> f64 {
    use std::io::BufRead as _;
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env("KMS_SCALE_ROLE", "dirty")
        .env("KMS_SCALE_DIR", dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dirty child");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "READY");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let rt = runtime();
    rt.block_on(async {
        let started = Instant::now();
        let backend = LocalBackend::open(&config(dir)).await.expect("open after a crash");
        let ms = started.elapsed().as_secs_f64() * 1e3;
        backend.shutdown().await;
        ms
    })
}

fn main() {
    match std::env::var("KMS_SCALE_ROLE").as_deref() {
        Ok("measure") => return measure(&PathBuf::from(std::env::var_os("KMS_SCALE_DIR").expect("KMS_SCALE_DIR"))),
        Ok("dirty") => return dirty(&PathBuf::from(std::env::var_os("KMS_SCALE_DIR").expect("KMS_SCALE_DIR"))),
        _ => {}
    }
    let keys: usize = std::env::var("KMS_SCALE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::Builder::new().prefix("kms-scale-").tempdir_in(std::env::temp_dir()).expect("tempdir");
    println!("local key store at scale: {keys} keys vs a baseline of 1000 (load average {})", load_average());
    let mut runs = Vec::new();
    for n in [1_000, 10_000, keys] {
        let dir = tmp.path().join(format!("keys-{n}"));
        let rate = build(&dir, n);
        let (file, allocated) = disk_bytes_per_key(&dir, n);
        let mut figures = run_child(&dir);
        figures.insert(0, ("build_create_per_s".into(), rate));
        figures.insert(1, ("disk_file_bytes_per_key".into(), file));
        figures.insert(2, ("disk_allocated_bytes_per_key".into(), allocated));
        figures.push(("startup_after_sigkill_ms".into(), startup_after_crash_ms(&dir)));
        runs.push(figures);
    }
    println!(
        "{:<36} {:>13} {:>13} {:>13} {:>9} {:>9}",
        "figure",
        "1k keys",
        "10k keys",
        format!("{keys} keys"),
        "vs 1k",
        "vs 10k"
    );
    for (((name, one), (_, ten)), (_, full)) in runs[0].iter().zip(&runs[1]).zip(&runs[2]) {
        println!("{name:<36} {one:>13.2} {ten:>13.2} {full:>13.2} {:>9.3} {:>9.3}", full / one, full / ten);
    }
    println!("load average after: {}", load_average());
}
