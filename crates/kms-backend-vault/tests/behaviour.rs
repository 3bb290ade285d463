//! The backend's behaviour against a real OpenBao server, run twice: with the root token and
//! with a token holding only the minimal policy of `docs/vault.md`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{direct, minimal_policy, prefix, root_config, shared, token_with_policy};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_core::manager::{KmsManager, ManagerOptions};
use kms_types::config::{KmsConfig, VaultAuthMethod};
use kms_types::error::KmsError;
use kms_types::types::*;
use serde_json::json;

/// A configuration with the root token.
fn root() -> KmsConfig {
    root_config()
}

/// A configuration whose token holds only the documented minimal policy.
fn minimal() -> KmsConfig {
    let (addr, root_token) = shared();
    let mut config = root_config();
    let token = token_with_policy(&addr, &root_token, &minimal_policy(&prefix(&config)));
    if let kms_types::config::BackendConfig::Vault(v) = &mut config.backend_config {
        v.auth_method = VaultAuthMethod::Token { token: token.into() };
    }
    config
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Creates a key with a unique name (Transit names are shared by everything using the mount).
async fn create(backend: &VaultBackend, name: &str) -> String {
    backend
        .create_key(CreateKeyRequest {
            key_name: Some(common::unique(name)),
            description: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .key_id
}

async fn encrypt(backend: &VaultBackend, key_id: &str, data: &[u8], context: &EncryptionContext) -> EncryptResponse {
    backend
        .encrypt(EncryptRequest { key_id: key_id.into(), plaintext: data.into(), encryption_context: context.clone() })
        .await
        .unwrap()
}

async fn decrypt(
    backend: &VaultBackend,
    blob: &[u8],
    context: &EncryptionContext,
) -> kms_types::Result<DecryptResponse> {
    backend
        .decrypt(DecryptRequest { ciphertext_blob: blob.to_vec(), encryption_context: context.clone(), key_id: None })
        .await
}

fn is_state(e: &KmsError, state: KeyState) -> bool {
    matches!(e, KmsError::InvalidKeyState { state: s, .. } if *s == state)
}

async fn lifecycle(config: KmsConfig) {
    let backend = VaultBackend::connect(&config).await.unwrap();
    assert!(backend.health_check().await.unwrap());
    let id = create(&backend, "life").await;
    let meta = backend.describe_key(DescribeKeyRequest { key_id: id.clone() }).await.unwrap().key_metadata;
    assert_eq!(
        (meta.key_state, meta.current_version, meta.description.as_deref()),
        (KeyState::Enabled, 1, Some("test"))
    );
    let generated = backend.create_key(CreateKeyRequest::default()).await.unwrap();
    assert_eq!(generated.key_id.len(), 36);
    assert!(matches!(
        backend.create_key(CreateKeyRequest { key_name: Some(id.clone()), ..Default::default() }).await,
        Err(KmsError::KeyAlreadyExists { .. })
    ));

    let c = ctx(&[("bucket", "photos"), ("object", "cat.jpg")]);
    let enc = encrypt(&backend, &id, b"secret bytes", &c).await;
    assert_eq!((enc.key_id.as_str(), enc.key_version), (id.as_str(), 1));
    assert!(enc.ciphertext_blob.starts_with(format!("vault-kms:1:{id}:vault:v1:").as_bytes()));
    assert_eq!(&id[..4], "life");
    let dec = decrypt(&backend, &enc.ciphertext_blob, &c).await.unwrap();
    assert_eq!(dec.plaintext.expose_secret(), b"secret bytes");
    assert_eq!((dec.key_id.as_str(), dec.key_version), (id.as_str(), 1));

    // Every change of context is an opaque crypto error, never retried.
    for wrong in [ctx(&[]), ctx(&[("bucket", "photos")]), ctx(&[("bucket", "photos"), ("object", "dog.jpg")])] {
        let before = backend.transport_stats();
        let e = decrypt(&backend, &enc.ciphertext_blob, &wrong).await.unwrap_err();
        assert!(matches!(e, KmsError::Crypto { .. }), "{e:?}");
        let sent = backend.transport_stats().requests - before.requests;
        assert!(sent <= 1, "a wrong context is one request, never retried: {sent}");
    }
    // Tampering: a flipped base64 character.
    // (A character in the middle: the last one before `=` padding may carry only ignored bits.)
    let mut tampered = enc.ciphertext_blob.clone();
    let mid = tampered.len() - 12;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let e = decrypt(&backend, &tampered, &c).await.unwrap_err();
    assert!(matches!(e, KmsError::Crypto { .. }), "{e:?}");
    assert!(matches!(decrypt(&backend, b"not a blob", &c).await, Err(KmsError::Crypto { .. })));
    let e = backend
        .decrypt(DecryptRequest {
            ciphertext_blob: enc.ciphertext_blob.clone(),
            encryption_context: c.clone(),
            key_id: Some(generated.key_id.clone()),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Crypto { .. }), "{e:?}");

    // The longest plaintext round-trips; the 1..=4096-byte rule is checked above the backend,
    // by the manager every backend runs under (kms_core::validate): empty and 4097 bytes are
    // refused before Transit is asked.
    let full = encrypt(&backend, &id, &[7u8; MAX_ENCRYPT_PLAINTEXT_BYTES], &c).await;
    assert_eq!(decrypt(&backend, &full.ciphertext_blob, &c).await.unwrap().plaintext.len(), 4096);
    let manager = KmsManager::with_options(Arc::new(backend.clone()), ManagerOptions::default());
    for len in [0, MAX_ENCRYPT_PLAINTEXT_BYTES + 1] {
        let request =
            EncryptRequest { key_id: id.clone(), plaintext: vec![0u8; len].into(), encryption_context: c.clone() };
        let e = manager.encrypt(request).await.unwrap_err();
        assert!(matches!(e, KmsError::InvalidRequest { ref field, .. } if field == "plaintext"), "{len}: {e:?}");
    }

    // Disabled keys refuse cryptography; enabling restores it.
    backend.disable_key(DisableKeyRequest { key_id: id.clone() }).await.unwrap();
    let e = backend
        .encrypt(EncryptRequest {
            key_id: id.clone(),
            plaintext: b"x".as_slice().into(),
            encryption_context: c.clone(),
        })
        .await
        .unwrap_err();
    assert!(is_state(&e, KeyState::Disabled), "{e:?}");
    assert!(is_state(&decrypt(&backend, &enc.ciphertext_blob, &c).await.unwrap_err(), KeyState::Disabled));
    backend.enable_key(EnableKeyRequest { key_id: id.clone() }).await.unwrap();
    decrypt(&backend, &enc.ciphertext_blob, &c).await.unwrap();

    // Scheduled deletion, refused operations, cancellation back to Disabled.
    let e =
        backend.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: Some(6) }).await.unwrap_err();
    assert!(matches!(e, KmsError::InvalidRequest { .. }));
    let del =
        backend.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: Some(7) }).await.unwrap();
    assert_eq!(del.key_state, KeyState::PendingDeletion);
    let days = (del.deletion_date - time::OffsetDateTime::now_utc()).whole_hours();
    assert!((7 * 24 - 1..=7 * 24).contains(&days), "{days} hours");
    assert!(is_state(&decrypt(&backend, &enc.ciphertext_blob, &c).await.unwrap_err(), KeyState::PendingDeletion));
    let e =
        backend.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: None }).await.unwrap_err();
    assert!(is_state(&e, KeyState::PendingDeletion));
    assert!(is_state(
        &backend.enable_key(EnableKeyRequest { key_id: id.clone() }).await.unwrap_err(),
        KeyState::PendingDeletion
    ));
    let cancel = backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: id.clone() }).await.unwrap();
    assert_eq!(cancel.key_state, KeyState::Disabled);
    let meta = backend.describe_key(DescribeKeyRequest { key_id: id.clone() }).await.unwrap().key_metadata;
    assert_eq!((meta.key_state, meta.deletion_date), (KeyState::Disabled, None));
    assert!(is_state(
        &backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: id.clone() }).await.unwrap_err(),
        KeyState::Disabled
    ));

    // Description and tags.
    backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: id.clone(), description: "new".into() })
        .await
        .unwrap();
    backend.tag_key(TagKeyRequest { key_id: id.clone(), tags: ctx(&[("a", "1"), ("b", "2")]) }).await.unwrap();
    let meta = backend
        .untag_key(UntagKeyRequest { key_id: id.clone(), tag_keys: vec!["a".into(), "zz".into()] })
        .await
        .unwrap()
        .key_metadata;
    assert_eq!(meta.description.as_deref(), Some("new"));
    assert_eq!(meta.tags, ctx(&[("b", "2")]));
    backend.close().await.unwrap();
}

