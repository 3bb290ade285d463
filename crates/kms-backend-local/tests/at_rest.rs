//! Protection at rest and the key directory's safety checks: swapped, truncated and planted
//! records, a wrong master key, passphrase and development modes, directory permissions.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_types::config::{LocalConfig, MasterKeySource};
use kms_types::error::KmsError;
use kms_types::types::{DescribeKeyRequest, KeyIdRequest, KeyListEntry, KeyState};

fn entry(id: &str, state: KeyState) -> KeyListEntry {
    KeyListEntry { key_id: id.into(), key_state: state }
}

#[tokio::test]
async fn a_record_copied_over_another_key_is_unavailable_not_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    for k in ["a", "b", "c"] {
        backend.create_key(named(k)).await.unwrap();
    }
    let blob_b = encrypt(&backend, "b", b"b's secret").await.unwrap();
    backend.shutdown().await;
    // An attacker (or a careless restore) puts a's record in b's place.
    let a = stored_record(&dir, "a");
    plant_record(&dir, "b", &a);
    // And the subtle variant: a's record under c with its header's version edited.
    let mut edited = a.clone();
    edited[5] ^= 2;
    plant_record(&dir, "c", &edited);

    let backend = open(&dir).await;
    assert_eq!(
        list_all(&backend, 10).await,
        [entry("a", KeyState::Enabled), entry("b", KeyState::Unavailable), entry("c", KeyState::Unavailable)]
    );
    for k in ["b", "c"] {
        let err = backend.describe_key(DescribeKeyRequest { key_id: k.into() }).await.unwrap_err();
        assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
        assert!(err.to_string().contains("does not authenticate"), "{err}");
    }
    assert!(matches!(
        decrypt(&backend, &blob_b).await,
        Err(KmsError::InvalidKeyState { state: KeyState::Unavailable, .. })
    ));
    assert!(matches!(
        backend.rotate_key(KeyIdRequest { key_id: "b".into() }).await,
        Err(KmsError::InvalidKeyState { state: KeyState::Unavailable, .. })
    ));
    // The other keys keep working.
    let blob = encrypt(&backend, "a", b"fine").await.unwrap();
    assert_eq!(decrypt(&backend, &blob).await.unwrap(), b"fine");
    backend.create_key(named("d")).await.unwrap();
}

#[tokio::test]
async fn a_truncated_or_garbage_record_does_not_stop_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    for k in ["good", "short", "junk"] {
        backend.create_key(named(k)).await.unwrap();
    }
    backend.shutdown().await;
    let bytes = stored_record(&dir, "short");
    plant_record(&dir, "short", &bytes[..bytes.len() / 2]);
    plant_record(&dir, "junk", b"\x00\x01 not a record");
    let backend = open(&dir).await;
    assert_eq!(
        list_all(&backend, 1).await,
        [entry("good", KeyState::Enabled), entry("junk", KeyState::Unavailable), entry("short", KeyState::Unavailable)]
    );
    // The reason reaches the caller, the server's paths do not.
    let err = backend.describe_key(DescribeKeyRequest { key_id: "junk".into() }).await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("unsupported record format"), "{err}");
    assert!(!err.to_string().contains(tmp.path().to_str().unwrap()), "{err}");
    let blob = encrypt(&backend, "good", b"ok").await.unwrap();
    assert_eq!(decrypt(&backend, &blob).await.unwrap(), b"ok");
    // A new key cannot take the name of an unreadable one.
    assert!(matches!(backend.create_key(named("short")).await, Err(KmsError::KeyAlreadyExists { .. })));
}

#[tokio::test]
async fn a_wrong_master_key_is_a_clear_error_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    backend.shutdown().await;
    drop(backend);
    let err = LocalBackend::open(&config(&dir, 2)).await.unwrap_err();
    assert!(
        matches!(err, KmsError::Configuration { ref field, .. } if field == "backend_config.master_key"),
        "{err:?}"
    );
    assert!(err.to_string().contains("wrong master key"), "{err}");
    // Also with no key record yet: the verifier alone catches it.
    let tmp2 = tempfile::tempdir().unwrap();
    drop(open(&keys_dir(&tmp2)).await);
    let err = LocalBackend::open(&config(&keys_dir(&tmp2), 3)).await.unwrap_err();
    assert!(
        matches!(err, KmsError::Configuration { ref field, .. } if field == "backend_config.master_key"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_master_key_and_key_material_never_reach_the_disk_in_the_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    backend.rotate_key(KeyIdRequest { key_id: "k".into() }).await.unwrap();
    backend.shutdown().await;
    let master_b64 = STANDARD.encode([1u8; 32]);
    for entry in fs::read_dir(&dir).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(32).any(|w| w == [1u8; 32]));
        assert!(!String::from_utf8_lossy(&bytes).contains(&master_b64));
    }
}

#[tokio::test]
async fn files_are_0600_and_the_directory_0700() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.metadata().unwrap().mode() & 0o777, 0o600, "{:?}", entry.file_name());
    }
}

