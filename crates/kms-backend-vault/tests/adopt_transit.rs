//! Explicit adoption of Transit keys made outside kms (`kms migrate vault-transit`): keys are
//! planted through Transit directly, as RustFS's Transit backend makes them; kms adopts the
//! one with kms's settings, refuses the others with their reason, never adopts without
//! `commit`, and skips a key adopted earlier.

mod common;

use common::{direct, root_config, shared};
use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_types::adopt::{AdoptKeyRequest, AdoptOutcome};
use kms_types::error::KmsError;
use kms_types::secret::SecretBytes;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, DescribeKeyRequest, EncryptRequest, GenerateDataKeyRequest, KeyOrigin, KeySpec,
    KeyState, RotateKeyRequest,
};
use serde_json::json;

async fn plant(addr: &str, root: &str, name: &str, settings: serde_json::Value) {
    let (status, body) = direct(addr, root, "POST", &format!("transit/keys/{name}"), settings).await;
    assert!(status < 300, "{body}");
}

fn adopt(key_id: &str, commit: bool) -> AdoptKeyRequest {
    AdoptKeyRequest {
        key_id: key_id.into(),
        commit,
        description: Some("made by RustFS".into()),
        tags: [("from".to_owned(), "rustfs".to_owned())].into(),
    }
}

#[tokio::test]
async fn a_transit_key_with_kms_settings_is_adopted_only_with_commit_and_then_works_through_kms() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let name = common::unique("rustfs-made");
    plant(&addr, &root, &name, json!({"type": "aes256-gcm96"})).await;
    // A version made before the adoption, and a ciphertext the other tool wrote with it.
    assert!(direct(&addr, &root, "POST", &format!("transit/keys/{name}/rotate"), json!(null)).await.0 < 300);
    let (_, sealed) = direct(
        &addr,
        &root,
        "POST",
        &format!("transit/encrypt/{name}"),
        json!({"plaintext": common::b64(b"rustfs object key")}),
    )
    .await;
    let foreign_ciphertext = sealed["data"]["ciphertext"].as_str().unwrap().to_owned();
    assert!(foreign_ciphertext.starts_with("vault:v2:"));

    // Dry run: adoptable, nothing written.
    let dry = backend.adopt_key(adopt(&name, false)).await.unwrap();
    assert_eq!(dry.outcome, AdoptOutcome::Adoptable);
    assert_eq!(dry.key_metadata.as_ref().unwrap().current_version, 2);
    let e = backend.describe_key(DescribeKeyRequest { key_id: name.clone() }).await.unwrap_err();
    assert!(matches!(e, KmsError::KeyNotFound { .. }), "{e:?}");

    let adopted = backend.adopt_key(adopt(&name, true)).await.unwrap();
    assert_eq!(adopted.outcome, AdoptOutcome::Adopted);
    let meta = backend.describe_key(DescribeKeyRequest { key_id: name.clone() }).await.unwrap().key_metadata;
    assert_eq!(meta.key_state, KeyState::Enabled);
    assert_eq!(meta.origin, KeyOrigin::Kms);
    assert_eq!(meta.current_version, 2);
    assert_eq!(meta.description.as_deref(), Some("made by RustFS"));
    assert_eq!(meta.tags["from"], "rustfs");

    // kms's operations work on it, and its blob carries Transit's own ciphertext.
    let data_key = backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: name.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: [("bucket".to_owned(), "b".to_owned())].into(),
        })
        .await
        .unwrap();
    assert_eq!(data_key.key_version, 2);
    let rotated = backend.rotate_key(RotateKeyRequest { key_id: name.clone() }).await.unwrap();
    assert_eq!(rotated.key_metadata.current_version, 3);
    let sealed = backend
        .encrypt(EncryptRequest {
            key_id: name.clone(),
            plaintext: SecretBytes::new(b"after adoption".to_vec()),
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
    assert_eq!(opened.plaintext.expose_secret(), b"after adoption");

    // A ciphertext the other tool made without associated data is kms's blob only with a
    // context kms would never bind (kms always sends the canonical context): not readable
    // through kms's decrypt, still readable through Transit, whose key is unchanged.
    let wrapped = format!("vault-kms:1:{name}:{foreign_ciphertext}").into_bytes();
    let e = backend
        .decrypt(DecryptRequest { ciphertext_blob: wrapped, encryption_context: Default::default(), key_id: None })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Crypto { .. }), "{e:?}");
    let (status, body) =
        direct(&addr, &root, "POST", &format!("transit/decrypt/{name}"), json!({"ciphertext": foreign_ciphertext}))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], common::b64(b"rustfs object key"));

    // A re-run: already adopted, nothing changed.
    let again = backend.adopt_key(adopt(&name, true)).await.unwrap();
    assert_eq!(again.outcome, AdoptOutcome::AlreadyAdopted);
    assert_eq!(again.key_metadata.unwrap().current_version, 3);
}