async fn data_keys_and_rotation(config: KmsConfig) {
    let backend = VaultBackend::connect(&config).await.unwrap();
    let id = create(&backend, "dk").await;
    let c = ctx(&[("bucket", "b")]);
    for (spec, len) in [(KeySpec::Aes256, 32), (KeySpec::Aes128, 16)] {
        let dk = backend
            .generate_data_key(GenerateDataKeyRequest {
                key_id: id.clone(),
                key_spec: spec,
                encryption_context: c.clone(),
            })
            .await
            .unwrap();
        assert_eq!(dk.plaintext_key.len(), len);
        let back = decrypt(&backend, &dk.ciphertext_blob, &c).await.unwrap();
        assert_eq!(back.plaintext.expose_secret(), dk.plaintext_key.expose_secret());
        assert!(matches!(decrypt(&backend, &dk.ciphertext_blob, &ctx(&[])).await, Err(KmsError::Crypto { .. })));
    }
    let wrapped = backend
        .generate_data_key_without_plaintext(GenerateDataKeyWithoutPlaintextRequest {
            key_id: id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: c.clone(),
        })
        .await
        .unwrap();
    assert_eq!(decrypt(&backend, &wrapped.ciphertext_blob, &c).await.unwrap().plaintext.len(), 32);

    // Rotation: the version travels in the ciphertext; old versions keep decrypting.
    let v1 = encrypt(&backend, &id, b"old", &c).await;
    let meta = backend.rotate_key(RotateKeyRequest { key_id: id.clone() }).await.unwrap().key_metadata;
    assert_eq!(meta.current_version, 2);
    assert!(meta.rotation_date.is_some());
    let v2 = encrypt(&backend, &id, b"new", &c).await;
    assert_eq!((v1.key_version, v2.key_version), (1, 2));
    assert_eq!(decrypt(&backend, &v1.ciphertext_blob, &c).await.unwrap().key_version, 1);
    let dk = backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: c.clone(),
        })
        .await
        .unwrap();
    assert_eq!(dk.key_version, 2);

    // Re-encrypt to the newest version, then to another key and context.
    let re = backend
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: v1.ciphertext_blob.clone(),
            source_encryption_context: c.clone(),
            destination_key_id: None,
            destination_encryption_context: None,
        })
        .await
        .unwrap();
    assert_eq!((re.source_key_version, re.key_version, re.key_id.as_str()), (1, 2, id.as_str()));
    assert_eq!(decrypt(&backend, &re.ciphertext_blob, &c).await.unwrap().plaintext.expose_secret(), b"old");
    let other = create(&backend, "dk-other").await;
    let c2 = ctx(&[("bucket", "other")]);
    let moved = backend
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: v1.ciphertext_blob.clone(),
            source_encryption_context: c.clone(),
            destination_key_id: Some(other.clone()),
            destination_encryption_context: Some(c2.clone()),
        })
        .await
        .unwrap();
    assert_eq!(moved.key_id, other);
    let back = decrypt(&backend, &moved.ciphertext_blob, &c2).await.unwrap();
    assert_eq!((back.key_id.as_str(), back.plaintext.expose_secret()), (other.as_str(), &b"old"[..]));
    let e = backend
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: v1.ciphertext_blob.clone(),
            source_encryption_context: c2.clone(),
            destination_key_id: None,
            destination_encryption_context: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Crypto { .. }), "{e:?}");
}

