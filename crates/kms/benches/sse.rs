//! `cargo xtask bench sse`: PUT and GET throughput through `EncryptionService` on the local
//! backend, next to `kms-crypto`'s raw streaming cipher in the same process, for 1 MiB and
//! 256 MiB objects; then the peak memory of a 1 GiB GET streamed from a file.
//!
//! Both paths read through the same loop with a 1 MiB buffer on one tokio thread; the
//! service path adds the KMS call (generate_data_key or decrypt) and the SSE bookkeeping.
//! Peak memory is the growth of the process's peak RSS (`VmHWM`, reset through
//! `/proc/self/clear_refs`) during the GET.

#![allow(clippy::print_stdout)] // printing figures is a benchmark's job

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kms::backends::KmsBackend as _;
use kms::config::{LocalConfig, MasterKeySource};
use kms::crypto::keys::PlaintextDataKey;
use kms::crypto::stream::{AsyncDecryptingReader, AsyncEncryptingReader, ObjectLayout, Part, StreamParams};
use kms::encryption::pipeline::{DecryptStreamRequest, SEGMENT_SIZE};
use kms::encryption::service::EncryptionService;
use kms::encryption::sse::{ObjectContext, ObjectMetadata, SseMode};
use kms::local::LocalBackend;
use kms::manager::{KmsManager, ManagerOptions};
use kms::types::{CreateKeyRequest, EncryptionContext, KeySpec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// Reads `reader` to the end through a 1 MiB buffer; returns the bytes read.
async fn drain(mut reader: impl AsyncRead + Unpin, buf: &mut [u8]) -> u64 {
    let mut total = 0u64;
    loop {
        let n = reader.read(buf).await.expect("read");
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

fn gbps(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e9
}

/// Best of `$rounds` timings of each of two async blocks, run alternately so both see the
/// same machine load (the machine is shared).
macro_rules! best_of_pair {
    ($rounds:expr, $a:block, $b:block) => {{
        let (mut best_a, mut best_b) = (Duration::MAX, Duration::MAX);
        for _ in 0..$rounds {
            let start = Instant::now();
            $a;
            best_a = best_a.min(start.elapsed());
            let start = Instant::now();
            $b;
            best_b = best_b.min(start.elapsed());
        }
        (best_a, best_b)
    }};
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

async fn service(dir: &std::path::Path) -> (EncryptionService, String) {
    let master_key = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
    let backend = LocalBackend::open(&LocalConfig::new(dir.join("keys"), master_key)).await.expect("local backend");
    let key = backend.create_key(CreateKeyRequest::default()).await.expect("key").key_id;
    let manager = KmsManager::with_options(Arc::new(backend), ManagerOptions::default());
    (EncryptionService::new(Arc::new(manager)), key)
}

fn object(key_id: &str) -> ObjectContext {
    ObjectContext { bucket: "bench".into(), object_key: "object".into(), sse: SseMode::kms(key_id) }
}

/// A GET of the whole bench object.
fn whole(metadata: &ObjectMetadata) -> DecryptStreamRequest<'_> {
    DecryptStreamRequest { bucket: "bench", object_key: "object", metadata, customer_key: None, range: None }
}

async fn peak_memory_of_1_gib_get(service: &EncryptionService, key_id: &str, dir: &std::path::Path) {
    const SIZE: u64 = 1024 * 1024 * 1024;
    let path = dir.join("one-gib.enc");
    // PUT: 1 GiB of plaintext streamed through encrypt_stream into a file.
    let source = tokio::io::repeat(0x5a).take(SIZE);
    let mut put = service.encrypt_stream(source, object(key_id)).await.expect("put");
    let mut file = tokio::fs::File::create(&path).await.expect("create");
    let mut buf = vec![0u8; MIB];
    loop {
        let n = put.read(&mut buf).await.expect("encrypt");
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).await.expect("write");
    }
    file.flush().await.expect("flush");
    drop(file);
    let metadata: ObjectMetadata = put.finish().expect("metadata");

    let mut file = tokio::fs::File::open(&path).await.expect("open");
    file.seek(SeekFrom::Start(0)).await.expect("seek");
    let reset = reset_peak_rss();
    let before = peak_rss_kib();
    let start = Instant::now();
    let request = whole(&metadata);
    let get = service.decrypt_seekable(file, request).await.expect("get");
    let mut small = vec![0u8; 64 * 1024];
    let n = drain(get, &mut small).await;
    let elapsed = start.elapsed();
    let after = peak_rss_kib();
    assert_eq!(n, SIZE);
    println!(
        "1 GiB GET from a file: {:.2} GB/s; peak RSS {} KiB before, {} KiB during: +{} KiB{}",
        gbps(SIZE as usize, elapsed),
        before,
        after,
        after.saturating_sub(before),
        if reset { "" } else { " (peak could not be reset: figure includes earlier peaks)" }
    );
    let _ = std::fs::remove_file(&path);
}

async fn throughput(service: &EncryptionService, key_id: &str, size: usize, rounds: usize) {
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let mut buf = vec![0u8; MIB];
    let context: EncryptionContext = [("bucket".to_owned(), "bench".to_owned())].into();
    let data_key = PlaintextDataKey::generate(KeySpec::Aes256).expect("key");
    let params = StreamParams { segment_size: SEGMENT_SIZE, ..StreamParams::default() };

    // PUT: the raw cipher, and the service (one generate_data_key per object).
    let (raw_put, svc_put) = best_of_pair!(
        rounds,
        {
            let reader = AsyncEncryptingReader::new(&plaintext[..], &data_key, &context, Part::Whole, params).unwrap();
            drain(reader, &mut buf).await;
        },
        {
            let stream = service.encrypt_stream(&plaintext[..], object(key_id)).await.unwrap();
            drain(stream, &mut buf).await;
        }
    );

    // Ciphertexts for the GETs.
    let mut raw_ct = Vec::with_capacity(size + size / 1000 + 1024);
    AsyncEncryptingReader::new(&plaintext[..], &data_key, &context, Part::Whole, params)
        .unwrap()
        .read_to_end(&mut raw_ct)
        .await
        .unwrap();
    let mut put = service.encrypt_stream(&plaintext[..], object(key_id)).await.unwrap();
    let mut svc_ct = Vec::with_capacity(raw_ct.len());
    put.read_to_end(&mut svc_ct).await.unwrap();
    let metadata = put.finish().unwrap();
    let layout = ObjectLayout::single(SEGMENT_SIZE, size as u64).unwrap();

    // GET: the raw cipher, and the service (one decrypt per object).
    let (raw_get, svc_get) = best_of_pair!(
        rounds,
        {
            let reader = AsyncDecryptingReader::object(&raw_ct[..], &data_key, &context, &layout).unwrap();
            assert_eq!(drain(reader, &mut buf).await, size as u64);
        },
        {
            let stream = service.decrypt_stream(&svc_ct[..], whole(&metadata)).await.unwrap();
            assert_eq!(drain(stream, &mut buf).await, size as u64);
        }
    );

    let label = if size >= MIB { format!("{} MiB", size / MIB) } else { format!("{size} B") };
    for (op, raw, svc) in [("PUT", raw_put, svc_put), ("GET", raw_get, svc_get)] {
        println!(
            "{label:>8} {op}: raw stream {:.2} GB/s, EncryptionService (local backend) {:.2} GB/s, ratio {:.2}",
            gbps(size, raw),
            gbps(size, svc),
            raw.as_secs_f64() / svc.as_secs_f64()
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let (service, key_id) = service(dir.path()).await;
        println!(
            "sse bench: AES-256-GCM, {} KiB segments, best of N alternating rounds, one tokio thread",
            SEGMENT_SIZE / 1024
        );
        // Memory first, before the throughput runs grow the heap.
        peak_memory_of_1_gib_get(&service, &key_id, dir.path()).await;
        throughput(&service, &key_id, MIB, 200).await;
        throughput(&service, &key_id, 256 * MIB, 9).await;
    });
}
