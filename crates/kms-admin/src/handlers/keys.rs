//! Key management: create, list, describe, enable/disable/rotate, description, tags, and the
//! scheduling and cancelling of deletions.

use http::StatusCode;
use kms_types::types::{
    CancelKeyDeletionRequest, CreateKeyRequest, DeleteKeyRequest, DescribeKeyRequest, KeyIdRequest, ListKeysRequest,
    ListKeysResponse, TagKeyRequest, UntagKeyRequest, UpdateKeyDescriptionRequest, validate_key_id,
    validate_list_limit,
};

use super::Call;
use crate::api::{DescriptionBody, EmptyBody, TagBody, UntagBody};
use crate::app::{App, check};
use crate::auth::{Identity, Operation};
use crate::body::{deletion_query, list_query};
use crate::error::ApiError;
use crate::responses::{Resp, json};
use kms_core::encryption::service::EncryptionService;

/// Backend pages read at most for one `list_keys` request of an identity limited to some key
/// patterns (issue 13 item 10): the cost of a request stays bounded however few keys match.
const MAX_LIST_PAGES_SCANNED: usize = 16;

impl App {
    pub(crate) async fn create_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let request: CreateKeyRequest = self.body(call.req, false).await?;
        if let Some(name) = &request.key_name {
            validate_key_id("key_name", name)?;
        }
        call.info.key_id.clone_from(&request.key_name);
        check(call.identity, call.operation, request.key_name.as_deref())?;
        let svc = self.service().await?;
        let created = self.call(call.operation, svc.create_key(request)).await?;
        call.info.key_id = Some(created.key_id.clone());
        Ok(json(StatusCode::CREATED, &created))
    }

    pub(crate) async fn import_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let request: kms_types::import::ImportKeyRequest = self.body(call.req, true).await?;
        validate_key_id("key_id", &request.key_id)?;
        call.info.key_id = Some(request.key_id.clone());
        check(call.identity, call.operation, Some(&request.key_id))?;
        let svc = self.service().await?;
        let imported = self.call(call.operation, svc.import_key(request)).await?;
        Ok(json(StatusCode::CREATED, &imported))
    }

    pub(crate) async fn list_keys(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let request = list_query(call.req.uri().query())?;
        let svc = self.service().await?;
        let page = self.list_visible(&svc, call.identity, request).await?;
        Ok(json(StatusCode::OK, &page))
    }

    pub(crate) async fn describe_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let svc = self.service().await?;
        let r = self.call(call.operation, svc.describe_key(DescribeKeyRequest { key_id: call.key })).await?;
        Ok(json(StatusCode::OK, &r))
    }

    /// Enable, disable and rotate: a key id and an empty body.
    pub(crate) async fn change_key_state(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        let svc = self.service().await?;
        let request = KeyIdRequest { key_id: call.key };
        let r = match call.operation {
            Operation::EnableKey => self.call(call.operation, svc.enable_key(request)).await?,
            Operation::DisableKey => self.call(call.operation, svc.disable_key(request)).await?,
            _ => self.call(call.operation, svc.rotate_key(request)).await?,
        };
        Ok(json(StatusCode::OK, &r))
    }

    pub(crate) async fn update_key_description(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: DescriptionBody = self.body(call.req, true).await?;
        let svc = self.service().await?;
        let request = UpdateKeyDescriptionRequest { key_id: call.key, description: body.description };
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.update_key_description(request)).await?))
    }

    pub(crate) async fn tag_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: TagBody = self.body(call.req, true).await?;
        let svc = self.service().await?;
        let request = TagKeyRequest { key_id: call.key, tags: body.tags };
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.tag_key(request)).await?))
    }

    pub(crate) async fn untag_key(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let body: UntagBody = self.body(call.req, true).await?;
        let svc = self.service().await?;
        let request = UntagKeyRequest { key_id: call.key, tag_keys: body.tag_keys };
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.untag_key(request)).await?))
    }

    pub(crate) async fn schedule_key_deletion(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let days = deletion_query(call.req.uri().query())?;
        let svc = self.service().await?;
        let request = DeleteKeyRequest { key_id: call.key, pending_window_in_days: Some(days) };
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.delete_key(request)).await?))
    }

    pub(crate) async fn cancel_key_deletion(&self, call: Call<'_>) -> Result<Resp, ApiError> {
        let _: EmptyBody = self.body(call.req, false).await?;
        let svc = self.service().await?;
        let request = CancelKeyDeletionRequest { key_id: call.key };
        Ok(json(StatusCode::OK, &self.call(call.operation, svc.cancel_key_deletion(request)).await?))
    }

    /// A page of the keys `identity` may list. An identity limited to some key patterns gets its
    /// page filled from backend pages of the ids its patterns' literal prefix allows (a range
    /// the backend reads, not the whole store), and a `next_marker` that is one of its own keys:
    /// the backend's marker is the last key of the unfiltered page, which may be a key the
    /// identity may not see. At most [`MAX_LIST_PAGES_SCANNED`] backend pages are read per
    /// request: past that the page is returned as it is, truncated, with the backend's position
    /// as the marker to continue from.
    pub(crate) async fn list_visible(
        &self,
        svc: &EncryptionService,
        identity: &Identity,
        request: ListKeysRequest,
    ) -> Result<ListKeysResponse, ApiError> {
        let operation = Operation::ListKeys;
        if identity.may_on(operation, None) {
            return self.call(operation, svc.list_keys(request)).await;
        }
        let limit = validate_list_limit(request.limit)?;
        let allowed = identity.key_prefix(operation);
        let asked = request.checked_prefix()?.to_owned();
        // The narrower of the two prefixes; none of the identity's keys if they are disjoint.
        let prefix = match (asked.starts_with(&allowed), allowed.starts_with(&asked)) {
            (true, _) => asked,
            (_, true) => allowed,
            _ => return Ok(ListKeysResponse::default()),
        };
        let mut keys = Vec::with_capacity(limit);
        let mut marker = request.marker;
        for _ in 0..MAX_LIST_PAGES_SCANNED {
            let page_request = ListKeysRequest { limit: request.limit, marker, prefix: Some(prefix.clone()) };
            let page = self.call(operation, svc.list_keys(page_request)).await?;
            keys.extend(page.keys.into_iter().filter(|k| identity.may_on(operation, Some(&k.key_id))));
            if keys.len() >= limit {
                let truncated = keys.len() > limit || page.truncated;
                keys.truncate(limit);
                let next_marker = if truncated { keys.last().map(|k| k.key_id.clone()) } else { None };
                return Ok(ListKeysResponse { keys, next_marker, truncated });
            }
            match page.next_marker {
                Some(next) if page.truncated => marker = Some(next),
                _ => return Ok(ListKeysResponse { keys, next_marker: None, truncated: false }),
            }
        }
        Ok(ListKeysResponse { keys, next_marker: marker, truncated: true })
    }
}
