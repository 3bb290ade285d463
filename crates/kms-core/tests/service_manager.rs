//! KmsServiceManager: the lifecycle, health-gated start, and reconfigure that swaps backends
//! atomically (no request fails under load; in-flight calls finish before the old backend is
//! closed; a failing candidate never replaces a healthy backend).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kms_core::backends::{BackendFactory, BackendRegistry, KmsBackend};
use kms_core::mock::{MemoryBackend, MemoryBackendFactory};
use kms_core::service_manager::KmsServiceManager;
use kms_testkit::forwarding::{Forwarding, Hooks};
use kms_types::api_types::KmsServiceStatus;
use kms_types::config::{self, KmsConfig, LocalConfig, MasterKeySource, VaultAuthMethod, VaultConfig};
use kms_types::error::{KmsError, Result};
use kms_types::types::*;

fn local_config() -> KmsConfig {
    KmsConfig::local(LocalConfig::new("/unused", MasterKeySource::InsecurePlaintextForDevelopment))
}

fn vault_config() -> KmsConfig {
    KmsConfig::vault(VaultConfig {
        address: "http://127.0.0.1:8200".into(),
        auth_method: VaultAuthMethod::Token { token: "root".into() },
        namespace: None,
        mount_path: "transit".into(),
        kv_mount: "secret".into(),
        key_path_prefix: "kms/keys".into(),
        tls: None,
    })
}

fn registry_with(factories: Vec<Arc<dyn BackendFactory>>) -> BackendRegistry {
    let mut registry = BackendRegistry::new();
    for factory in factories {
        registry.register(factory);
    }
    registry
}

/// Shares one MemoryBackend; every build is a new "connection" (the memory backend behind a
/// forwarding backend) that fails all calls once closed and records whether it was closed
/// while a call was still running on it.
struct Connection {
    busy: Arc<AtomicUsize>,
    closed: AtomicBool,
    closed_while_busy: Arc<AtomicBool>,
    closes: Arc<AtomicU32>,
}

/// One call in flight on a connection, for as long as it lives.
struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Hooks for Connection {
    type Guard = BusyGuard;

    async fn before(&self, _operation: &'static str) -> Result<BusyGuard> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        let guard = BusyGuard(Arc::clone(&self.busy));
        if self.closed.load(Ordering::SeqCst) {
            return Err(KmsError::backend("used after close"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await; // widen the race windows
        Ok(guard)
    }

    async fn close(&self) -> Result<()> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            self.closed_while_busy.store(true, Ordering::SeqCst);
        }
        self.closed.store(true, Ordering::SeqCst);
        self.closes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct ConnectionFactory {
    kind: config::KmsBackend,
    inner: Arc<MemoryBackend>,
    closed_while_busy: Arc<AtomicBool>,
    closes: Arc<AtomicU32>,
}

#[async_trait]
impl BackendFactory for ConnectionFactory {
    fn kind(&self) -> config::KmsBackend {
        self.kind.clone()
    }
    async fn build(&self, _config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        let connection = Connection {
            busy: Arc::default(),
            closed: AtomicBool::new(false),
            closed_while_busy: Arc::clone(&self.closed_while_busy),
            closes: Arc::clone(&self.closes),
        };
        Ok(Arc::new(Forwarding::new(Arc::clone(&self.inner) as Arc<dyn KmsBackend>, connection)))
    }
}

/// A factory whose builds always fail.
struct Unreachable;

#[async_trait]
impl BackendFactory for Unreachable {
    fn kind(&self) -> config::KmsBackend {
        config::KmsBackend::Vault
    }
    async fn build(&self, _config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        Err(KmsError::backend_with_source("cannot reach vault", true, std::io::Error::other("connection refused")))
    }
}

#[tokio::test]
async fn the_lifecycle_runs_configure_start_stop_start() {
    let manager =
        KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::new(config::KmsBackend::Local))]));
    assert_eq!(manager.get_status().await, KmsServiceStatus::NotConfigured);
    assert!(manager.encryption_service().await.is_none());
    let err = manager.start().await.unwrap_err();
    assert!(matches!(err, KmsError::Configuration { .. }), "{err:?}");
    assert_eq!(manager.get_status().await, KmsServiceStatus::NotConfigured);

    manager.configure(local_config()).await.unwrap();
    assert_eq!(manager.get_status().await, KmsServiceStatus::Configured);
    assert_eq!(manager.current_config().await, Some(local_config()));
    manager.start().await.unwrap();
    manager.start().await.unwrap(); // idempotent
    assert_eq!(manager.get_status().await, KmsServiceStatus::Running);
    let status = manager.status_response().await;
    assert_eq!((status.backend, status.healthy), (Some(config::KmsBackend::Local), Some(true)));

    let service = manager.encryption_service().await.unwrap();
    let key = service.create_key(CreateKeyRequest::default()).await.unwrap();
    let err = manager.configure(local_config()).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { .. }), "configure while running: {err:?}");

    manager.stop().await.unwrap();
    assert_eq!(manager.get_status().await, KmsServiceStatus::Stopped);
    assert!(manager.encryption_service().await.is_none());
    let err = service.describe_key(DescribeKeyRequest { key_id: key.key_id }).await.unwrap_err();
    assert!(matches!(err, KmsError::ServiceUnavailable { .. }), "a held service after stop: {err:?}");
    assert_eq!(manager.status_response().await.healthy, None);
    manager.stop().await.unwrap(); // idempotent

    manager.start().await.unwrap();
    assert_eq!(manager.get_status().await, KmsServiceStatus::Running);
    assert!(service.health_check().await.unwrap(), "the held service follows the restart");
}

