//! [`LocalBackendFactory`]: builds a [`LocalBackend`] from a `KmsConfig` for the backend registry.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use kms_core::backends::{BackendFactory, KmsBackend};
use kms_types::config::{self, BackendConfig, KmsConfig};
use kms_types::error::{KmsError, Result};

use crate::backend::{DEFAULT_DELETION_SWEEP_INTERVAL, Inner, LocalBackend, LocalOptions};

/// Builds [`LocalBackend`]s for `KmsBackend::Local` configurations and starts their deletion
/// worker.
///
/// Asked for a key directory that a backend it built still has open, it returns another
/// handle on the same store (after checking the new configuration's master key against the
/// directory's verifier) instead of failing on the directory lock. That is what lets the
/// service manager's reconfigure, which builds the new backend before retiring the old one,
/// work on an unchanged directory.
///
/// ```
/// use kms_backend_local::LocalBackendFactory;
/// use kms_core::backends::BackendRegistry;
/// use std::sync::Arc;
///
/// let mut registry = BackendRegistry::new();
/// registry.register(Arc::new(LocalBackendFactory::new()));
/// assert!(registry.supports(&kms_types::config::KmsBackend::Local));
/// ```
#[derive(Debug, Clone)]
pub struct LocalBackendFactory {
    options: LocalOptions,
    sweep_interval: Duration,
    open: Arc<Mutex<HashMap<PathBuf, Weak<Inner>>>>,
}

impl Default for LocalBackendFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBackendFactory {
    /// A factory with the system clock and a sweep every 60 seconds.
    pub fn new() -> Self {
        Self { options: LocalOptions::default(), sweep_interval: DEFAULT_DELETION_SWEEP_INTERVAL, open: Arc::default() }
    }

    /// Uses `options` (a clock, for tests) for every backend it builds.
    pub fn with_options(mut self, options: LocalOptions) -> Self {
        self.options = options;
        self
    }

    /// Sweeps for expired keys every `interval`.
    pub fn with_sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }
}

#[async_trait]
impl BackendFactory for LocalBackendFactory {
    fn kind(&self) -> config::KmsBackend {
        config::KmsBackend::Local
    }

    async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        let BackendConfig::Local(local) = &config.backend_config else {
            return Err(KmsError::configuration("backend_config", "is not a local backend configuration"));
        };
        let path = std::fs::canonicalize(&local.key_dir).unwrap_or_else(|_| local.key_dir.clone());
        let shared = self.open.lock().unwrap_or_else(|e| e.into_inner()).get(&path).and_then(Weak::upgrade);
        let attached = match shared {
            Some(inner) => LocalBackend::attach(inner, local).await?,
            None => None,
        };
        let backend = match attached {
            Some(backend) => backend,
            None => {
                let backend = LocalBackend::open_with(local, self.options.clone()).await?;
                let path = std::fs::canonicalize(&local.key_dir).unwrap_or(path);
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                open.retain(|_, store| store.strong_count() > 0);
                open.insert(path, Arc::downgrade(&backend.inner));
                backend
            }
        };
        backend.start_deletion_worker(self.sweep_interval);
        Ok(Arc::new(backend))
    }
}
