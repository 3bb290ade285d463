//! Interop with direct Transit calls, both ways: our ciphertext is a Transit ciphertext bound to
//! the canonical context as `associated_data` (`docs/vault.md`, blob format 1).

mod common;

use common::{b64, direct, root_config, shared};
use kms_backend_vault::VaultBackend;
use kms_backend_vault::blob::VaultBlob;
use kms_core::backends::KmsBackend;
use kms_crypto::context::canonical_context;
use kms_types::error::KmsError;
use kms_types::types::{
    CreateKeyRequest, DecryptRequest, EncryptRequest, EncryptionContext, GenerateDataKeyRequest, KeySpec,
};
use serde_json::json;

fn ctx() -> EncryptionContext {
    [("bucket".to_owned(), "photos".to_owned()), ("object".to_owned(), "a=b,c".to_owned())].into()
}

#[tokio::test]
async fn our_ciphertext_decrypts_with_a_direct_transit_call() {
    let (addr, token) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let key = backend
        .create_key(CreateKeyRequest { key_name: Some(common::unique("interop")), ..Default::default() })
        .await
        .unwrap()
        .key_id;
    let enc = backend
        .encrypt(EncryptRequest {
            key_id: key.clone(),
            plaintext: b"hello transit".as_slice().into(),
            encryption_context: ctx(),
        })
        .await
        .unwrap();
    let blob = VaultBlob::decode(&enc.ciphertext_blob).unwrap();
    assert_eq!(blob.key_id, key);
    let ad = b64(&canonical_context(&ctx()));
    let (status, body) = direct(
        &addr,
        &token,
        "POST",
        &format!("transit/decrypt/{key}"),
        json!({"ciphertext": blob.transit_ciphertext, "associated_data": ad}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], b64(b"hello transit"));
    // Without the associated data Transit refuses it too.
    let (status, body) = direct(
        &addr,
        &token,
        "POST",
        &format!("transit/decrypt/{key}"),
        json!({"ciphertext": blob.transit_ciphertext}),
    )
    .await;
    assert!(
        status >= 400 && body["errors"][0].as_str().unwrap().contains("message authentication failed"),
        "{status} {body}"
    );

    // The same for a data key.
    let dk = backend
        .generate_data_key(GenerateDataKeyRequest {
            key_id: key.clone(),
            key_spec: KeySpec::Aes256,
            encryption_context: ctx(),
        })
        .await
        .unwrap();
    let blob = VaultBlob::decode(&dk.ciphertext_blob).unwrap();
    let (status, body) = direct(
        &addr,
        &token,
        "POST",
        &format!("transit/decrypt/{key}"),
        json!({"ciphertext": blob.transit_ciphertext, "associated_data": ad}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["plaintext"], b64(dk.plaintext_key.expose_secret()));
}

#[tokio::test]
async fn a_direct_transit_ciphertext_decrypts_through_the_backend() {
    let (addr, token) = shared();
    let backend = VaultBackend::connect(&root_config()).await.unwrap();
    let key = backend
        .create_key(CreateKeyRequest { key_name: Some(common::unique("interop")), ..Default::default() })
        .await
        .unwrap()
        .key_id;
    let ad = b64(&canonical_context(&ctx()));
    let (status, body) = direct(
        &addr,
        &token,
        "POST",
        &format!("transit/encrypt/{key}"),
        json!({"plaintext": b64(b"made by transit"), "associated_data": ad}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let transit = body["data"]["ciphertext"].as_str().unwrap().to_owned();
    let blob = VaultBlob::new(&key, transit).unwrap().encode();
    let dec = backend
        .decrypt(DecryptRequest { ciphertext_blob: blob.clone(), encryption_context: ctx(), key_id: Some(key.clone()) })
        .await
        .unwrap();
    assert_eq!(dec.plaintext.expose_secret(), b"made by transit");
    let e = backend
        .decrypt(DecryptRequest { ciphertext_blob: blob, encryption_context: EncryptionContext::new(), key_id: None })
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Crypto { .. }), "{e:?}");
}
