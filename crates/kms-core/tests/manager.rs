//! KmsManager: timeouts, retries of idempotent reads only, and the metadata cache, against a
//! scripted backend that fails, hangs or answers slowly on demand. Time is virtual (paused).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kms_core::backends::{KmsBackend, RetryClass};
use kms_core::manager::{KmsManager, ManagerOptions, RetryPolicy};
use kms_core::mock::MemoryBackend;
use kms_testkit::forwarding::{Forwarding, Hooks};
use kms_types::config::CacheConfig;
use kms_types::error::{KmsError, Result};
use kms_types::types::*;
use tokio::time::Instant;

type MakeError = fn() -> KmsError;

fn transient() -> KmsError {
    KmsError::backend_with_source("connection refused", true, std::io::Error::other("refused"))
}

/// A MemoryBackend that can be told to fail the next N calls, to hang, or to answer
/// `describe_key` slowly (after reading the state); counts calls per operation. Every
/// operation is forwarded (`kms_testkit::forwarding`), so it claims only what it does.
type Scripted = Forwarding<Script>;

/// The script: what the next calls do.
struct Script {
    fail_next: AtomicU32,
    failure: Mutex<MakeError>,
    /// Whether this backend declares its writes safe to repeat.
    retry_safe: AtomicBool,
    /// Whether this backend declares it can fail in a way a repeat may cure.
    transient: AtomicBool,
    hang: AtomicBool,
    slow_describe: AtomicBool,
    calls: Mutex<HashMap<&'static str, u32>>,
}

fn scripted() -> Arc<Scripted> {
    let script = Script {
        fail_next: AtomicU32::new(0),
        failure: Mutex::new(transient),
        retry_safe: AtomicBool::new(false),
        transient: AtomicBool::new(true),
        hang: AtomicBool::new(false),
        slow_describe: AtomicBool::new(false),
        calls: Mutex::default(),
    };
    Arc::new(Forwarding::new(Arc::new(MemoryBackend::new()), script))
}

impl Script {
    fn fail(&self, times: u32, failure: MakeError) {
        *self.failure.lock().unwrap() = failure;
        self.fail_next.store(times, Ordering::SeqCst);
    }

