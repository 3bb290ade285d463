//! [`LocalBackendFactory`]: builds a [`LocalBackend`] from a `KmsConfig` for the backend registry.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kms_core::backends::{BackendFactory, KmsBackend};
use kms_types::config::{BackendConfig, KmsBackend as BackendKind, KmsConfig};
use kms_types::error::{KmsError, Result};

use crate::backend::{DEFAULT_DELETION_SWEEP_INTERVAL, LocalBackend, LocalOptions};

/// Builds [`LocalBackend`]s for `KmsBackend::Local` configurations and starts their deletion
/// worker.
///
/// ```
/// use kms_backend_local::LocalBackendFactory;
/// use kms_core::backends::BackendRegistry;
/// use std::sync::Arc;
///
/// let mut registry = BackendRegistry::new();
/// registry.register(Arc::new(LocalBackendFactory::new()));
/// assert!(registry.supports(kms_types::config::KmsBackend::Local));
/// ```
#[derive(Debug, Clone)]
pub struct LocalBackendFactory {
    options: LocalOptions,
    sweep_interval: Duration,
}

impl Default for LocalBackendFactory {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalBackendFactory {
    /// A factory with the system clock and a sweep every 60 seconds.
    pub fn new() -> Self {
        Self { options: LocalOptions::default(), sweep_interval: DEFAULT_DELETION_SWEEP_INTERVAL }
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
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        let BackendConfig::Local(local) = &config.backend_config else {
            return Err(KmsError::configuration("backend_config", "is not a local backend configuration"));
        };
        let backend = LocalBackend::open_with(local, self.options.clone()).await?;
        backend.start_deletion_worker(self.sweep_interval);
        Ok(Arc::new(backend))
    }
}
