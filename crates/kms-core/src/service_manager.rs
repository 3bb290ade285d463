//! [`KmsServiceManager`]: the lifecycle behind `/kms/configure`, `/kms/start`, `/kms/stop`,
//! `/kms/reconfigure` and `/kms/status`, and the process-wide instance.
//!
//! States ([`KmsServiceStatus`]): `NotConfigured` → `configure` → `Configured` → `start` →
//! `Running` ⇄ `stop`/`start` (`Stopped`); a failed start is `Error` (the message never holds
//! secrets). `start` builds the backend through the [`BackendRegistry`] and requires a passing
//! health check. `reconfigure` builds and health-checks a *candidate* first and swaps it in
//! atomically only if it is healthy: a failing candidate never replaces a running backend.
//! Calls already running finish on the backend they started on; the old backend is closed
//! once they are done. Lifecycle calls are serialized.
//!
//! `kms-core` cannot depend on the backend crates, so the registry is passed in; the facade's
//! `kms::init_global_kms_service_manager()` passes one holding the backends its features enable.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::backends::BackendRegistry;
//! use kms_core::mock::MemoryBackendFactory;
//! use kms_core::service_manager::KmsServiceManager;
//! use kms_types::api_types::KmsServiceStatus;
//! use kms_types::config::{KmsBackend, KmsConfig, LocalConfig, MasterKeySource};
//!
//! let mut registry = BackendRegistry::new();
//! registry.register(Arc::new(MemoryBackendFactory::new(KmsBackend::Local)));
//! let manager = KmsServiceManager::new(registry);
//! manager
//!     .configure(KmsConfig::local(LocalConfig::new("/unused", MasterKeySource::InsecurePlaintextForDevelopment)))
//!     .await?;
//! manager.start().await?;
//! assert_eq!(manager.get_status().await, KmsServiceStatus::Running);
//! let service = manager.encryption_service().await.expect("running");
//! assert!(service.health_check().await?);
//! # Ok::<(), kms_types::KmsError>(()) }).unwrap();
//! ```

use std::sync::{Arc, OnceLock};

use kms_types::api_types::{KmsServiceStatus, KmsStatusResponse};
use kms_types::config::{KmsBackend, KmsConfig};
use kms_types::error::{KmsError, Result};
use tokio::sync::{Mutex, RwLock};

use crate::backends::BackendRegistry;
use crate::encryption::service::EncryptionService;
use crate::manager::KmsManager;
use crate::slot::{Active, ServiceSlot, retire};

/// Saves the service's configuration for the next start (an embedding server's data folder).
/// Set with [`KmsServiceManager::set_save_hook`].
pub trait SaveHook: Send + Sync + std::fmt::Debug {
    /// Saves `config`, and whether the service is running, so that the next start restores
    /// them. Called under the lifecycle lock after every configure, start, stop and reconfigure
    /// that changed something, so what is saved is always what is in force. An error is
    /// returned to the caller of that call as it is: the change has taken effect, only its
    /// saving failed.
    fn save(&self, config: &KmsConfig, running: bool) -> Result<()>;
}

#[derive(Debug)]
struct State {
    config: Option<KmsConfig>,
    status: KmsServiceStatus,
}

/// The KMS service lifecycle. See the [module docs](self).
#[derive(Debug)]
pub struct KmsServiceManager {
    registry: BackendRegistry,
    slot: Arc<ServiceSlot>,
    service: Arc<EncryptionService>,
    state: std::sync::RwLock<State>,
    /// Serializes configure/start/stop/reconfigure and their saving.
    lifecycle: Mutex<()>,
    save_hook: std::sync::RwLock<Option<Arc<dyn SaveHook>>>,
}

