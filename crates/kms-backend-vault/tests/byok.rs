//! Bring your own key on OpenBao, beyond the contract suite's import cases: what Transit holds
//! (an imported, non-exportable key with exactly the material: a data key's Transit ciphertext
//! opens here with the raw material), the Transit key gone after the material is deleted, a
//! deleted key's versions restored one by one with their own material only, and rotation
//! refused for imported material.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{direct, root_config, shared};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_crypto::cipher::{Aes256GcmCipher, ObjectCipher as _};
use kms_crypto::wrapping::material_fingerprint;
use kms_types::byok::{DeleteImportedKeyMaterialRequest, ImportMaterial, ImportRefusal};
use kms_types::error::KmsError;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, EncryptRequest, EncryptionContext, GenerateDataKeyRequest, KeyOrigin, KeySpec,
    KeyState, RotateKeyRequest,
};
use serde_json::json;

fn material(key_id: &str, bytes: [u8; 32], new_version: bool) -> ImportMaterial {
    ImportMaterial {
        key_id: key_id.into(),
        material: SecretBytes::new(bytes.to_vec()),
        fingerprint: material_fingerprint(key_id, &bytes),
        valid_to: None,
        new_version,
    }
}

async fn external(backend: &VaultBackend, label: &str) -> String {
    let request = CreateKeyRequest {
        key_name: Some(common::unique(label)),
        origin: Some(KeyOrigin::External),
        ..Default::default()
    };
    let created = backend.create_key(request).await.unwrap();
    assert_eq!(created.key_metadata.key_state, KeyState::PendingImport);
    created.key_id
}

async fn encrypt(backend: &VaultBackend, key_id: &str) -> Vec<u8> {
    let request = EncryptRequest {
        key_id: key_id.into(),
        plaintext: SecretBytes::new(b"byok on openbao".to_vec()),
        encryption_context: EncryptionContext::new(),
    };
    backend.encrypt(request).await.unwrap().ciphertext_blob
}

async fn decrypt(backend: &VaultBackend, blob: &[u8]) -> kms_types::Result<Vec<u8>> {
    let request =
        DecryptRequest { ciphertext_blob: blob.to_vec(), encryption_context: EncryptionContext::new(), key_id: None };
    backend.decrypt(request).await.map(|r| r.plaintext.expose_secret().to_vec())
}

#[tokio::test]
async fn transit_holds_exactly_the_imported_material_and_drops_it_on_delete() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let key_id = external(&backend, "byok").await;
    let (status, _) = direct(&addr, &root, "GET", &format!("transit/keys/{key_id}"), json!(null)).await;
    assert_eq!(status, 404, "no Transit key before the material arrives");

    let raw = [0x3cu8; 32];
    let imported = backend.import_key_material(material(&key_id, raw, false)).await.unwrap();
    assert_eq!(imported.key_metadata.key_state, KeyState::Enabled);
    let (_, body) = direct(&addr, &root, "GET", &format!("transit/keys/{key_id}"), json!(null)).await;
    let data = &body["data"];
    assert_eq!((data["imported_key"].as_bool(), data["exportable"].as_bool()), (Some(true), Some(false)));
    assert_eq!(data["allow_plaintext_backup"], false);

    // A data key's Transit ciphertext is AES-256-GCM under the raw material with the canonical
    // context as associated data: opened here, independently of Transit.
    let context: EncryptionContext = [("bucket".to_owned(), "photos".to_owned())].into();
    let data_key = backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: key_id.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: context.clone(),
        })
        .await
        .unwrap();
    let blob = String::from_utf8(data_key.ciphertext_blob.clone()).unwrap();
    let body = blob.strip_prefix(&format!("vault-kms:1:{key_id}:vault:v1:")).unwrap();
    let sealed = B64.decode(body).unwrap();
    let (nonce, rest) = sealed.split_at(12);
    let (ciphertext, tag) = rest.split_at(rest.len() - 16);
    let mut opened = ciphertext.to_vec();
    Aes256GcmCipher::new(&raw)
        .unwrap()
        .open_in_place(
            nonce.try_into().unwrap(),
            &kms_crypto::context::canonical_context(&context),
            &mut opened,
            tag.try_into().unwrap(),
        )
        .unwrap();
    assert_eq!(opened, data_key.plaintext_key.expose_secret());

    // Imported material does not rotate inside Transit.
    let e = backend.rotate_key(RotateKeyRequest { key_id: key_id.clone() }).await.unwrap_err();
    assert!(matches!(e, KmsError::Unsupported { .. }), "{e:?}");

    let blob = encrypt(&backend, &key_id).await;
    let deleted = backend
        .delete_imported_key_material(DeleteImportedKeyMaterialRequest { key_id: key_id.clone() })
        .await
        .unwrap();
    assert_eq!(deleted.key_metadata.key_state, KeyState::PendingImport);
    let (status, _) = direct(&addr, &root, "GET", &format!("transit/keys/{key_id}"), json!(null)).await;
    assert_eq!(status, 404, "the Transit key is deleted with its material");
    let e = decrypt(&backend, &blob).await.unwrap_err();
    assert!(matches!(e, KmsError::InvalidKeyState { state: KeyState::PendingImport, .. }), "{e:?}");
    backend.import_key_material(material(&key_id, raw, false)).await.unwrap();
    assert_eq!(decrypt(&backend, &blob).await.unwrap(), b"byok on openbao");
}

