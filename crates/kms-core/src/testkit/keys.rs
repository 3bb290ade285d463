//! Contract cases of keys themselves: creation and ids, the lifecycle (deletion, cancel,
//! repeats, rotation), description and tags, and health.

use std::collections::BTreeSet;
use std::sync::Arc;

use kms_types::error::{KmsError, Result};
use kms_types::types::{
    CancelKeyDeletionRequest, CreateKeyRequest, DecryptRequest, DeleteKeyRequest, DescribeKeyRequest, EncryptRequest,
    EncryptionContext, GenerateDataKeyRequest, KeyIdRequest, KeyOrigin, KeySpec, KeyState, ListKeysRequest,
    MAX_KEY_ID_LEN, TagKeyRequest, Tags, UntagKeyRequest, UpdateKeyDescriptionRequest, validate_key_id,
};
use time::OffsetDateTime;

use super::Outcome;
use super::ctx::{Ctx, ctx_of, err, is_invalid_request, is_invalid_state, is_not_found, is_unsupported, ok};

pub(super) async fn create_key_returns_enabled_metadata(ctx: Ctx) -> Outcome {
    let tags: Tags = ctx_of(&[("team", "storage"), ("env", "test")]);
    let before = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let request =
        CreateKeyRequest { description: Some("contract key".into()), tags: tags.clone(), ..Default::default() };
    let meta = ok("create_key", ctx.create_with("meta", request).await)?;
    let id = ctx.id("meta");
    ensure!(meta.key_id == id, "created key id is {:?}, asked for {id:?}", meta.key_id);
    ensure!(meta.key_state == KeyState::Enabled, "a new key is {} (expected Enabled)", meta.key_state);
    ensure!(meta.current_version == 1, "a new key has version {} (expected 1)", meta.current_version);
    ensure!(meta.description.as_deref() == Some("contract key"), "description not kept: {:?}", meta.description);
    ensure!(meta.tags == tags, "tags not kept: {:?}", meta.tags);
    ensure!(meta.deletion_date.is_none() && meta.rotation_date.is_none(), "a new key has dates set: {meta:?}");
    ensure!(
        meta.creation_date >= before && meta.creation_date <= OffsetDateTime::now_utc() + time::Duration::minutes(5),
        "creation date {} is not now",
        meta.creation_date
    );
    let described = ctx.describe(&id).await?;
    ensure!(described == meta, "describe_key differs from create_key: {described:?} vs {meta:?}");
    Ok(())
}

pub(super) async fn create_key_generates_unique_valid_ids(ctx: Ctx) -> Outcome {
    let mut ids = BTreeSet::new();
    for _ in 0..8 {
        let created = ok("create_key(no name)", ctx.backend.create_key(CreateKeyRequest::default()).await)?;
        ctx.track(&created.key_id);
        ensure!(created.key_id == created.key_metadata.key_id, "response and metadata disagree on the id");
        ok(
            format!("generated id {:?} must be a valid key id", created.key_id),
            validate_key_id("key_id", &created.key_id),
        )?;
        ensure!(ids.insert(created.key_id.clone()), "generated id {} twice", created.key_id);
        ctx.describe(&created.key_id).await?;
    }
    Ok(())
}

pub(super) async fn create_existing_key_fails(ctx: Ctx) -> Outcome {
    let id = ctx.create("dup").await?;
    let blob = ok("encrypt", ctx.encrypt(&id, b"keep me", &EncryptionContext::new()).await)?;
    let again =
        ctx.create_with("dup", CreateKeyRequest { description: Some("other".into()), ..Default::default() }).await;
    err(
        "create_key of an existing id",
        again,
        "KeyAlreadyExists",
        |e| matches!(e, KmsError::KeyAlreadyExists { key_id } if *key_id == id),
    )?;
    let plain = ok("decrypt after a refused re-create", ctx.decrypt(&blob, &EncryptionContext::new(), None).await)?;
    ensure!(plain.expose_secret() == b"keep me", "a refused re-create changed the key's material");
    ensure!(ctx.describe(&id).await?.description.is_none(), "a refused re-create changed the description");
    Ok(())
}