impl KmsServiceManager {
    /// A manager that builds backends with `registry`; starts `NotConfigured`.
    pub fn new(registry: BackendRegistry) -> Self {
        let slot = Arc::new(ServiceSlot::default());
        Self {
            registry,
            service: Arc::new(EncryptionService::managed(Arc::clone(&slot))),
            slot,
            state: std::sync::RwLock::new(State { config: None, status: KmsServiceStatus::NotConfigured }),
            lifecycle: Mutex::new(()),
            save_hook: std::sync::RwLock::new(None),
        }
    }

    /// Installs (or replaces) the hook that saves every lifecycle change (see [`SaveHook`]).
    pub fn set_save_hook(&self, hook: Arc<dyn SaveHook>) {
        *self.save_hook.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(hook);
    }

    /// Runs the save hook, if any, on the state now in force (under the lifecycle lock).
    fn save(&self) -> Result<()> {
        let hook = self.save_hook.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let Some(hook) = hook else { return Ok(()) };
        let (config, running) = {
            let state = self.read_state();
            (state.config.clone(), state.status == KmsServiceStatus::Running)
        };
        match config {
            Some(config) => hook.save(&config, running),
            None => Ok(()),
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check(&self, config: &KmsConfig) -> Result<()> {
        self.registry.check(config)
    }

    /// Whether a factory for `kind` is registered (`local`, `vault`, or a kind registered by
    /// another crate).
    pub fn supports(&self, kind: &KmsBackend) -> bool {
        self.registry.supports(kind)
    }

    /// The backend kinds this manager can build, in name order.
    pub fn backend_kinds(&self) -> Vec<KmsBackend> {
        self.registry.kinds()
    }

    /// Stores a validated configuration for the next `start`. Refused while running (use
    /// [`Self::reconfigure`], which never drops a healthy backend for a broken one).
    pub async fn configure(&self, config: KmsConfig) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        self.check(&config)?;
        let mut state = self.write_state();
        if state.status == KmsServiceStatus::Running {
            return Err(KmsError::invalid_request("status", "the kms service is running: use reconfigure"));
        }
        state.config = Some(config);
        state.status = KmsServiceStatus::Configured;
        drop(state);
        self.save()
    }

    /// Builds the configured backend, health-checks it and starts serving. Starting a running
    /// service does nothing.
    pub async fn start(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let config = {
            let state = self.read_state();
            if state.status == KmsServiceStatus::Running {
                return Ok(());
            }
            state.config.clone().ok_or_else(|| {
                KmsError::configuration("config", "the kms service is not configured: call configure first")
            })?
        };
        match self.build(&config).await {
            Ok(active) => {
                self.slot.replace(Some(active)).await;
                self.write_state().status = KmsServiceStatus::Running;
                tracing::info!(backend = config.backend.as_str(), "kms service started");
                self.save()
            }
            Err(e) => {
                self.write_state().status = KmsServiceStatus::Error { message: e.to_string() };
                Err(e)
            }
        }
    }

    /// Stops serving; calls already running finish first, then the backend is closed. The
    /// configuration is kept. Stopping a service that is not running does nothing.
    pub async fn stop(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.release().await { self.save() } else { Ok(()) }
    }

    /// Stops serving at process exit, like [`Self::stop`] (in-flight calls finish, the backend
    /// is closed and its locks released) but without running the save hook: the saved state
    /// keeps saying "running", so the next start of the process resumes the service.
    pub async fn shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        self.release().await;
    }

    /// Takes the backend out of service (the caller holds the lifecycle lock); whether there
    /// was one.
    async fn release(&self) -> bool {
        let Some(old) = self.slot.replace(None).await else {
            return false;
        };
        self.write_state().status = KmsServiceStatus::Stopped;
        retire(old).await;
        tracing::info!("kms service stopped");
        true
    }

