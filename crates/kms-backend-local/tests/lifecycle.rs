//! The key lifecycle on disk: create, rotate, state changes, scheduled deletion and the
//! deletion worker, persistence across restarts, concurrent changes and pagination.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kms_backend_local::Clock as _;
use kms_core::backends::KmsBackend;
use kms_types::error::KmsError;
use kms_types::types::{
    CancelKeyDeletionRequest, DeleteKeyRequest, DescribeKeyRequest, GenerateDataKeyRequest, KeyIdRequest, KeySpec,
    KeyState, ListKeysRequest, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest,
};

fn id(key_id: &str) -> KeyIdRequest {
    KeyIdRequest { key_id: key_id.into() }
}

async fn state(backend: &kms_backend_local::LocalBackend, key_id: &str) -> KeyState {
    backend.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await.unwrap().key_metadata.key_state
}

#[tokio::test]
async fn create_named_and_generated_keys_and_refuse_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = open(&keys_dir(&tmp)).await;
    let created = backend.create_key(named("app-1")).await.unwrap();
    assert_eq!(created.key_id, "app-1");
    assert_eq!(created.key_metadata.key_state, KeyState::Enabled);
    assert_eq!(created.key_metadata.current_version, 1);
    let err = backend.create_key(named("app-1")).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyAlreadyExists { ref key_id } if key_id == "app-1"), "{err:?}");
    let generated = backend.create_key(Default::default()).await.unwrap();
    assert_eq!(generated.key_id.len(), 36, "{}", generated.key_id);
    for bad in ["../escape", ".hidden", "a/b", ""] {
        let err = backend.create_key(named(bad)).await.unwrap_err();
        assert!(matches!(err, KmsError::InvalidRequest { .. }), "{bad}: {err:?}");
    }
    let err = backend.describe_key(DescribeKeyRequest { key_id: "missing".into() }).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn rotation_keeps_every_earlier_version_decrypting() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    let mut made = Vec::new();
    for version in 1..=5u32 {
        let plaintext = format!("secret made with version {version}");
        let blob = encrypt(&backend, "k", plaintext.as_bytes()).await.unwrap();
        let dk = backend
            .generate_data_key(GenerateDataKeyRequest {
                key_id: "k".into(),
                key_spec: KeySpec::Aes256,
                encryption_context: ctx(&[("purpose", "test")]),
            })
            .await
            .unwrap();
        assert_eq!(dk.key_version, version);
        made.push((version, plaintext.into_bytes(), blob));
        made.push((version, dk.plaintext_key.expose_secret().to_vec(), dk.ciphertext_blob));
        let rotated = backend.rotate_key(id("k")).await.unwrap().key_metadata;
        assert_eq!(rotated.current_version, version + 1);
        assert!(rotated.rotation_date.is_some());
    }
    let check = |backend: kms_backend_local::LocalBackend, made: Vec<(u32, Vec<u8>, Vec<u8>)>| async move {
        for (version, plaintext, blob) in &made {
            let opened = backend
                .decrypt(kms_types::types::DecryptRequest {
                    ciphertext_blob: blob.clone(),
                    encryption_context: ctx(&[("purpose", "test")]),
                    key_id: Some("k".into()),
                })
                .await
                .unwrap();
            assert_eq!(opened.key_version, *version, "the ciphertext carries its version");
            assert_eq!(opened.plaintext.expose_secret(), plaintext.as_slice());
        }
        backend
    };
    let backend = check(backend, made.clone()).await;
    // New ciphertexts use the newest version.
    let blob = encrypt(&backend, "k", b"new").await.unwrap();
    assert_eq!(backend.decrypt(dec(&blob)).await.unwrap().key_version, 6);
    // And every version survives a restart.
    backend.shutdown().await;
    drop(backend);
    check(open(&dir).await, made).await;
}

fn dec(blob: &[u8]) -> kms_types::types::DecryptRequest {
    kms_types::types::DecryptRequest {
        ciphertext_blob: blob.to_vec(),
        encryption_context: ctx(&[("purpose", "test")]),
        key_id: None,
    }
}

