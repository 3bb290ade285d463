//! Contract cases of `list_keys`: ascending pages, limits, markers that survive deletion,
//! prefixes, and paging while keys are created.

use kms_types::types::{KeyState, ListKeysRequest, ListKeysResponse, MAX_LIST_LIMIT};

use super::Outcome;
use super::ctx::{Ctx, err, is_invalid_request, ok};

/// Every key under the case's prefix, by paging with `limit` from the prefix onwards.
async fn list_ours(ctx: &Ctx, limit: u32) -> std::result::Result<Vec<(String, KeyState)>, String> {
    let mut marker = Some(ctx.prefix.clone());
    let mut ours = Vec::new();
    for _ in 0..10_000 {
        let page = ok(
            format!("list_keys(limit {limit}, marker {marker:?})"),
            ctx.backend
                .list_keys(ListKeysRequest { limit: Some(limit), marker: marker.clone(), ..Default::default() })
                .await,
        )?;
        ensure!(page.keys.len() <= limit as usize, "list_keys returned {} keys for limit {limit}", page.keys.len());
        let mut past_prefix = false;
        for entry in &page.keys {
            if let Some(m) = &marker {
                ensure!(entry.key_id > *m, "list_keys after marker {m} returned {}", entry.key_id);
            }
            if entry.key_id.starts_with(&ctx.prefix) {
                ours.push((entry.key_id.clone(), entry.key_state));
            } else {
                past_prefix = true;
            }
        }
        if !page.truncated || past_prefix {
            ensure!(page.truncated || page.next_marker.is_none(), "a last page has next_marker {:?}", page.next_marker);
            return Ok(ours);
        }
        ensure!(!page.keys.is_empty(), "a truncated page is empty");
        ensure!(
            page.next_marker.as_deref() == page.keys.last().map(|e| e.key_id.as_str()),
            "next_marker {:?} is not the page's last key",
            page.next_marker
        );
        marker = page.next_marker;
    }
    Err("list_keys never stopped paging".into())
}

fn strictly_ascending(ids: &[String]) -> Outcome {
    for pair in ids.windows(2) {
        ensure!(pair[0] < pair[1], "list_keys is not strictly ascending: {} then {}", pair[0], pair[1]);
    }
    Ok(())
}

pub(super) async fn list_keys_pages_in_ascending_order(ctx: Ctx) -> Outcome {
    // Created out of order, so a backend that lists in creation order fails.
    let mut expected = Vec::new();
    for n in [5, 0, 9, 3, 7, 1, 8, 2, 6, 4] {
        expected.push(ctx.create(&format!("p{n:02}")).await?);
    }
    expected.sort();
    ok("delete_key", ctx.delete(&expected[4], None).await)?;
    for limit in [1, 3, 10, MAX_LIST_LIMIT] {
        let listed = list_ours(&ctx, limit).await?;
        let ids: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        strictly_ascending(&ids)?;
        ensure!(ids == expected, "with limit {limit} listed {ids:?}, expected {expected:?}");
        let state = listed[4].1;
        ensure!(state == KeyState::PendingDeletion, "list_keys shows a PendingDeletion key as {state}");
    }
    let page = ok("list_keys(no limit)", ctx.backend.list_keys(ListKeysRequest::default()).await)?;
    ensure!(page.keys.len() <= 100, "the default page has {} keys (more than 100)", page.keys.len());
    Ok(())
}

pub(super) async fn list_keys_rejects_bad_limits(ctx: Ctx) -> Outcome {
    for limit in [0, MAX_LIST_LIMIT + 1, u32::MAX] {
        let r = ctx.backend.list_keys(ListKeysRequest { limit: Some(limit), marker: None, ..Default::default() }).await;
        err(format!("list_keys(limit {limit})"), r, "InvalidRequest(limit)", is_invalid_request("limit"))?;
    }
    Ok(())
}

