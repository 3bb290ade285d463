//! The SSE suite on the in-memory backend (the fastest loop; same cases as local and OpenBao).

mod sse_suite;

use std::sync::Arc;

use kms::backends::BackendRegistry;
use kms::config::{KmsBackend, KmsConfig, LocalConfig, MasterKeySource};
use kms::mock::{MemoryBackend, MemoryBackendFactory};

async fn env() -> sse_suite::Env {
    let mut registry = BackendRegistry::new();
    // Shared, so keys survive the stop/start cycles of `kms_stopped`.
    registry.register(Arc::new(MemoryBackendFactory::sharing(KmsBackend::Local, Arc::new(MemoryBackend::new()))));
    let config = KmsConfig::local(LocalConfig::new("/unused", MasterKeySource::InsecurePlaintextForDevelopment));
    sse_suite::Env::start(registry, config, ()).await
}

sse_suite::sse_suite!(env);
