//! Test environments: a configured and started [`KmsServiceManager`] with its
//! [`EncryptionService`], on the file backend in a temporary directory or on a private
//! OpenBao dev server; whatever they made is removed (or stopped) when they are dropped.

#[cfg(any(feature = "local", feature = "vault"))]
use std::sync::Arc;

#[cfg(any(feature = "local", feature = "vault"))]
use kms_core::{backends::BackendRegistry, encryption::service::EncryptionService, service_manager::KmsServiceManager};
#[cfg(any(feature = "local", feature = "vault"))]
use kms_types::config::KmsConfig;
use kms_types::error::KmsError;

use crate::openbao::OpenBaoError;
#[cfg(feature = "local")]
use crate::openbao::random_bytes;

/// Why a test environment could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TestEnvError {
    /// The service refused the configuration or could not start.
    #[error("kms: {0}")]
    Kms(#[from] KmsError),
    /// OpenBao could not be found, installed or started.
    #[error("openbao: {0}")]
    OpenBao(#[source] OpenBaoError),
    /// A temporary directory or file could not be made.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A blocking set-up step panicked or was cancelled.
    #[error("set-up task failed: {0}")]
    Task(String),
}

impl From<OpenBaoError> for TestEnvError {
    fn from(error: OpenBaoError) -> Self {
        Self::OpenBao(error)
    }
}

/// A started service and what it runs on.
#[cfg(any(feature = "local", feature = "vault"))]
#[derive(Debug)]
struct Running {
    manager: Arc<KmsServiceManager>,
    service: Arc<EncryptionService>,
    config: KmsConfig,
}

#[cfg(any(feature = "local", feature = "vault"))]
impl Running {
    async fn start(registry: BackendRegistry, config: KmsConfig) -> Result<Self, TestEnvError> {
        let manager = Arc::new(KmsServiceManager::new(registry));
        manager.configure(config.clone()).await?;
        manager.start().await?;
        let service = manager
            .encryption_service()
            .await
            .ok_or_else(|| KmsError::backend("the service manager started without a service"))?;
        Ok(Self { manager, service, config })
    }
}

/// Accessors shared by both environments.
#[cfg(any(feature = "local", feature = "vault"))]
macro_rules! environment_accessors {
    () => {
        /// The ready encryption service.
        pub fn service(&self) -> &Arc<EncryptionService> {
            &self.running.service
        }

        /// The service manager (to reconfigure, stop or read its status).
        pub fn manager(&self) -> &Arc<KmsServiceManager> {
            &self.running.manager
        }

        /// The configuration the service was started with.
        pub fn config(&self) -> &KmsConfig {
            &self.running.config
        }

        /// Stops the service (closing its backend); the rest is cleaned up on drop.
        pub async fn stop(self) -> Result<(), TestEnvError> {
            self.running.manager.stop().await?;
            Ok(())
        }
    };
}

#[cfg(feature = "local")]
pub use local::LocalTestEnvironment;

#[cfg(feature = "local")]
mod local {
    use std::path::Path;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use kms_backend_local::LocalBackendFactory;
    use kms_types::config::{LocalConfig, MasterKeySource};

    use super::*;

    /// The file backend in a fresh temporary directory, with a random master key, started;
    /// the directory is removed on drop.
    #[derive(Debug)]
    pub struct LocalTestEnvironment {
        running: Running,
        dir: tempfile::TempDir,
    }

    impl LocalTestEnvironment {
        /// Creates the directory and starts the service.
        pub async fn start() -> Result<Self, TestEnvError> {
            Self::start_with(|_| {}).await
        }

        /// Like [`start`](Self::start), with `adjust` applied to the configuration first
        /// (a default key, timeouts, cache settings).
        pub async fn start_with(adjust: impl FnOnce(&mut KmsConfig)) -> Result<Self, TestEnvError> {
            let dir = tempfile::Builder::new().prefix("kms-test-").tempdir()?;
            let master_key = MasterKeySource::Key { key: STANDARD.encode(random_bytes::<32>()?).into() };
            let mut config = KmsConfig::local(LocalConfig::new(dir.path().join("keys"), master_key));
            adjust(&mut config);
            let mut registry = BackendRegistry::new();
            registry.register(Arc::new(LocalBackendFactory::new()));
            let running = Running::start(registry, config).await?;
            Ok(Self { running, dir })
        }

        /// The temporary directory (the key store is its `keys/` folder).
        pub fn dir(&self) -> &Path {
            self.dir.path()
        }

        environment_accessors!();
    }
}

#[cfg(feature = "vault")]
pub use vault::VaultTestEnvironment;

#[cfg(feature = "vault")]
mod vault {
    use std::time::Duration;

    use kms_backend_vault::VaultBackendFactory;
    use kms_types::config::{VaultAuthMethod, VaultConfig};

    use super::*;
    use crate::openbao::OpenBao;

    /// The Vault backend on a private OpenBao dev server (found or installed as
    /// `cargo xtask test` does, on a free loopback port, Transit and AppRole mounted, KV v2 at
    /// `secret/`), started with the root token; the server is stopped on drop.
    #[derive(Debug)]
    pub struct VaultTestEnvironment {
        running: Running,
        server: OpenBao,
    }

    impl VaultTestEnvironment {
        /// Starts the server and the service.
        pub async fn start() -> Result<Self, TestEnvError> {
            Self::start_with(|_| {}).await
        }

        /// Like [`start`](Self::start), with `adjust` applied to the configuration first.
        pub async fn start_with(adjust: impl FnOnce(&mut KmsConfig)) -> Result<Self, TestEnvError> {
            // The launcher blocks (process start, health polling): off the async workers.
            let server =
                tokio::task::spawn_blocking(OpenBao::start).await.map_err(|e| TestEnvError::Task(e.to_string()))??;
            let mut config = KmsConfig::vault(VaultConfig {
                address: server.addr().into(),
                auth_method: VaultAuthMethod::Token { token: server.token().into() },
                namespace: None,
                mount_path: "transit".into(),
                kv_mount: "secret".into(),
                key_path_prefix: "kms-test".into(),
                tls: None,
            });
            config.timeout = Duration::from_secs(10);
            adjust(&mut config);
            let mut registry = BackendRegistry::new();
            registry.register(Arc::new(VaultBackendFactory::new()));
            let running = Running::start(registry, config).await?;
            Ok(Self { running, server })
        }

        /// The OpenBao server (address, root token, `bao` CLI, stop/restart/pause).
        pub fn server(&self) -> &OpenBao {
            &self.server
        }

        environment_accessors!();
    }
}
