//! Two servers sharing one Vault: a key disabled through one is refused by the other within
//! the coherence bound, not the metadata TTL; clearing the caches makes it immediate.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::root_config;
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_core::manager::KmsManager;
use kms_types::error::KmsError;
use kms_types::types::{
    CreateKeyRequest, DescribeKeyRequest, DisableKeyRequest, GenerateDataKeyRequest, KeySpec, KeyState,
};

fn data_key(key_id: &str) -> GenerateDataKeyRequest {
    GenerateDataKeyRequest { key_id: key_id.into(), key_spec: KeySpec::Aes256, encryption_context: Default::default() }
}

async fn server(config: &kms_types::config::KmsConfig) -> KmsManager {
    let backend = VaultBackend::connect(config).await.unwrap();
    KmsManager::new(Arc::new(backend) as Arc<dyn KmsBackend>, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_through_one_server_reaches_the_other_within_the_bound() {
    let mut config = root_config();
    config.cache_config.ttl = Duration::from_secs(300);
    config.cache_config.coherence = Duration::from_secs(1);
    let (a, b) = (server(&config).await, server(&config).await);
    let key = a
        .create_key(CreateKeyRequest { key_name: Some(common::unique("coherent")), ..Default::default() })
        .await
        .unwrap()
        .key_id;
    // B uses the key at once (read-your-writes across servers) and caches its state.
    b.generate_data_key(data_key(&key)).await.unwrap();
    b.describe_key(DescribeKeyRequest { key_id: key.clone() }).await.unwrap();

    a.disable_key(DisableKeyRequest { key_id: key.clone() }).await.unwrap();
    let disabled = Instant::now();
    let refused_after = loop {
        match b.generate_data_key(data_key(&key)).await {
            Err(KmsError::InvalidKeyState { state: KeyState::Disabled, .. }) => break disabled.elapsed(),
            Ok(_) => assert!(disabled.elapsed() < Duration::from_secs(5), "B still serves a disabled key"),
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused_after <= Duration::from_millis(1500), "bound 1 s + one request, took {refused_after:?}");
    let described = b.describe_key(DescribeKeyRequest { key_id: key.clone() }).await.unwrap();
    assert_eq!(described.key_metadata.key_state, KeyState::Disabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_caches_makes_another_servers_change_visible_at_once() {
    let mut config = root_config();
    config.cache_config.coherence = Duration::from_secs(3600);
    config.cache_config.ttl = Duration::from_secs(3600);
    let (a, b) = (server(&config).await, server(&config).await);
    let key = a
        .create_key(CreateKeyRequest { key_name: Some(common::unique("clear")), ..Default::default() })
        .await
        .unwrap()
        .key_id;
    b.generate_data_key(data_key(&key)).await.unwrap();
    a.disable_key(DisableKeyRequest { key_id: key.clone() }).await.unwrap();
    b.generate_data_key(data_key(&key)).await.expect("B's cache still says enabled (an hour's bound)");
    b.clear_all_caches().await;
    let e = b.generate_data_key(data_key(&key)).await.unwrap_err();
    assert!(matches!(e, KmsError::InvalidKeyState { state: KeyState::Disabled, .. }), "{e:?}");
}
