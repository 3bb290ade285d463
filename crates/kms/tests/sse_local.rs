//! The SSE suite on the local file backend.

mod sse_suite;

use std::sync::Arc;

use kms::backends::BackendRegistry;
use kms::config::{KmsConfig, LocalConfig, MasterKeySource};
use kms::local::LocalBackendFactory;

async fn env() -> sse_suite::Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut registry = BackendRegistry::new();
    registry.register(Arc::new(LocalBackendFactory::new()));
    // A fixed test key; production keys come from `Env`, `File` or a passphrase.
    let master_key = MasterKeySource::Key { key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into() };
    let config = KmsConfig::local(LocalConfig::new(dir.path().join("keys"), master_key));
    sse_suite::Env::start(registry, config, dir).await
}

sse_suite::sse_suite!(env);
