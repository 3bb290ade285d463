//! Backup bundles: taken under load, restored into an empty directory, refused when truncated,
//! altered, made under another master key, or restored over a store that holds keys.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{config, decrypt, encrypt, master_key, named};
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::error::KmsError;
use kms_types::types::{
    CancelKeyDeletionRequest, DeleteKeyRequest, DescribeKeyRequest, KeyIdRequest, KeyMetadata, KeyState, TagKeyRequest,
    UpdateKeyDescriptionRequest,
};

async fn describe(backend: &LocalBackend, key_id: &str) -> Result<KeyMetadata, KmsError> {
    backend.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await.map(|r| r.key_metadata)
}

/// A backend with keys in every state: rotated, disabled, pending deletion, tagged.
async fn populated(dir: &Path) -> (LocalBackend, Vec<(String, Vec<u8>)>) {
    let backend = LocalBackend::open(&config(dir, 1)).await.unwrap();
    let mut blobs = Vec::new();
    for name in ["rotated", "disabled", "pending", "tagged"] {
        backend.create_key(named(name)).await.unwrap();
        blobs.push((name.to_owned(), encrypt(&backend, name, name.as_bytes()).await.unwrap()));
    }
    backend.rotate_key(KeyIdRequest { key_id: "rotated".into() }).await.unwrap();
    blobs.push(("rotated".into(), encrypt(&backend, "rotated", b"rotated-v2").await.unwrap()));
    backend.disable_key(KeyIdRequest { key_id: "disabled".into() }).await.unwrap();
    backend.delete_key(DeleteKeyRequest { key_id: "pending".into(), pending_window_in_days: Some(7) }).await.unwrap();
    backend
        .tag_key(TagKeyRequest { key_id: "tagged".into(), tags: [("team".into(), "a".into())].into() })
        .await
        .unwrap();
    backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: "tagged".into(), description: "d".into() })
        .await
        .unwrap();
    (backend, blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_every_key_version_and_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (backend, mut blobs) = populated(&tmp.path().join("keys")).await;
    for i in 0..20 {
        let id = format!("before-{i:02}");
        backend.create_key(named(&id)).await.unwrap();
        blobs.push((id.clone(), encrypt(&backend, &id, id.as_bytes()).await.unwrap()));
    }
    let before: Vec<KeyMetadata> =
        futures_metadata(&backend, &["rotated", "disabled", "pending", "tagged", "before-00"]).await;

    // Creations and rotations keep committing while the snapshot is read.
    let backend = Arc::new(backend);
    let load = {
        let backend = backend.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                backend.create_key(named(&format!("during-{i:02}"))).await.unwrap();
                backend.rotate_key(KeyIdRequest { key_id: format!("before-{:02}", i % 20) }).await.unwrap();
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let bundle = backend.snapshot().await.unwrap();
    load.await.unwrap();
    backend.create_key(named("after")).await.unwrap();
    backend.shutdown().await;

    let restored_dir = tmp.path().join("restored");
    let summary = LocalBackend::restore_into(&restored_dir, &master_key(1), &bundle).unwrap();
    let restored = LocalBackend::open(&config(&restored_dir, 1)).await.unwrap();
    // A disabled key and one pending deletion refuse to decrypt, as before the backup; brought
    // back to Enabled, they decrypt what they sealed.
    for (id, blob) in blobs.iter().filter(|(id, _)| id == "disabled" || id == "pending") {
        let refused = decrypt(&restored, blob).await.unwrap_err();
        assert!(matches!(refused, KmsError::InvalidKeyState { .. }), "{id}: {refused:?}");
    }
    let after = futures_metadata(&restored, &["rotated", "disabled", "pending", "tagged", "before-00"]).await;
    restored.cancel_key_deletion(CancelKeyDeletionRequest { key_id: "pending".into() }).await.unwrap();
    for id in ["disabled", "pending"] {
        restored.enable_key(KeyIdRequest { key_id: id.into() }).await.unwrap();
    }
    for (id, blob) in &blobs {
        let plaintext = decrypt(&restored, blob).await.unwrap_or_else(|e| panic!("{id}: {e:?}"));
        // Each blob sealed its key id, the rotated key's second version "rotated-v2".
        assert!(plaintext == id.as_bytes() || (id == "rotated" && plaintext == b"rotated-v2"), "{id}");
    }
    assert_eq!(decrypt(&restored, &blobs[0].1).await.unwrap(), b"rotated");
    assert_eq!(after[..4], before[..4], "states, versions, tags and descriptions come back as they were");
    assert_eq!(after[1].key_state, KeyState::Disabled);
    assert_eq!(after[2].key_state, KeyState::PendingDeletion);
    assert_eq!(after[3].tags.get("team").map(String::as_str), Some("a"));
    assert!(after[4].current_version >= 1);
    // The snapshot is one state: a key created during it is whole or absent, and the
    // restored store counts exactly what the bundle held.
    let listed = common::list_all(&restored, 1000).await;
    assert_eq!(listed.len(), summary.keys);
    let during = listed.iter().filter(|k| k.key_id.starts_with("during-")).count();
    assert!(listed.len() == 4 + 20 + during, "{listed:?}");
    let missing = describe(&restored, "after").await.unwrap_err();
    assert!(matches!(missing, KmsError::KeyNotFound { .. }), "{missing:?}");
    restored.shutdown().await;
}

async fn futures_metadata(backend: &LocalBackend, ids: &[&str]) -> Vec<KeyMetadata> {
    let mut out = Vec::new();
    for id in ids {
        out.push(describe(backend, id).await.unwrap());
    }
    out
}

async fn small_bundle(dir: &Path) -> Vec<u8> {
    let (backend, _) = populated(dir).await;
    let bundle = backend.snapshot().await.unwrap();
    backend.shutdown().await;
    bundle
}

#[tokio::test]
async fn a_truncated_or_altered_bundle_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = small_bundle(&tmp.path().join("keys")).await;
    let target = tmp.path().join("target");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [0, 7, 10, 100, bundle.len() / 2, bundle.len() - 1] {
        cases.push((format!("truncated to {cut}"), bundle[..cut].to_vec()));
    }
    for at in [20, bundle.len() / 2, bundle.len() - 80, bundle.len() - 1] {
        let mut altered = bundle.clone();
        altered[at] ^= 0x01;
        cases.push((format!("byte {at} flipped"), altered));
    }
    let mut longer = bundle.clone();
    longer.push(0);
    cases.push(("a byte appended".into(), longer));
    for (what, bytes) in cases {
        let err = LocalBackend::restore_into(&target, &master_key(1), &bytes).unwrap_err();
        assert!(matches!(&err, KmsError::InvalidRequest { field, .. } if field == "backup"), "{what}: {err:?}");
        assert!(!target.exists(), "{what}: the target was written");
    }
}