#[tokio::test]
async fn a_wrong_context_or_key_id_or_tampered_blob_does_not_decrypt() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = open(&keys_dir(&tmp)).await;
    backend.create_key(named("a")).await.unwrap();
    backend.create_key(named("b")).await.unwrap();
    let blob = encrypt(&backend, "a", b"hello").await.unwrap();
    let mut wrong_ctx = dec(&blob);
    wrong_ctx.encryption_context = ctx(&[("purpose", "other")]);
    assert!(matches!(backend.decrypt(wrong_ctx).await, Err(KmsError::Crypto { .. })));
    let mut wrong_key = dec(&blob);
    wrong_key.key_id = Some("b".into());
    assert!(matches!(backend.decrypt(wrong_key).await, Err(KmsError::Crypto { .. })));
    // A header edited to name key b (same id length) or another version does not open.
    let mut edited = blob.clone();
    edited[6] = b'b';
    assert!(matches!(backend.decrypt(dec(&edited)).await, Err(KmsError::Crypto { .. })));
    let mut edited = blob.clone();
    edited[10] = 2;
    assert!(matches!(backend.decrypt(dec(&edited)).await, Err(KmsError::Crypto { .. })));
    let mut flipped = blob.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(matches!(backend.decrypt(dec(&flipped)).await, Err(KmsError::Crypto { .. })));
    let err = encrypt(&backend, "a", &[0; 4097]).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { .. }), "{err:?}");
}

#[tokio::test]
async fn state_matrix_is_enforced_and_persisted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    let blob = encrypt(&backend, "k", b"data").await.unwrap();

    backend.disable_key(id("k")).await.unwrap();
    assert_eq!(state(&backend, "k").await, KeyState::Disabled);
    let refused = |r: Result<Vec<u8>, KmsError>, s: KeyState| {
        assert!(matches!(r, Err(KmsError::InvalidKeyState { state, .. }) if state == s), "{r:?}");
    };
    refused(encrypt(&backend, "k", b"x").await, KeyState::Disabled);
    refused(decrypt(&backend, &blob).await, KeyState::Disabled);
    assert!(matches!(backend.rotate_key(id("k")).await, Err(KmsError::InvalidKeyState { .. })));
    // Metadata stays editable while Disabled.
    backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: "k".into(), description: "off".into() })
        .await
        .unwrap();

    let scheduled = backend.delete_key(DeleteKeyRequest { key_id: "k".into(), pending_window_in_days: Some(7) }).await;
    assert_eq!(scheduled.unwrap().key_state, KeyState::PendingDeletion);
    refused(decrypt(&backend, &blob).await, KeyState::PendingDeletion);
    for r in [
        backend.enable_key(id("k")).await,
        backend.disable_key(id("k")).await,
        backend.tag_key(TagKeyRequest { key_id: "k".into(), tags: [("a".into(), "b".into())].into() }).await,
    ] {
        assert!(matches!(r, Err(KmsError::InvalidKeyState { state: KeyState::PendingDeletion, .. })), "{r:?}");
    }
    let again = backend.delete_key(DeleteKeyRequest { key_id: "k".into(), pending_window_in_days: None }).await;
    assert!(matches!(again, Err(KmsError::InvalidKeyState { .. })), "{again:?}");

    // State survives a restart.
    backend.shutdown().await;
    let backend = open(&dir).await;
    assert_eq!(state(&backend, "k").await, KeyState::PendingDeletion);

    let cancelled = backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: "k".into() }).await.unwrap();
    assert_eq!(cancelled.key_state, KeyState::Disabled, "cancel brings the key back Disabled, as AWS KMS");
    let meta = backend.describe_key(DescribeKeyRequest { key_id: "k".into() }).await.unwrap().key_metadata;
    assert_eq!(meta.deletion_date, None);
    assert_eq!(meta.description.as_deref(), Some("off"));
    assert!(matches!(
        backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: "k".into() }).await,
        Err(KmsError::InvalidKeyState { state: KeyState::Disabled, .. })
    ));
    backend.enable_key(id("k")).await.unwrap();
    assert_eq!(decrypt(&backend, &blob).await.unwrap(), b"data");
}