async fn listing_and_not_found(config: KmsConfig) {
    let (addr, root_token) = shared();
    let backend = VaultBackend::connect(&config).await.unwrap();
    let empty = backend.list_keys(ListKeysRequest::default()).await.unwrap();
    assert!(empty.keys.is_empty() && !empty.truncated && empty.next_marker.is_none());
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create(&backend, &common::unique(&format!("list{i}"))).await);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = backend
            .list_keys(ListKeysRequest { limit: Some(2), marker: marker.clone(), ..Default::default() })
            .await
            .unwrap();
        assert!(page.keys.len() <= 2);
        seen.extend(page.keys.iter().map(|k| k.key_id.clone()));
        assert!(page.keys.iter().all(|k| k.key_state == KeyState::Enabled));
        if !page.truncated {
            assert!(page.next_marker.is_none());
            break;
        }
        marker = page.next_marker;
    }
    assert_eq!(seen, ids, "pages are ascending and complete");
    assert!(matches!(
        backend.list_keys(ListKeysRequest { limit: Some(0), marker: None, ..Default::default() }).await,
        Err(KmsError::InvalidRequest { .. })
    ));
    // A marker naming a key that no longer exists still works.
    let after_gone = backend
        .list_keys(ListKeysRequest { limit: Some(10), marker: Some(format!("{}x", ids[1])), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(after_gone.keys.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>(), ids[2..].to_vec());

    // Unknown keys: not found, and encrypt never creates a Transit key.
    let ghost = common::unique("ghost");
    let c = ctx(&[]);
    assert!(matches!(
        backend.describe_key(DescribeKeyRequest { key_id: ghost.clone() }).await,
        Err(KmsError::KeyNotFound { .. })
    ));
    let e = backend
        .encrypt(EncryptRequest {
            key_id: ghost.clone(),
            plaintext: b"x".as_slice().into(),
            encryption_context: c.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::KeyNotFound { .. }), "{e:?}");
    let e = backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: ghost.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: c.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::KeyNotFound { .. }), "{e:?}");
    assert_eq!(direct(&addr, &root_token, "GET", &format!("transit/keys/{ghost}"), json!(null)).await.0, 404);
    assert!(matches!(
        backend.describe_key(DescribeKeyRequest { key_id: "../x".into() }).await,
        Err(KmsError::InvalidRequest { .. })
    ));

    // A Transit key someone else made is not adopted.
    let foreign = common::unique("foreign");
    let (status, _) =
        direct(&addr, &root_token, "POST", &format!("transit/keys/{foreign}"), json!({"type": "aes256-gcm96"})).await;
    assert!(status < 300);
    assert!(matches!(
        backend.describe_key(DescribeKeyRequest { key_id: foreign.clone() }).await,
        Err(KmsError::KeyNotFound { .. })
    ));
    let e = backend
        .create_key(CreateKeyRequest { key_name: Some(foreign.clone()), ..Default::default() })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::KeyAlreadyExists { .. }), "{e:?}");
    assert!(matches!(
        backend.describe_key(DescribeKeyRequest { key_id: foreign.clone() }).await,
        Err(KmsError::KeyNotFound { .. })
    ));
    let listed: BTreeSet<String> = backend
        .list_keys(ListKeysRequest { limit: Some(100), marker: None, ..Default::default() })
        .await
        .unwrap()
        .keys
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert!(!listed.contains(&foreign));
    assert_eq!(listed, ids.iter().cloned().collect());

    // An unreadable record is listed as Unavailable and never used.
    let broken = common::unique("broken");
    let kv = format!("secret/data/{}/{broken}", prefix(&config));
    assert!(direct(&addr, &root_token, "POST", &kv, json!({"data": {"format": 99}})).await.0 < 300);
    let page =
        backend.list_keys(ListKeysRequest { limit: Some(100), marker: None, ..Default::default() }).await.unwrap();
    assert!(page.keys.iter().any(|k| k.key_id == broken && k.key_state == KeyState::Unavailable));
    let meta = backend.describe_key(DescribeKeyRequest { key_id: broken.clone() }).await.unwrap().key_metadata;
    assert_eq!(meta.key_state, KeyState::Unavailable);
    let e = backend
        .encrypt(EncryptRequest {
            key_id: broken.clone(),
            plaintext: b"x".as_slice().into(),
            encryption_context: c.clone(),
        })
        .await
        .unwrap_err();
    assert!(is_state(&e, KeyState::Unavailable), "{e:?}");
}

