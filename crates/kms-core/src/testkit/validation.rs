//! Contract cases of request validation. It runs once, above the backends, in the
//! [`KmsManager`] every backend is used through ([`crate::validate`]): these cases drive the
//! backend through one, so a backend that relied on a check of its own that the manager
//! lacks (or the reverse) fails here.

use kms_types::types::{
    CreateKeyRequest, EncryptRequest, EncryptionContext, MAX_ENCRYPT_PLAINTEXT_BYTES, TagKeyRequest, Tags,
    UpdateKeyDescriptionRequest,
};

use super::Outcome;
use super::ctx::{Ctx, ctx_of, err, is_invalid_request, ok};
use crate::manager::{KmsManager, ManagerOptions};

fn manager(ctx: &Ctx) -> KmsManager {
    KmsManager::with_options(ctx.backend.clone(), ManagerOptions::default())
}

fn encrypt_request(key_id: &str, len: usize) -> EncryptRequest {
    EncryptRequest {
        key_id: key_id.to_owned(),
        plaintext: vec![7u8; len].into(),
        encryption_context: EncryptionContext::new(),
    }
}

/// `Encrypt` takes 1 to 4096 bytes (as AWS KMS): both ends pass, one more byte is an
/// `InvalidRequest` naming `plaintext`.
pub(super) async fn encrypt_enforces_plaintext_limit(ctx: Ctx) -> Outcome {
    let manager = manager(&ctx);
    let id = ctx.create("limit").await?;
    for len in [1, MAX_ENCRYPT_PLAINTEXT_BYTES] {
        ok(format!("encrypt({len} bytes)"), manager.encrypt(encrypt_request(&id, len)).await)?;
    }
    let r = manager.encrypt(encrypt_request(&id, MAX_ENCRYPT_PLAINTEXT_BYTES + 1)).await;
    err("encrypt(4097 bytes)", r, "InvalidRequest(plaintext)", is_invalid_request("plaintext"))?;
    Ok(())
}

/// An empty plaintext is refused as an `InvalidRequest` naming `plaintext`, whatever the
/// backend would make of it (Transit, for one, encrypts nothing happily).
pub(super) async fn empty_plaintext_is_refused(ctx: Ctx) -> Outcome {
    let manager = manager(&ctx);
    let id = ctx.create("empty").await?;
    let r = manager.encrypt(encrypt_request(&id, 0)).await;
    err("encrypt(0 bytes)", r, "InvalidRequest(plaintext)", is_invalid_request("plaintext"))?;
    Ok(())
}

/// The metadata limits of [`kms_types::limits`], enforced by the [`KmsManager`] above this
/// backend: a key at every limit at once is created and stays usable; one tag, one character
/// or one byte more is an `InvalidRequest`, also when `tag_key` calls accumulate tags; an
/// empty tag name is refused on create and on `tag_key`; a refused edit changes nothing.
pub(super) async fn metadata_limits_hold_through_the_manager(ctx: Ctx) -> Outcome {
    use kms_types::limits::{
        MAX_DESCRIPTION_BYTES, MAX_POLICY_BYTES, MAX_TAG_KEY_CHARS, MAX_TAG_VALUE_CHARS, MAX_TAGS,
    };

    let manager = manager(&ctx);
    let full_tags: Tags = (0..MAX_TAGS)
        .map(|i| (format!("{i:03}{}", "k".repeat(MAX_TAG_KEY_CHARS - 3)), "é".repeat(MAX_TAG_VALUE_CHARS)))
        .collect();
    let tags = if ctx.caps.tags { full_tags.clone() } else { Tags::new() };
    let at_limits = CreateKeyRequest {
        key_name: Some(ctx.id("limits")),
        description: Some("d".repeat(MAX_DESCRIPTION_BYTES)),
        tags: tags.clone(),
        policy: Some("p".repeat(MAX_POLICY_BYTES)),
        ..Default::default()
    };
    let created = manager.create_key(at_limits.clone()).await;
    if created.is_ok() {
        ctx.track(&ctx.id("limits"));
    }
    let id = ok("create_key at every metadata limit", created)?.key_id;
    ensure!(ctx.describe(&id).await?.tags == tags, "tags at the limit were not kept");
    ok("encrypt under a key at every metadata limit", ctx.encrypt(&id, b"x", &EncryptionContext::new()).await)?;

    let over = |label: &str, request: CreateKeyRequest| CreateKeyRequest { key_name: Some(ctx.id(label)), ..request };
    let mut too_many = full_tags.clone();
    too_many.insert("one-more".into(), String::new());
    let cases = [
        ("tags", over("too-many-tags", CreateKeyRequest { tags: too_many, ..Default::default() })),
        (
            "tags",
            over(
                "long-tag-key",
                CreateKeyRequest { tags: ctx_of(&[(&"k".repeat(MAX_TAG_KEY_CHARS + 1), "v")]), ..Default::default() },
            ),
        ),
        (
            "tags",
            over(
                "long-tag-value",
                CreateKeyRequest { tags: ctx_of(&[("k", &"v".repeat(MAX_TAG_VALUE_CHARS + 1))]), ..Default::default() },
            ),
        ),
        ("tags", over("empty-tag-name", CreateKeyRequest { tags: ctx_of(&[("", "v")]), ..Default::default() })),
        (
            "description",
            over(
                "long-description",
                CreateKeyRequest { description: Some("d".repeat(MAX_DESCRIPTION_BYTES + 1)), ..Default::default() },
            ),
        ),
        (
            "policy",
            over(
                "long-policy",
                CreateKeyRequest { policy: Some("p".repeat(MAX_POLICY_BYTES + 1)), ..Default::default() },
            ),
        ),
    ];
    for (field, request) in cases {
        let name = request.key_name.clone().unwrap_or_default();
        let r = manager.create_key(request).await;
        if r.is_ok() {
            ctx.track(&name);
        }
        err(format!("create_key {name} over the {field} limit"), r, "InvalidRequest", is_invalid_request(field))?;
    }
    let r = manager
        .update_key_description(UpdateKeyDescriptionRequest {
            key_id: id.clone(),
            description: "d".repeat(MAX_DESCRIPTION_BYTES + 1),
        })
        .await;
    err("update_key_description over the limit", r, "InvalidRequest(description)", is_invalid_request("description"))?;
    let kept = ctx.describe(&id).await?.description;
    ensure!(kept == at_limits.description, "a refused update_key_description changed the description");
    if !ctx.caps.tags {
        return Ok(());
    }
    // Tags accumulate across calls: the 51st is refused, overwriting one of the 50 is not.
    let r = manager.tag_key(TagKeyRequest { key_id: id.clone(), tags: ctx_of(&[("one-more", "v")]) }).await;
    err("tag_key adding a 51st tag", r, "InvalidRequest(tags)", is_invalid_request("tags"))?;
    let r = manager.tag_key(TagKeyRequest { key_id: id.clone(), tags: ctx_of(&[("", "v")]) }).await;
    err("tag_key with an empty tag name", r, "InvalidRequest(tags)", is_invalid_request("tags"))?;
    ensure!(ctx.describe(&id).await?.tags == full_tags, "a refused tag_key changed the tags");
    let first = full_tags.keys().next().cloned().unwrap_or_default();
    ok(
        "tag_key overwriting a tag",
        manager.tag_key(TagKeyRequest { key_id: id.clone(), tags: [(first, "new".into())].into() }).await,
    )?;
    ensure!(ctx.describe(&id).await?.tags.len() == MAX_TAGS, "overwriting a tag changed the tag count");
    Ok(())
}
