//! The kms-core backend contract suite against the real OpenBao server, with the root token.

mod common;

kms_core::backend_contract_tests!(async {
    kms_backend_vault::VaultBackend::connect(&common::root_config()).await.expect("connect to OpenBao")
});