/// Moves the deletion date of a key pending deletion into the past, as if its window had run out.
async fn make_due(config: &KmsConfig, id: &str) {
    let (addr, root_token) = shared();
    let kv = format!("secret/data/{}/{id}", prefix(config));
    let (_, read) = direct(&addr, &root_token, "GET", &kv, json!(null)).await;
    let mut record = read["data"]["data"].clone();
    record["deletion_date"] = json!("2020-01-01T00:00:00Z");
    let version = read["data"]["metadata"]["version"].as_u64().unwrap();
    assert!(
        direct(&addr, &root_token, "POST", &kv, json!({"options": {"cas": version}, "data": record})).await.0 < 300
    );
}

async fn deletion_after_window_and_cas(config: KmsConfig) {
    let (addr, root_token) = shared();
    let backend = VaultBackend::connect(&config).await.unwrap();
    let id = create(&backend, "gone").await;
    let swept = create(&backend, "swept").await;
    for key_id in [&id, &swept] {
        let request = DeleteKeyRequest { key_id: key_id.clone(), pending_window_in_days: Some(7) };
        backend.delete_key(request).await.unwrap();
        make_due(&config, key_id).await;
    }
    let kv = format!("secret/data/{}/{id}", prefix(&config));
    // A fresh backend (no cache) sees the due date and deletes the key for good.
    let fresh = VaultBackend::connect(&config).await.unwrap();
    assert!(matches!(
        fresh.describe_key(DescribeKeyRequest { key_id: id.clone() }).await,
        Err(KmsError::KeyNotFound { .. })
    ));
    assert_eq!(direct(&addr, &root_token, "GET", &format!("transit/keys/{id}"), json!(null)).await.0, 404);
    assert_eq!(direct(&addr, &root_token, "GET", &kv, json!(null)).await.0, 404);
    // The sweep deletes the other due key (and only it: the first is gone already).
    assert_eq!(fresh.purge_expired_keys().await.unwrap(), vec![swept]);
    assert!(fresh.purge_expired_keys().await.unwrap().is_empty());

    // Two servers updating one key concurrently lose nothing (check-and-set).
    let id = create(&backend, "cas").await;
    let other = VaultBackend::connect(&config).await.unwrap();
    let mut tasks = Vec::new();
    for (n, b) in [(0, backend.clone()), (1, other.clone())] {
        for i in 0..6 {
            let b = b.clone();
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                b.tag_key(TagKeyRequest { key_id: id, tags: [(format!("s{n}-{i}"), "v".to_owned())].into() })
                    .await
                    .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Read through a backend without cache: `other` may still hold its own last write.
    let mut uncached = config.clone();
    uncached.enable_cache = false;
    let reader = VaultBackend::connect(&uncached).await.unwrap();
    let tags = reader.describe_key(DescribeKeyRequest { key_id: id.clone() }).await.unwrap().key_metadata.tags;
    assert_eq!(tags.len(), 12, "{tags:?}");
}

macro_rules! twice {
    ($($scenario:ident),*) => {
        mod with_root_token {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::root()).await })*
        }
        mod with_minimal_policy {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(super::minimal()).await })*
        }
    };
}