#[tokio::test]
async fn unsafe_or_unusable_transit_keys_and_kms_own_keys_are_refused_with_their_reason() {
    let (addr, root) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let cases = [
        ("exportable", json!({"type": "aes256-gcm96", "exportable": true}), "exportable"),
        ("backup", json!({"type": "aes256-gcm96", "exportable": true, "allow_plaintext_backup": true}), "exportable"),
        ("chacha", json!({"type": "chacha20-poly1305"}), "type chacha20-poly1305"),
        ("rsa", json!({"type": "rsa-2048"}), "type rsa-2048"),
        ("derived", json!({"type": "aes256-gcm96", "derived": true}), "derived"),
    ];
    for (label, settings, reason) in cases {
        let name = common::unique(label);
        plant(&addr, &root, &name, settings).await;
        for commit in [false, true] {
            let answer = backend.adopt_key(adopt(&name, commit)).await.unwrap();
            assert_eq!(answer.outcome, AdoptOutcome::Refused, "{label}");
            assert!(answer.reason.as_deref().unwrap().starts_with(reason), "{label}: {:?}", answer.reason);
        }
        let e = backend.describe_key(DescribeKeyRequest { key_id: name }).await.unwrap_err();
        assert!(matches!(e, KmsError::KeyNotFound { .. }), "{label}: nothing recorded: {e:?}");
    }

    // Plaintext backup alone (not exportable).
    let backup_only = common::unique("backup-only");
    plant(&addr, &root, &backup_only, json!({"type": "aes256-gcm96"})).await;
    let config = json!({"allow_plaintext_backup": true});
    assert!(direct(&addr, &root, "POST", &format!("transit/keys/{backup_only}/config"), config).await.0 < 300);
    let answer = backend.adopt_key(adopt(&backup_only, true)).await.unwrap();
    assert!(answer.reason.as_deref().unwrap().starts_with("allow_plaintext_backup"), "{answer:?}");

    // No Transit key of that name; a kms-made key.
    let answer = backend.adopt_key(adopt(&common::unique("absent"), true)).await.unwrap();
    assert!(answer.reason.as_deref().unwrap().starts_with("no Transit key"), "{answer:?}");
    let ours = backend
        .create_key(CreateKeyRequest { key_name: Some(common::unique("kms-made")), ..Default::default() })
        .await
        .unwrap();
    let answer = backend.adopt_key(adopt(&ours.key_id, true)).await.unwrap();
    assert_eq!(answer.outcome, AdoptOutcome::Refused);
    assert!(answer.reason.as_deref().unwrap().contains("kms already has a key"), "{answer:?}");

    // A malformed name is a bad request, not a refusal.
    let e = backend.adopt_key(adopt("a/b", true)).await.unwrap_err();
    assert!(matches!(e, KmsError::InvalidRequest { ref field, .. } if field == "key_id"), "{e:?}");
}