#[tokio::test]
async fn configure_rejects_invalid_and_unavailable_backends() {
    let manager =
        KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::new(config::KmsBackend::Local))]));
    let mut bad = local_config();
    bad.retry_attempts = 99;
    let err = manager.configure(bad).await.unwrap_err();
    assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "retry_attempts"), "{err:?}");
    let err = manager.configure(vault_config()).await.unwrap_err();
    assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "backend"), "{err:?}");
    assert_eq!(manager.get_status().await, KmsServiceStatus::NotConfigured);
}

#[tokio::test]
async fn start_requires_a_passing_health_check() {
    let backend = Arc::new(MemoryBackend::new());
    backend.set_healthy(false);
    let manager = KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::sharing(
        config::KmsBackend::Local,
        Arc::clone(&backend),
    ))]));
    manager.configure(local_config()).await.unwrap();
    let err = manager.start().await.unwrap_err();
    assert!(matches!(err, KmsError::ServiceUnavailable { .. }), "{err:?}");
    assert!(matches!(manager.get_status().await, KmsServiceStatus::Error { .. }));
    assert!(manager.encryption_service().await.is_none());
    backend.set_healthy(true);
    manager.start().await.unwrap();
    assert_eq!(manager.get_status().await, KmsServiceStatus::Running);
}

#[tokio::test]
async fn a_failing_candidate_keeps_the_running_backend() {
    let backend = Arc::new(MemoryBackend::new());
    let registry = registry_with(vec![
        Arc::new(MemoryBackendFactory::sharing(config::KmsBackend::Local, Arc::clone(&backend))),
        Arc::new(Unreachable),
    ]);
    let manager = KmsServiceManager::new(registry);
    manager.configure(local_config()).await.unwrap();
    manager.start().await.unwrap();
    let service = manager.encryption_service().await.unwrap();
    let key = service.create_key(CreateKeyRequest::default()).await.unwrap().key_id;

    // Unreachable backend, then an unhealthy one of the same kind: both rejected.
    let err = manager.reconfigure(vault_config()).await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
    backend.set_healthy(false);
    let mut other = local_config();
    other.default_key_id = Some("other".into());
    let err = manager.reconfigure(other).await.unwrap_err();
    assert!(matches!(err, KmsError::ServiceUnavailable { .. }), "{err:?}");
    backend.set_healthy(true);

    assert_eq!(manager.get_status().await, KmsServiceStatus::Running);
    assert_eq!(manager.current_config().await, Some(local_config()));
    service.describe_key(DescribeKeyRequest { key_id: key }).await.unwrap();
}