twice!(lifecycle, data_keys_and_rotation, listing_and_not_found, deletion_after_window_and_cas);

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let (addr, token) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let shown = format!("{backend:?} {:?}", root_config());
    assert!(!shown.contains(&token), "{shown}");
    assert!(shown.contains(&addr));
}

#[tokio::test]
async fn minimal_policy_denies_upsert_and_foreign_paths() {
    let (addr, root_token) = shared();
    let config = minimal();
    let token = match &config.backend_config {
        kms_types::config::BackendConfig::Vault(v) => match &v.auth_method {
            VaultAuthMethod::Token { token } => token.expose_secret().to_owned(),
            _ => unreachable!(),
        },
        _ => unreachable!(),
    };
    // Encrypting under a missing key would upsert-create it; the policy forbids that.
    let ghost = common::unique("upsert");
    let (status, _) =
        direct(&addr, &token, "POST", &format!("transit/encrypt/{ghost}"), json!({"plaintext": common::b64(b"x")}))
            .await;
    assert_eq!(status, 403);
    assert_eq!(direct(&addr, &root_token, "GET", &format!("transit/keys/{ghost}"), json!(null)).await.0, 404);
    // KV outside the prefix is out of reach.
    assert_eq!(direct(&addr, &token, "GET", "secret/data/elsewhere", json!(null)).await.0, 403);
    // A backend with that token reports a policy failure as Unauthorized, without retrying.
    let mut narrow = config.clone();
    if let kms_types::config::BackendConfig::Vault(v) = &mut narrow.backend_config {
        v.key_path_prefix = "elsewhere".into();
    }
    let backend = VaultBackend::connect(&narrow).await.unwrap();
    let before = backend.transport_stats();
    let e = backend.create_key(CreateKeyRequest::default()).await.unwrap_err();
    assert!(matches!(e, KmsError::Unauthorized { .. }), "{e:?}");
    assert_eq!(backend.transport_stats().requests - before.requests, 1, "refused at the claim, not retried");
}
