//! The shape of the store at a CI-sized scale (issue 16; the full-size figures are `cargo
//! xtask bench scale`): what opening, using and listing a store costs is counted (records
//! opened, keys held in memory, bytes on disk), not timed, so the test cannot flake on a busy
//! machine, and compared between 1k and 20k keys.

mod common;

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use common::*;
use kms_backend_local::{LocalBackend, LocalOptions};
use kms_core::backends::KmsBackend;
use kms_types::types::{CreateKeyRequest, GenerateDataKeyRequest, KeySpec, ListKeysRequest};

const CACHE: usize = 500;

/// Creates `n` keys `k-000000`… with 64 concurrent callers.
async fn fill(dir: &Path, n: usize) {
    let backend = Arc::new(open(dir).await);
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..64 {
        let backend = backend.clone();
        tasks.spawn(async move {
            for i in (caller..n).step_by(64) {
                let request = CreateKeyRequest { key_name: Some(format!("k-{i:06}")), ..Default::default() };
                backend.create_key(request).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    backend.shutdown().await;
}

async fn reopen(dir: &Path) -> LocalBackend {
    let options = LocalOptions::default().with_cache_capacity(NonZeroUsize::new(CACHE).unwrap());
    LocalBackend::open_with(&config(dir, 1), options).await.unwrap()
}

struct Shape {
    opened_at_start: u64,
    bytes_per_key: u64,
    opened_per_touch: f64,
    entries_after_touching: u64,
    opened_per_page: u64,
}

async fn shape(n: usize) -> Shape {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    fill(&dir, n).await;
    // Bytes the file takes on disk (allocated blocks: redb grows its file ahead of use).
    let bytes_per_key =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(dir.join("keys.redb")).unwrap()) * 512 / n as u64;
    let backend = reopen(&dir).await;
    let opened_at_start = backend.cache_stats().records_opened;
    // Touch 2000 distinct keys spread over the store, twice.
    let touched: Vec<String> = (0..2000).map(|i| format!("k-{:06}", i * n / 2000)).collect();
    for _ in 0..2 {
        for key_id in &touched {
            let request = GenerateDataKeyRequest {
                key_id: key_id.clone(),
                key_spec: KeySpec::Aes256,
                encryption_context: ctx(&[]),
            };
            backend.generate_data_key(request).await.unwrap();
        }
    }
    let stats = backend.cache_stats();
    let opened_per_touch = (stats.records_opened - opened_at_start) as f64 / 4000.0;
    // A page of 1000 from the middle of the store.
    let before = backend.cache_stats().records_opened;
    let marker = Some(format!("k-{:06}", n / 2));
    let page = backend.list_keys(ListKeysRequest { limit: Some(1000), marker, ..Default::default() }).await.unwrap();
    assert_eq!(page.keys.len(), 1000.min(n - n / 2 - 1));
    let opened_per_page = backend.cache_stats().records_opened - before;
    backend.shutdown().await;
    Shape { opened_at_start, bytes_per_key, opened_per_touch, entries_after_touching: stats.entries, opened_per_page }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_memory_and_disk_do_not_grow_with_the_key_count() {
    let small = shape(1_000).await;
    let large = shape(20_000).await;
    for (n, s) in [(1_000, &small), (20_000, &large)] {
        // Opening reads no record, whatever the store holds.
        assert_eq!(s.opened_at_start, 0, "{n} keys");
        // Memory for keys is the cache: bounded by its capacity, not by the key count.
        assert!(s.entries_after_touching <= CACHE as u64, "{n} keys: {} cached", s.entries_after_touching);
        // A key costs at most one record opened per use, never a scan.
        assert!(s.opened_per_touch <= 1.0, "{n} keys: {} records opened per use", s.opened_per_touch);
        // A page of 1000 opens at most the records on it.
        assert!(s.opened_per_page <= 1001, "{n} keys: {} records opened for a page", s.opened_per_page);
    }
    // Bytes on disk per one-version key: within the goal, and not growing with the count.
    assert!(large.bytes_per_key <= 600, "{} bytes per key at 20k keys", large.bytes_per_key);
    assert!(small.bytes_per_key <= 600, "{} bytes per key at 1k keys", small.bytes_per_key);
}