    fn calls(&self, op: &str) -> u32 {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Hooks for Script {
    type Guard = ();

    async fn before(&self, op: &'static str) -> Result<()> {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err((self.failure.lock().unwrap())());
        }
        Ok(())
    }

    async fn after(&self, op: &'static str) {
        if op == "describe_key" && self.slow_describe.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn retry_class(&self, error: &KmsError, _inner: RetryClass) -> RetryClass {
        match error {
            KmsError::Backend { message, .. } if message == "node down" => RetryClass::Move,
            e if e.is_retryable() => RetryClass::Retry,
            _ => RetryClass::Final,
        }
    }

    fn writes_are_retry_safe(&self, _inner: bool) -> bool {
        self.retry_safe.load(Ordering::SeqCst)
    }

    fn may_fail_transiently(&self, _inner: bool) -> bool {
        self.transient.load(Ordering::SeqCst)
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn options(max_retries: u32, cache: Option<CacheConfig>) -> ManagerOptions {
    ManagerOptions {
        timeout: TIMEOUT,
        retry: RetryPolicy { max_retries, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) },
        cache,
    }
}

fn manager(backend: &Arc<Scripted>, max_retries: u32, cache: Option<CacheConfig>) -> KmsManager {
    KmsManager::with_options(Arc::clone(backend) as Arc<dyn KmsBackend>, options(max_retries, cache))
}

async fn key(m: &KmsManager, name: &str) -> (String, Vec<u8>) {
    let id = m.create_key(CreateKeyRequest { key_name: Some(name.into()), ..Default::default() }).await.unwrap().key_id;
    let blob = m
        .encrypt(EncryptRequest {
            key_id: id.clone(),
            plaintext: b"p".as_slice().into(),
            encryption_context: Default::default(),
        })
        .await
        .unwrap()
        .ciphertext_blob;
    (id, blob)
}

fn describe(id: &str) -> DescribeKeyRequest {
    DescribeKeyRequest { key_id: id.into() }
}

fn decrypt(blob: &[u8]) -> DecryptRequest {
    DecryptRequest { ciphertext_blob: blob.to_vec(), encryption_context: Default::default(), key_id: None }
}

#[tokio::test(start_paused = true)]
async fn transient_read_failures_are_retried_until_success() {
    let backend = scripted();
    let m = manager(&backend, 3, None);
    let (id, blob) = key(&m, "k").await;

    backend.hooks().fail(2, transient);
    m.describe_key(describe(&id)).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 3);

    backend.hooks().fail(3, transient);
    assert_eq!(m.decrypt(decrypt(&blob)).await.unwrap().plaintext.expose_secret(), b"p");
    assert_eq!(backend.hooks().calls("decrypt"), 4);

    backend.hooks().fail(1, transient);
    m.list_keys(ListKeysRequest::default()).await.unwrap();
    assert_eq!(backend.hooks().calls("list_keys"), 2);

    backend.hooks().fail(1, transient);
    assert!(m.health_check().await.unwrap());
    assert_eq!(backend.hooks().calls("health_check"), 2);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_the_configured_attempts() {
    let backend = scripted();
    let m = manager(&backend, 3, None);
    let (id, _) = key(&m, "k").await;
    backend.hooks().fail(100, transient);
    let err = m.describe_key(describe(&id)).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(backend.hooks().calls("describe_key"), 4, "1 attempt + 3 retries");

    let no_retry = manager(&backend, 0, None);
    no_retry.describe_key(describe(&id)).await.unwrap_err();
    assert_eq!(backend.hooks().calls("describe_key"), 5, "retry_attempts = 0 means one attempt");
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_never_retried() {
    let permanent: [(&str, MakeError); 5] = [
        ("crypto", KmsError::crypto),
        ("not found", || KmsError::key_not_found("k")),
        ("invalid state", || KmsError::invalid_key_state("k", KeyState::Disabled, "decrypt")),
        ("unauthorized", || KmsError::Unauthorized { message: "token revoked".into(), source: None }),
        ("permanent backend error", || KmsError::backend("permission denied")),
    ];
    for (what, failure) in permanent {
        let backend = scripted();
        let m = manager(&backend, 5, None);
        let (id, blob) = key(&m, "k").await;
        backend.hooks().fail(1, failure);
        m.decrypt(decrypt(&blob)).await.unwrap_err();
        assert_eq!(backend.hooks().calls("decrypt"), 1, "{what} was retried");
        backend.hooks().fail(1, failure);
        m.describe_key(describe(&id)).await.unwrap_err();
        assert_eq!(backend.hooks().calls("describe_key"), 1, "{what} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn writes_run_exactly_once_even_on_transient_errors() {
    let backend = scripted();
    let m = manager(&backend, 5, None);
    let (id, _) = key(&m, "k").await;
    backend.hooks().fail(1, transient);
    m.encrypt(EncryptRequest {
        key_id: id.clone(),
        plaintext: b"x".as_slice().into(),
        encryption_context: Default::default(),
    })
    .await
    .unwrap_err();
    assert_eq!(backend.hooks().calls("encrypt"), 2, "one call for setup, one for the failing encrypt");
    backend.hooks().fail(1, transient);
    m.generate_data_key(GenerateDataKeyRequest {
        key_id: id.clone(),
        key_spec: KeySpec::Aes256,
        encryption_context: Default::default(),
    })
    .await
    .unwrap_err();
    assert_eq!(backend.hooks().calls("generate_data_key"), 1);
    backend.hooks().fail(1, transient);
    m.create_key(CreateKeyRequest::default()).await.unwrap_err();
    assert_eq!(backend.hooks().calls("create_key"), 2);
    backend.hooks().fail(1, transient);
    m.delete_key(DeleteKeyRequest { key_id: id, pending_window_in_days: None }).await.unwrap_err();
    assert_eq!(backend.hooks().calls("delete_key"), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially() {
    let backend = scripted();
    let m = manager(&backend, 3, None);
    let (id, _) = key(&m, "k").await;
    backend.hooks().fail(3, transient);
    let start = Instant::now();
    m.describe_key(describe(&id)).await.unwrap();
    let waited = start.elapsed();
    // Jittered delays lie in [d/2, d] for d = 100, 200, 400 ms.
    assert!(waited >= Duration::from_millis(350) && waited <= Duration::from_millis(700), "waited {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_times_out() {
    let backend = scripted();
    let m = manager(&backend, 2, None);
    let (id, blob) = key(&m, "k").await;
    backend.hooks().hang.store(true, Ordering::SeqCst);

    let start = Instant::now();
    let err = m
        .encrypt(EncryptRequest {
            key_id: id.clone(),
            plaintext: b"x".as_slice().into(),
            encryption_context: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::Timeout { operation: "encrypt", after } if after == TIMEOUT), "{err:?}");
    assert_eq!(start.elapsed(), TIMEOUT);

    // A read times out on every attempt: 3 attempts of a quarter of the budget each, and
    // the budget bounds the whole call (one deadline, not one per attempt).
    let start = Instant::now();
    let err = m.decrypt(decrypt(&blob)).await.unwrap_err();
    let per_attempt = kms_core::manager::attempt_timeout(TIMEOUT);
    assert!(matches!(err, KmsError::Timeout { operation: "decrypt", after } if after == per_attempt), "{err:?}");
    assert_eq!(backend.hooks().calls("decrypt"), 3);
    assert!(start.elapsed() >= per_attempt * 3 && start.elapsed() <= TIMEOUT, "{:?}", start.elapsed());
    assert!(matches!(m.health_check().await, Err(KmsError::Timeout { operation: "health_check", .. })));

    // A write made once (this backend does not repeat writes) has the whole budget.
    let start = Instant::now();
    let request =
        GenerateDataKeyRequest { key_id: id, key_spec: KeySpec::Aes256, encryption_context: Default::default() };
    let err = m.generate_data_key(request).await.unwrap_err();
    assert!(matches!(err, KmsError::Timeout { operation: "generate_data_key", after } if after == TIMEOUT), "{err:?}");
    assert_eq!(start.elapsed(), TIMEOUT);
    assert_eq!(backend.hooks().calls("generate_data_key"), 1);
}

/// A call the backend answers without waiting sets no timer: it runs, retries and budget
/// included, on a runtime that has no time driver at all (where a timer would panic).
#[test]
fn calls_answered_at_once_need_no_timer() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let backend = scripted();
        let m = manager(&backend, 2, Some(CacheConfig::default()));
        let (id, blob) = key(&m, "k").await;
        let request = GenerateDataKeyRequest {
            key_id: id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: Default::default(),
        };
        let data_key = m.generate_data_key(request).await.unwrap();
        assert_eq!(m.decrypt(decrypt(&data_key.ciphertext_blob)).await.unwrap().plaintext, data_key.plaintext_key);
        assert_eq!(m.decrypt(decrypt(&blob)).await.unwrap().plaintext.expose_secret(), b"p");
        m.describe_key(describe(&id)).await.unwrap();
        // A failure answered at once is classified as before: permanent, returned at once.
        let err = m.decrypt(decrypt(b"not a blob")).await.unwrap_err();
        assert_eq!(err.code(), "crypto_error", "{err:?}");
        assert_eq!(backend.hooks().calls("decrypt"), 3);
    });
}

#[tokio::test(start_paused = true)]
async fn describe_is_cached_and_every_mutation_invalidates() {
    let backend = scripted();
    let m = manager(&backend, 0, Some(CacheConfig::new(100, Duration::from_secs(60))));
    let (id, _) = key(&m, "k").await;

    for _ in 0..3 {
        assert_eq!(m.describe_key(describe(&id)).await.unwrap().key_metadata.key_state, KeyState::Enabled);
    }
    assert_eq!(backend.hooks().calls("describe_key"), 1);
    let stats = m.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries, stats.capacity), (2, 1, 1, 100));

    let steps: Vec<(&str, KeyState)> = vec![
        ("disable_key", KeyState::Disabled),
        ("enable_key", KeyState::Enabled),
        ("tag_key", KeyState::Enabled),
        ("rotate_key", KeyState::Enabled),
        ("delete_key", KeyState::PendingDeletion),
        ("cancel_key_deletion", KeyState::Disabled),
    ];
    for (op, state) in steps {
        let k = || KeyIdRequest { key_id: id.clone() };
        match op {
            "disable_key" => drop(m.disable_key(k()).await.unwrap()),
            "enable_key" => drop(m.enable_key(k()).await.unwrap()),
            "tag_key" => drop(
                m.tag_key(TagKeyRequest { key_id: id.clone(), tags: [("t".into(), "v".into())].into() }).await.unwrap(),
            ),
            "rotate_key" => drop(m.rotate_key(k()).await.unwrap()),
            "delete_key" => {
                drop(m.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: None }).await.unwrap())
            }
            _ => drop(m.cancel_key_deletion(CancelKeyDeletionRequest { key_id: id.clone() }).await.unwrap()),
        }
        let before = backend.hooks().calls("describe_key");
        let meta = m.describe_key(describe(&id)).await.unwrap().key_metadata;
        assert_eq!(backend.hooks().calls("describe_key"), before + 1, "{op} did not invalidate the cache");
        assert_eq!(meta.key_state, state, "after {op}");
        if op == "tag_key" {
            assert_eq!(meta.tags.get("t").map(String::as_str), Some("v"));
        }
        if op == "rotate_key" {
            assert_eq!(meta.current_version, 2);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_mutation_still_invalidates() {
    let backend = scripted();
    let m = manager(&backend, 0, Some(CacheConfig::default()));
    let (id, _) = key(&m, "k").await;
    m.describe_key(describe(&id)).await.unwrap();
    backend.hooks().fail(1, transient);
    m.disable_key(KeyIdRequest { key_id: id.clone() }).await.unwrap_err();
    m.describe_key(describe(&id)).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 2);
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let backend = scripted();
    let m = manager(&backend, 0, Some(CacheConfig::new(10, Duration::from_secs(30))));
    let (id, _) = key(&m, "k").await;
    m.describe_key(describe(&id)).await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    m.describe_key(describe(&id)).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    m.describe_key(describe(&id)).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 2, "an expired entry was served");
}

#[tokio::test(start_paused = true)]
async fn the_cache_is_bounded_and_can_be_cleared() {
    let backend = scripted();
    let m = manager(&backend, 0, Some(CacheConfig::new(2, Duration::from_secs(60))));
    let mut ids = Vec::new();
    for n in 0..5 {
        let (id, _) = key(&m, &format!("k{n}")).await;
        m.describe_key(describe(&id)).await.unwrap();
        ids.push(id);
    }
    assert_eq!(m.cache_stats().entries, 2);
    // The two most recent are cached, the oldest was evicted.
    m.describe_key(describe(&ids[4])).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 5);
    m.describe_key(describe(&ids[0])).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 6);
    m.clear_cache();
    assert_eq!(m.cache_stats().entries, 0);
    m.describe_key(describe(&ids[0])).await.unwrap();
    assert_eq!(backend.hooks().calls("describe_key"), 7);
}

#[tokio::test(start_paused = true)]
async fn without_a_cache_every_describe_reaches_the_backend() {
    let backend = scripted();
    let m = manager(&backend, 0, None);
    let (id, _) = key(&m, "k").await;
    for _ in 0..3 {
        m.describe_key(describe(&id)).await.unwrap();
    }
    assert_eq!(backend.hooks().calls("describe_key"), 3);
    assert_eq!(m.cache_stats(), Default::default());
}

#[tokio::test(start_paused = true)]
async fn a_describe_racing_a_mutation_does_not_cache_stale_metadata() {
    let backend = scripted();
    let m = Arc::new(manager(&backend, 0, Some(CacheConfig::default())));
    let (id, _) = key(&m, "k").await;
    backend.hooks().slow_describe.store(true, Ordering::SeqCst);
    let slow = {
        let (m, id) = (Arc::clone(&m), id.clone());
        tokio::spawn(async move { m.describe_key(describe(&id)).await })
    };
    tokio::task::yield_now().await; // the describe has read "Enabled" and is sleeping
    m.disable_key(KeyIdRequest { key_id: id.clone() }).await.unwrap();
    let stale = slow.await.unwrap().unwrap().key_metadata;
    assert_eq!(stale.key_state, KeyState::Enabled);
    backend.hooks().slow_describe.store(false, Ordering::SeqCst);
    let fresh = m.describe_key(describe(&id)).await.unwrap().key_metadata;
    assert_eq!(fresh.key_state, KeyState::Disabled, "the racing describe cached stale metadata");
}

#[tokio::test(start_paused = true)]
async fn key_errors_on_the_data_path_drop_the_cached_entry() {
    let backend = scripted();
    let m = manager(&backend, 0, Some(CacheConfig::default()));
    let (id, _) = key(&m, "k").await;
    m.describe_key(describe(&id)).await.unwrap();
    // Another node disabled the key behind this manager's back.
    backend.inner().disable_key(KeyIdRequest { key_id: id.clone() }).await.unwrap();
    let err = m
        .encrypt(EncryptRequest {
            key_id: id.clone(),
            plaintext: b"x".as_slice().into(),
            encryption_context: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::InvalidKeyState { .. }));
    assert_eq!(m.describe_key(describe(&id)).await.unwrap().key_metadata.key_state, KeyState::Disabled);
}

fn node_down() -> KmsError {
    KmsError::backend_with_source("node down", true, std::io::Error::other("connection refused"))
}

#[tokio::test(start_paused = true)]
async fn availability_failures_are_retried_for_the_whole_budget_and_no_longer() {
    let backend = scripted();
    let m = manager(&backend, 1, None);
    let (id, blob) = key(&m, "k").await;
    // A node down for a few seconds (an election): Move is retried past retry_attempts = 1.
    backend.hooks().fail(6, node_down);
    let start = Instant::now();
    assert_eq!(m.decrypt(decrypt(&blob)).await.unwrap().plaintext.expose_secret(), b"p");
    assert_eq!(backend.hooks().calls("decrypt"), 7);
    assert!(start.elapsed() < TIMEOUT, "{:?}", start.elapsed());
    // Down for good: the budget ends the call, and the attempts stay bounded.
    backend.hooks().fail(u32::MAX, node_down);
    let start = Instant::now();
    let err = m.describe_key(describe(&id)).await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { retryable: true, .. }), "{err:?}");
    assert!(start.elapsed() <= TIMEOUT, "{:?}", start.elapsed());
    let attempts = backend.hooks().calls("describe_key");
    assert!(attempts > 2 && attempts <= kms_core::manager::MAX_ATTEMPTS, "{attempts} attempts");
    // An ordinary transient failure is still limited by retry_attempts.
    backend.hooks().fail(u32::MAX, transient);
    m.list_keys(ListKeysRequest::default()).await.unwrap_err();
    assert_eq!(backend.hooks().calls("list_keys"), 2, "1 attempt + 1 retry");
}