const BAD_IDS: &[&str] = &["", "a/b", "../etc", "a b", ".hidden", "ключ"];

pub(super) async fn invalid_ids_are_invalid_requests(ctx: Ctx) -> Outcome {
    let b = &ctx.backend;
    for bad in BAD_IDS.iter().copied().map(str::to_owned).chain(["x".repeat(257)]) {
        let bad = bad.as_str();
        let r = b.create_key(CreateKeyRequest { key_name: Some(bad.into()), ..Default::default() }).await;
        if let Ok(created) = &r {
            ctx.track(&created.key_id);
        }
        err(format!("create_key({bad:?})"), r, "InvalidRequest(key_name)", is_invalid_request("key_name"))?;
        let check = |what: &str, r: Result<String>| -> Outcome {
            err(format!("{what}({bad:?})"), r, "InvalidRequest(key_id)", is_invalid_request("key_id")).map(|_| ())
        };
        check(
            "describe_key",
            b.describe_key(DescribeKeyRequest { key_id: bad.into() }).await.map(|r| format!("{r:?}")),
        )?;
        check("encrypt", ctx.encrypt(bad, b"x", &EncryptionContext::new()).await.map(|r| format!("{r:?}")))?;
        check(
            "generate_data_key",
            b.generate_data_key(GenerateDataKeyRequest {
                key_id: bad.into(),
                key_spec: KeySpec::Aes256,
                encryption_context: EncryptionContext::new(),
            })
            .await
            .map(|r| format!("{r:?}")),
        )?;
        check("delete_key", ctx.delete(bad, None).await.map(|r| format!("{r:?}")))?;
        check("cancel_key_deletion", ctx.cancel(bad).await.map(|r| format!("{r:?}")))?;
    }
    Ok(())
}

pub(super) async fn delete_key_schedules_deletion(ctx: Ctx) -> Outcome {
    for (label, days, expected_days) in [("del-default", None, 30i64), ("del-7", Some(7), 7), ("del-30", Some(30), 30)]
    {
        let id = ctx.create(label).await?;
        let before = OffsetDateTime::now_utc();
        let response = ok(
            format!("delete_key({days:?})"),
            ctx.backend.delete_key(DeleteKeyRequest { key_id: id.clone(), pending_window_in_days: days }).await,
        )?;
        let after = OffsetDateTime::now_utc();
        ensure!(
            response.key_id == id && response.key_state == KeyState::PendingDeletion,
            "delete_key returned {response:?}"
        );
        let window = time::Duration::days(expected_days);
        let slack = time::Duration::minutes(5);
        ensure!(
            response.deletion_date >= before + window - slack && response.deletion_date <= after + window + slack,
            "deletion date {} is not {expected_days} days from now",
            response.deletion_date
        );
        let meta = ctx.describe(&id).await?;
        ensure!(meta.key_state == KeyState::PendingDeletion, "after delete_key the key is {}", meta.key_state);
        ensure!(
            meta.deletion_date.is_some_and(|d| (d - response.deletion_date).abs() < time::Duration::seconds(2)),
            "describe_key shows deletion date {:?}, delete_key said {}",
            meta.deletion_date,
            response.deletion_date
        );
    }
    Ok(())
}

pub(super) async fn delete_key_rejects_bad_windows(ctx: Ctx) -> Outcome {
    let id = ctx.create("window").await?;
    for days in [0, 1, 6, 31, 365] {
        let r = ctx.delete(&id, Some(days)).await;
        err(
            format!("delete_key(window {days})"),
            r,
            "InvalidRequest(pending_window_in_days)",
            is_invalid_request("pending_window_in_days"),
        )?;
        ctx.expect_state(&id, KeyState::Enabled, &format!("a refused delete_key(window {days})")).await?;
    }
    let r = ctx.delete(&ctx.id("never-created"), Some(3)).await;
    err("delete_key(unknown key, bad window)", r, "InvalidRequest", |e| matches!(e, KmsError::InvalidRequest { .. }))?;
    Ok(())
}

