//! `import_key` on OpenBao (`kms migrate rustfs-local` into a Vault-backed kms): the material
//! reaches Transit only through Transit's import, wrapped under its wrapping key; the key gets
//! kms's settings and its record the imported metadata; an existing key (kms's, or a Transit
//! key someone else made) is never overwritten or adopted.

mod common;

use common::{direct, root_config, shared};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_types::error::KmsError;
use kms_types::import::ImportKeyRequest;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, DescribeKeyRequest, EncryptRequest, KeyOrigin, KeyState, KeyUsage,
    RotateKeyRequest,
};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

fn request(key_id: &str, material: [u8; 32]) -> ImportKeyRequest {
    ImportKeyRequest {
        key_id: key_id.into(),
        material: SecretBytes::new(material.to_vec()),
        key_state: KeyState::Enabled,
        key_usage: KeyUsage::EncryptDecrypt,
        description: Some("from RustFS".into()),
        tags: [("team".to_owned(), "storage".to_owned())].into(),
        creation_date: datetime!(2025-03-04 05:06:07 UTC),
        deletion_date: None,
    }
}

async fn transit_key(addr: &str, token: &str, name: &str) -> serde_json::Value {
    let (status, body) = direct(addr, token, "GET", &format!("transit/keys/{name}"), json!(null)).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// AES-256-GCM of `plaintext` under `material` with a 12-byte nonce, no associated data, as
/// Transit lays it out (`nonce ‖ ciphertext ‖ tag`), through the test's own cipher.
fn transit_ciphertext(material: &[u8; 32], plaintext: &[u8]) -> String {
    use kms_crypto::cipher::ObjectCipher as _;
    let cipher = kms_crypto::cipher::Aes256GcmCipher::new(material).unwrap();
    let nonce = [9u8; 12];
    let mut buf = plaintext.to_vec();
    let tag = cipher.seal_in_place(&nonce, &[], &mut buf).unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    format!("vault:v1:{}", common::b64(&out))
}

#[tokio::test]
async fn imported_material_is_the_transit_key_with_kms_settings_and_the_imported_metadata() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let key_id = common::unique("imported");
    let material = [0x42u8; 32];

    let meta = backend.import_key(request(&key_id, material)).await.unwrap().key_metadata;
    assert_eq!(meta.key_state, KeyState::Enabled);
    assert_eq!(meta.origin, KeyOrigin::External);
    assert_eq!(meta.creation_date, datetime!(2025-03-04 05:06:07 UTC));
    assert_eq!(meta.description.as_deref(), Some("from RustFS"));
    assert_eq!(meta.tags["team"], "storage");
    assert_eq!(meta.current_version, 1);

    let data = transit_key(&addr, &root, &key_id).await;
    assert_eq!(data["type"], "aes256-gcm96");
    assert_eq!(data["exportable"], false);
    assert_eq!(data["allow_plaintext_backup"], false);
    assert_eq!(data["imported_key"], true);

    // Transit holds exactly our material: a ciphertext made outside Transit with it opens.
    let made_outside = transit_ciphertext(&material, b"made with the raw material");
    let (status, body) =
        direct(&addr, &root, "POST", &format!("transit/decrypt/{key_id}"), json!({ "ciphertext": made_outside })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], common::b64(b"made with the raw material"));

    // The key works through kms, and rotates (kms's rotate is allowed on an imported key).
    let sealed = backend
        .encrypt(EncryptRequest {
            key_id: key_id.clone(),
            plaintext: SecretBytes::new(b"hello".to_vec()),
            encryption_context: Default::default(),
        })
        .await
        .unwrap();
    let opened = backend
        .decrypt(DecryptRequest {
            ciphertext_blob: sealed.ciphertext_blob,
            encryption_context: Default::default(),
            key_id: None,
        })
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), b"hello");
    let rotated = backend.rotate_key(RotateKeyRequest { key_id: key_id.clone() }).await.unwrap();
    assert_eq!(rotated.key_metadata.current_version, 2);
}

#[tokio::test]
async fn disabled_and_pending_deletion_states_are_kept() {
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let disabled = common::unique("imported-disabled");
    let mut r = request(&disabled, [1; 32]);
    r.key_state = KeyState::Disabled;
    assert_eq!(backend.import_key(r).await.unwrap().key_metadata.key_state, KeyState::Disabled);
    let e = backend
        .encrypt(EncryptRequest {
            key_id: disabled.clone(),
            plaintext: SecretBytes::new(b"x".to_vec()),
            encryption_context: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::InvalidKeyState { .. }), "{e:?}");

    let pending = common::unique("imported-pending");
    let mut r = request(&pending, [2; 32]);
    let due = (OffsetDateTime::now_utc() + time::Duration::days(9)).replace_nanosecond(0).unwrap();
    r.key_state = KeyState::PendingDeletion;
    r.deletion_date = Some(due);
    let meta = backend.import_key(r).await.unwrap().key_metadata;
    assert_eq!(meta.key_state, KeyState::PendingDeletion);
    assert_eq!(meta.deletion_date, Some(due));
    let described = backend.describe_key(DescribeKeyRequest { key_id: pending }).await.unwrap().key_metadata;
    assert_eq!(described.deletion_date, Some(due));
}

#[tokio::test]
async fn an_existing_kms_key_or_a_foreign_transit_key_is_never_overwritten() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();

    // A kms key of that id: refused, the key unchanged.
    let ours = backend
        .create_key(CreateKeyRequest { key_name: Some(common::unique("kms-made")), ..Default::default() })
        .await
        .unwrap();
    let e = backend.import_key(request(&ours.key_id, [3; 32])).await.unwrap_err();
    assert!(matches!(e, KmsError::KeyAlreadyExists { ref key_id } if key_id == &ours.key_id), "{e:?}");
    assert_eq!(transit_key(&addr, &root, &ours.key_id).await["imported_key"], false);
    let described = backend.describe_key(DescribeKeyRequest { key_id: ours.key_id.clone() }).await.unwrap();
    assert_eq!(described.key_metadata.origin, KeyOrigin::Kms);

    // A Transit key someone else made: refused, left alone, no record left behind.
    let planted = common::unique("planted");
    assert!(
        direct(&addr, &root, "POST", &format!("transit/keys/{planted}"), json!({"exportable": true})).await.0 < 300
    );
    let e = backend.import_key(request(&planted, [4; 32])).await.unwrap_err();
    assert!(matches!(e, KmsError::KeyAlreadyExists { ref key_id } if key_id == &planted), "{e:?}");
    assert_eq!(transit_key(&addr, &root, &planted).await["exportable"], true);
    let described = backend.describe_key(DescribeKeyRequest { key_id: planted }).await;
    assert!(matches!(described, Err(KmsError::KeyNotFound { .. })), "{described:?}");

    // Importing the same id twice: the second is refused.
    let twice = common::unique("twice");
    backend.import_key(request(&twice, [5; 32])).await.unwrap();
    let e = backend.import_key(request(&twice, [6; 32])).await.unwrap_err();
    assert!(matches!(e, KmsError::KeyAlreadyExists { .. }), "{e:?}");
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_call() {
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let mut r = request(&common::unique("short"), [7; 32]);
    r.material = SecretBytes::new(vec![7; 16]);
    let e = backend.import_key(r).await.unwrap_err();
    assert!(matches!(e, KmsError::InvalidRequest { ref field, .. } if field == "material"), "{e:?}");
}
