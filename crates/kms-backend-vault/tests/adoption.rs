//! Transit's create is an upsert: a key someone made under the same name (before the claim,
//! or between the check and the create) must never be adopted. Keys are planted through
//! Transit directly, with the settings kms refuses (exportable, plaintext backup, several
//! versions).

mod common;

use common::{direct, root_config, shared};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_types::error::KmsError;
use kms_types::types::{CreateKeyRequest, DescribeKeyRequest};
use serde_json::json;

async fn transit_key(addr: &str, token: &str, name: &str) -> serde_json::Value {
    let (status, body) = direct(addr, token, "GET", &format!("transit/keys/{name}"), json!(null)).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn create_named(backend: &VaultBackend, name: &str) -> kms_types::Result<String> {
    backend.create_key(CreateKeyRequest { key_name: Some(name.into()), ..Default::default() }).await.map(|r| r.key_id)
}

async fn assert_not_adopted(backend: &VaultBackend, e: KmsError, name: &str) {
    assert!(matches!(e, KmsError::KeyAlreadyExists { ref key_id } if key_id == name), "{e:?}");
    let described = backend.describe_key(DescribeKeyRequest { key_id: name.into() }).await;
    assert!(matches!(described, Err(KmsError::KeyNotFound { .. })), "the claim is released: {described:?}");
}

#[tokio::test]
async fn planted_transit_keys_with_other_settings_are_refused_and_the_claim_released() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();

    let exportable = common::unique("planted-exportable");
    let plant = json!({"type": "aes256-gcm96", "exportable": true, "allow_plaintext_backup": true});
    assert!(direct(&addr, &root, "POST", &format!("transit/keys/{exportable}"), plant).await.0 < 300);
    let e = create_named(&backend, &exportable).await.unwrap_err();
    assert_not_adopted(&backend, e, &exportable).await;
    assert_eq!(transit_key(&addr, &root, &exportable).await["exportable"], true, "the planted key is left alone");

    let rotated = common::unique("planted-rotated");
    assert!(direct(&addr, &root, "POST", &format!("transit/keys/{rotated}"), json!({})).await.0 < 300);
    assert!(direct(&addr, &root, "POST", &format!("transit/keys/{rotated}/rotate"), json!(null)).await.0 < 300);
    let e = create_named(&backend, &rotated).await.unwrap_err();
    assert_not_adopted(&backend, e, &rotated).await;

    let derived = common::unique("planted-derived");
    assert!(direct(&addr, &root, "POST", &format!("transit/keys/{derived}"), json!({"derived": true})).await.0 < 300);
    let e = create_named(&backend, &derived).await.unwrap_err();
    assert_not_adopted(&backend, e, &derived).await;
}

/// A planter races each create with exportable keys under the same name: whichever wins,
/// kms never ends up using an exportable key (it either refuses, or made the key first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_planted_during_the_create_is_never_adopted() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let (mut refused, mut created) = (0, 0);
    for _ in 0..12 {
        let name = common::unique("race");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let planter = {
            let (addr, root, name, stop) = (addr.clone(), root.clone(), name.clone(), stop.clone());
            tokio::spawn(async move {
                let plant = json!({"type": "aes256-gcm96", "exportable": true, "allow_plaintext_backup": true});
                for _ in 0..200 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    direct(&addr, &root, "POST", &format!("transit/keys/{name}"), plant.clone()).await;
                }
            })
        };
        let outcome = create_named(&backend, &name).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        planter.await.unwrap();
        match outcome {
            Ok(id) => {
                created += 1;
                let key = transit_key(&addr, &root, &id).await;
                assert_eq!(key["exportable"], false, "{key}");
                assert_eq!(key["allow_plaintext_backup"], false, "{key}");
            }
            Err(e) => {
                refused += 1;
                assert_not_adopted(&backend, e, &name).await;
            }
        }
    }
    assert_eq!(refused + created, 12);
}
