//! The factory and the service manager: building from a `KmsConfig`, sharing an open key
//! directory between handles, and a reconfigure on an unchanged directory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kms_backend_local::{LocalBackend, LocalBackendFactory};
use kms_core::backends::BackendRegistry;
use kms_core::service_manager::KmsServiceManager;
use kms_types::config::KmsConfig;
use kms_types::error::KmsError;
use kms_types::types::{DecryptRequest, GenerateDataKeyRequest, KeySpec};

fn registry() -> BackendRegistry {
    let mut registry = BackendRegistry::new();
    registry.register(Arc::new(LocalBackendFactory::new()));
    registry
}

#[tokio::test]
async fn a_second_build_on_an_open_directory_shares_it_until_the_last_handle_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let registry = registry();
    let config = KmsConfig::local(config(&dir, 1));
    let first = registry.build(&config).await.unwrap();
    first.create_key(named("k")).await.unwrap();
    let second = registry.build(&config).await.unwrap();
    assert_eq!(
        second
            .describe_key(kms_types::types::DescribeKeyRequest { key_id: "k".into() })
            .await
            .unwrap()
            .key_metadata
            .key_id,
        "k"
    );

    // A wrong master key is refused even though the directory is open.
    let Err(err) = registry.build(&KmsConfig::local(common::config(&dir, 9))).await else {
        panic!("a wrong master key was accepted")
    };
    assert!(err.to_string().contains("wrong master key"), "{err}");

    first.close().await.unwrap();
    assert!(!first.health_check().await.unwrap());
    assert!(matches!(first.create_key(named("x")).await, Err(KmsError::ServiceUnavailable { .. })));
    assert!(second.health_check().await.unwrap(), "the other handle keeps working");
    second.create_key(named("j")).await.unwrap();
    // Another process (here: an unrelated open) is still locked out.
    assert!(LocalBackend::open(&common::config(&dir, 1)).await.unwrap_err().to_string().contains("in use"));
    second.close().await.unwrap();
    let reopened = LocalBackend::open(&common::config(&dir, 1)).await.expect("free after the last handle");
    assert_eq!(list_all(&reopened, 10).await.len(), 2);
}

#[tokio::test]
async fn the_service_manager_runs_and_reconfigures_a_local_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let manager = KmsServiceManager::new(registry());
    let mut config = KmsConfig::local(config(&dir, 1));
    manager.configure(config.clone()).await.unwrap();
    manager.start().await.unwrap();
    let service = manager.encryption_service().await.unwrap();
    service.create_key(named("k")).await.unwrap();
    let request = || GenerateDataKeyRequest {
        key_id: "k".into(),
        key_spec: KeySpec::Aes256,
        encryption_context: ctx(&[("bucket", "b")]),
    };
    let dk = service.generate_data_key(request()).await.unwrap();

    // Same directory, other settings: the new backend is built while the old one still runs.
    config.timeout = Duration::from_secs(5);
    manager.reconfigure(config.clone()).await.unwrap();
    let opened = service
        .decrypt(DecryptRequest {
            ciphertext_blob: dk.ciphertext_blob,
            encryption_context: ctx(&[("bucket", "b")]),
            key_id: None,
        })
        .await
        .unwrap();
    assert_eq!(opened.plaintext, dk.plaintext_key);

    // A reconfigure with the wrong master key is rejected; the running backend stays.
    let err = manager.reconfigure(KmsConfig::local(common::config(&dir, 2))).await.unwrap_err();
    assert!(err.to_string().contains("wrong master key"), "{err}");
    service.generate_data_key(request()).await.unwrap();

    manager.stop().await.unwrap();
    LocalBackend::open(&common::config(&dir, 1)).await.expect("stop releases the directory");
}
