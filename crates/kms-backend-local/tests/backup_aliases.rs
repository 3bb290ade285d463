//! Aliases in backup bundles: a backup holds every alias as the store does (names, targets,
//! dates, one moved after creation), a restore brings them back, and a version 1 bundle (made
//! before aliases were backed up) still restores, with no aliases.

mod common;

use common::{config, master_key, named};
use kms_backend_local::LocalBackend;
use kms_core::backends::KmsBackend;
use kms_types::alias::{CreateAliasRequest, ListAliasesRequest};
use kms_types::error::KmsError;

fn alias(name: &str, target: &str) -> CreateAliasRequest {
    CreateAliasRequest { alias_name: name.into(), target_key_id: target.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_backed_up_and_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let source = LocalBackend::open(&config(&tmp.path().join("source"), 1)).await.unwrap();
    for name in ["orders", "billing"] {
        source.create_key(named(name)).await.unwrap();
    }
    source.create_alias(alias("alias/orders", "orders")).await.unwrap();
    source.create_alias(alias("alias/team/pay", "orders")).await.unwrap();
    source.update_alias(alias("alias/team/pay", "billing")).await.unwrap();
    let before = source.list_aliases(ListAliasesRequest::default()).await.unwrap();
    let bundle = source.snapshot().await.unwrap();
    assert_eq!(&bundle[8..10], &[0, 2], "bundles are written in version 2");
    source.shutdown().await;

    let target_dir = tmp.path().join("restored");
    let summary = LocalBackend::restore_into(&target_dir, &master_key(1), &bundle).unwrap();
    assert_eq!((summary.keys, summary.aliases), (2, 2));
    let restored = LocalBackend::open(&config(&target_dir, 1)).await.unwrap();
    let after = restored.list_aliases(ListAliasesRequest::default()).await.unwrap();
    assert_eq!(after, before, "names, targets and dates come back as they were");
    assert_eq!(restored.resolve_alias("alias/team/pay").await.unwrap(), "billing");
    // The restored store keeps the alias rules: the name is still taken.
    let err = restored.create_alias(alias("alias/orders", "billing")).await.unwrap_err();
    assert!(matches!(&err, KmsError::KeyAlreadyExists { key_id } if key_id == "alias/orders"), "{err:?}");
    restored.shutdown().await;
}

#[tokio::test]
async fn a_store_without_aliases_backs_up_an_empty_alias_section() {
    let tmp = tempfile::tempdir().unwrap();
    let source = LocalBackend::open(&config(&tmp.path().join("source"), 1)).await.unwrap();
    source.create_key(named("only")).await.unwrap();
    let bundle = source.snapshot().await.unwrap();
    source.shutdown().await;
    let summary = LocalBackend::restore_into(&tmp.path().join("restored"), &master_key(1), &bundle).unwrap();
    assert_eq!((summary.keys, summary.aliases), (1, 0));
    let restored = LocalBackend::open(&config(&tmp.path().join("restored"), 1)).await.unwrap();
    let page = restored.list_aliases(ListAliasesRequest::default()).await.unwrap();
    assert!(page.aliases.is_empty() && !page.truncated);
    restored.shutdown().await;
}

#[test]
fn a_version_1_bundle_restores_without_aliases() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/vectors/kms-backup-bundle-v1.json")).unwrap();
    let hex = doc["cases"][0]["bundle_hex"].as_str().unwrap();
    let bundle: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let summary = LocalBackend::restore_into(&tmp.path().join("keys"), &master_key(1), &bundle).unwrap();
    assert_eq!((summary.keys, summary.aliases), (2, 0));
}

#[test]
fn an_unknown_bundle_version_is_refused() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/vectors/kms-backup-bundle-v2.json")).unwrap();
    let hex = doc["cases"][0]["bundle_hex"].as_str().unwrap();
    let mut bundle: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    bundle[9] = 3;
    let tmp = tempfile::tempdir().unwrap();
    let err = LocalBackend::restore_into(&tmp.path().join("keys"), &master_key(1), &bundle).unwrap_err();
    assert!(
        matches!(&err, KmsError::InvalidRequest { field, message } if field == "backup" && message.contains("version 3")),
        "{err:?}"
    );
}
