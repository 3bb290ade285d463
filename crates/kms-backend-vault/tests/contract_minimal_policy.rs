//! The kms-core backend contract suite against the real OpenBao server, with a token that
//! holds only the minimal policy of `docs/vault.md` (and not even the `default` policy).

mod common;

fn minimal_config() -> kms_types::config::KmsConfig {
    let (addr, root) = common::shared();
    let mut config = common::root_config();
    let token = common::token_with_policy(&addr, &root, &common::minimal_policy(&common::prefix(&config)));
    if let kms_types::config::BackendConfig::Vault(v) = &mut config.backend_config {
        v.auth_method = kms_types::config::VaultAuthMethod::Token { token: token.into() };
    }
    config
}

kms_core::backend_contract_tests!(async {
    kms_backend_vault::VaultBackend::connect(&minimal_config()).await.expect("connect to OpenBao")
});
