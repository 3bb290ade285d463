//! Aliases through the library: wherever the service takes a key id, `alias/...` works.

use std::sync::Arc;

use kms_core::encryption::service::EncryptionService;
use kms_core::manager::{KmsManager, ManagerOptions};
use kms_core::mock::MemoryBackend;
use kms_types::KmsError;
use kms_types::alias::{CreateAliasRequest, ListAliasesRequest};
use kms_types::secret::SecretBytes;
use kms_types::types::{CreateKeyRequest, DecryptRequest, DescribeKeyRequest, EncryptRequest, ReEncryptRequest};

async fn service() -> (EncryptionService, String, String) {
    let manager = KmsManager::with_options(Arc::new(MemoryBackend::new()), ManagerOptions::default());
    let service = EncryptionService::new(Arc::new(manager));
    let mut ids = Vec::new();
    for name in ["orders", "billing"] {
        let request = CreateKeyRequest { key_name: Some(name.into()), ..CreateKeyRequest::default() };
        ids.push(service.create_key(request).await.unwrap().key_id);
    }
    (service, ids[0].clone(), ids[1].clone())
}

fn alias(name: &str, target: &str) -> CreateAliasRequest {
    CreateAliasRequest { alias_name: name.into(), target_key_id: target.into() }
}

#[tokio::test]
async fn an_alias_works_wherever_a_key_id_does_and_follows_updates() {
    let (svc, orders, billing) = service().await;
    svc.create_alias(alias("alias/app", &orders)).await.unwrap();
    assert!(svc.supports_aliases().await.unwrap());
    let sealed = svc
        .encrypt(EncryptRequest {
            key_id: "alias/app".into(),
            plaintext: SecretBytes::new(b"hi".to_vec()),
            encryption_context: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(sealed.key_id, orders);
    let opened = svc
        .decrypt(DecryptRequest {
            ciphertext_blob: sealed.ciphertext_blob.clone(),
            encryption_context: Default::default(),
            key_id: Some("alias/app".into()),
        })
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), b"hi");

    svc.update_alias(alias("alias/app", &billing)).await.unwrap();
    let described = svc.describe_key(DescribeKeyRequest { key_id: "alias/app".into() }).await.unwrap();
    assert_eq!(described.key_metadata.key_id, billing);
    // The alias now names another key than the ciphertext's: refused, opaquely.
    let wrong = svc
        .decrypt(DecryptRequest {
            ciphertext_blob: sealed.ciphertext_blob.clone(),
            encryption_context: Default::default(),
            key_id: Some("alias/app".into()),
        })
        .await
        .unwrap_err();
    assert!(matches!(wrong, KmsError::Crypto { .. }), "{wrong:?}");
    let moved = svc
        .re_encrypt(ReEncryptRequest {
            ciphertext_blob: sealed.ciphertext_blob,
            source_encryption_context: Default::default(),
            destination_key_id: Some("alias/app".into()),
            destination_encryption_context: None,
        })
        .await
        .unwrap();
    assert_eq!(moved.key_id, billing);
    assert_eq!(svc.resolve_key_ref("alias/app").await.unwrap(), billing);
    assert_eq!(svc.resolve_key_ref(&orders).await.unwrap(), orders);

    let page = svc.list_aliases(ListAliasesRequest::default()).await.unwrap();
    assert_eq!(page.aliases.len(), 1);
    svc.delete_alias("alias/app").await.unwrap();
    let gone = svc.describe_key(DescribeKeyRequest { key_id: "alias/app".into() }).await.unwrap_err();
    assert!(matches!(gone, KmsError::KeyNotFound { ref key_id } if key_id == "alias/app"), "{gone:?}");
}
