//! Aliases persist in the key store: they survive a restart, and a store written before
//! aliases existed opens with none.

mod common;

use common::{keys_dir, named, open};
use kms_core::backends::KmsBackend;
use kms_types::KmsError;
use kms_types::alias::{CreateAliasRequest, ListAliasesRequest};

#[tokio::test]
async fn aliases_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = keys_dir(&tmp);
    let backend = open(&dir).await;
    // A store without any alias yet: lookups find nothing, lists are empty.
    let none = backend.resolve_alias("alias/orders").await.unwrap_err();
    assert!(matches!(none, KmsError::KeyNotFound { ref key_id } if key_id == "alias/orders"), "{none:?}");
    assert!(backend.list_aliases(ListAliasesRequest::default()).await.unwrap().aliases.is_empty());

    backend.create_key(named("orders-key")).await.unwrap();
    let created = backend
        .create_alias(CreateAliasRequest { alias_name: "alias/orders".into(), target_key_id: "orders-key".into() })
        .await
        .unwrap();
    backend.shutdown().await;
    drop(backend);

    let backend = open(&dir).await;
    assert_eq!(backend.resolve_alias("alias/orders").await.unwrap(), "orders-key");
    let listed = backend.list_aliases(ListAliasesRequest::default()).await.unwrap();
    assert_eq!(listed.aliases, vec![created]);
    backend.delete_alias("alias/orders").await.unwrap();
    backend.shutdown().await;
    drop(backend);

    let backend = open(&dir).await;
    assert!(matches!(backend.resolve_alias("alias/orders").await, Err(KmsError::KeyNotFound { .. })));
    backend.shutdown().await;
}