#[tokio::test]
async fn symlinked_or_group_or_world_writable_directories_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = LocalBackend::open(&config(&link, 1)).await.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");

    for mode in [0o777, 0o770, 0o702] {
        fs::set_permissions(&real, fs::Permissions::from_mode(mode)).unwrap();
        let err = LocalBackend::open(&config(&real, 1)).await.unwrap_err();
        assert!(matches!(err, KmsError::Configuration { .. }), "{mode:o}: {err:?}");
        assert!(err.to_string().contains("writable by group or others"), "{err}");
    }
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    LocalBackend::open(&config(&real, 1)).await.unwrap();

    let file = tmp.path().join("file");
    fs::write(&file, b"").unwrap();
    assert!(LocalBackend::open(&config(&file, 1)).await.unwrap_err().to_string().contains("not a directory"));
}

#[tokio::test]
async fn leftovers_of_interrupted_writes_are_removed_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    backend.shutdown().await;
    fs::write(dir.join(".tmp-0123456789abcdef01234567"), b"{\"format\": \"kms-loc").unwrap();
    let backend = open(&dir).await;
    assert!(!dir.join(".tmp-0123456789abcdef01234567").exists());
    assert_eq!(list_all(&backend, 10).await, [entry("k", KeyState::Enabled)]);
}

#[tokio::test]
async fn a_second_backend_in_the_same_process_is_refused_while_the_first_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let first = open(&dir).await;
    let err = LocalBackend::open(&config(&dir, 1)).await.unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    open(&dir).await;
}

#[tokio::test]
async fn passphrase_protection_round_trips_and_refuses_a_wrong_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let pass = |p: &str| LocalConfig::new(&dir, MasterKeySource::Passphrase { passphrase: p.into() });
    let backend = LocalBackend::open(&pass("correct horse battery staple")).await.unwrap();
    backend.create_key(named("k")).await.unwrap();
    let blob = encrypt(&backend, "k", b"p").await.unwrap();
    drop(backend);
    let err = LocalBackend::open(&pass("correct horse battery stapler")).await.unwrap_err();
    assert!(err.to_string().contains("wrong master key"), "{err}");
    let err = LocalBackend::open(&config(&dir, 1)).await.unwrap_err();
    assert!(err.to_string().contains("created with protection `passphrase`"), "{err}");
    let backend = LocalBackend::open(&pass("correct horse battery staple")).await.unwrap();
    assert_eq!(decrypt(&backend, &blob).await.unwrap(), b"p");
    let verifier = fs::read_to_string(dir.join(".verifier.json")).unwrap();
    assert!(verifier.contains("argon2id") && !verifier.contains("horse"), "{verifier}");
}

#[tokio::test]
async fn env_and_file_master_keys_open_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("k")).await.unwrap();
    drop(backend);
    let key_file = tmp.path().join("master.key");
    fs::write(&key_file, STANDARD.encode([1u8; 32])).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let backend = LocalBackend::open(&LocalConfig::new(&dir, MasterKeySource::File { path: key_file })).await.unwrap();
    assert_eq!(list_all(&backend, 10).await.len(), 1);
    drop(backend);
    let err =
        LocalBackend::open(&LocalConfig::new(&dir, MasterKeySource::Env { var: "KMS_LOCAL_TEST_NO_SUCH".into() }))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("KMS_LOCAL_TEST_NO_SUCH is not set"), "{err}");
}

#[tokio::test]
async fn development_plaintext_mode_is_explicit_and_cannot_mix_with_sealed_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let dev = LocalConfig::new(&dir, MasterKeySource::InsecurePlaintextForDevelopment);
    let backend = LocalBackend::open(&dev).await.unwrap();
    backend.create_key(named("k")).await.unwrap();
    let blob = encrypt(&backend, "k", b"dev").await.unwrap();
    drop(backend);
    let record = stored_record(&dir, "k");
    assert_eq!(record[..2], [2, 0], "format 2, protection byte 0 (insecure plaintext)");
    let err = LocalBackend::open(&config(&dir, 1)).await.unwrap_err();
    assert!(err.to_string().contains("insecure plaintext"), "{err}");
    let backend = LocalBackend::open(&dev).await.unwrap();
    assert_eq!(decrypt(&backend, &blob).await.unwrap(), b"dev");

    // A plaintext record planted into a sealed directory is Unavailable, not trusted.
    let sealed_tmp = tempfile::tempdir().unwrap();
    let sealed = keys_dir(&sealed_tmp);
    drop(open(&sealed).await);
    plant_record(&sealed, "k", &record);
    let backend = open(&sealed).await;
    assert_eq!(list_all(&backend, 10).await, [entry("k", KeyState::Unavailable)]);
}

#[tokio::test]
async fn a_store_file_replaced_by_a_symlink_is_refused_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    backend.create_key(named("a")).await.unwrap();
    backend.shutdown().await;
    let outside = tmp.path().join("keys.redb.outside");
    fs::rename(dir.join("keys.redb"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("keys.redb")).unwrap();
    let err = LocalBackend::open(&config(&dir, 1)).await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
    assert!(format!("{err:?}").contains("not a regular file"), "{err:?}");
}
