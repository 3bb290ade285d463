//! The SSE suite on OpenBao (Transit + KV v2), against the server `cargo xtask test` starts
//! (`KMS_TEST_VAULT_ADDR`, `KMS_TEST_VAULT_TOKEN`); built only with feature `live-vault`,
//! and then without a server the tests fail, never skip.
//! Plus one case on a private server that is killed mid-way: the KMS really gone.

mod sse_suite;

use std::sync::Arc;
use std::time::Duration;

use kms::backends::BackendRegistry;
use kms::config::{KmsConfig, VaultAuthMethod, VaultConfig};
use kms::encryption::key_cache::{DataKeyCacheConfig, KmsUnavailablePolicy};
use kms::encryption::sse::{ObjectContext, SseMode};
use kms::error::KmsError;
use kms::vault::VaultBackendFactory;
use kms_testkit::openbao::{self, OpenBao};

fn config(addr: &str, token: &str) -> KmsConfig {
    let mut config = KmsConfig::vault(VaultConfig {
        address: addr.into(),
        auth_method: VaultAuthMethod::Token { token: token.into() },
        namespace: None,
        mount_path: "transit".into(),
        kv_mount: "secret".into(),
        key_path_prefix: format!("kms-sse-tests/{}", sse_suite::unique("run")),
        tls: None,
    });
    config.timeout = Duration::from_secs(10);
    config
}

fn registry() -> BackendRegistry {
    let mut registry = BackendRegistry::new();
    registry.register(Arc::new(VaultBackendFactory::new()));
    registry
}

async fn env() -> sse_suite::Env {
    let hint =
        "the OpenBao tests need a server: run `cargo xtask test`, or `cargo xtask openbao` and export what it prints";
    let addr =
        std::env::var("KMS_TEST_VAULT_ADDR").unwrap_or_else(|_| panic!("KMS_TEST_VAULT_ADDR is not set; {hint}"));
    let token =
        std::env::var("KMS_TEST_VAULT_TOKEN").unwrap_or_else(|_| panic!("KMS_TEST_VAULT_TOKEN is not set; {hint}"));
    sse_suite::Env::start(registry(), config(&addr, &token), ()).await
}

sse_suite::sse_suite!(env);

/// A private dev server (the workspace's one launcher), killed on drop or mid-test.
fn private_bao() -> OpenBao {
    let bin =
        openbao::find_bao(&openbao::default_tools_dir()).expect("find bao").expect("no `bao`: run `cargo xtask test`");
    OpenBao::builder(bin).start().unwrap_or_else(|e| panic!("{e}"))
}

/// The OpenBao process killed: reads fail (a transient backend error) by default, and are
/// served from the opt-in cache within its TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_killed_mid_way() {
    let mut bao = private_bao();
    let mut config = config(bao.addr(), bao.token());
    config.timeout = Duration::from_secs(2);
    config.retry_attempts = 0;
    let env = sse_suite::Env::start(registry(), config, ()).await;
    let object = |key: &str| ObjectContext { bucket: "b".into(), object_key: key.into(), sse: SseMode::S3 };
    let (cold, cold_meta) = sse_suite::put(&env.service, b"cold", object("cold")).await;
    let config = DataKeyCacheConfig { ttl: Duration::from_secs(60), max_entries: 8 };
    env.service.set_kms_unavailable_policy(KmsUnavailablePolicy::CacheDataKeys(config)).unwrap();
    let (warm, warm_meta) = sse_suite::put(&env.service, b"warm", object("warm")).await;

    bao.stop();
    let err = sse_suite::get(&env.service, &cold, "b", "cold", &cold_meta, None, None).await.unwrap_err();
    assert!(err.is_retryable(), "an unreachable KMS is a transient failure: {err:?}");
    assert_eq!(sse_suite::get(&env.service, &warm, "b", "warm", &warm_meta, None, None).await.unwrap(), b"warm");
    let err = env.service.encrypt_stream(&b"x"[..], object("new")).await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. } | KmsError::Timeout { .. }), "{err:?}");
    env.service.set_kms_unavailable_policy(KmsUnavailablePolicy::FailClosed).unwrap();
    let err = sse_suite::get(&env.service, &warm, "b", "warm", &warm_meta, None, None).await.unwrap_err();
    assert!(err.is_retryable(), "fail-closed: the outage itself, not a cached answer: {err:?}");
}
