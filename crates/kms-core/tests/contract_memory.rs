//! The in-memory backend passes the backend contract suite, with every optional operation
//! and with none of them (so the capability gating is exercised both ways).

use kms_core::mock::MemoryBackend;
use kms_types::types::BackendCapabilities;

kms_core::backend_contract_tests!(async { MemoryBackend::new() });

mod without_optional_operations {
    use super::*;

    kms_core::backend_contract_tests!(async { MemoryBackend::with_capabilities(BackendCapabilities::default()) });
}

mod with_some_optional_operations {
    use super::*;

    kms_core::backend_contract_tests!(async {
        let caps = BackendCapabilities { rotate: true, tags: true, ..Default::default() };
        std::sync::Arc::new(MemoryBackend::with_capabilities(caps))
            as std::sync::Arc<dyn kms_core::backends::KmsBackend>
    });
}
