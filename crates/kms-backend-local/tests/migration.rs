//! A key directory of format 1 (one JSON file per key, written by the code before the key
//! store; `tests/fixtures/legacy-v1` was made by that code with master key `[1; 32]`) opens,
//! is migrated into the store once, and every key, version, state and ciphertext survives.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_types::error::KmsError;
use kms_types::types::{DescribeKeyRequest, KeyState};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy-v1");

/// A private copy of the fixture's key directory (0700, files 0600, as the old code left it).
fn legacy_dir(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = keys_dir(tmp);
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    for entry in fs::read_dir(Path::new(FIXTURE).join("keys")).unwrap() {
        let entry = entry.unwrap();
        let to = dir.join(entry.file_name());
        fs::copy(entry.path(), &to).unwrap();
        fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

async fn check_migrated(backend: &LocalBackend) {
    let listed: Vec<(String, KeyState)> =
        list_all(backend, 2).await.into_iter().map(|e| (e.key_id, e.key_state)).collect();
    assert_eq!(
        listed,
        [
            ("app-1".to_owned(), KeyState::Enabled),
            ("leaving".to_owned(), KeyState::PendingDeletion),
            ("off".to_owned(), KeyState::Disabled),
            ("rotated".to_owned(), KeyState::Enabled),
        ]
    );
    let app = backend.describe_key(DescribeKeyRequest { key_id: "app-1".into() }).await.unwrap().key_metadata;
    assert_eq!(app.description.as_deref(), Some("legacy"));
    assert_eq!(app.tags, [("team".to_owned(), "a".to_owned())].into());
    let rotated = backend.describe_key(DescribeKeyRequest { key_id: "rotated".into() }).await.unwrap().key_metadata;
    assert_eq!(rotated.current_version, 2);
    for id in ["app-1", "rotated"] {
        let blob = fs::read(Path::new(FIXTURE).join(format!("{id}.blob"))).unwrap();
        assert_eq!(decrypt(backend, &blob).await.unwrap(), b"made before the migration", "{id}");
    }
}

#[tokio::test]
async fn a_format_1_directory_is_migrated_once_and_everything_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = legacy_dir(&tmp);
    let backend = open(&dir).await;
    check_migrated(&backend).await;
    // The old files are gone; the store, the lock and the verifier remain.
    assert_eq!(names(&dir), [".lock", ".verifier.json", "keys.redb"]);
    // The deletion sweep knows the migrated pending key.
    let clock = clock();
    backend.shutdown().await;
    let backend = open_with_clock(&dir, clock.clone()).await;
    check_migrated(&backend).await;
    clock.advance(std::time::Duration::from_secs(8 * 86_400));
    assert_eq!(backend.purge_expired_keys().await.unwrap(), ["leaving"]);
}

#[tokio::test]
async fn an_interrupted_migration_is_redone_or_finished() {
    // Crash before the store was moved into place: a temporary store is left beside the old
    // files; the next start removes it and migrates again.
    let tmp = tempfile::tempdir().unwrap();
    let dir = legacy_dir(&tmp);
    fs::write(dir.join(".tmp-00112233445566778899aabb"), b"half a store").unwrap();
    let backend = open(&dir).await;
    check_migrated(&backend).await;
    assert_eq!(names(&dir), [".lock", ".verifier.json", "keys.redb"]);
    backend.shutdown().await;

    // Crash after the move, before the old files were removed: the store is complete and
    // authoritative; the old files it holds are removed, and nothing is migrated twice.
    let legacy_app = fs::read(Path::new(FIXTURE).join("keys/app-1.key")).unwrap();
    fs::write(dir.join("app-1.key"), &legacy_app).unwrap();
    let backend = open(&dir).await;
    check_migrated(&backend).await;
    assert_eq!(names(&dir), [".lock", ".verifier.json", "keys.redb"]);
}

#[tokio::test]
async fn a_wrong_master_key_migrates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = legacy_dir(&tmp);
    let err = LocalBackend::open(&config(&dir, 2)).await.unwrap_err();
    assert!(matches!(err, KmsError::Configuration { .. }), "{err:?}");
    assert!(!dir.join("keys.redb").exists());
    assert!(dir.join("app-1.key").exists());
}

#[tokio::test]
async fn an_unreadable_legacy_record_stays_unavailable_after_migration() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = legacy_dir(&tmp);
    // off's record copied over app-1's: unreadable before, Unavailable after, bytes kept.
    fs::copy(dir.join("off.key"), dir.join("app-1.key")).unwrap();
    let backend = open(&dir).await;
    let listed: Vec<(String, KeyState)> =
        list_all(&backend, 10).await.into_iter().map(|e| (e.key_id, e.key_state)).collect();
    assert_eq!(listed[0], ("app-1".to_owned(), KeyState::Unavailable));
    let err = backend.describe_key(DescribeKeyRequest { key_id: "app-1".into() }).await.unwrap_err();
    assert!(err.to_string().contains("belongs to key \"off\""), "{err}");
    backend.shutdown().await;
    assert_eq!(stored_record(&dir, "app-1"), fs::read(Path::new(FIXTURE).join("keys/off.key")).unwrap());
}
