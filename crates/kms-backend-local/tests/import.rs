//! `import_key` (keys brought by `kms migrate`) and RustFS data-key envelopes under imported
//! keys, on the local backend directly. The RustFS fixtures are those of kms-crypto, written by
//! an independent Python implementation.

mod common;

use std::path::PathBuf;

use common::*;
use kms_core::backends::KmsBackend;
use kms_types::error::KmsError;
use kms_types::import::ImportKeyRequest;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    DecryptRequest, DescribeKeyRequest, EnableKeyRequest, EncryptionContext, KeyOrigin, KeyState, KeyUsage,
    RotateKeyRequest,
};
use serde_json::Value;
use time::OffsetDateTime;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kms-crypto/tests/fixtures/rustfs")
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(name)).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn request(key_id: &str, material: Vec<u8>) -> ImportKeyRequest {
    ImportKeyRequest {
        key_id: key_id.into(),
        material: SecretBytes::new(material),
        key_state: KeyState::Disabled,
        key_usage: KeyUsage::EncryptDecrypt,
        description: Some("from RustFS".into()),
        tags: [("name".to_owned(), key_id.to_owned())].into(),
        creation_date: OffsetDateTime::from_unix_timestamp(1_790_848_800).unwrap(),
        deletion_date: None,
    }
}

#[tokio::test]
async fn an_imported_key_keeps_its_id_state_metadata_and_date_across_a_restart_and_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    let meta = backend.import_key(request("imported", vec![7; 32])).await.unwrap().key_metadata;
    assert_eq!((meta.key_state, meta.origin, meta.current_version), (KeyState::Disabled, KeyOrigin::External, 1));
    assert_eq!(meta.creation_date.unix_timestamp(), 1_790_848_800);

    let err = backend.import_key(request("imported", vec![8; 32])).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyAlreadyExists { .. }), "{err:?}");
    backend.create_key(named("made-here")).await.unwrap();
    let err = backend.import_key(request("made-here", vec![8; 32])).await.unwrap_err();
    assert!(matches!(err, KmsError::KeyAlreadyExists { .. }), "{err:?}");
    let err = backend.import_key(request("short", vec![8; 16])).await.unwrap_err();
    assert!(matches!(err, KmsError::InvalidRequest { ref field, .. } if field == "material"), "{err:?}");
    drop(backend);

    let backend = open(&dir).await;
    let again = backend.describe_key(DescribeKeyRequest { key_id: "imported".into() }).await.unwrap().key_metadata;
    assert_eq!(again, meta);
    assert_eq!(again.description.as_deref(), Some("from RustFS"));
    assert_eq!(again.tags["name"], "imported");
    // A migrated key has no owner-held material (not BYOK): it rotates like any other.
    backend.enable_key(EnableKeyRequest { key_id: "imported".into() }).await.unwrap();
    let rotated = backend.rotate_key(RotateKeyRequest { key_id: "imported".into() }).await.unwrap();
    assert_eq!(rotated.key_metadata.current_version, 2);
}

#[tokio::test]
async fn rustfs_envelopes_open_only_under_the_imported_key_with_the_exact_context() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = open(&keys_dir(&tmp)).await;
    let manifest = json("manifest.json");
    let material = unhex(manifest["keys"]["app-data"]["material_hex"].as_str().unwrap());
    let mut enabled = request("app-data", material);
    enabled.key_state = KeyState::Enabled;
    backend.import_key(enabled).await.unwrap();
    // `default` exists, but made by kms: RustFS envelopes naming it never open.
    backend.create_key(named("default")).await.unwrap();

    for case in json("envelopes.json").as_array().unwrap() {
        let blob = case["envelope"].as_str().unwrap().as_bytes().to_vec();
        let context: EncryptionContext = serde_json::from_value(case["context"].clone()).unwrap();
        let key_id = case["master_key_id"].as_str().unwrap();
        assert_eq!(backend.ciphertext_key_id(&blob).as_deref(), Some(key_id));
        let decrypt = |context: EncryptionContext, key_id: Option<&str>| {
            backend.decrypt(DecryptRequest {
                ciphertext_blob: blob.clone(),
                encryption_context: context,
                key_id: key_id.map(str::to_owned),
            })
        };
        match key_id {
            "app-data" => {
                let answer = decrypt(context.clone(), Some("app-data")).await.unwrap();
                assert_eq!((answer.key_id.as_str(), answer.key_version), ("app-data", 1));
                assert_eq!(answer.plaintext.expose_secret(), &unhex(case["plaintext_hex"].as_str().unwrap())[..]);
                let mut extra = context.clone();
                extra.insert("extra".into(), "pair".into());
                assert!(matches!(decrypt(extra, None).await, Err(KmsError::Crypto { .. })));
                assert!(matches!(decrypt(context, Some("default")).await, Err(KmsError::Crypto { .. })));
            }
            "default" => assert!(matches!(decrypt(context, None).await, Err(KmsError::Crypto { .. }))),
            _ => assert!(matches!(decrypt(context, None).await, Err(KmsError::KeyNotFound { .. }))),
        }
    }
}
