//! Import of key material (BYOK) on the local backend: through the manager (which unwraps),
//! across restarts, and expiry on the backend's own clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kms_core::backends::KmsBackend;
use kms_core::manager::{KmsManager, ManagerOptions};
use kms_crypto::wrapping::wrap_material;
use kms_types::byok::{
    DeleteImportedKeyMaterialRequest, GetParametersForImportRequest, ImportKeyMaterialRequest, ImportRefusal,
    WrappingKeySpec,
};
use kms_types::error::KmsError;
use kms_types::types::{CreateKeyRequest, DescribeKeyRequest, KeyOrigin, KeyState};
use time::OffsetDateTime;

fn manager(backend: &Arc<kms_backend_local::LocalBackend>) -> KmsManager {
    let backend: Arc<dyn KmsBackend> = backend.clone();
    KmsManager::with_options(backend, ManagerOptions { cache: None, ..ManagerOptions::default() })
}

async fn import(
    m: &KmsManager,
    key_id: &str,
    material: &[u8],
    valid_to: Option<OffsetDateTime>,
) -> Result<(), KmsError> {
    let params = m
        .get_parameters_for_import(GetParametersForImportRequest {
            key_id: key_id.into(),
            wrapping_key_spec: WrappingKeySpec::Rsa3072,
            ..Default::default()
        })
        .await?;
    let encrypted_key_material = wrap_material(&params.public_key, material)?;
    let request = ImportKeyMaterialRequest {
        key_id: key_id.into(),
        encrypted_key_material,
        import_token: params.import_token,
        valid_to,
        new_version: false,
    };
    m.import_key_material(request).await.map(drop)
}

async fn state(m: &KmsManager, key_id: &str) -> KeyState {
    m.describe_key(DescribeKeyRequest { key_id: key_id.into() }).await.unwrap().key_metadata.key_state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_material_and_its_fingerprint_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let b = Arc::new(open(&dir).await);
    let m = manager(&b);
    let external =
        CreateKeyRequest { key_name: Some("byok".into()), origin: Some(KeyOrigin::External), ..Default::default() };
    m.create_key(external).await.unwrap();
    m.backend().close().await.unwrap();
    drop((m, b));

    // A PendingImport key without material is a valid record.
    let b = Arc::new(open(&dir).await);
    let m = manager(&b);
    assert_eq!(state(&m, "byok").await, KeyState::PendingImport);
    import(&m, "byok", &[9u8; 32], None).await.unwrap();
    let blob = encrypt(&b, "byok", b"kept").await.unwrap();
    m.backend().close().await.unwrap();
    drop((m, b));

    let b = Arc::new(open(&dir).await);
    let m = manager(&b);
    assert_eq!(state(&m, "byok").await, KeyState::Enabled);
    assert_eq!(decrypt(&b, &blob).await.unwrap(), b"kept");
    m.delete_imported_key_material(DeleteImportedKeyMaterialRequest { key_id: "byok".into() }).await.unwrap();
    m.backend().close().await.unwrap();
    drop((m, b));

    // After a restart the material is still gone and only the same material comes back.
    let b = Arc::new(open(&dir).await);
    let m = manager(&b);
    assert_eq!(state(&m, "byok").await, KeyState::PendingImport);
    let err = import(&m, "byok", &[8u8; 32], None).await.unwrap_err();
    assert!(matches!(err, KmsError::ImportRefused { reason: ImportRefusal::IncorrectKeyMaterial, .. }), "{err:?}");
    import(&m, "byok", &[9u8; 32], None).await.unwrap();
    assert_eq!(decrypt(&b, &blob).await.unwrap(), b"kept");
    m.backend().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_expires_on_the_backend_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let clock = clock();
    let b = Arc::new(open_with_clock(&dir, clock.clone()).await);
    let m = manager(&b);
    let external =
        CreateKeyRequest { key_name: Some("expiring".into()), origin: Some(KeyOrigin::External), ..Default::default() };
    m.create_key(external).await.unwrap();
    // The import sessions run on the wall clock; the material's expiry on the backend's.
    let valid_to = OffsetDateTime::now_utc() + time::Duration::days(365 * 10);
    import(&m, "expiring", &[4u8; 32], Some(valid_to)).await.unwrap();
    let meta = m.describe_key(DescribeKeyRequest { key_id: "expiring".into() }).await.unwrap().key_metadata;
    assert_eq!(meta.valid_to.map(|t| t.unix_timestamp()), Some(valid_to.unix_timestamp()));
    encrypt(&b, "expiring", b"x").await.unwrap();

    clock.set(valid_to + time::Duration::seconds(1));
    assert_eq!(state(&m, "expiring").await, KeyState::PendingImport);
    let err = encrypt(&b, "expiring", b"x").await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidKeyState { state: KeyState::PendingImport, .. }), "{err:?}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    m.backend().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_kms_generated_takes_no_material() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Arc::new(open(&keys_dir(&tmp)).await);
    let m = manager(&b);
    m.create_key(named("made-here")).await.unwrap();
    let err = import(&m, "made-here", &[1u8; 32], None).await.unwrap_err();
    assert!(matches!(err, KmsError::ImportRefused { reason: ImportRefusal::NotExternalKey, .. }), "{err:?}");
    m.backend().close().await.unwrap();
}