pub(super) async fn list_marker_survives_deletes(ctx: Ctx) -> Outcome {
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(ctx.create(&format!("s{n}0")).await?);
    }
    let first = ok(
        "list_keys",
        ctx.backend
            .list_keys(ListKeysRequest { limit: Some(2), marker: Some(ctx.prefix.clone()), ..Default::default() })
            .await,
    )?;
    let marker = first.next_marker.clone().ok_or("a truncated first page has no next_marker")?;
    ensure!(marker == ids[1], "next_marker is {marker}, expected {}", ids[1]);
    // The marker's key and the next one are deleted between pages.
    ok("delete_key(marker key)", ctx.delete(&ids[1], Some(7)).await)?;
    ok("delete_key(next key)", ctx.delete(&ids[2], Some(7)).await)?;
    let next = ok(
        "list_keys after deleting the marker key",
        ctx.backend.list_keys(ListKeysRequest { limit: Some(2), marker: Some(marker), ..Default::default() }).await,
    )?;
    let got: Vec<&str> = next.keys.iter().map(|e| e.key_id.as_str()).collect();
    ensure!(got == [ids[2].as_str(), ids[3].as_str()], "the page after the deleted marker is {got:?}");
    // A marker naming a key that no longer exists at all (purged): listing resumes after it.
    let gone = ctx.id("s25");
    let resumed = ok(
        "list_keys with a marker naming no key",
        ctx.backend.list_keys(ListKeysRequest { limit: Some(2), marker: Some(gone), ..Default::default() }).await,
    )?;
    let got: Vec<&str> = resumed.keys.iter().map(|e| e.key_id.as_str()).collect();
    ensure!(got == [ids[3].as_str(), ids[4].as_str()], "the page after a vanished marker is {got:?}");
    Ok(())
}

pub(super) async fn list_keys_with_a_prefix(ctx: Ctx) -> Outcome {
    let mut inside = Vec::new();
    for label in ["q-b", "q-a", "q-c", "q-d"] {
        inside.push(ctx.create(label).await?);
    }
    inside.sort();
    let before = ctx.create("q").await?;
    let after = ctx.create("r-a").await?;
    let prefix = ctx.id("q-");
    let list = |limit: u32, marker: Option<String>| {
        let request = ListKeysRequest { limit: Some(limit), marker, prefix: Some(prefix.clone()) };
        ctx.backend.list_keys(request)
    };
    let ids = |page: &ListKeysResponse| page.keys.iter().map(|e| e.key_id.clone()).collect::<Vec<_>>();
    // From the start, from a marker before the range, inside it, and past it.
    let page = ok("list_keys(prefix)", list(10, None).await)?;
    ensure!(ids(&page) == inside && !page.truncated, "prefix {prefix} listed {:?}", ids(&page));
    let page = ok("list_keys(prefix, early marker)", list(10, Some(before.clone())).await)?;
    ensure!(ids(&page) == inside, "prefix {prefix} after {before} listed {:?}", ids(&page));
    let page = ok("list_keys(prefix, limit 2)", list(2, None).await)?;
    ensure!(ids(&page) == inside[..2] && page.truncated, "first page {:?}", ids(&page));
    let page = ok("list_keys(prefix, second page)", list(2, page.next_marker.clone()).await)?;
    ensure!(ids(&page) == inside[2..] && !page.truncated && page.next_marker.is_none(), "second page {:?}", ids(&page));
    let page = ok("list_keys(prefix, late marker)", list(10, Some(after)).await)?;
    ensure!(page.keys.is_empty() && !page.truncated, "past the range listed {:?}", ids(&page));
    for bad in ["q-*", ".q"] {
        let request = ListKeysRequest { prefix: Some(bad.into()), ..Default::default() };
        let r = ctx.backend.list_keys(request).await;
        err(format!("list_keys(prefix {bad})"), r, "InvalidRequest(prefix)", is_invalid_request("prefix"))?;
    }
    Ok(())
}

pub(super) async fn list_keys_under_concurrent_creates(ctx: Ctx) -> Outcome {
    // Existing keys: even numbers. Created while paging: odd numbers, interleaved.
    let mut existing = Vec::new();
    for n in (0..24).step_by(2) {
        existing.push(ctx.create(&format!("c{n:03}")).await?);
    }
    let creator = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            for n in (1..24).step_by(2) {
                ctx.create(&format!("c{n:03}")).await?;
                tokio::task::yield_now().await;
            }
            Ok::<(), String>(())
        })
    };
    let listed = list_ours(&ctx, 2).await?;
    creator.await.map_err(|e| format!("the creating task panicked: {e}"))??;
    let ids: Vec<String> = listed.into_iter().map(|(id, _)| id).collect();
    strictly_ascending(&ids)?;
    for id in &existing {
        ensure!(ids.contains(id), "{id} existed before paging began but was skipped");
    }
    Ok(())
}