#[tokio::test(start_paused = true)]
async fn writes_are_retried_only_when_the_backend_says_it_is_safe() {
    let backend = scripted();
    let m = manager(&backend, 3, None);
    let (id, _) = key(&m, "k").await;
    backend.hooks().retry_safe.store(true, Ordering::SeqCst);
    backend.hooks().fail(2, node_down);
    m.rotate_key(RotateKeyRequest { key_id: id.clone() }).await.unwrap();
    assert_eq!(backend.hooks().calls("rotate_key"), 3);
    backend.hooks().fail(1, transient);
    m.create_key(CreateKeyRequest::default()).await.unwrap();
    assert_eq!(backend.hooks().calls("create_key"), 3, "setup, a failed attempt, its retry");
    backend.hooks().retry_safe.store(false, Ordering::SeqCst);
    backend.hooks().fail(1, node_down);
    m.rotate_key(RotateKeyRequest { key_id: id }).await.unwrap_err();
    assert_eq!(backend.hooks().calls("rotate_key"), 4, "not safe: once");
}

/// A backend with no transient failures (the local backend) gets one attempt per call, for
/// reads as for writes, even for an error it calls retryable, and that attempt runs under
/// the whole budget instead of a quarter of it.
#[tokio::test(start_paused = true)]
async fn a_backend_without_transient_failures_gets_one_attempt_under_the_whole_budget() {
    let backend = scripted();
    let m = manager(&backend, 3, None);
    let (id, blob) = key(&m, "k").await;
    backend.hooks().transient.store(false, Ordering::SeqCst);
    backend.hooks().retry_safe.store(true, Ordering::SeqCst);

    backend.hooks().fail(1, transient);
    m.decrypt(decrypt(&blob)).await.unwrap_err();
    assert_eq!(backend.hooks().calls("decrypt"), 1);
    backend.hooks().fail(1, transient);
    m.describe_key(describe(&id)).await.unwrap_err();
    assert_eq!(backend.hooks().calls("describe_key"), 1);
    backend.hooks().fail(1, node_down);
    m.rotate_key(RotateKeyRequest { key_id: id.clone() }).await.unwrap_err();
    assert_eq!(backend.hooks().calls("rotate_key"), 1);
    // And with nothing failing, every call answers after that one attempt.
    assert_eq!(m.decrypt(decrypt(&blob)).await.unwrap().plaintext.expose_secret(), b"p");
    assert_eq!(backend.hooks().calls("decrypt"), 2);

    // A hanging call is cut at the whole budget, not at a quarter of it.
    backend.hooks().hang.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let err = m.decrypt(decrypt(&blob)).await.unwrap_err();
    assert!(matches!(err, KmsError::Timeout { .. }), "{err:?}");
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(backend.hooks().calls("decrypt"), 3);
}