pub(super) async fn cancel_deletion_leaves_key_disabled(ctx: Ctx) -> Outcome {
    let id = ctx.create("cancel").await?;
    let blob = ok("encrypt", ctx.encrypt(&id, b"survivor", &EncryptionContext::new()).await)?;
    ok("delete_key", ctx.delete(&id, None).await)?;
    let response = ok(
        "cancel_key_deletion",
        ctx.backend.cancel_key_deletion(CancelKeyDeletionRequest { key_id: id.clone() }).await,
    )?;
    ensure!(response.key_id == id && response.key_state == KeyState::Disabled, "cancel returned {response:?}");
    let meta = ctx.describe(&id).await?;
    ensure!(meta.key_state == KeyState::Disabled, "after cancel the key is {} (expected Disabled)", meta.key_state);
    ensure!(meta.deletion_date.is_none(), "after cancel the deletion date is still {:?}", meta.deletion_date);
    err(
        "decrypt with the cancelled (Disabled) key",
        ctx.decrypt(&blob, &EncryptionContext::new(), None).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::Disabled),
    )?;
    if ctx.caps.enable_disable {
        ok("enable_key", ctx.backend.enable_key(KeyIdRequest { key_id: id.clone() }).await)?;
        let plain = ok("decrypt after enable", ctx.decrypt(&blob, &EncryptionContext::new(), None).await)?;
        ensure!(plain.expose_secret() == b"survivor", "the key came back with other material");
    }
    Ok(())
}

pub(super) async fn repeated_lifecycle_calls(ctx: Ctx) -> Outcome {
    let id = ctx.create("again").await?;
    if ctx.caps.enable_disable {
        for _ in 0..2 {
            ok("disable_key (repeated)", ctx.backend.disable_key(KeyIdRequest { key_id: id.clone() }).await)?;
            ctx.expect_state(&id, KeyState::Disabled, "disable_key").await?;
        }
        for _ in 0..2 {
            ok("enable_key (repeated)", ctx.backend.enable_key(KeyIdRequest { key_id: id.clone() }).await)?;
            ctx.expect_state(&id, KeyState::Enabled, "enable_key").await?;
        }
    }
    err(
        "cancel_key_deletion of an Enabled key",
        ctx.cancel(&id).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::Enabled),
    )?;
    ok("delete_key", ctx.delete(&id, Some(7)).await)?;
    let first = ctx.describe(&id).await?.deletion_date;
    err(
        "delete_key of a PendingDeletion key",
        ctx.delete(&id, Some(30)).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::PendingDeletion),
    )?;
    let second = ctx.describe(&id).await?.deletion_date;
    ensure!(first == second, "a refused second delete_key moved the deletion date {first:?} -> {second:?}");
    ok("cancel_key_deletion", ctx.cancel(&id).await)?;
    err(
        "cancel_key_deletion of a Disabled key",
        ctx.cancel(&id).await,
        "InvalidKeyState",
        is_invalid_state(&id, KeyState::Disabled),
    )?;
    Ok(())
}