#[tokio::test]
async fn reconfigure_of_a_stopped_service_starts_it() {
    let manager =
        KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::new(config::KmsBackend::Local))]));
    manager.reconfigure(local_config()).await.unwrap();
    assert_eq!(manager.get_status().await, KmsServiceStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfigure_under_concurrent_load_fails_no_request() {
    let closed_while_busy = Arc::new(AtomicBool::new(false));
    let closes = Arc::new(AtomicU32::new(0));
    let inner = Arc::new(MemoryBackend::new());
    let factory = |kind| {
        Arc::new(ConnectionFactory {
            kind,
            inner: Arc::clone(&inner),
            closed_while_busy: Arc::clone(&closed_while_busy),
            closes: Arc::clone(&closes),
        }) as Arc<dyn BackendFactory>
    };
    let manager = Arc::new(KmsServiceManager::new(registry_with(vec![
        factory(config::KmsBackend::Local),
        factory(config::KmsBackend::Vault),
    ])));
    let mut config = local_config();
    config.default_key_id = Some("load".into());
    manager.configure(config.clone()).await.unwrap();
    manager.start().await.unwrap();
    let service = manager.encryption_service().await.unwrap();
    service.ensure_default_key().await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (manager, stop) = (Arc::clone(&manager), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let (mut done, mut failures) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) || done < 20 {
                // Half the workers fetch the service per request, half keep one.
                let service = manager.encryption_service().await.expect("running throughout");
                let context: EncryptionContext = [("worker".into(), worker.to_string())].into();
                let result = async {
                    let key_id = service.resolve_key_id(None).await?;
                    let dk = service
                        .generate_data_key(GenerateDataKeyRequest {
                            key_id,
                            key_spec: KeySpec::Aes256,
                            encryption_context: context.clone(),
                        })
                        .await?;
                    let opened = service
                        .decrypt(DecryptRequest {
                            ciphertext_blob: dk.ciphertext_blob,
                            encryption_context: context,
                            key_id: None,
                        })
                        .await?;
                    assert_eq!(opened.plaintext.expose_secret(), dk.plaintext_key.expose_secret());
                    Ok::<(), KmsError>(())
                }
                .await;
                if let Err(e) = result {
                    failures.push(e.to_string());
                }
                done += 1;
            }
            (done, failures)
        }));
    }
    for round in 0..20 {
        let mut next = if round % 2 == 0 { vault_config() } else { local_config() };
        next.default_key_id = Some("load".into());
        next.timeout = Duration::from_secs(10 + round);
        manager.reconfigure(next).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for worker in workers {
        let (done, failures) = worker.await.unwrap();
        assert!(failures.is_empty(), "requests failed during reconfigure: {failures:?}");
        total += done;
    }
    assert!(total >= 80, "only {total} requests ran");
    assert_eq!(closes.load(Ordering::SeqCst), 20, "every replaced backend is closed");
    assert!(!closed_while_busy.load(Ordering::SeqCst), "a backend was closed while a call was running on it");
    assert_eq!(manager.current_config().await.unwrap().timeout, Duration::from_secs(29));
}

#[tokio::test]
async fn the_global_manager_is_created_once() {
    use kms_core::service_manager::{
        get_global_encryption_service, get_global_kms_service_manager, init_global_kms_service_manager,
    };
    assert!(get_global_kms_service_manager().is_none());
    let first = init_global_kms_service_manager(registry_with(vec![Arc::new(MemoryBackendFactory::new(
        config::KmsBackend::Local,
    ))]));
    let second = init_global_kms_service_manager(BackendRegistry::new());
    assert!(Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(&first, &get_global_kms_service_manager().unwrap()));
    assert!(get_global_encryption_service().await.is_none());
    first.configure(local_config()).await.unwrap();
    first.start().await.unwrap();
    let service = get_global_encryption_service().await.expect("running");
    assert!(service.health_check().await.unwrap());
}

/// Records what the manager asks it to save; fails when told to.
#[derive(Debug, Default)]
struct Recorder {
    saves: std::sync::Mutex<Vec<(config::KmsBackend, bool)>>,
    fail: AtomicBool,
}

