//! The contract cases of aliases (see [`KmsBackend::supports_aliases`]): a backend that stores
//! them resolves, moves, deletes and pages them by the rules of `kms_types::alias`; one that
//! does not answers `Unsupported` to every alias operation.

use kms_types::alias::{CreateAliasRequest, ListAliasesRequest};
use kms_types::error::KmsError;

use super::{Ctx, Outcome, err, is_invalid_request, is_not_found, is_unsupported, ok};
use crate::backends::KmsBackend;

fn alias(ctx: &Ctx, label: &str) -> String {
    format!("alias/{}{label}", ctx.prefix)
}

fn request(alias_name: &str, target: &str) -> CreateAliasRequest {
    CreateAliasRequest { alias_name: alias_name.to_owned(), target_key_id: target.to_owned() }
}

pub(super) async fn aliases_resolve_move_and_delete(ctx: Ctx) -> Outcome {
    let b: &dyn KmsBackend = ctx.backend.as_ref();
    let key = ctx.create("alias-a").await?;
    let other = ctx.create("alias-b").await?;
    let name = alias(&ctx, "app");
    if !b.supports_aliases() {
        err("create_alias", b.create_alias(request(&name, &key)).await, "Unsupported", is_unsupported)?;
        err("update_alias", b.update_alias(request(&name, &key)).await, "Unsupported", is_unsupported)?;
        err("delete_alias", b.delete_alias(&name).await, "Unsupported", is_unsupported)?;
        err("resolve_alias", b.resolve_alias(&name).await, "Unsupported", is_unsupported)?;
        err("list_aliases", b.list_aliases(ListAliasesRequest::default()).await, "Unsupported", is_unsupported)?;
        return Ok(());
    }
    let created = ok("create_alias", b.create_alias(request(&name, &key)).await)?;
    ensure!(created.alias_name == name && created.target_key_id == key, "create_alias answered {created:?}");
    ensure!(ok("resolve_alias", b.resolve_alias(&name).await)? == key, "the alias does not resolve to its key");
    err(
        "create_alias of a taken name",
        b.create_alias(request(&name, &other)).await,
        "KeyAlreadyExists",
        |e| matches!(e, KmsError::KeyAlreadyExists { key_id } if *key_id == name),
    )?;
    let missing = ctx.id("alias-missing");
    err(
        "create_alias to a missing key",
        b.create_alias(request(&alias(&ctx, "x"), &missing)).await,
        "KeyNotFound",
        is_not_found(&missing),
    )?;
    err(
        "create_alias to an alias",
        b.create_alias(request(&alias(&ctx, "y"), &name)).await,
        "InvalidRequest(target_key_id)",
        is_invalid_request("target_key_id"),
    )?;
    err(
        "create_alias with a bad name",
        b.create_alias(request("alias/aws/x", &key)).await,
        "InvalidRequest(alias_name)",
        is_invalid_request("alias_name"),
    )?;
    err(
        "create_alias without alias/",
        b.create_alias(request("plain", &key)).await,
        "InvalidRequest(alias_name)",
        is_invalid_request("alias_name"),
    )?;

    let moved = ok("update_alias", b.update_alias(request(&name, &other)).await)?;
    ensure!(
        moved.target_key_id == other && moved.creation_date == created.creation_date,
        "update_alias answered {moved:?}"
    );
    ensure!(ok("resolve_alias", b.resolve_alias(&name).await)? == other, "the moved alias resolves to the old key");
    let unknown = alias(&ctx, "unknown");
    err(
        "update_alias of an unknown alias",
        b.update_alias(request(&unknown, &key)).await,
        "KeyNotFound",
        is_not_found(&unknown),
    )?;
    err(
        "update_alias to a missing key",
        b.update_alias(request(&name, &missing)).await,
        "KeyNotFound",
        is_not_found(&missing),
    )?;

    ok("delete_alias", b.delete_alias(&name).await)?;
    err("resolve_alias after delete", b.resolve_alias(&name).await, "KeyNotFound", is_not_found(&name))?;
    err("delete_alias twice", b.delete_alias(&name).await, "KeyNotFound", is_not_found(&name))?;
    // The keys stay.
    ctx.describe(&key).await?;
    ctx.describe(&other).await?;
    Ok(())
}

pub(super) async fn aliases_list_in_name_order(ctx: Ctx) -> Outcome {
    let b: &dyn KmsBackend = ctx.backend.as_ref();
    if !b.supports_aliases() {
        return Ok(());
    }
    let key = ctx.create("list-a").await?;
    let other = ctx.create("list-b").await?;
    let mut expected = Vec::new();
    for (label, target) in [("c", &key), ("a", &other), ("b", &key), ("d", &key)] {
        let name = alias(&ctx, label);
        ok("create_alias", b.create_alias(request(&name, target)).await)?;
        expected.push(name);
    }
    expected.sort();
    // Page through ours, two at a time, from just before our prefix.
    let mut marker = Some(format!("alias/{}", ctx.prefix.trim_end_matches('-')));
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let page = ok(
            "list_aliases",
            b.list_aliases(ListAliasesRequest { limit: Some(2), marker: marker.clone(), key_id: None }).await,
        )?;
        ensure!(page.aliases.len() <= 2, "a page of limit 2 holds {}", page.aliases.len());
        seen.extend(page.aliases.iter().map(|a| a.alias_name.clone()).filter(|n| n.starts_with(&alias(&ctx, ""))));
        if !page.truncated {
            ensure!(page.next_marker.is_none(), "the last page has a next_marker");
            break;
        }
        marker = page.next_marker;
        ensure!(marker.is_some(), "a truncated page has no next_marker");
    }
    ensure!(seen == expected, "paging gave {seen:?}, expected {expected:?}");
    let of_other = ok(
        "list_aliases(key_id)",
        b.list_aliases(ListAliasesRequest { key_id: Some(other.clone()), ..Default::default() }).await,
    )?;
    let names: Vec<&str> = of_other.aliases.iter().map(|a| a.alias_name.as_str()).collect();
    ensure!(names == [alias(&ctx, "a").as_str()], "the aliases of one key are {names:?}");
    err(
        "list_aliases(limit 0)",
        b.list_aliases(ListAliasesRequest { limit: Some(0), ..Default::default() }).await,
        "InvalidRequest(limit)",
        is_invalid_request("limit"),
    )?;
    for name in &expected {
        ok("delete_alias", b.delete_alias(name).await)?;
    }
    Ok(())
}