pub(super) async fn rotation_keeps_old_versions_decrypting(ctx: Ctx) -> Outcome {
    let id = ctx.create("rotate").await?;
    let context = ctx_of(&[("v", "1")]);
    let old = ok("encrypt", ctx.encrypt(&id, b"version one", &context).await)?;
    let r = ctx.backend.rotate_key(KeyIdRequest { key_id: id.clone() }).await;
    if !ctx.caps.rotate {
        err("rotate_key", r, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    let meta = ok("rotate_key", r)?.key_metadata;
    ensure!(meta.current_version == 2, "after one rotation the version is {}", meta.current_version);
    ensure!(meta.rotation_date.is_some(), "after rotation the rotation date is not set");
    ensure!(ctx.describe(&id).await?.current_version == 2, "describe_key does not show the rotation");
    let new = ok(
        "encrypt after rotation",
        ctx.backend
            .encrypt(EncryptRequest {
                key_id: id.clone(),
                plaintext: b"version two".as_slice().into(),
                encryption_context: context.clone(),
            })
            .await,
    )?;
    ensure!(new.key_version == 2, "encrypt after rotation used version {}", new.key_version);
    let opened = ok(
        "decrypt of a version-1 ciphertext",
        ctx.backend
            .decrypt(DecryptRequest { ciphertext_blob: old, encryption_context: context.clone(), key_id: None })
            .await,
    )?;
    ensure!(
        opened.key_version == 1 && opened.plaintext.expose_secret() == b"version one",
        "old version decrypts wrongly"
    );
    let opened = ok("decrypt of a version-2 ciphertext", ctx.decrypt(&new.ciphertext_blob, &context, None).await)?;
    ensure!(opened.expose_secret() == b"version two", "new version decrypts wrongly");
    Ok(())
}

pub(super) async fn description_and_tags(ctx: Ctx) -> Outcome {
    let request = CreateKeyRequest { tags: ctx_of(&[("a", "1"), ("b", "2")]), ..Default::default() };
    let id = ok("create_key", ctx.create_with("meta-edit", request).await)?.key_id;
    let r = ctx
        .backend
        .update_key_description(UpdateKeyDescriptionRequest { key_id: id.clone(), description: "new words".into() })
        .await;
    if ctx.caps.update_description {
        let meta = ok("update_key_description", r)?.key_metadata;
        ensure!(meta.description.as_deref() == Some("new words"), "description is {:?}", meta.description);
        ensure!(
            ctx.describe(&id).await?.description.as_deref() == Some("new words"),
            "describe does not show the description"
        );
    } else {
        err("update_key_description", r, "Unsupported", is_unsupported)?;
    }
    let r = ctx.backend.tag_key(TagKeyRequest { key_id: id.clone(), tags: ctx_of(&[("b", "two"), ("c", "3")]) }).await;
    if !ctx.caps.tags {
        err("tag_key", r, "Unsupported", is_unsupported)?;
        let r = ctx.backend.untag_key(UntagKeyRequest { key_id: id, tag_keys: vec!["a".into()] }).await;
        err("untag_key", r, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    ok("tag_key", r)?;
    let tags = ctx.describe(&id).await?.tags;
    ensure!(tags == ctx_of(&[("a", "1"), ("b", "two"), ("c", "3")]), "after tag_key the tags are {tags:?}");
    let r = ctx
        .backend
        .untag_key(UntagKeyRequest { key_id: id.clone(), tag_keys: vec!["a".into(), "absent".into()] })
        .await;
    ok("untag_key", r)?;
    let tags = ctx.describe(&id).await?.tags;
    ensure!(tags == ctx_of(&[("b", "two"), ("c", "3")]), "after untag_key the tags are {tags:?}");
    Ok(())
}

pub(super) async fn the_longest_key_id_is_storable(ctx: Ctx) -> Outcome {
    let key_id = ctx.id(&"l".repeat(MAX_KEY_ID_LEN - ctx.prefix.len()));
    ensure!(key_id.len() == MAX_KEY_ID_LEN, "test id has {} bytes", key_id.len());
    let label = &key_id[ctx.prefix.len()..];
    let created = ok("create_key(256-byte id)", ctx.create_with(label, CreateKeyRequest::default()).await)?;
    ensure!(created.key_id == key_id, "created {} instead", created.key_id);
    let meta = ctx.describe(&key_id).await?;
    ensure!(meta.key_state == KeyState::Enabled, "the 256-byte key is {}", meta.key_state);
    let sealed = ok(
        "encrypt(256-byte id)",
        ctx.backend
            .encrypt(EncryptRequest {
                key_id: key_id.clone(),
                plaintext: b"longest".as_slice().into(),
                encryption_context: EncryptionContext::new(),
            })
            .await,
    )?;
    let opened = ok(
        "decrypt(256-byte id)",
        ctx.backend
            .decrypt(DecryptRequest {
                ciphertext_blob: sealed.ciphertext_blob,
                encryption_context: EncryptionContext::new(),
                key_id: Some(key_id.clone()),
            })
            .await,
    )?;
    ensure!(opened.plaintext.expose_secret() == b"longest", "the 256-byte key does not round-trip");
    let request = ListKeysRequest { prefix: Some(key_id.clone()), ..Default::default() };
    let page = ok("list_keys(256-byte prefix)", ctx.backend.list_keys(request).await)?;
    ensure!(page.keys.len() == 1 && page.keys[0].key_id == key_id, "listing by its id found {} keys", page.keys.len());
    ok("delete_key(256-byte id)", ctx.delete(&key_id, None).await)?;
    Ok(())
}

pub(super) async fn concurrent_creates(ctx: Ctx) -> Outcome {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let backend = Arc::clone(&ctx.backend);
        tasks.spawn(async move { backend.create_key(CreateKeyRequest::default()).await });
    }
    let mut ids = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let created = ok("concurrent create_key", joined.map_err(|e| format!("a task panicked: {e}"))?)?;
        ctx.track(&created.key_id);
        ensure!(ids.insert(created.key_id.clone()), "two concurrent creates both got id {}", created.key_id);
    }
    for id in &ids {
        ctx.describe(id).await?;
    }
    // Racing creates of one name: exactly one wins.
    let name = ctx.id("race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let backend = Arc::clone(&ctx.backend);
        let request = CreateKeyRequest { key_name: Some(name.clone()), ..Default::default() };
        tasks.spawn(async move { backend.create_key(request).await });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(|e| format!("a create task panicked: {e}"))? {
            Ok(_) => won += 1,
            Err(KmsError::KeyAlreadyExists { .. }) => lost += 1,
            Err(e) => return Err(format!("a racing create_key failed with {e:?} (expected KeyAlreadyExists)")),
        }
    }
    if won > 0 {
        ctx.track(&name);
    }
    ensure!(won == 1 && lost == 7, "8 racing creates of one name: {won} succeeded, {lost} got KeyAlreadyExists");
    Ok(())
}

pub(super) async fn health_check_reports_healthy(ctx: Ctx) -> Outcome {
    let healthy = ok("health_check", ctx.backend.health_check().await)?;
    ensure!(healthy, "a freshly built backend reports unhealthy");
    Ok(())
}

/// No operation imports key material, so a key of external origin could never leave
/// `PendingImport`: every backend refuses to create one, as `Unsupported`, and leaves nothing
/// behind (the id stays free).
pub(super) async fn external_origin_is_unsupported(ctx: Ctx) -> Outcome {
    if ctx.caps.import_key_material {
        // The backend imports key material: external keys are the cases of `import.rs`.
        return Ok(());
    }
    let request = CreateKeyRequest { origin: Some(KeyOrigin::External), ..Default::default() };
    let created = ctx.create_with("external", request).await;
    err("create_key(origin External)", created, "Unsupported", is_unsupported)?;
    let id = ctx.id("external");
    let described = ctx.backend.describe_key(DescribeKeyRequest { key_id: id.clone() }).await;
    err("describe_key after a refused create", described, "KeyNotFound", is_not_found(&id))?;
    let listed = ctx.backend.list_keys(ListKeysRequest { prefix: Some(id.clone()), ..Default::default() }).await;
    let listed = ok("list_keys(prefix of the refused key)", listed)?;
    ensure!(listed.keys.is_empty(), "a refused create left {:?} listed", listed.keys);
    // The id is still free for a key of ours.
    ok("create_key(origin Kms) of the same id", ctx.create_with("external", CreateKeyRequest::default()).await)?;
    Ok(())
}
