//! [`VaultBackendFactory`]: builds a [`VaultBackend`] from a `KmsConfig` for the backend
//! registry.

use std::sync::Arc;

use async_trait::async_trait;
use kms_core::backends::{BackendFactory, KmsBackend};
use kms_types::config::{self, KmsConfig};
use kms_types::error::Result;

use super::VaultBackend;

/// Builds [`VaultBackend`]s for [`config::KmsBackend::Vault`] configurations (each one connects,
/// and logs in, as [`VaultBackend::connect`] does).
///
/// ```
/// use kms_backend_vault::VaultBackendFactory;
/// use kms_core::backends::BackendRegistry;
/// use std::sync::Arc;
///
/// let mut registry = BackendRegistry::new();
/// registry.register(Arc::new(VaultBackendFactory::new()));
/// assert!(registry.supports(&kms_types::config::KmsBackend::Vault));
/// ```
#[derive(Debug, Clone, Default)]
pub struct VaultBackendFactory {
    /// Keeps the shape of `LocalBackendFactory` (built with `new()`) rather than a unit
    /// struct callers would name bare, so options can be added without breaking them.
    _private: (),
}

impl VaultBackendFactory {
    /// A factory for [`VaultBackend`]s.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BackendFactory for VaultBackendFactory {
    fn kind(&self) -> config::KmsBackend {
        config::KmsBackend::Vault
    }

    async fn build(&self, config: &KmsConfig) -> Result<Arc<dyn KmsBackend>> {
        Ok(Arc::new(VaultBackend::connect(config).await?))
    }
}
