//! The native API's alias handling inside [`App`]: the `/kms/v1/aliases` routes
//! ([`crate::aliases`]) and aliases wherever a request names a key (the path's key, `decrypt`'s
//! `key_id`, `re_encrypt`'s `destination_key_id`), each resolved to its key before that key is
//! authorized, as the AWS protocol does.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use kms_core::encryption::service::EncryptionService;
use kms_types::alias::{CreateAliasRequest, ListAliasesRequest, ListAliasesResponse, is_alias};
use kms_types::types::validate_key_id;

use crate::aliases::{AliasRoute, AliasTargetBody, check_key_ref};
use crate::app::{App, RequestInfo, check};
use crate::auth::{Identity, Operation};
use crate::body::query_pairs;
use crate::error::ApiError;
use crate::responses::{Resp, json};

impl App {
    /// The key a path's key reference names: an alias is resolved (after checking that the
    /// identity may do `operation` at all, so that a caller without the right learns nothing
    /// of aliases); a key id is itself.
    pub(crate) async fn path_key(
        &self,
        identity: &Identity,
        operation: Operation,
        key_ref: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        match key_ref {
            Some(alias) if is_alias(&alias) && identity.may(operation) => {
                let svc = self.service().await?;
                Ok(Some(self.call(operation, svc.resolve_key_ref(&alias)).await?))
            }
            other => Ok(other),
        }
    }

    /// A body's optional key reference (`field`), checked and resolved to a key id.
    pub(crate) async fn body_key(
        &self,
        svc: &EncryptionService,
        operation: Operation,
        field: &str,
        key_ref: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        let Some(key_ref) = key_ref else { return Ok(None) };
        check_key_ref(field, &key_ref)?;
        Ok(Some(self.call(operation, svc.resolve_key_ref(&key_ref)).await?))
    }

    /// One `/kms/v1/aliases` request. Creating, moving and deleting take `manage_aliases` on
    /// the key the alias points at (moving: on the key it leaves, too); listing takes
    /// `list_keys` and shows only the aliases of keys the identity may list.
    pub(crate) async fn alias_request(
        &self,
        route: AliasRoute,
        req: Request<Incoming>,
        identity: &Identity,
        info: &mut RequestInfo,
    ) -> Result<Resp, ApiError> {
        let operation = if route == AliasRoute::List { Operation::ListKeys } else { Operation::ManageAliases };
        info.operation = Some(operation);
        if !identity.may(operation) {
            return Err(ApiError::forbidden(identity.name(), operation.as_str(), None));
        }
        match route {
            AliasRoute::Create => {
                let request: CreateAliasRequest = self.body(req, true).await?;
                validate_key_id("target_key_id", &request.target_key_id)?;
                info.key_id = Some(request.target_key_id.clone());
                check(identity, operation, Some(&request.target_key_id))?;
                let svc = self.service().await?;
                let created = self.call(operation, svc.create_alias(request)).await?;
                Ok(json(StatusCode::CREATED, &created))
            }
            AliasRoute::Update(alias_name) => {
                let body: AliasTargetBody = self.body(req, true).await?;
                validate_key_id("target_key_id", &body.target_key_id)?;
                info.key_id = Some(body.target_key_id.clone());
                check(identity, operation, Some(&body.target_key_id))?;
                let svc = self.service().await?;
                let current = self.call(operation, svc.resolve_key_ref(&alias_name)).await?;
                check(identity, operation, Some(&current))?;
                let request = CreateAliasRequest { alias_name, target_key_id: body.target_key_id };
                Ok(json(StatusCode::OK, &self.call(operation, svc.update_alias(request)).await?))
            }
            AliasRoute::Delete(alias_name) => {
                let svc = self.service().await?;
                let current = self.call(operation, svc.resolve_key_ref(&alias_name)).await?;
                info.key_id = Some(current.clone());
                check(identity, operation, Some(&current))?;
                self.call(operation, svc.delete_alias(&alias_name)).await?;
                let deleted = serde_json::json!({ "alias_name": alias_name, "target_key_id": current });
                Ok(json(StatusCode::OK, &deleted))
            }
            AliasRoute::List => {
                let request = alias_list_query(req.uri().query())?;
                if let Some(key_id) = &request.key_id {
                    info.key_id = Some(key_id.clone());
                    check(identity, operation, Some(key_id))?;
                }
                let svc = self.service().await?;
                let mut page: ListAliasesResponse = self.call(operation, svc.list_aliases(request)).await?;
                page.aliases.retain(|a| identity.may_on(operation, Some(&a.target_key_id)));
                Ok(json(StatusCode::OK, &page))
            }
        }
    }
}

/// `GET /kms/v1/aliases?limit=1..100&marker=<alias>&key_id=<key id>`.
fn alias_list_query(query: Option<&str>) -> Result<ListAliasesRequest, ApiError> {
    let mut request = ListAliasesRequest::default();
    for (name, value) in query_pairs(query) {
        match name.as_str() {
            "limit" => {
                let n = value.parse::<u32>().map_err(|_| ApiError::invalid("limit", "must be a whole number"))?;
                request.limit = Some(kms_types::alias::validate_alias_list_limit(Some(n))? as u32);
            }
            "marker" => {
                kms_types::alias::validate_alias_name("marker", &value)?;
                request.marker = Some(value);
            }
            "key_id" => {
                validate_key_id("key_id", &value)?;
                request.key_id = Some(value);
            }
            other => return Err(ApiError::invalid(other.to_owned(), "unknown query parameter")),
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_list_queries_are_checked() {
        let request = alias_list_query(Some("limit=2&marker=alias%2Fa&key_id=k1")).unwrap();
        assert_eq!(
            request,
            ListAliasesRequest { key_id: Some("k1".into()), limit: Some(2), marker: Some("alias/a".into()) }
        );
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("marker=k1", "marker"),
            ("key_id=alias%2Fa", "key_id"),
            ("prefix=a", "prefix"),
        ] {
            let err = alias_list_query(Some(query)).unwrap_err();
            assert_eq!((err.status.as_u16(), err.field.as_deref()), (400, Some(field)), "{query}");
        }
    }
}
