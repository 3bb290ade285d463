//! Fault tests, each against its own OpenBao dev server: the server stopped, frozen and
//! restarted under a live backend; AppRole tokens expiring every few seconds; a revoked token.

mod common;

use std::time::{Duration, Instant};

use common::{bao_server, config, minimal_policy, prefix};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_types::config::{KmsConfig, VaultAuthMethod};
use kms_types::error::KmsError;
use kms_types::types::{CreateKeyRequest, DecryptRequest, GenerateDataKeyRequest, KeySpec};

const TIMEOUT: Duration = Duration::from_secs(3);

fn short_timeout(mut c: KmsConfig) -> KmsConfig {
    c.timeout = TIMEOUT;
    c.retry_attempts = 2;
    c
}

async fn round_trip(backend: &VaultBackend, key_id: &str) -> kms_types::Result<()> {
    let dk = backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: key_id.into(),
            key_spec: KeySpec::Aes256,
            encryption_context: Default::default(),
        })
        .await?;
    let back = backend
        .decrypt(DecryptRequest {
            ciphertext_blob: dk.ciphertext_blob,
            encryption_context: Default::default(),
            key_id: None,
        })
        .await?;
    assert_eq!(back.plaintext.expose_secret(), dk.plaintext_key.expose_secret());
    Ok(())
}

async fn new_key(backend: &VaultBackend) -> String {
    backend
        .create_key(CreateKeyRequest { key_name: Some(common::unique("fault")), ..Default::default() })
        .await
        .unwrap()
        .key_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_within_the_timeout_and_recovery_needs_no_rebuild() {
    let mut server = bao_server();
    let backend = VaultBackend::connect(&short_timeout(config(
        server.addr(),
        VaultAuthMethod::Token { token: server.token().to_owned().into() },
    )))
    .await
    .unwrap();
    let key = new_key(&backend).await;
    round_trip(&backend, &key).await.unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let e = round_trip(&backend, &key).await.unwrap_err();
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
        assert!(matches!(e, KmsError::Backend { retryable: true, .. } | KmsError::Timeout { .. }), "{e:?}");
        assert!(e.is_retryable());
    }
    assert!(!backend.health_check().await.unwrap(), "no node serves");

    // Back on the same address (a dev server restarts empty: mounts again, keys gone).
    // Health answers are cached for a second, so a probe storm never reaches Vault.
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !backend.health_check().await.unwrap() {
        assert!(Instant::now() < deadline, "healthy again after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = new_key(&backend).await;
    round_trip(&backend, &key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_gives_a_timeout_not_a_hang() {
    let server = bao_server();
    let backend = VaultBackend::connect(&short_timeout(config(
        server.addr(),
        VaultAuthMethod::Token { token: server.token().to_owned().into() },
    )))
    .await
    .unwrap();
    let key = new_key(&backend).await;
    round_trip(&backend, &key).await.unwrap();
    server.pause().unwrap();
    let started = Instant::now();
    let e = round_trip(&backend, &key).await.unwrap_err();
    let took = started.elapsed();
    server.resume().unwrap();
    assert!(matches!(e, KmsError::Timeout { .. } | KmsError::Backend { retryable: true, .. }), "{e:?}");
    assert!(took < TIMEOUT + Duration::from_secs(1), "took {took:?}");
    round_trip(&backend, &key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_tokens_with_a_few_seconds_ttl_never_fail_an_operation() {
    let server = bao_server();
    let mut cfg = config(server.addr(), VaultAuthMethod::Token { token: "unused".into() });
    let policy = minimal_policy(&prefix(&cfg));
    server.bao_stdin(&["policy", "write", "kms", "-"], &policy).unwrap();
    // Tokens live 2 s, renewable up to 5 s: renewals, then re-logins, many times over.
    let (role_id, secret_id) = server.approle("kms", "2s", "5s", "kms").unwrap();
    if let kms_types::config::BackendConfig::Vault(v) = &mut cfg.backend_config {
        v.auth_method = VaultAuthMethod::app_role(role_id, secret_id);
    }
    let backend = VaultBackend::connect(&cfg).await.unwrap();
    let key = new_key(&backend).await;
    let started = Instant::now();
    let mut ops = 0u32;
    while started.elapsed() < Duration::from_secs(12) {
        round_trip(&backend, &key)
            .await
            .unwrap_or_else(|e| panic!("operation {ops} failed after {:?}: {e:?}", started.elapsed()));
        ops += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = backend.transport_stats();
    assert!(stats.logins >= 3, "{stats:?}");
    assert!(stats.renewals >= 2, "{stats:?}");
    assert!(ops > 100, "{ops}");
    backend.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_a_clear_auth_error_without_retries() {
    let server = bao_server();
    let token = server.bao(&["token", "create", "-policy=root", "-field=token"]).unwrap().trim().to_owned();
    let backend = VaultBackend::connect(&short_timeout(config(
        server.addr(),
        VaultAuthMethod::Token { token: token.clone().into() },
    )))
    .await
    .unwrap();
    let key = new_key(&backend).await;
    round_trip(&backend, &key).await.unwrap();
    server.bao(&["token", "revoke", &token]).unwrap();
    let before = backend.transport_stats();
    for _ in 0..5 {
        let e = round_trip(&backend, &key).await.unwrap_err();
        assert!(matches!(e, KmsError::Unauthorized { .. }), "{e:?}");
        assert!(!e.is_retryable());
        assert!(!format!("{e:?} {e}").contains(&token), "the token never shows in errors");
    }
    let after = backend.transport_stats();
    assert!(after.requests - before.requests <= 5, "one request per failed call: {before:?} -> {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_approle_login_backs_off() {
    let server = bao_server();
    let mut cfg = short_timeout(config(server.addr(), VaultAuthMethod::Token { token: "unused".into() }));
    if let kms_types::config::BackendConfig::Vault(v) = &mut cfg.backend_config {
        v.auth_method = VaultAuthMethod::app_role("no-such-role", "no-such-secret");
    }
    let e = VaultBackend::connect(&cfg).await.unwrap_err();
    assert!(matches!(e, KmsError::Unauthorized { .. } | KmsError::Backend { .. }), "{e:?}");
    assert!(!format!("{e:?}").contains("no-such-secret"));
}