#[tokio::test]
async fn a_bundle_made_under_another_master_key_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = small_bundle(&tmp.path().join("keys")).await;
    let target = tmp.path().join("target");
    let err = LocalBackend::restore_into(&target, &master_key(2), &bundle).unwrap_err();
    assert!(matches!(&err, KmsError::Configuration { field, .. } if field == "backend_config.master_key"), "{err:?}");
    assert!(err.to_string().contains("wrong master key"), "{err}");
    assert!(!target.exists());
}

#[tokio::test]
async fn restoring_over_a_store_that_holds_keys_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = small_bundle(&tmp.path().join("keys")).await;
    let target = tmp.path().join("target");
    let other = LocalBackend::open(&config(&target, 1)).await.unwrap();
    other.create_key(named("already-here")).await.unwrap();
    other.shutdown().await;
    let err = LocalBackend::restore_into(&target, &master_key(1), &bundle).unwrap_err();
    assert!(matches!(&err, KmsError::Configuration { field, .. } if field == "backend_config.key_dir"), "{err:?}");
    let reopened = LocalBackend::open(&config(&target, 1)).await.unwrap();
    assert_eq!(describe(&reopened, "already-here").await.unwrap().key_id, "already-here");
    assert!(matches!(describe(&reopened, "rotated").await, Err(KmsError::KeyNotFound { .. })));
    reopened.shutdown().await;

    // Into itself, while its server runs: the directory is locked.
    let source = LocalBackend::open(&config(&tmp.path().join("keys"), 1)).await.unwrap();
    let err = LocalBackend::restore_into(&tmp.path().join("keys"), &master_key(1), &bundle).unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
    source.shutdown().await;
}

#[tokio::test]
async fn an_empty_store_created_by_a_first_start_takes_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = small_bundle(&tmp.path().join("keys")).await;
    let target = tmp.path().join("target");
    // A server started once on the new folder wrote its own (different) verifier salt.
    LocalBackend::open(&config(&target, 1)).await.unwrap().shutdown().await;
    let summary = LocalBackend::restore_into(&target, &master_key(1), &bundle).unwrap();
    assert_eq!(summary.keys, 4);
    let restored = LocalBackend::open(&config(&target, 1)).await.unwrap();
    assert_eq!(describe(&restored, "pending").await.unwrap().key_state, KeyState::PendingDeletion);
    restored.shutdown().await;
}

#[tokio::test]
async fn a_store_kept_in_the_clear_has_no_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = LocalConfig::new(tmp.path().join("keys"), MasterKeySource::InsecurePlaintextForDevelopment);
    let backend = LocalBackend::open(&plain).await.unwrap();
    backend.create_key(named("k")).await.unwrap();
    let err = backend.backup().await.unwrap_err();
    assert!(matches!(err, KmsError::Configuration { .. }), "{err:?}");
    backend.shutdown().await;
}