#[tokio::test]
async fn the_deletion_window_is_7_to_30_days_and_the_worker_removes_expired_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let clock = clock();
    let backend = open_with_clock(&dir, clock.clone()).await;
    for name in ["week", "month", "kept", "cancelled"] {
        backend.create_key(named(name)).await.unwrap();
    }
    for bad in [0, 6, 31] {
        let r = backend.delete_key(DeleteKeyRequest { key_id: "week".into(), pending_window_in_days: Some(bad) }).await;
        assert!(matches!(r, Err(KmsError::InvalidRequest { .. })), "{bad}: {r:?}");
    }
    let start = clock.now();
    let week = backend.delete_key(DeleteKeyRequest { key_id: "week".into(), pending_window_in_days: Some(7) });
    assert_eq!(week.await.unwrap().deletion_date, start + time::Duration::days(7));
    let month = backend.delete_key(DeleteKeyRequest { key_id: "month".into(), pending_window_in_days: None });
    assert_eq!(month.await.unwrap().deletion_date, start + time::Duration::days(30));
    backend.delete_key(DeleteKeyRequest { key_id: "cancelled".into(), pending_window_in_days: Some(7) }).await.unwrap();
    backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: "cancelled".into() }).await.unwrap();

    assert!(backend.purge_expired_keys().await.unwrap().is_empty());
    clock.advance(Duration::from_secs(7 * 86_400 - 1));
    assert!(backend.purge_expired_keys().await.unwrap().is_empty(), "one second early");
    clock.advance(Duration::from_secs(1));
    assert_eq!(backend.purge_expired_keys().await.unwrap(), vec!["week".to_owned()]);
    assert!(matches!(
        backend.describe_key(DescribeKeyRequest { key_id: "week".into() }).await,
        Err(KmsError::KeyNotFound { .. })
    ));

    // The background worker does the same on its own.
    clock.advance(Duration::from_secs(23 * 86_400));
    backend.start_deletion_worker(Duration::from_millis(10));
    let mut gone = false;
    for _ in 0..500 {
        let described = backend.describe_key(DescribeKeyRequest { key_id: "month".into() }).await;
        gone = matches!(described, Err(KmsError::KeyNotFound { .. }));
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "the worker deleted the expired key");
    let left: Vec<String> = list_all(&backend, 10).await.into_iter().map(|e| e.key_id).collect();
    assert_eq!(left, ["cancelled", "kept"]);
    backend.shutdown().await;
    let backend = open(&dir).await;
    let left: Vec<String> = list_all(&backend, 10).await.into_iter().map(|e| e.key_id).collect();
    assert_eq!(left, ["cancelled", "kept"], "deletions are durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_and_tag_changes_lose_no_update() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = Arc::new(open(&dir).await);
    backend.create_key(named("k")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let b = backend.clone();
        tasks.push(tokio::spawn(async move {
            b.rotate_key(id("k")).await.unwrap();
            let tags = [(format!("t{i}"), i.to_string())].into();
            b.tag_key(TagKeyRequest { key_id: "k".into(), tags }).await.unwrap();
            if i % 2 == 0 {
                b.untag_key(UntagKeyRequest { key_id: "k".into(), tag_keys: vec![format!("t{i}")] }).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expect_tags: BTreeMap<String, String> =
        (0..16).filter(|i| i % 2 == 1).map(|i| (format!("t{i}"), i.to_string())).collect();
    let meta = backend.describe_key(DescribeKeyRequest { key_id: "k".into() }).await.unwrap().key_metadata;
    assert_eq!(meta.current_version, 17);
    assert_eq!(meta.tags, expect_tags);
    Arc::try_unwrap(backend).unwrap().shutdown().await;
    let backend = open(&dir).await;
    let meta = backend.describe_key(DescribeKeyRequest { key_id: "k".into() }).await.unwrap().key_metadata;
    assert_eq!((meta.current_version, meta.tags), (17, expect_tags), "the same on disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_is_stable_while_keys_are_created_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = clock();
    let backend = Arc::new(open_with_clock(&keys_dir(&tmp), clock.clone()).await);
    // Stable keys that exist for the whole listing, and churn keys created and deleted meanwhile.
    for i in 0..60 {
        backend.create_key(named(&format!("stable-{i:03}"))).await.unwrap();
    }
    for i in 0..30 {
        backend.create_key(named(&format!("churn-old-{i:03}"))).await.unwrap();
    }
    clock.advance(Duration::from_secs(31 * 86_400));
    let churn = {
        let b = backend.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                b.create_key(named(&format!("churn-new-{i:03}"))).await.unwrap();
                let old = format!("churn-old-{i:03}");
                b.delete_key(DeleteKeyRequest { key_id: old, pending_window_in_days: Some(7) }).await.unwrap();
                clock.advance(Duration::from_secs(8 * 86_400));
                b.purge_expired_keys().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = backend
            .list_keys(ListKeysRequest { limit: Some(7), marker: marker.clone(), ..Default::default() })
            .await
            .unwrap();
        assert!(page.keys.len() <= 7);
        if let Some(m) = &marker {
            assert!(page.keys.iter().all(|e| &e.key_id > m), "pages move strictly forward");
        }
        seen.extend(page.keys.into_iter().map(|e| e.key_id));
        if !page.truncated {
            break;
        }
        marker = page.next_marker;
        tokio::task::yield_now().await;
    }
    churn.await.unwrap();
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no key is listed twice");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ascending order");
    for i in 0..60 {
        assert!(unique.contains(&format!("stable-{i:03}")), "stable-{i:03} missing from the listing");
    }
    // After the churn the listing is exactly the surviving keys.
    let all: Vec<String> = list_all(&backend, 1000).await.into_iter().map(|e| e.key_id).collect();
    assert_eq!(all.len(), 90);
    assert!(all.iter().all(|k| !k.starts_with("churn-old")));
    // Edges: a marker past the end, limit bounds.
    let page = backend
        .list_keys(ListKeysRequest { limit: Some(5), marker: Some("zzz".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(page.keys.is_empty() && !page.truncated && page.next_marker.is_none());
    for bad in [0, 1001] {
        let r = backend.list_keys(ListKeysRequest { limit: Some(bad), marker: None, ..Default::default() }).await;
        assert!(matches!(r, Err(KmsError::InvalidRequest { .. })), "{bad}");
    }
}

#[tokio::test]
async fn metadata_changes_persist_and_no_change_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    let tags = [("team".to_owned(), "storage".to_owned()), ("env".to_owned(), "prod".to_owned())].into();
    backend.tag_key(TagKeyRequest { key_id: "k".into(), tags }).await.unwrap();
    backend
        .untag_key(UntagKeyRequest { key_id: "k".into(), tag_keys: vec!["env".into(), "absent".into()] })
        .await
        .unwrap();
    backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: "k".into(), description: "photos".into() })
        .await
        .unwrap();
    let store = dir.join("keys.redb");
    let modified = std::fs::metadata(&store).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    backend.enable_key(id("k")).await.unwrap();
    backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: "k".into(), description: "photos".into() })
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&store).unwrap().modified().unwrap(), modified, "nothing was committed");
    // (Malformed tags are refused above the backend, by the manager: the contract case
    // `metadata_limits_hold_through_the_manager` checks it for this backend.)
    backend.shutdown().await;
    let backend = open(&dir).await;
    let meta = backend.describe_key(DescribeKeyRequest { key_id: "k".into() }).await.unwrap().key_metadata;
    assert_eq!(meta.tags, [("team".to_owned(), "storage".to_owned())].into());
    assert_eq!(meta.description.as_deref(), Some("photos"));
}

#[tokio::test]
async fn a_closed_backend_refuses_calls_and_releases_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    backend.close().await.unwrap();
    assert!(!backend.health_check().await.unwrap());
    assert!(matches!(encrypt(&backend, "k", b"x").await, Err(KmsError::ServiceUnavailable { .. })));
    assert!(matches!(backend.create_key(named("j")).await, Err(KmsError::ServiceUnavailable { .. })));
    // Another backend may take the directory over while the first object still exists.
    let second = open(&dir).await;
    assert!(second.health_check().await.unwrap());
    assert_eq!(list_all(&second, 10).await.len(), 1);
}

#[tokio::test]
async fn the_cache_of_opened_keys_counts_hits_and_misses_for_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    backend.shutdown().await;
    let backend = open(&dir).await;
    assert_eq!(backend.cache_stats().records_opened, 0, "opening reads no key");
    for _ in 0..3 {
        encrypt(&backend, "k", b"x").await.unwrap();
    }
    let stats = backend.key_cache_stats().expect("the local backend has a key cache");
    assert_eq!((stats.misses, stats.hits, stats.entries), (1, 2, 1));
    assert_eq!(backend.cache_stats().records_opened, 1);
}

/// Nothing between kms and these keys can fail transiently (every disk error is final), so
/// the manager gives each call one attempt under its whole budget and hands the request over
/// without a copy for retries.
#[tokio::test]
async fn the_manager_makes_one_attempt_per_call() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = open(&keys_dir(&tmp)).await;
    assert!(!backend.may_fail_transiently());
    assert!(!backend.writes_are_retry_safe());
}