impl kms_core::service_manager::SaveHook for Recorder {
    fn save(&self, config: &KmsConfig, running: bool) -> Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(KmsError::Internal { message: "the disk is full".into(), source: None });
        }
        self.saves.lock().unwrap().push((config.backend.clone(), running));
        Ok(())
    }
}

#[tokio::test]
async fn every_lifecycle_change_is_saved_and_a_failed_save_is_reported_after_the_change() {
    let manager = KmsServiceManager::new(registry_with(vec![
        Arc::new(MemoryBackendFactory::new(config::KmsBackend::Local)),
        Arc::new(MemoryBackendFactory::new(config::KmsBackend::Vault)),
    ]));
    let hook = Arc::new(Recorder::default());
    manager.set_save_hook(hook.clone());
    let local = config::KmsBackend::Local;

    manager.configure(local_config()).await.unwrap();
    manager.start().await.unwrap();
    manager.start().await.unwrap(); // already running: nothing changed, nothing saved
    manager.stop().await.unwrap();
    manager.reconfigure(vault_config()).await.unwrap();
    let saved = hook.saves.lock().unwrap().clone();
    assert_eq!(
        saved,
        [(local.clone(), false), (local.clone(), true), (local, false), (config::KmsBackend::Vault, true)]
    );

    // A refused configuration is not saved.
    let mut bad = local_config();
    bad.timeout = Duration::ZERO;
    assert!(matches!(manager.reconfigure(bad).await, Err(KmsError::Configuration { .. })));
    assert_eq!(hook.saves.lock().unwrap().len(), 4);

    // The hook's error reaches the caller, after the change took effect.
    hook.fail.store(true, Ordering::SeqCst);
    let err = manager.stop().await.unwrap_err();
    assert!(matches!(err, KmsError::Internal { ref message, .. } if message == "the disk is full"), "{err:?}");
    assert_eq!(manager.get_status().await, KmsServiceStatus::Stopped);
}

#[tokio::test]
async fn shutdown_releases_the_backend_but_saves_nothing_so_the_next_process_resumes() {
    let manager =
        KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::new(config::KmsBackend::Local))]));
    let hook = Arc::new(Recorder::default());
    manager.set_save_hook(hook.clone());
    manager.configure(local_config()).await.unwrap();
    manager.start().await.unwrap();
    let saves_while_running = hook.saves.lock().unwrap().len();

    manager.shutdown().await;
    assert_eq!(manager.get_status().await, KmsServiceStatus::Stopped);
    assert!(manager.encryption_service().await.is_none(), "no backend after shutdown");
    let saved = hook.saves.lock().unwrap().clone();
    assert_eq!(saved.len(), saves_while_running, "shutdown saved {saved:?}");
    assert_eq!(saved.last(), Some(&(config::KmsBackend::Local, true)), "the last save says running");
}

#[tokio::test]
async fn a_backend_kind_nobody_registered_is_refused_naming_the_backend() {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Elsewhere {
        endpoint: String,
    }
    impl config::BackendSettings for Elsewhere {
        fn redacted(&self) -> Self {
            Self { endpoint: self.endpoint.clone() }
        }
    }
    let kind = config::KmsBackend::new("elsewhere").unwrap();
    let custom = config::CustomBackendConfig::new(kind.clone(), &Elsewhere { endpoint: "e".into() }).unwrap();
    let manager = KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::new(kind.clone()))]));
    assert!(manager.supports(&kind) && !manager.supports(&config::KmsBackend::Local));
    manager.configure(KmsConfig::custom(custom.clone())).await.unwrap();
    // Without a typed factory, a custom backend's settings are shown as names only.
    let shown = serde_json::to_string(&manager.redacted_config().await.unwrap()).unwrap();
    assert!(shown.contains("endpoint") && !shown.contains("\"e\""), "{shown}");

    let elsewhere =
        KmsServiceManager::new(registry_with(vec![Arc::new(MemoryBackendFactory::new(config::KmsBackend::Local))]));
    let err = elsewhere.configure(KmsConfig::custom(custom)).await.unwrap_err();
    assert!(matches!(err, KmsError::Configuration { ref field, .. } if field == "backend"), "{err:?}");
    assert_eq!(elsewhere.backend_kinds(), [config::KmsBackend::Local]);
}