    /// Builds and health-checks a backend for `config`, then swaps it in atomically and
    /// retires the old one after its in-flight calls finish. If the candidate fails, nothing
    /// changes (a running service keeps running on its old backend) and the error is returned.
    /// On a service that is not running, this is `configure` + `start`.
    pub async fn reconfigure(&self, config: KmsConfig) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        self.check(&config)?;
        let candidate = match self.build(&config).await {
            Ok(candidate) => candidate,
            Err(e) => {
                let mut state = self.write_state();
                if state.status != KmsServiceStatus::Running {
                    state.status = KmsServiceStatus::Error { message: e.to_string() };
                }
                tracing::warn!(error = %e, "kms reconfigure rejected: the candidate backend failed");
                return Err(e);
            }
        };
        let old = self.slot.replace(Some(candidate)).await;
        {
            let mut state = self.write_state();
            state.config = Some(config);
            state.status = KmsServiceStatus::Running;
        }
        if let Some(old) = old {
            retire(old).await;
        }
        tracing::info!("kms service reconfigured");
        self.save()
    }

    async fn build(&self, config: &KmsConfig) -> Result<Arc<Active>> {
        let built = tokio::time::timeout(config.timeout, self.registry.build(config))
            .await
            .unwrap_or(Err(KmsError::Timeout { operation: "build backend", after: config.timeout }))?;
        let manager = Arc::new(KmsManager::new(built, config));
        let healthy = match manager.health_check().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(KmsError::ServiceUnavailable {
                message: format!("the {} backend failed its health check", config.backend.as_str()),
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = healthy {
            let _ = manager.close().await;
            return Err(e);
        }
        Ok(Arc::new(Active {
            manager,
            default_key_id: config.default_key_id.clone(),
            in_flight: Arc::new(RwLock::new(())),
        }))
    }

    /// The service's state.
    pub async fn get_status(&self) -> KmsServiceStatus {
        self.read_state().status.clone()
    }

    /// State, backend kind and (when running) a fresh health check, for `/kms/status`.
    pub async fn status_response(&self) -> KmsStatusResponse {
        let (status, backend) = {
            let state = self.read_state();
            (state.status.clone(), state.config.as_ref().map(|c| c.backend.clone()))
        };
        let healthy = match self.slot.lease().await {
            Ok((active, _guard)) => Some(active.manager.health_check().await.unwrap_or(false)),
            Err(_) => None,
        };
        KmsStatusResponse { status, backend, healthy }
    }

    /// The configuration in force (or stored for the next start), secrets included: call
    /// [`KmsConfig::redacted`] before showing it.
    pub async fn current_config(&self) -> Option<KmsConfig> {
        self.read_state().config.clone()
    }

    /// The configuration in force (or stored for the next start) with every secret hidden, by
    /// the factory of its backend (which knows which settings of a custom backend are secret).
    pub async fn redacted_config(&self) -> Option<KmsConfig> {
        self.read_state().config.as_ref().map(|config| self.registry.redacted(config))
    }

    /// The [`EncryptionService`], if running. It follows later reconfigures; after a stop its
    /// calls fail with [`KmsError::ServiceUnavailable`].
    pub async fn encryption_service(&self) -> Option<Arc<EncryptionService>> {
        self.slot.active.read().await.as_ref().map(|_| Arc::clone(&self.service))
    }
}

static GLOBAL: OnceLock<Arc<KmsServiceManager>> = OnceLock::new();

/// The process-wide service manager, created on the first call with `registry` (later calls
/// return the same manager and ignore their argument). The facade's
/// `kms::init_global_kms_service_manager()` calls this with the backends its features enable.
pub fn init_global_kms_service_manager(registry: BackendRegistry) -> Arc<KmsServiceManager> {
    Arc::clone(GLOBAL.get_or_init(|| Arc::new(KmsServiceManager::new(registry))))
}

/// The process-wide service manager, if initialised.
pub fn get_global_kms_service_manager() -> Option<Arc<KmsServiceManager>> {
    GLOBAL.get().cloned()
}

/// The process-wide [`EncryptionService`], if the global manager exists and is running.
pub async fn get_global_encryption_service() -> Option<Arc<EncryptionService>> {
    get_global_kms_service_manager()?.encryption_service().await
}
