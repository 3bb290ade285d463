//! Aliases on the Vault backend beyond the contract suite: the record is the documented one at
//! the documented KV path, aliases never show up as keys, a move made through another server
//! is seen at once (no cache), and a damaged record is a backend error, never a wrong key.

mod common;

use kms_backend_vault::VaultBackend;
use kms_core::backends::KmsBackend;
use kms_types::alias::{CreateAliasRequest, ListAliasesRequest};
use kms_types::error::KmsError;
use kms_types::types::{CreateKeyRequest, ListKeysRequest};

/// A new key; its name is made unique, since Transit keys are shared by every test run on the
/// server (only the KV prefix is per run).
async fn key(backend: &VaultBackend, name: &str) -> String {
    let request = CreateKeyRequest { key_name: Some(common::unique(name)), ..Default::default() };
    backend.create_key(request).await.expect("create key").key_id
}

fn alias(name: &str, target: &str) -> CreateAliasRequest {
    CreateAliasRequest { alias_name: name.into(), target_key_id: target.into() }
}

#[tokio::test]
async fn the_record_is_the_documented_one_and_no_key() {
    let (addr, root) = common::shared();
    let config = common::root_config();
    let prefix = common::prefix(&config);
    let backend = VaultBackend::connect(&config).await.unwrap();
    let target = key(&backend, "alias-target").await;
    let created = backend.create_alias(alias("alias/team/app", &target)).await.unwrap();

    let path = format!("secret/data/{prefix}/.aliases/alias.team.app");
    let (status, body) = common::direct(&addr, &root, "GET", &path, serde_json::Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let record = &body["data"]["data"];
    let mut members: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alias_name", "creation_date", "format", "last_updated_date", "target_key_id"]);
    assert_eq!(record["format"], 1);
    assert_eq!(record["alias_name"], "alias/team/app");
    assert_eq!(record["target_key_id"], target.as_str());
    assert_eq!(
        record["creation_date"].as_str().unwrap(),
        created.creation_date.format(&time::format_description::well_known::Rfc3339).unwrap()
    );

    let keys = backend.list_keys(ListKeysRequest::default()).await.unwrap();
    let ids: Vec<&str> = keys.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids, [target.as_str()], "aliases are not listed as keys");
}

#[tokio::test]
async fn a_move_through_another_server_is_seen_at_once() {
    let config = common::root_config();
    let one = VaultBackend::connect(&config).await.unwrap();
    let two = VaultBackend::connect(&config).await.unwrap();
    let a = key(&one, "move-a").await;
    let b = key(&one, "move-b").await;
    one.create_alias(alias("alias/shared", &a)).await.unwrap();
    assert_eq!(two.resolve_alias("alias/shared").await.unwrap(), a);
    two.update_alias(alias("alias/shared", &b)).await.unwrap();
    assert_eq!(one.resolve_alias("alias/shared").await.unwrap(), b);
    let err = two.create_alias(alias("alias/shared", &a)).await.unwrap_err();
    assert!(matches!(&err, KmsError::KeyAlreadyExists { key_id } if key_id == "alias/shared"), "{err:?}");
    two.delete_alias("alias/shared").await.unwrap();
    let err = one.resolve_alias("alias/shared").await.unwrap_err();
    assert!(matches!(&err, KmsError::KeyNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_damaged_record_is_a_backend_error() {
    let (addr, root) = common::shared();
    let config = common::root_config();
    let prefix = common::prefix(&config);
    let backend = VaultBackend::connect(&config).await.unwrap();
    let target = key(&backend, "damaged-target").await;
    // A record naming another alias (copied, say, by hand): refused, not followed.
    let path = format!("secret/data/{prefix}/.aliases/alias.copied");
    let record = serde_json::json!({ "data": {
        "format": 1, "alias_name": "alias/original", "target_key_id": target,
        "creation_date": "2026-01-02T03:04:05Z", "last_updated_date": "2026-01-02T03:04:05Z"
    }});
    let (status, body) = common::direct(&addr, &root, "POST", &path, record).await;
    assert_eq!(status, 200, "{body}");
    let err = backend.resolve_alias("alias/copied").await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
    let err = backend.list_aliases(ListAliasesRequest::default()).await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "{err:?}");
    // An entry no alias name maps to is not listed.
    let stray = format!("secret/data/{prefix}/.aliases/not-an-alias");
    let (status, _) = common::direct(&addr, &root, "POST", &stray, serde_json::json!({ "data": { "x": 1 } })).await;
    assert_eq!(status, 200);
    let err = backend.delete_alias("alias/copied").await.unwrap_err();
    assert!(matches!(err, KmsError::Backend { .. }), "a damaged record is not deleted blind: {err:?}");
    let (status, _) = common::direct(
        &addr,
        &root,
        "DELETE",
        &format!("secret/metadata/{prefix}/.aliases/alias.copied"),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, 204);
    let page = backend.list_aliases(ListAliasesRequest::default()).await.unwrap();
    assert!(page.aliases.is_empty() && !page.truncated, "{page:?}");
}