#[tokio::test]
async fn a_deleted_keys_versions_come_back_one_by_one_with_their_own_material_only() {
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let key_id = external(&backend, "versions").await;
    let (v1, v2, other) = ([1u8; 32], [2u8; 32], [9u8; 32]);
    backend.import_key_material(material(&key_id, v1, false)).await.unwrap();
    let under_v1 = encrypt(&backend, &key_id).await;
    let second = backend.import_key_material(material(&key_id, v2, true)).await.unwrap();
    assert_eq!(second.key_metadata.current_version, 2);
    let under_v2 = encrypt(&backend, &key_id).await;

    backend.delete_imported_key_material(DeleteImportedKeyMaterialRequest { key_id: key_id.clone() }).await.unwrap();
    // Version 1 first, with its own material; version 2 then only with version 2's.
    let e = backend.import_key_material(material(&key_id, v2, false)).await.unwrap_err();
    assert!(matches!(e, KmsError::ImportRefused { reason: ImportRefusal::IncorrectKeyMaterial, .. }), "{e:?}");
    backend.import_key_material(material(&key_id, v1, false)).await.unwrap();
    assert_eq!(decrypt(&backend, &under_v1).await.unwrap(), b"byok on openbao");
    let e = decrypt(&backend, &under_v2).await.unwrap_err();
    assert!(matches!(e, KmsError::Crypto { .. }), "version 2 is not back yet: {e:?}");
    let e = backend.import_key_material(material(&key_id, other, true)).await.unwrap_err();
    assert!(matches!(e, KmsError::ImportRefused { reason: ImportRefusal::IncorrectKeyMaterial, .. }), "{e:?}");
    let restored = backend.import_key_material(material(&key_id, v2, true)).await.unwrap();
    assert_eq!(restored.key_metadata.current_version, 2);
    assert_eq!(decrypt(&backend, &under_v2).await.unwrap(), b"byok on openbao");

    // A material migrated by `kms migrate` (no fingerprints) is no bring-your-own key.
    let migrated = common::unique("migrated");
    backend
        .import_key(kms_types::import::ImportKeyRequest {
            key_id: migrated.clone(),
            material: SecretBytes::new(vec![4; 32]),
            key_state: KeyState::Enabled,
            key_usage: Default::default(),
            description: None,
            tags: Default::default(),
            creation_date: time::OffsetDateTime::now_utc(),
            deletion_date: None,
        })
        .await
        .unwrap();
    let e = backend.import_key_material(material(&migrated, [4; 32], false)).await.unwrap_err();
    assert!(matches!(e, KmsError::ImportRefused { reason: ImportRefusal::NotExternalKey, .. }), "{e:?}");
}
